"""Two-process DDP on the CPU (gloo) through Fabric's launcher, end to end from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vaelab.runs import load_run

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _args(tmp_path):
    return [sys.executable, "-m", "vaelab.cli", "train", "--out", str(tmp_path), "--name", "ddp",
            "--set", "data.name=toy_squares", "--set", "train.steps=8", "--set",
            "train.batch_size=16", "--set", "train.log_every=4", "--set", "train.metrics=",
            "--set", "train.accelerator=cpu", "--set", "train.devices=2", "--set",
            "train.strategy=ddp", "--set", "model.latent_dim=3", "--set",
            "objective.name=factor_vae", "--set", "objective.hidden_dim=64", "--set",
            "train.valid_every=4", "--set", "train.valid_holdout=0.25", "--no-progress"]


@pytest.mark.heavy  # two processes (gloo), ~14 s
def test_two_process_ddp_run(tmp_path):
    """One two-process run: the discriminator's gradients are averaged by hand, validation runs
    on every rank, rank 0 alone writes and reports."""
    result = subprocess.run(_args(tmp_path), capture_output=True, text=True, timeout=300,
                            env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("results:") == 1  # only rank 0 reports
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8
    assert summary["images_seen"] == 8 * 16 * 2 and summary["dataset_size"] == 144
    run = load_run(tmp_path / "ddp")
    assert np.isfinite(run.log["loss"]).all() and list(run.log["step"]) == [4, 8]
    rows = (tmp_path / "ddp" / "valid_log.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("step,valid/loss")  # written once, by rank 0


@pytest.mark.slow
def test_two_process_ddp_refuses_an_existing_run(tmp_path):
    """The same name again is refused by every rank, and nothing is lost."""
    first = subprocess.run(_args(tmp_path), capture_output=True, text=True, timeout=300, env=ENV)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(_args(tmp_path), capture_output=True, text=True, timeout=300, env=ENV)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (tmp_path / "ddp" / "checkpoints" / "last.ckpt").is_file()
