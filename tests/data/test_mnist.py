"""MNIST / Fashion-MNIST: IDX parsing, resizing, loading from a data folder."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from datafiles_helpers import SHARED, idx_bytes, resource_for, sha256, write_idx_gz
from PIL import Image

from vaelab.data import load_dataset
from vaelab.data.base import DataError
from vaelab.data.mnist import MNIST, FashionMNIST, read_idx, resize_images

MNIST_TEST = SHARED / "mnist-test"
T10K_IMAGES_SHA = "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"


def _tiny_mnist(folder, n_train=5, n_test=3, seed=0):
    """Writes the four IDX gz files; returns {file name: Resource} matching them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    files = {name: resource_for(write_idx_gz(folder / name, a)) for name, a in arrays.items()}
    return arrays, files


def test_read_idx_round_trip_plain_and_gz(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx", expected_ndim=3), array)
    np.testing.assert_array_equal(read_idx(write_idx_gz(tmp_path / "a.gz", array)), array)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda raw: b"\x01" + raw[1:], "magic"),
        (lambda raw: raw[:2] + b"\x07" + raw[3:], "magic"),  # unknown type code
        (lambda raw: raw[:-1], "header says shape"),  # truncated data
        (lambda raw: raw + b"\x00", "header says shape"),  # trailing bytes
        (lambda raw: raw[:6], "truncated IDX header"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, mangle, match):
    raw = idx_bytes(np.zeros((2, 3, 4), dtype=np.uint8))
    (tmp_path / "bad.idx").write_bytes(mangle(raw))
    with pytest.raises(DataError, match=match):
        read_idx(tmp_path / "bad.idx")


def test_read_idx_rejects_bad_gzip_and_wrong_rank(tmp_path):
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable"):
        read_idx(tmp_path / "bad.gz")
    write_idx_gz(tmp_path / "labels.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match="expected an IDX file with 3 dimensions, got 1"):
        read_idx(tmp_path / "labels.gz", expected_ndim=3)


def test_official_test_split_parses():
    images_path = MNIST_TEST / "t10k-images-idx3-ubyte.gz"
    if not images_path.is_file():
        pytest.skip("../shared/data/mnist-test is absent")
    assert sha256(images_path) == T10K_IMAGES_SHA
    assert MNIST.files["t10k-images-idx3-ubyte.gz"].sha256 == T10K_IMAGES_SHA
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(MNIST_TEST / "t10k-labels-idx1-ubyte.gz", expected_ndim=1)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_load_official_test_split_from_a_data_folder(tmp_path):
    if not (MNIST_TEST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("../shared/data/mnist-test is absent")
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(MNIST_TEST / name)
    dataset = load_dataset("mnist", root=str(tmp_path), split="test", limit=100, image_size=28)
    assert dataset.data.shape == (100, 1, 28, 28) and dataset.labels[0] == 7


def test_resize_matches_pillow_bilinear_exactly():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    pillow = np.stack([
        np.asarray(Image.fromarray(a).resize((32, 32), Image.Resampling.BILINEAR)) for a in images
    ])
    np.testing.assert_array_equal(resize_images(images, 32), pillow)
    assert resize_images(images, 28) is images


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
def test_load_tiny_files(tmp_path, monkeypatch, cls):
    arrays, files = _tiny_mnist(tmp_path / cls.name)
    monkeypatch.setattr(cls, "files", files)
    config = cls.config_class(root=str(tmp_path), image_size=28)
    train = cls.load(config)
    assert train.data.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(train.data[:, 0].numpy(), arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(train.labels, arrays["train-labels-idx1-ubyte.gz"])
    test = cls.load(cls.config_class(root=str(tmp_path), split="test", limit=2))
    assert test.data.shape == (2, 1, 32, 32) and test.name == cls.name
    report = cls.prepare(config)
    assert report == {"path": str(tmp_path / cls.name), "items": 8,
                      "bytes": sum(r.size for r in files.values())}


def test_label_count_mismatch_and_missing_files(tmp_path, monkeypatch):
    _, files = _tiny_mnist(tmp_path / "mnist")
    write_idx_gz(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    files["train-labels-idx1-ubyte.gz"] = resource_for(
        tmp_path / "mnist" / "train-labels-idx1-ubyte.gz")
    monkeypatch.setattr(MNIST, "files", files)
    with pytest.raises(DataError, match="5 images but 4 labels"):
        MNIST.load(MNIST.config_class(root=str(tmp_path)))
    with pytest.raises(DataError) as info:  # real checksums, empty folder, offline
        monkeypatch.setenv("VAELAB_OFFLINE", "1")
        load_dataset("fashion_mnist", root=str(tmp_path / "empty"))
    message = str(info.value)
    assert "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84" in message
    assert "fashion-mnist.s3-website.eu-central-1.amazonaws.com" in message
    assert "vaelab data fashion_mnist --from PATH" in message


def test_corrupt_gzip_with_matching_checksum_is_a_data_error(tmp_path, monkeypatch):
    _, files = _tiny_mnist(tmp_path / "mnist")
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 8))
    files["train-images-idx3-ubyte.gz"] = resource_for(bad)
    monkeypatch.setattr(MNIST, "files", files)
    with pytest.raises(DataError, match="truncated IDX header"):
        MNIST.load(MNIST.config_class(root=str(tmp_path)))


def test_image_size_is_validated():
    with pytest.raises(ValueError, match="image_size"):
        MNIST.config_class(image_size=4)
