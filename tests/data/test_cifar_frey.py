"""CIFAR-10 from a python-pickle tarball; Frey faces from a MATLAB file."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
import scipy.io
from datafiles_helpers import SHARED, resource_for, sha256, write_cifar_tarball

from vaelab.data import load_dataset
from vaelab.data.base import DataError
from vaelab.data.cifar import CIFAR10, read_cifar_archive
from vaelab.data.frey import Frey, read_frey, stretch_contrast

FREY_SHA = "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64"


def test_cifar_archive_layout(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    batches = write_cifar_tarball(path, n_per_batch=3)
    images, labels = read_cifar_archive(path, "train")
    assert images.shape == (15, 3, 32, 32) and labels.shape == (15,)
    data, batch_labels = batches["data_batch_1"]
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each 32x32 row-major.
    assert images[0, 1, 2, 3] == data[0, 1024 + 2 * 32 + 3]
    assert labels[:3].tolist() == batch_labels
    test_images, _ = read_cifar_archive(path, "test")
    np.testing.assert_array_equal(test_images.reshape(3, -1), batches["test_batch"][0])


def test_cifar_load_and_prepare(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    write_cifar_tarball(folder / "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "archive", resource_for(folder / "cifar-10-python.tar.gz"))
    dataset = load_dataset("cifar10", root=str(tmp_path), split="test")
    assert dataset.data.shape == (3, 3, 32, 32) and len(dataset.labels) == 3
    assert CIFAR10.prepare(CIFAR10.config_class(root=str(tmp_path)))["items"] == 18


def _tar_with(path, name, blob):
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
        info.size = len(blob)
        archive.addfile(info, io.BytesIO(blob))


class _Evil:
    def __reduce__(self):
        return (print, ("owned",))


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (pickle.dumps(_Evil()), "forbidden global"),
        (pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}), "data \\(2, 10\\)"),
        (pickle.dumps({b"labels": [0]}), "corrupt"),
        (b"garbage", "corrupt"),
    ],
)
def test_cifar_rejects_bad_batches(tmp_path, blob, match):
    _tar_with(tmp_path / "c.tar.gz", "test_batch", blob)
    with pytest.raises(DataError, match=match):
        read_cifar_archive(tmp_path / "c.tar.gz", "test")


def test_cifar_missing_batch_and_broken_archive(tmp_path):
    _tar_with(tmp_path / "c.tar.gz", "test_batch", b"")
    with pytest.raises(DataError, match="data_batch_1 missing"):
        read_cifar_archive(tmp_path / "c.tar.gz", "train")
    (tmp_path / "d.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="not a readable"):
        read_cifar_archive(tmp_path / "d.tar.gz", "train")


def test_cifar_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", root=str(tmp_path))
    message = str(info.value)
    assert "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert str(tmp_path / "cifar10") in message


def _frey_like(path, frames=30, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(8, 239, (frames, 28, 20), dtype=np.uint8)
    scipy.io.savemat(path, {"ff": images.reshape(frames, -1).T})  # one frame per column
    return images


def test_read_frey_tiny_mat(tmp_path):
    images = _frey_like(tmp_path / "f.mat")
    np.testing.assert_array_equal(read_frey(tmp_path / "f.mat"), images)


@pytest.mark.parametrize(
    ("content", "match"),
    [({"other": np.zeros((560, 3))}, "no variable 'ff'"), ({"ff": np.zeros((10, 3))}, "shape")],
)
def test_read_frey_rejects_wrong_content(tmp_path, content, match):
    scipy.io.savemat(tmp_path / "f.mat", content)
    with pytest.raises(DataError, match=match):
        read_frey(tmp_path / "f.mat")


def test_read_frey_rejects_non_mat(tmp_path):
    (tmp_path / "f.mat").write_bytes(b"\x00" * 200)
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        read_frey(tmp_path / "f.mat")


def test_stretch_contrast_known_values():
    images = np.asarray([[[10, 20], [30, 60]], [[5, 5], [5, 5]]], dtype=np.uint8)
    out = stretch_contrast(images)
    assert out[0].tolist() == [[0, 51], [102, 255]]
    assert out[1].tolist() == [[0, 0], [0, 0]]  # constant image: no division by zero


def test_frey_real_file(tmp_path):
    source = SHARED / "frey" / "frey_rawface.mat"
    if not source.is_file():
        pytest.skip("../shared/data/frey is absent")
    assert sha256(source) == FREY_SHA == Frey.file.sha256
    report = Frey.prepare(Frey.config_class(root=str(tmp_path)), from_path=str(source.parent))
    assert report["items"] == 1965 and report["bytes"] == 1_100_584
    train = load_dataset("frey", root=str(tmp_path))
    test = load_dataset("frey", root=str(tmp_path), split="test", stretch=True)
    assert train.data.shape == (1572, 1, 28, 20) and test.data.shape == (197, 1, 28, 20)
    frames = read_frey(tmp_path / "frey" / "frey_rawface.mat")
    assert (int(frames.min()), int(frames.max())) == (8, 238)  # raw range of the file (spec)
    np.testing.assert_array_equal(train.data[:, 0].numpy(), frames[:1572])
    assert (test.data.flatten(1).amin(1) == 0).all() and (test.data.flatten(1).amax(1) == 255).all()
    assert (train.labels == 0).all()


def test_frey_load_tiny_file_with_monkeypatched_checksum(tmp_path, monkeypatch):
    (tmp_path / "frey").mkdir()
    images = _frey_like(tmp_path / "frey" / "frey_rawface.mat", frames=1965)
    monkeypatch.setattr(Frey, "file", resource_for(tmp_path / "frey" / "frey_rawface.mat"))
    dataset = Frey.load(Frey.config_class(root=str(tmp_path), split="test", limit=4))
    np.testing.assert_array_equal(dataset.data[:, 0].numpy(), images[1768:1772])
