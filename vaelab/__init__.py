"""vaelab: train, evaluate and visualize disentangled and structured VAEs.

The public API is what this module exports; everything else may change.
"""

from __future__ import annotations

from vaelab._version import __version__  # noqa: F401

# Before anything imports torch, whose OpenMP runtime reads its wait policy once, at load: on a
# machine busy at the start, idle threads sleep instead of spinning, so the other processes do not
# collapse training; on an idle one they spin, which is faster (vaelab.perf.set_wait_policy).
from vaelab.perf import set_wait_policy

set_wait_policy()

from vaelab.registry import DATASETS, METRICS, MODELS, OBJECTIVES, PLOTS
from vaelab import data, metrics, models, objectives, viz  # noqa: F401  (fill the registries)
from vaelab.config import ConfigError, RunConfig, TrainConfig
from vaelab.data import DataError, FactorDataset, ImageDataset, load_dataset
from vaelab.encoding import encode_images
from vaelab.factory import create_model, create_objective
from vaelab.evaluation import evaluate_run
from vaelab.metrics.scoring import score
from vaelab.runs import Run, load_run
from vaelab.plotting import make_plots
from vaelab.viz import write_report
from vaelab.workflow import build_run_config, train

__all__ = [
    "ConfigError",
    "DataError",
    "FactorDataset",
    "ImageDataset",
    "Run",
    "RunConfig",
    "TrainConfig",
    "build_run_config",
    "create_model",
    "create_objective",
    "encode_images",
    "evaluate_run",
    "list_names",
    "load_dataset",
    "load_run",
    "make_plots",
    "score",
    "train",
    "write_report",
]


def list_names(kind: str) -> list[str]:
    """Registered names of one kind: models, objectives, datasets, metrics, plots or presets."""
    registries = {
        "models": MODELS,
        "objectives": OBJECTIVES,
        "datasets": DATASETS,
        "metrics": METRICS,
        "plots": PLOTS,
    }
    if kind == "presets":
        from vaelab.presets import preset_names

        return preset_names()
    if kind not in registries:
        raise KeyError(f"unknown kind {kind!r}; known kinds: {', '.join([*registries, 'presets'])}")
    return registries[kind].names()
