"""`vaelab data NAME [--root DIR] [--from PATH]`, end to end, in-process and as a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest
from datafiles_helpers import SHARED, banded_face, write_image

from vaelab.cli import main
from vaelab.commands.data import format_size


def test_frey_from_shared_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    if not (SHARED / "frey" / "frey_rawface.mat").is_file():
        pytest.skip("../shared/data/frey is absent")
    code = main(["data", "frey", "--root", str(tmp_path), "--from", str(SHARED / "frey")])
    assert code == 0
    out = capsys.readouterr().out
    assert out.strip() == f"frey: 1,965 items, 1.0 MiB in {tmp_path / 'frey'}"
    assert main(["data", "frey", "--root", str(tmp_path)]) == 0  # already there: no network


def test_image_folder_import_and_cache(tmp_path, capsys):
    for i in range(3):
        write_image(tmp_path / "mine" / f"{i}.png", banded_face(30, 20))
    code = main(["data", "faces", "--root", str(tmp_path / "data"), "--from", str(tmp_path / "mine")])
    assert code == 0
    assert "faces: 3 items" in capsys.readouterr().out
    assert list((tmp_path / "data" / "faces" / "cache").glob("*.npy"))


def test_missing_files_offline_exit_2_with_instructions(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    assert main(["data", "mnist", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: mnist:")
    assert "ossci-datasets.s3.amazonaws.com" in err and "vaelab data mnist --from PATH" in err


def test_unknown_name_and_nothing_to_prepare(capsys):
    assert main(["data", "no_such_set"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'no_such_set'" in err and "celeba_faces" in err and "mnist" in err
    assert main(["data", "toy_squares"]) == 2
    assert "nothing to prepare" in capsys.readouterr().err


def test_bad_from_path(tmp_path, capsys):
    assert main(["data", "chairs", "--root", str(tmp_path), "--from", str(tmp_path / "no")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["data", "chairs", "--root", str(tmp_path), "--from", str(tmp_path / "notes.txt")]) == 2
    assert "neither a folder nor a zip/tar archive" in capsys.readouterr().err
    assert main(["data", "cars_chairs", "--from", str(tmp_path)]) == 2
    assert "import each" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "--help"])
    assert info.value.code == 0 and "--from PATH" in capsys.readouterr().out


@pytest.mark.heavy  # a fresh interpreter
def test_subprocess_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "data", "cifar10", "--root", str(tmp_path)],
        check=False, capture_output=True, text=True,
        timeout=120, env={"VAELAB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2 and "cifar-10-python.tar.gz" in result.stderr


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 2**30, "3.0 GiB")]
)
def test_format_size(size, text):
    assert format_size(size) == text


def test_mnist_from_a_folder_with_only_the_test_split(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    source = SHARED / "mnist-test"
    if not (source / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("../shared/data/mnist-test is absent")
    root = tmp_path / "data"
    assert main(["data", "mnist", "--root", str(root), "--from", str(source)]) == 2
    assert "train-images-idx3-ubyte.gz not found" in capsys.readouterr().err
    assert main(["data", "mnist", "--root", str(root), "--from", str(source),
                 "--split", "test"]) == 0
    assert capsys.readouterr().out.startswith("mnist: 10,000 items")
    import vaelab

    assert len(vaelab.load_dataset("mnist", root=str(root), split="test", limit=5)) == 5
    assert main(["data", "frey", "--from", str(source), "--split", "test"]) == 2
    assert "--split applies to" in capsys.readouterr().err
