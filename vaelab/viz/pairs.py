"""The `weak-pairs` picture: pairs of images that share factors, with the latents the model
shares for each pair marked (docs/weak.md).

One row per pair, drawn by the run's own pair sampler (`data.pair_k`, `data.pair_sampler`; a run
not trained on pairs gets the paper's sampler with k = 1): the two images, then a bar per latent
of delta_j = KL(q(z_j|x1) || q(z_j|x2)) (log scale), filled where the latent is shared (the
adaptive threshold tau, dashed, for `ada_*` objectives and any other; the d - k least different
latents for `group_vae` / `ml_vae`), hollow where it is not. The row title names the factors that
differ in the pair, so a disentangled model shows one unshared latent per changed factor.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vaelab.errors import VaelabError
from vaelab.viz.plots import PlotKind, PlotOptions, register_kind

__all__ = ["plot_pairs"]

DEFAULT_PAIRS = 6


def _pairs_config(run):
    config = run.config.data.config
    if config.batches == "pairs":
        return config
    return dataclasses.replace(config, batches="pairs", pair_k=1, pair_sampler="paper")


def _weak_pairs(run, options: PlotOptions) -> dict:
    from vaelab.data.base import FactorDataset
    from vaelab.data.pairs import pair_differences
    from vaelab.objectives.weak import (
        adaptive_shared,
        adaptive_threshold,
        known_k_shared,
        pair_kl_per_dim,
    )

    dataset = run.dataset()
    if not isinstance(dataset, FactorDataset):
        raise VaelabError(f"weak-pairs needs ground-truth factors, and dataset "
                          f"{run.config.data.name!r} has none (use a factor dataset such as "
                          "dsprites or toy_squares)")
    count = options.rows or DEFAULT_PAIRS
    generator = torch.Generator(device=dataset.device).manual_seed(options.seed)
    try:
        source = dataset.batch_source(_pairs_config(run), count, generator)
    except ValueError as error:
        raise VaelabError(f"weak-pairs cannot draw pairs from this dataset: {error}") from None
    batch = dataset.batch_of(source.next())
    posterior = run.model.posterior(batch.x.to(run.device))
    gaussian = posterior[run.model.traversal_latent]
    mu, logvar = gaussian.mu.float().cpu(), gaussian.logvar.float().cpu()
    delta = pair_kl_per_dim(mu[:count], logvar[:count], mu[count:], logvar[count:])
    differ = pair_differences(batch).cpu()
    known = run.config.objective.name in ("group_vae", "ml_vae")
    shared = known_k_shared(delta, differ.sum(1)) if known else adaptive_shared(delta)
    tau = adaptive_threshold(delta)
    images = batch.x.float().cpu().numpy()
    return {"weak_pairs.png": plot_pairs(images[:count], images[count:], delta.numpy(),
                                         shared.numpy(), None if known else tau.numpy(),
                                         differ.numpy(), dataset.factor_names,
                                         title=run.config.name or run.dir.name)}


def plot_pairs(first: np.ndarray, second: np.ndarray, delta: np.ndarray, shared: np.ndarray,
               tau: np.ndarray | None, differ: np.ndarray, factor_names, title: str = ""):
    """The figure: per pair (row) x1, x2 and the per-latent delta bars, shared ones filled.

    Args:
        first, second: images (b, C, H, W) in [0, 1].
        delta: (b, D) KL between the pair's posteriors per latent.
        shared: (b, D) bool.
        tau: (b,) adaptive thresholds to draw, or None.
        differ: (b, F) bool, the factors that differ.
        factor_names: F names.
    """
    from matplotlib.ticker import NullFormatter

    from vaelab.viz.losses import new_figure

    b, d = delta.shape
    figure = new_figure(figsize=(8.0, 1.5 * b + 0.6))
    grid = figure.add_gridspec(b, 3, width_ratios=[1, 1, 4])
    floor = 1e-4
    for row in range(b):
        for col, image in enumerate((first[row], second[row])):
            ax = figure.add_subplot(grid[row, col])
            shown = image.transpose(1, 2, 0)
            ax.imshow(shown[..., 0] if shown.shape[2] == 1 else shown, cmap="gray",
                      vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(("x1", "x2")[col], fontsize=9)
        ax = figure.add_subplot(grid[row, 2])
        values = np.maximum(delta[row], floor)
        colours = ["tab:green" if s else "white" for s in shared[row]]
        ax.bar(np.arange(d), values, color=colours, edgecolor="black", linewidth=0.8)
        if tau is not None:
            ax.axhline(max(float(tau[row]), floor), color="tab:red", linestyle="--",
                       linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(np.arange(d))
        ax.tick_params(labelsize=7)
        changed = [factor_names[f] for f in np.flatnonzero(differ[row])] or ["nothing"]
        ax.set_title(f"differ: {', '.join(changed)}; shared latents {int(shared[row].sum())}"
                     f" of {d} (filled)", fontsize=8)
        if row == b - 1:
            ax.set_xlabel("latent j (bar: KL(q(z_j|x1) || q(z_j|x2)), dashed: tau)", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _trained_on_pairs(run) -> bool:
    return run.config.data.config.batches == "pairs"


register_kind(PlotKind(
    "weak-pairs",
    lambda o: ["weak_pairs.png"],
    _weak_pairs,
    needs_factors=True,
    description="pairs sharing factors, with the latents the model shares marked",
    applies=_trained_on_pairs,  # "all" draws it for runs trained on pairs
))
