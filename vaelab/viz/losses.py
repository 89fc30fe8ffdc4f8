"""Loss curves from a run's training log (disvae has none; Non-Syn used visdom windows).

Every logged term gets a panel over optimiser steps, its y axis labelled with the term's unit
(`term_unit`: nats for the likelihood and divergence terms, images/s for throughput, a weight for
schedules); the per-latent KL columns `kl_0..kl_{D-1}` share one panel, with a bar chart of their
final values (the traversal ordering) beside it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "figure_to_png",
    "latent_kl_columns",
    "plot_losses",
    "plot_metrics_during_training",
    "term_unit",
]

# Columns that are bookkeeping, not curves.
_AXES = ("step", "epoch")
# Terms measured in nats: negative log-likelihoods, KLs and their decompositions, capacities.
NAT_TERMS = {"loss", "recon", "kl", "tc", "mi", "dw_kl", "capacity", "syn", "disc_loss", "cp",
             "kl_z", "kl_y", "kl_w", "kl_d", "kl_beta"}
UNITS = {"images_per_s": "images / s", "warmup": "weight (0 to 1)", "disc_acc": "fraction"}


def _panel_grid(panels: int, title: str, message: str, empty: bool) -> tuple[Figure, Any]:
    """A figure sized for `panels` panels, 3 per row, and its axes (flattened); when `empty`
    (or no panels) one axis saying `message` instead, and axes None."""
    cols = min(3, max(1, panels))
    rows = max(1, -(-panels // cols))
    figure = new_figure(figsize=(3.6 * cols, 2.6 * rows), layout="constrained")
    if title:
        figure.suptitle(title)
    if empty or panels == 0:
        axis = figure.add_subplot(1, 1, 1)
        axis.text(0.5, 0.5, message, ha="center", va="center")
        axis.set_axis_off()
        return figure, None
    return figure, figure.subplots(rows, cols, squeeze=False).ravel()


def term_unit(key: str) -> str:
    """The y-axis label of a logged term ("" when its unit is not known)."""
    key = key.split("/")[-1]  # valid/recon -> recon
    if key in UNITS:
        return UNITS[key]
    if key in NAT_TERMS or (key.startswith("kl_") and key[3:].isdigit()):
        return "nats"
    return ""


def latent_kl_columns(log: Mapping[str, np.ndarray]) -> list[str]:
    """The `kl_<j>` columns of a log, in latent order."""
    keys = [k for k in log if k.startswith("kl_") and k[3:].isdigit()]
    return sorted(keys, key=lambda k: int(k[3:]))


def plot_losses(log: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """One panel per logged term over steps, plus KL per latent (curves and final values).

    Args:
        log: {column: (T,) array} with a "step" column (the `train_log.csv` columns).
        title: figure title.

    Returns:
        A matplotlib Figure (not attached to pyplot; the caller saves it).
    """
    kl_keys = latent_kl_columns(log)
    terms = [k for k in log if k not in _AXES and k not in kl_keys and k != "images_per_s"]
    terms += ["images_per_s"] if "images_per_s" in log else []  # throughput last
    rows_in_log = len(next(iter(log.values()))) if log else 0
    steps = np.asarray(log.get("step", np.arange(rows_in_log)), dtype=np.float64)
    panels = len(terms) + (2 if kl_keys else 0)
    figure, axes = _panel_grid(panels, title, "no training log rows yet", rows_in_log == 0)
    if axes is None:
        return figure
    for axis, key in zip(axes, terms):
        values = np.asarray(log[key], dtype=np.float64)
        axis.plot(steps, values, marker="." if rows_in_log < 30 else None)
        axis.set_title(key, fontsize=10)
        axis.set_xlabel("step")
        axis.set_ylabel(term_unit(key))
        axis.grid(alpha=0.3)
    if kl_keys:
        curves, bars = axes[len(terms)], axes[len(terms) + 1]
        for key in kl_keys:
            curves.plot(steps, np.asarray(log[key], dtype=np.float64), label=key[3:], lw=1)
        curves.set_title("KL per latent", fontsize=10)
        curves.set_xlabel("step")
        curves.set_ylabel("nats")
        curves.grid(alpha=0.3)
        if len(kl_keys) <= 12:
            curves.legend(fontsize=6, ncol=2, title="latent", title_fontsize=6)
        final = np.array([np.asarray(log[k], dtype=np.float64)[-1] for k in kl_keys])
        bars.bar(np.arange(len(kl_keys)), np.nan_to_num(final))
        bars.set_xticks(np.arange(len(kl_keys)))
        bars.set_title("final KL per latent (nats)", fontsize=10)
        bars.set_xlabel("latent")
        bars.set_ylabel("nats")
    for axis in axes[panels:]:
        axis.set_axis_off()
    return figure


MAX_METRIC_PANELS = 9


def plot_metrics_during_training(log: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """One panel per metric of `metrics_log.csv` (`train.metrics_every`) against the step: the
    headline score of each metric (`HEADLINE`) when logged, else every column, at most 9.

    Args:
        log: {column: (T,) array} with a "step" column.
        title: figure title.
    """
    from vaelab.metrics.properties import HEADLINE, describe_score

    columns = [k for k in log if k != "step"]
    keys = [k for k in HEADLINE.values() if k in columns] or columns
    keys = keys[:MAX_METRIC_PANELS]
    steps = np.asarray(log.get("step", []), dtype=np.float64)
    figure, axes = _panel_grid(len(keys), title or "metrics during training",
                               "no metrics logged yet", len(steps) == 0)
    if axes is None:
        return figure
    for axis, key in zip(axes, keys):
        axis.plot(steps, np.asarray(log[key], dtype=np.float64), marker=".")
        direction = describe_score(key)[1]
        arrow = {1: " (higher is better)", -1: " (lower is better)"}.get(direction, "")
        axis.set_title(key + arrow, fontsize=9)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    for axis in axes[len(keys):]:
        axis.set_axis_off()
    return figure


def new_figure(*args: Any, **kwargs: Any) -> Figure:
    """A matplotlib Figure (no pyplot state). matplotlib is imported here, on the first picture,
    not at `import vaelab`: that keeps every CLI start about a second shorter."""
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def category_colormap(count: int) -> Any:
    """The qualitative colormap for `count` <= 20 categories: tab10, or tab20 above 10."""
    from matplotlib import colormaps

    return colormaps["tab10" if count <= 10 else "tab20"]


def figure_to_png(figure: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (Agg backend, no pyplot state)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
