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


def _objective_name() -> str:
    """'vae' when registered; otherwise a test-only ELBO, so the run config can be written."""
    from dataclasses import dataclass

    from vaelab.objectives.base import Objective
    from vaelab.registry import OBJECTIVES

    if "vae" in OBJECTIVES:
        return "vae"
    if "_viz_test_elbo" not in OBJECTIVES:

        @dataclass(frozen=True, kw_only=True)
        class _Config:
            pass

        @OBJECTIVES.register("_viz_test_elbo")
        class _Elbo(Objective):
            config_class = _Config

    return "_viz_test_elbo"


def write_tiny_run(run_dir, steps: int = 30, latent_dim: int = 4, log_every: int = 10):
    """A run directory trained by hand on toy_squares: config, checkpoint, log, summary, metrics.

    Per-latent KL columns are the real closed-form batch KLs, so latent ordering is meaningful.
    """
    import csv
    import json
    from pathlib import Path

    import torch.nn.functional as F

    from vaelab.config import run_config_from_dict
    from vaelab.runs import checkpoint_path, save_checkpoint

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_config_from_dict(
        {
            "name": "tiny",
            "seed": 1,
            "model": {"name": "burgess", "latent_dim": latent_dim, "image_size": 32, "channels": 1},
            "objective": {"name": _objective_name()},
            "data": {"name": "toy_squares"},
            "train": {"steps": steps, "batch_size": 16, "lr": 1e-3, "log_every": log_every},
        }
    )
    torch.manual_seed(1)
    model = vaelab.create_model("burgess", latent_dim=latent_dim, image_size=32, channels=1)
    dataset = vaelab.load_dataset("toy_squares")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(1)
    rows, window = [], []
    for step in range(1, steps + 1):
        x = dataset.batch(rng.integers(0, len(dataset), 16))
        out = model(x, sample=True)
        recon = F.binary_cross_entropy_with_logits(out.logits, x, reduction="sum") / len(x)
        kl_each = 0.5 * (out.mu.pow(2) + out.logvar.exp() - 1 - out.logvar).mean(0)  # (D,)
        loss = recon + kl_each.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        window.append([loss.item(), recon.item(), kl_each.sum().item(), *kl_each.tolist()])
        if step % log_every == 0:
            mean = np.mean(window, axis=0)
            rows.append([step, step * 16 / len(dataset), 1000.0, *mean])
            window = []
    header = [
        "step",
        "epoch",
        "images_per_s",
        "loss",
        "recon",
        "kl",
        *(f"kl_{j}" for j in range(latent_dim)),
    ]
    with open(run_dir / "train_log.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    data = config.to_dict()
    # Work-around: config._coerce cannot read fixed-length tuples back (zip order), so leave
    # train.adam_betas at its default instead of writing it.
    data["train"].pop("adam_betas", None)
    (run_dir / "config.json").write_text(json.dumps(data, indent=2))
    save_checkpoint(
        checkpoint_path(run_dir), {"model": model.state_dict(), "objective": {}, "step": steps}
    )
    (run_dir / "summary.json").write_text(
        json.dumps({"steps": steps, "wall_s": 1.5, "images_per_s": 1000.0})
    )
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
