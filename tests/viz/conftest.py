"""Fixtures for the viz tests: the toy dataset and a tiny Burgess model (trained runs in helpers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vaelab


@pytest.fixture(scope="session")
def toy_dataset():
    return vaelab.load_dataset("toy_squares")


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return vaelab.create_model("burgess", latent_dim=4, image_size=32, channels=1)


@pytest.fixture
def fake_log():
    rng = np.random.default_rng(0)
    steps = np.arange(1, 6) * 10.0
    log = {"step": steps, "epoch": np.ones(5), "images_per_s": np.full(5, 100.0)}
    for key in ("loss", "recon", "kl", *(f"kl_{j}" for j in range(4))):
        log[key] = rng.random(5)
    return log


def write_tiny_run(
    run_dir, steps: int = 30, latent_dim: int = 4, log_every: int = 10, gif_every: int = 10
):
    """A toy_squares run trained with `vaelab.engine.fit`, plus a hand-written metrics.json."""
    import json
    from pathlib import Path

    from vaelab.engine import fit
    from vaelab.factory import run_config_from_dict

    run_dir = Path(run_dir)
    config = run_config_from_dict(
        {
            "name": "tiny",
            "seed": 1,
            "model": {"name": "burgess", "latent_dim": latent_dim},
            "objective": {"name": "vae"},
            "data": {"name": "toy_squares"},
            "train": {
                "steps": steps,
                "batch_size": 16,
                "lr": 2e-3,
                "log_every": log_every,
                "gif_every": gif_every,
                "accelerator": "cpu",
                "progress": False,
                "metrics": [],
                "checkpoint_every": 0,
            },
        }
    )
    fit(config, run_dir)
    (run_dir / "metrics.json").write_text(
        json.dumps(
            {
                "mig": 0.123456,
                "dci_disentanglement": 0.654321,
                "sap": 0.0421,
                "protocol": {"num_train": 100, "seed": 0},
            }
        )
    )
    return run_dir


@pytest.fixture(scope="session")
def trained_run_template(tmp_path_factory):
    return write_tiny_run(tmp_path_factory.mktemp("tiny_run") / "run")


@pytest.fixture
def run_dir(trained_run_template, tmp_path):
    """A fresh copy of the tiny trained run (tests may write plots into it)."""
    import shutil

    return shutil.copytree(trained_run_template, tmp_path / "run")
