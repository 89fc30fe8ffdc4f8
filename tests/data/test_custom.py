"""Your own data: `npz` arrays and `image_folder`, loaded, checked, and trained from the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from datafiles_helpers import banded_face, write_image

import vaelab
from vaelab.cli import main
from vaelab.data.base import DataError, FactorDataset
from vaelab.data.custom import images_from_array


def _squares(n=48, size=32):
    rng = np.random.default_rng(0)
    images = np.zeros((n, size, size), np.uint8)
    pos = rng.integers(0, size - 8, (n, 2))
    for i, (y, x) in enumerate(pos):
        images[i, y : y + 8, x : x + 8] = 255
    return images, pos


@pytest.mark.parametrize(
    ("array", "shape"),
    [
        (np.zeros((2, 5, 7), np.uint8), (2, 1, 5, 7)),
        (np.zeros((2, 5, 7, 3), np.uint8), (2, 3, 5, 7)),
        (np.zeros((2, 1, 5, 7), np.uint8), (2, 1, 5, 7)),
        (np.ones((2, 4, 4), bool), (2, 1, 4, 4)),
    ],
)
def test_images_from_array_layouts(array, shape):
    assert images_from_array(array).shape == shape


def test_images_from_array_values_and_errors():
    assert images_from_array(np.array([[[0.0, 0.5, 1.0]]])).tolist() == [[[[0, 128, 255]]]]
    assert images_from_array(np.ones((1, 2, 2), bool)).max() == 255
    with pytest.raises(DataError, match=r"must lie in \[0, 1\], got \[0, 2\]"):
        images_from_array(np.array([[[0.0, 2.0]]]))
    with pytest.raises(DataError, match="C = 1 or 3"):
        images_from_array(np.zeros((2, 2, 5, 7)))
    with pytest.raises(DataError, match="must be uint8"):
        images_from_array(np.zeros((2, 4, 4), np.int32))


def test_npz_with_factors_is_a_factor_dataset(tmp_path):
    images, pos = _squares()
    path = tmp_path / "mine.npz"
    np.savez(path, images=images, factors=pos * 0.5, factor_names=np.array(["y", "x"]),
             labels=np.arange(48) % 3)
    data = vaelab.load_dataset("npz", path=str(path))
    assert isinstance(data, FactorDataset) and data.factor_names == ("y", "x")
    assert data.image_shape == (1, 32, 32) and len(data) == 48
    np.testing.assert_array_equal(data.uint8(np.arange(48))[:, 0].numpy(), images)
    codes = data.factors[:, 0]
    np.testing.assert_array_equal(data.factor_values[0][codes], pos[:, 0] * 0.5)  # sorted values
    assert data.labels.tolist() == (np.arange(48) % 3).tolist()
    assert len(vaelab.load_dataset("npz", path=str(path), limit=5)) == 5


def test_npz_without_factors_and_splits(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, images=np.zeros((4, 8, 8), np.uint8), test_images=np.zeros((2, 8, 8), np.uint8))
    data = vaelab.load_dataset("npz", path=str(path))
    assert not isinstance(data, FactorDataset) and len(data) == 4
    assert len(vaelab.load_dataset("npz", path=str(path), split="test")) == 2
    with pytest.raises(DataError, match="has no `valid_images` array for data.split=valid"):
        vaelab.load_dataset("npz", path=str(path), split="valid")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"pictures": np.zeros((2, 4, 4), np.uint8)}, "has no `images` array"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "factors": np.zeros((3, 1))},
         r"factors must be \(N, F\) with N = 2"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "factors": np.zeros((2, 2)),
          "factor_names": np.array(["a"])}, "1 factor_names for 2 factor columns"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0.5, 1.0])},
         "labels must be 2 integers"),
    ],
)
def test_npz_bad_files(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        vaelab.load_dataset("npz", path=str(path))


def test_npz_missing_or_corrupt(tmp_path):
    with pytest.raises(DataError, match="needs data.path"):
        vaelab.load_dataset("npz")
    with pytest.raises(DataError, match="no file at"):
        vaelab.load_dataset("npz", path=str(tmp_path / "none.npz"))
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="cannot read"):
        vaelab.load_dataset("npz", path=str(tmp_path / "junk.npz"))


def test_image_folder_labels_by_subfolder_and_cache_outside(tmp_path):
    folder = tmp_path / "photos"
    for kind in ("cats", "dogs"):
        for i in range(5):
            write_image(folder / kind / f"{i}.png", banded_face(30, 20))
    data = vaelab.load_dataset("image_folder", path=str(folder), image_size=16, channels=1,
                               root=str(tmp_path / "home"), test_fraction=0.2)
    assert data.image_shape == (1, 16, 16) and len(data) == 8
    assert sorted(set(data.labels.tolist())) == [0, 1]
    assert sorted(p.name for p in folder.rglob("*")) == sorted(
        ["cats", "dogs", *[f"{i}.png" for i in range(5)] * 2])  # nothing written into it
    assert list((tmp_path / "home" / "image_folder" / "cache").glob("*.npy"))
    test = vaelab.load_dataset("image_folder", path=str(folder), image_size=16,
                               root=str(tmp_path / "home"), test_fraction=0.2, split="test")
    assert len(test) == 2 and test.image_shape == (3, 16, 16)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="needs data.path"):
        vaelab.load_dataset("image_folder")
    with pytest.raises(DataError, match="is not a folder"):
        vaelab.load_dataset("image_folder", path=str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        vaelab.load_dataset("image_folder", path=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        vaelab.load_dataset("image_folder", path=str(tmp_path), channels=2)


def test_train_on_your_own_npz_from_the_cli(tmp_path, capsys):
    images, pos = _squares()
    path = tmp_path / "mine.npz"
    np.savez(path, images=images, factors=pos, factor_names=np.array(["y", "x"]))
    code = main(["train", "--out", str(tmp_path / "runs"), "--name", "mine", "--no-progress",
                 "--set", "data.name=npz", "--set", f"data.path={path}",
                 "--set", "model.name=burgess", "--set", "model.latent_dim=3",
                 "--set", "objective.name=vae", "--set", "train.steps=4",
                 "--set", "train.batch_size=8", "--set", "train.metrics=mig",
                 "--set", "train.gif_every=0", "--set", "train.checkpoint_every=0"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "runs" / "mine" / "metrics.json").is_file()  # factors: scored


def test_nothing_to_prepare(capsys):
    assert main(["data", "npz"]) == 2
    assert "nothing to prepare" in capsys.readouterr().err


def test_burgess_on_non_square_data_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "wide.npz"
    np.savez(path, images=np.zeros((16, 32, 24), np.uint8))
    code = main(["train", "--out", str(tmp_path / "runs"), "--no-progress", "--set",
                 "data.name=npz", "--set", f"data.path={path}", "--set", "model.name=burgess",
                 "--set", "train.batch_size=4", "--set", "train.steps=2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "model 'burgess' needs square images, and the data's are 32x24" in err
