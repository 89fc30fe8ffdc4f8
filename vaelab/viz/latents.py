"""Pictures of the latent space: mean latent activations per factor, and 2-D projections.

* `plot_mean_activations`: the Non-Synergistic VAE / beta-TCVAE figure (`plot_gt_shapes`),
  generic over factor datasets: for every active latent (variance of its posterior mean > 0.01), a
  position heat-map (when the data has pos_x / pos_y factors, rows pos_x, columns pos_y, colours
  shared over every map) and one line panel per other factor, one curve per shape (when there is a
  "shape" factor), y-limits shared down each column.
* `plot_latent_projection`: PCA and t-SNE (scikit-learn) of posterior means, coloured by a factor,
  a label or a cluster; the GMVAE seed's scatter plotted raw coordinates by mistake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from vaelab.metrics.ground_truth import model_encoder
from vaelab.viz.losses import category_colormap, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ACTIVE_VARIANCE",
    "active_latents",
    "conditional_means",
    "encode_means",
    "plot_latent_projection",
    "plot_mean_activations",
    "project_latents",
]

ACTIVE_VARIANCE = 0.01  # Non-Syn: a latent is active when Var[mu_j] over the data exceeds this
POSITION_NAMES = (("pos_x", "pos_y"), ("posX", "posY"))
GROUP_NAME = "shape"
# Set1 colours in the Non-Syn order: square green, ellipse red, heart blue, then the rest of Set1.
SHAPE_COLOURS = ("#4daf4a", "#e41a1c", "#377eb8", "#984ea3", "#ff7f00", "#a65628", "#f781bf")


def encode_means(
    model: nn.Module, dataset, index: np.ndarray | None = None, batch: int = 1024
) -> np.ndarray:
    """Codes (N, D) (`Model.represent`: posterior means) of `dataset` items `index` (default:
    all), in eval mode.

    Encodes through the metrics' batch encoder (`model_encoder`: inference mode, channels-last,
    the model's device) in batches of 1024.
    """
    index = np.arange(len(dataset)) if index is None else np.asarray(index)
    encode = model_encoder(model)
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for i in range(0, len(index), batch):
            codes, _ = encode(dataset.batch(index[i : i + batch]))  # (B, D)
            chunks.append(codes.float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(chunks).astype(np.float64)


def active_latents(means: np.ndarray, threshold: float = ACTIVE_VARIANCE) -> np.ndarray:
    """Indices of latents whose posterior mean varies over the data: Var[mu_j] > threshold."""
    return np.flatnonzero(np.var(means, axis=0) > threshold)


def conditional_means(means: np.ndarray, codes: np.ndarray, size: int) -> np.ndarray:
    """E[mu | code = c] for c in 0..size-1: (size, D); NaN where no item has that code.

    On a full factorial grid this is the average over every other factor.
    """
    counts = np.bincount(codes, minlength=size).astype(np.float64)  # (size,)
    sums = np.stack(
        [np.bincount(codes, weights=means[:, j], minlength=size) for j in range(means.shape[1])],
        axis=1,
    )  # (size, D)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def _position_factors(names: Sequence[str]) -> tuple[int, int] | None:
    for x_name, y_name in POSITION_NAMES:
        if x_name in names and y_name in names:
            return names.index(x_name), names.index(y_name)
    return None


def plot_mean_activations(
    means: np.ndarray,
    factors: np.ndarray,
    factor_names: Sequence[str],
    factor_sizes: Sequence[int],
    threshold: float = ACTIVE_VARIANCE,
    group_labels: Sequence[str] | None = None,
) -> Figure:
    """Mean code of each active latent as a function of each ground-truth factor.

    A legend above the line panels names the shapes (one colour each); a colourbar above the
    position maps gives their scale (the mean code); the margins leave room for every label.

    Args:
        means: posterior means (N, D).
        factors: factor indices (N, F).
        factor_names: F names; "pos_x"/"pos_y" make the position map, "shape" groups the curves.
        factor_sizes: F cardinalities.
        threshold: activity threshold on Var[mu_j].
        group_labels: names of the "shape" values for the legend (default "shape 0", ...).

    Returns:
        A Figure with one row per active latent.
    """
    names = list(factor_names)
    factors = np.asarray(factors, dtype=np.int64)
    active = active_latents(means, threshold)
    position = _position_factors(names)
    group = names.index(GROUP_NAME) if GROUP_NAME in names else None
    curves = [
        k for k in range(len(names)) if k != group and (position is None or k not in position)
    ]
    cols = (1 if position else 0) + len(curves)
    if len(active) == 0 or cols == 0:
        figure = new_figure(figsize=(4, 1.5))
        figure.text(
            0.5,
            0.5,
            f"no active latents (Var[mu] > {threshold})"
            if len(active) == 0
            else "no factors to plot",
            ha="center",
            va="center",
        )
        return figure
    group_size = factor_sizes[group] if group is not None else 1
    group_codes = factors[:, group] if group is not None else np.zeros(len(factors), np.int64)
    panels = []
    if position:
        px, py = position
        sx, sy = factor_sizes[px], factor_sizes[py]
        pos = conditional_means(means, factors[:, px] * sy + factors[:, py], sx * sy)
        panels.append(("pos", pos.reshape(sx, sy, -1)))  # (S_x, S_y, D)
    for k in curves:
        size = factor_sizes[k]
        lines = conditional_means(means, group_codes * size + factors[:, k], group_size * size)
        panels.append((names[k], lines.reshape(group_size, size, -1)))  # (G, S_k, D)
    cell, left, bottom, top, right = 1.3, 1.0, 0.75, 0.8, 0.15  # inches
    width, height = cell * cols + left + right, cell * len(active) + bottom + top
    position_range = (
        (float(np.nanmin(panels[0][1][..., active])), float(np.nanmax(panels[0][1][..., active])))
        if position else None
    )
    from matplotlib import style as mpl_style

    with mpl_style.context("ggplot"):
        figure = new_figure(figsize=(width, height))
        grid = figure.add_gridspec(
            len(active),
            cols,
            wspace=0.05,
            hspace=0.05,
            left=left / width,
            right=1 - right / width,
            bottom=bottom / height,
            top=1 - top / height,
        )
        heat_map, lines = None, []
        for col, (name, values) in enumerate(panels):
            data = values[..., active]
            lo, hi = np.nanmin(data), np.nanmax(data)
            pad = 0.05 * (hi - lo) + 1e-6
            for row, j in enumerate(active):
                axis = figure.add_subplot(grid[row, col])
                if name == "pos":
                    heat_map = axis.imshow(
                        values[:, :, j],
                        cmap="coolwarm",
                        vmin=position_range[0],
                        vmax=position_range[1],
                        aspect="auto",
                    )
                else:
                    for g in range(values.shape[0]):
                        (line,) = axis.plot(
                            values[g, :, j], color=SHAPE_COLOURS[g % len(SHAPE_COLOURS)], lw=1
                        )
                        if row == 0 and col == cols - 1:
                            lines.append(line)
                    axis.set_ylim(lo - pad, hi + pad)
                axis.set_xticks([])
                axis.set_yticks([])
                if col == 0:
                    axis.set_ylabel(f"$z_{{{j}}}$", rotation=0, labelpad=14, va="center")
                if row == len(active) - 1:
                    axis.set_xlabel("position\n(pos_x down, pos_y across)" if name == "pos"
                                    else name, fontsize=9 if name == "pos" else None)
        legend_y = 1 - 0.3 * top / height
        if heat_map is not None:
            bar = figure.add_axes((left / width + 0.1 * cell / width, legend_y - 0.06 / height,
                                   0.8 * cell / width, 0.12 / height))
            figure.colorbar(heat_map, cax=bar, orientation="horizontal")
            bar.tick_params(labelsize=7)
            bar.set_title("mean code", fontsize=8)
        if group is not None and lines:
            names = list(group_labels or [f"{GROUP_NAME} {g}" for g in range(group_size)])
            figure.legend(
                lines,
                names[: len(lines)],
                loc="center",
                bbox_to_anchor=(
                    (left + cell * ((1 if position else 0) + cols) / 2) / width, legend_y
                ),
                ncol=len(lines),
                fontsize=8,
                frameon=False,
                title=GROUP_NAME,
                title_fontsize=8,
            )
        figure.text(
            (left + cell * cols / 2) / width,
            0.08 / height,
            "Ground-truth factor",
            ha="center",
            va="bottom",
        )
        figure.text(
            0.1 / width,
            (bottom + cell * len(active) / 2) / height,
            "Learned latent (active ones)",
            rotation=90,
            va="center",
            ha="left",
        )
    return figure


def project_latents(means: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """2-D projection (N, 2) of posterior means (N, D) by "pca" or "tsne" (scikit-learn).

    t-SNE uses PCA initialisation and perplexity min(30, (N - 1) / 3); a single latent dimension
    is returned as (value, 0), identical points as (0, 0).
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n, d = means.shape
    if d == 1:
        return np.concatenate([means, np.zeros_like(means)], axis=1)
    if np.ptp(means, axis=0).max() <= 1e-12 * max(1.0, float(np.abs(means).max())):
        # every point is the same (a collapsed latent): nothing to project, and scikit-learn's
        # Barnes-Hut t-SNE crashes on constant input
        return np.zeros((n, 2))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(means)
    if method == "tsne":
        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
        return TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed
        ).fit_transform(means)
    raise ValueError(f"projection method must be 'pca' or 'tsne', got {method!r}")


def plot_latent_projection(
    projections: dict[str, np.ndarray],
    colours: np.ndarray | None = None,
    colour_name: str = "",
    categories: Sequence[str] | None = None,
) -> Figure:
    """Scatter panels of 2-D projections, e.g. {"PCA": (N, 2), "t-SNE": (N, 2)}.

    Args:
        projections: panel title -> (N, 2) points.
        colours: (N,) integer classes (a factor index, label or cluster) or None.
        colour_name: legend title.
        categories: names of the integer classes (default: the integers).
    """
    figure = new_figure(figsize=(5.0 * len(projections), 4.6), layout="constrained")
    axes = figure.subplots(1, len(projections), squeeze=False)[0]
    values = np.unique(colours) if colours is not None else np.array([])
    for axis, (title, points) in zip(axes, projections.items()):
        if colours is None:
            axis.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7, color="#1f3a68")
        elif len(values) <= 20:
            cmap = category_colormap(len(values))
            for i, value in enumerate(values):
                where = colours == value
                label = categories[int(value)] if categories is not None else str(value)
                axis.scatter(
                    points[where, 0], points[where, 1], s=6, alpha=0.8, color=cmap(i), label=label
                )
        else:
            drawn = axis.scatter(
                points[:, 0], points[:, 1], s=6, alpha=0.8, c=colours, cmap="viridis"
            )
            figure.colorbar(drawn, ax=axis, label=colour_name)
        axis.set_title(f"{title} of posterior means")
        axis.set_xlabel(f"{title} 1")
        axis.set_ylabel(f"{title} 2")
        axis.set_xticks([])
        axis.set_yticks([])
    if colours is not None and len(values) <= 20:
        axes[-1].legend(
            title=colour_name,
            fontsize=7,
            markerscale=2,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
        )
    return figure
