"""`vaelab encode RUN --images DIR|FILE.npz` and `vaelab.encode_images` (issue 36, item 7)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import vaelab
from vaelab.cli import main

TOY = ["--set", "data.name=toy_squares", "--set", "train.steps=4", "--set", "train.batch_size=16",
       "--set", "train.metrics=", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--out", str(out), "--name", "r", *TOY]) == 0
    return out / "r"


def test_new_images_encode_like_the_runs_own(run_dir, tmp_path, capsys):
    """The run's first 10 images, given back as an .npz and as PNG files, get the codes the
    run's own encoding gives them."""
    assert main(["encode", str(run_dir), "--limit", "10", "--out", str(tmp_path / "own.npz")]) == 0
    own = dict(np.load(tmp_path / "own.npz"))
    run = vaelab.load_run(run_dir)
    images = run.dataset().uint8(np.arange(10)).numpy()  # (10, C, H, W) uint8
    np.savez(tmp_path / "new.npz", images=images)
    assert main(["encode", str(run_dir), "--images", str(tmp_path / "new.npz"), "--out",
                 str(tmp_path / "a.npz")]) == 0
    given = dict(np.load(tmp_path / "a.npz"))
    np.testing.assert_allclose(given["codes"], own["codes"], atol=1e-6)
    np.testing.assert_allclose(given["z_logvar"], own["z_logvar"], atol=1e-6)
    assert "factors" not in given  # new images carry no ground truth
    folder = tmp_path / "pngs"
    (folder / "b").mkdir(parents=True)
    for i, image in enumerate(images):  # grey PNGs at the model's size: lossless
        where = folder / ("b" if i % 2 else "") / f"img{i:02d}.png"
        Image.fromarray(image[0]).save(where)
    assert main(["encode", str(run_dir), "--images", str(folder), "--out",
                 str(tmp_path / "d.npz")]) == 0
    from_folder = dict(np.load(tmp_path / "d.npz"))
    order = [int(name[-6:-4]) for name in from_folder["files"]]
    assert sorted(order) == list(range(10)) and from_folder["files"][-1].startswith("img")
    np.testing.assert_allclose(from_folder["codes"], own["codes"][order], atol=1e-6)
    # the Python API, with an array (float in [0, 1], channels last)
    arrays = vaelab.encode_images(run_dir, images.transpose(0, 2, 3, 1) / 255.0)
    np.testing.assert_allclose(arrays["codes"], own["codes"], atol=1e-6)


def test_bad_images_are_one_clear_line(run_dir, tmp_path, capsys):
    np.savez(tmp_path / "big.npz", images=np.zeros((3, 1, 40, 40), np.uint8))
    cases = [
        (["--images", str(tmp_path / "big.npz")], "holds images of shape (1, 40, 40)"),
        (["--images", str(tmp_path / "nothing")], "no folder or .npz file at"),
        (["--images", str(tmp_path / "big.npz"), "--split", "test"], "drop it with --images"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((["--images", str(tmp_path / "empty")], "no image files"))
    for extra, message in cases:
        assert main(["encode", str(run_dir), "--out", str(tmp_path / "x.npz"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "x.npz").exists()


def test_encode_help_is_complete(capsys):
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = capsys.readouterr().out
    for flag in ("--images", "--out", "--split", "--limit", "--device", "--batch-size",
                 "--checkpoint", "--overwrite", "codes", "files", "FILE.npz",
                 "vaelab.encode_images"):
        assert flag in text
