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
