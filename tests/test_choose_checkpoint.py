"""Checkpoints the CLI can choose (issue 36, item 5): --checkpoint for eval, plot, encode,
report and train --resume; stale temporaries go when the run next starts; an interrupted
metric says so. Nothing already written is lost."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from vaelab.cli import main
from vaelab.registry import METRICS
from vaelab.runs import load_checkpoint

TOY = ["--set", "data.name=toy_squares", "--set", "train.steps=8", "--set", "train.batch_size=16",
       "--set", "train.log_every=4", "--set", "train.checkpoint_every=4", "--set",
       "train.metrics=", "--no-progress"]


@pytest.fixture
def broken_run(tmp_path) -> Path:
    """A run of 8 steps with a periodic checkpoint at step 4 and a truncated last.ckpt."""
    assert main(["train", "--out", str(tmp_path), "--name", "r", *TOY]) == 0
    run = tmp_path / "r"
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100])
    return run


def test_a_corrupt_last_checkpoint_names_the_flag_and_the_others(broken_run, capsys):
    assert main(["eval", str(broken_run), "--metrics", "mig"]) == 2
    err = capsys.readouterr().err
    assert "choose another with --checkpoint FILE" in err and "step-0000004.ckpt" in err
    (broken_run / "checkpoints" / "last.ckpt").unlink()
    assert main(["encode", str(broken_run)]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt is missing; choose one of the run's other checkpoints" in err
    assert "step-0000004.ckpt" in err


def test_eval_plot_encode_report_take_a_checkpoint(broken_run, capsys):
    earlier = str(broken_run / "checkpoints" / "step-0000004.ckpt")
    assert main(["eval", str(broken_run), "--metrics", "mig", "--checkpoint", earlier,
                 "--quiet"]) == 0
    metrics = json.loads((broken_run / "metrics.json").read_text())
    assert metrics["protocol"]["checkpoint_step"] == 4 and np.isfinite(metrics["mig"])
    assert main(["encode", str(broken_run), "--checkpoint", earlier, "--limit", "20"]) == 0
    with np.load(broken_run / "latents.npz") as saved:
        assert saved["codes"].shape[0] == 20
    assert main(["plot", str(broken_run), "samples", "--checkpoint", earlier]) == 0
    assert (broken_run / "plots").is_dir()
    assert main(["report", str(broken_run), "--checkpoint", earlier]) == 0
    page = (broken_run / "report.html").read_text()
    assert "pictures judged against the checkpoint" in page and "step-0000004.ckpt" in page
    assert main(["report", str(broken_run), str(broken_run), "--checkpoint", earlier,
                 "--out", str(broken_run / "two.html")]) == 2
    assert "one run" in capsys.readouterr().err


def test_resume_from_an_earlier_checkpoint_keeps_the_later_state(broken_run, capsys):
    folder = broken_run / "checkpoints"
    corrupt = (folder / "last.ckpt").read_bytes()
    log = (broken_run / "train_log.csv").read_text()
    stale = folder / ".last.ckpt.k1ll3d.tmp"  # a checkpoint write killed half-way
    stale.write_bytes(b"half")
    assert main(["train", "--resume", str(broken_run), "--checkpoint",
                 str(folder / "step-0000004.ckpt"), "--no-eval"]) == 0
    assert "the later checkpoints and the logs as they were are kept" in capsys.readouterr().err
    aside = folder / "before-resume-from-step-0000004"
    assert (aside / "last.ckpt").read_bytes() == corrupt  # kept, byte for byte
    assert (aside / "train_log.csv").read_text() == log
    assert load_checkpoint(folder / "last.ckpt")["step"] == 8  # trained on from step 4
    assert not stale.exists()
    lines = (broken_run / "train_log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["4", "8"]
    assert main(["train", "--resume", str(broken_run), "--checkpoint",
                 str(folder / "nope.ckpt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["train", "--out", str(broken_run.parent), "--name", "z", "--checkpoint",
                 str(folder / "last.ckpt"), *TOY]) == 2
    assert "use it with --resume RUN" in capsys.readouterr().err


def test_an_interrupted_metric_is_reported_as_interrupted(tmp_path, capsys, monkeypatch):
    assert main(["train", "--out", str(tmp_path), "--name", "r", *TOY]) == 0
    real = METRICS.get("mig")

    @functools.wraps(real)
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setitem(METRICS._items, "mig", interrupted)
    assert main(["eval", str(tmp_path / "r"), "--metrics", "sap,mig"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "failed" not in err
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert "sap" in saved and "mig" not in saved  # the score before it was kept
