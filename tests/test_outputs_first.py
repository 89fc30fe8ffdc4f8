"""Every output location is checked before the work (issue 36, item 4): on a read-only folder,
encode, eval, plot, report and train refuse at once, with nothing computed and nothing lost."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from vaelab.cli import main

TOY = ["--set", "data.name=toy_squares", "--set", "train.steps=4", "--set", "train.batch_size=16",
       "--set", "train.log_every=2", "--set", "train.metrics=", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--out", str(out), "--name", "r", *TOY]) == 0
    return out / "r"


@pytest.fixture
def read_only(monkeypatch):
    """Makes folders read-only as a read-only mount would (EROFS on creating any file there),
    also for root, whom permission bits do not stop; counts the refused creations."""
    folders: list[Path] = []
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and any(Path(dir).resolve() == f.resolve() for f in folders):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folders


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _refused(capsys, remedy: str) -> None:
    err = capsys.readouterr().err
    assert "is not writable (Read-only file system); nothing was computed" in err, err
    assert remedy in err and "Traceback" not in err
    assert "evaluating" not in err  # eval's progress line: no work began


def test_eval_refuses_a_read_only_run_before_computing(run, read_only, capsys):
    before = _snapshot(run)
    read_only.append(run)
    assert main(["eval", str(run), "--metrics", "mig"]) == 2
    _refused(capsys, "copy the run (cp -r) to a writable folder")
    assert _snapshot(run) == before


def test_encode_plot_report_refuse_a_read_only_output(run, read_only, capsys, tmp_path):
    before = _snapshot(run)
    read_only.extend([run, run / "plots", tmp_path])
    assert main(["encode", str(run)]) == 2
    _refused(capsys, "Choose another --out")
    assert main(["encode", str(run), "--out", str(tmp_path / "new" / "z.npz")]) == 2
    _refused(capsys, "Choose another --out")  # the nearest existing folder is probed
    assert not (tmp_path / "new").exists()
    assert main(["plot", str(run), "samples"]) == 2
    _refused(capsys, "Choose another --out-dir")
    assert main(["report", str(run)]) == 2
    _refused(capsys, "Choose another --out")
    assert _snapshot(run) == before


def test_train_refuses_a_read_only_out_and_a_read_only_run(run, read_only, capsys, tmp_path):
    read_only.append(run)
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "--set", "train.steps=8"]) == 2
    _refused(capsys, "resume the copy")
    assert _snapshot(run) == before
    read_only.append(tmp_path / "ro" / "x")  # a new run's folder on a read-only disk
    assert main(["train", "--out", str(tmp_path / "ro"), "--name", "x", *TOY]) == 2
    _refused(capsys, "choose another --out")
    assert list((tmp_path / "ro").iterdir()) == []  # the folder made for it went again
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o555)
    try:
        code = main(["train", "--out", str(out), "--name", "x", *TOY])
        if os.geteuid() != 0:  # root writes anyway: then the run simply trains
            assert code == 2 and "cannot create the run directory" in capsys.readouterr().err
    finally:
        os.chmod(out, 0o755)


def test_an_output_under_a_file_is_refused_at_once(run, capsys, tmp_path):
    (tmp_path / "afile").write_text("mine")
    assert main(["encode", str(run), "--out", str(tmp_path / "afile" / "z.npz")]) == 2
    err = capsys.readouterr().err
    assert "afile is a file, not a folder; nothing was computed" in err
    assert (tmp_path / "afile").read_text() == "mine"
