"""Mutual Information Gap (Chen et al., 2018) and the Axis Alignment Metric (disentangling-vae).

`mig` is disentanglement_lib's protocol (Locatello et al., 2019): 10,000 points, each latent
discretised into 20 equal-width bins, plug-in mutual information I(z_j; v_k) with every factor,
and MIG = mean_k (I_(1)[k] - I_(2)[k]) / H(v_k), with H(v_k) the empirical factor entropy.

`aam` is the axis alignment metric defined in the disentangling-vae README,
AAM = mean_k max(I_(1)[k] - sum_{d>=2} I_(d)[k], 0) / I_(1)[k] (0 when I_(1)[k] = 0), here on the
same histogram MI matrix as `mig` (the seed used its Chen-style estimator; `mig_chen` reports that
variant as `aam_chen`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.metrics._info import discrete_entropy, discretize, mutual_information
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.registry import METRICS

__all__ = ["aam_from_mi", "compute_aam", "compute_mig", "mig_from_mi"]


def mig_from_mi(mi: np.ndarray, factor_entropy: np.ndarray) -> np.ndarray:
    """Per-factor MIG (F,) from a mutual-information matrix (D, F) and factor entropies (F,).

    The gap of the two largest MIs of each factor over its entropy. With one latent, the gap is
    the single MI.
    """
    ordered = -np.sort(-mi, axis=0)  # (D, F), descending over latents
    second = ordered[1] if len(ordered) > 1 else np.zeros(mi.shape[1])
    return (ordered[0] - second) / factor_entropy


def aam_from_mi(mi: np.ndarray) -> np.ndarray:
    """Per-factor AAM (F,) from a mutual-information matrix (D, F): see the module docstring."""
    mi = np.maximum(mi, 0.0)
    ordered = -np.sort(-mi, axis=0)  # (D, F)
    top = ordered[0]
    rest = ordered[1:].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.maximum(top - rest, 0.0) / top
    return np.where(top > 0, score, 0.0)  # the seed maps 0/0 to 0


def _mi_matrix(represent: Any, data: Any, rng: np.random.Generator, metric: str,
               num_train: int | str, num_bins: int, bin_dtype: str):
    truth = as_ground_truth(represent, data)
    active = truth.active_factors(metric)
    codes, factors = truth.sample(num_train, rng)
    factors = factors[:, active]
    names = [truth.dataset.factor_names[k] for k in active]
    binned = discretize(truth.binned_codes(codes, bin_dtype), num_bins)
    mi = mutual_information(binned, factors)  # (D, F)
    return mi, factors, names


@METRICS.register("mig")
def compute_mig(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    num_train: int | str = 10000,
    num_bins: int = 20,
    bin_dtype: str = "representation",
) -> dict[str, float]:
    """Mutual Information Gap with histogram discretisation (disentanglement_lib's protocol).

    Works on any factor dataset (no full grid needed): points are drawn with `sample_factors`.
    Constant factors are left out (their entropy is 0). Range [0, 1]; invariant to permuting the
    latents and to strictly increasing rescaling of any latent.

    Args:
        represent: a representation function, model, codes (N, D) or `GroundTruth`
            (see `as_ground_truth`).
        data: the factor dataset, or the factor array (N, F) of array codes.
        rng: the generator that draws the points.
        num_train: points drawn (factor rows with replacement, then a matching image, as
            disentanglement_lib), or "all": every item of the dataset exactly once (the full
            grid on dSprites).
        num_bins: equal-width bins per latent.
        bin_dtype: the float type of the bin edges: "representation" (float32 for torch
            models, as disentanglement_lib), "float32" or "float64".

    Returns:
        {"mig": mean over factors, "mig.<factor>": per-factor gap}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    mi, factors, names = _mi_matrix(represent, data, rng, "mig", num_train, num_bins, bin_dtype)
    entropy = discrete_entropy(factors)
    entropy = np.where(entropy > 0, entropy, np.inf)  # a factor constant in the sample scores 0
    per_factor = mig_from_mi(mi, entropy)
    return {"mig": float(per_factor.mean()), **{f"mig.{n}": float(v) for n, v in zip(names, per_factor)}}


@METRICS.register("aam")
def compute_aam(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    num_train: int | str = 10000,
    num_bins: int = 20,
    bin_dtype: str = "representation",
) -> dict[str, float]:
    """Axis Alignment Metric (disentangling-vae README) on the histogram MI matrix of `mig`.

    Works on any factor dataset (no full grid needed). Range [0, 1]; invariant to permuting the
    latents and to strictly increasing rescaling of any latent. Unlike MIG it ignores how much of
    a factor is captured: one latent holding part of a factor and no other latent holding any
    scores 1.

    Returns:
        {"aam": mean over factors, "aam.<factor>": per factor}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    mi, _, names = _mi_matrix(represent, data, rng, "aam", num_train, num_bins, bin_dtype)
    per_factor = aam_from_mi(mi)
    return {"aam": float(per_factor.mean()), **{f"aam.{n}": float(v) for n, v in zip(names, per_factor)}}
