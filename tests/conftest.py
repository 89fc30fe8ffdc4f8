"""Shared fixtures: tiny configs on the 192-image toy dataset, and the ../shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Two cores are shared by everything in CI; one torch thread per test process is fastest.
torch.set_num_threads(1)
os.environ.setdefault("VAELAB_OFFLINE", "1")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the checkout")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path_factory, monkeypatch):
    """Each test session writes generated data into a temporary VAELAB_DATA, unless set."""
    if "VAELAB_TEST_DATA" in os.environ:
        monkeypatch.setenv("VAELAB_DATA", os.environ["VAELAB_TEST_DATA"])
    else:
        monkeypatch.setenv("VAELAB_DATA", str(tmp_path_factory.getbasetemp() / "vaelab-data"))


def tiny_config(**train) -> dict:
    """A run-config dict that trains in about a second on `toy_squares`."""
    base_train = {"steps": 12, "batch_size": 16, "log_every": 4, "checkpoint_every": 0,
                  "metrics": [], "progress": False}
    base_train.update(train)
    return {
        "name": "tiny",
        "seed": 3,
        "model": {"name": "burgess", "latent_dim": 4},
        "objective": {"name": "beta_tcvae"},
        "data": {"name": "toy_squares"},
        "train": base_train,
    }


@pytest.fixture
def tiny():
    return tiny_config


def pytest_collection_modifyitems(config, items):
    """The longest serial block (the embedded-Ray tests, one xdist group on one worker) goes
    first, so the other worker spreads the rest around it instead of idling at the end."""
    def grouped(item) -> bool:
        return any(mark.name == "xdist_group" for mark in item.iter_markers())

    items[:] = [i for i in items if grouped(i)] + [i for i in items if not grouped(i)]
