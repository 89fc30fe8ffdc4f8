"""Unsupervised scores of a representation (no factors needed), disentanglement_lib's protocol.

From 10,000 codes with covariance Sigma (D, D):
* Gaussian total correlation: KL(N(0, Sigma) || N(0, diag Sigma)) =
  0.5 (sum_d log Sigma_dd - log det Sigma). 0 for uncorrelated latents; lower is better.
* Gaussian Wasserstein correlation: the squared 2-Wasserstein distance between N(0, Sigma) and
  N(0, diag Sigma), 2 tr Sigma - 2 tr (Sigma diag Sigma)^(1/2), and its value divided by tr Sigma
  (`..._norm`). 0 for uncorrelated latents.
* Mutual info score: mean over pairs of distinct latents of their histogram mutual information
  (20 bins), in nats. 0 for independent latents.
* Active units: latents whose variance of the codes exceeds 0.01 (the seed's VAR_THRESHOLD).

Latents with zero variance are left out of the Gaussian scores (their log-variance is -inf);
`*.num_dims` says how many were kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.metrics._info import discretize, mutual_information
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.registry import METRICS

__all__ = [
    "compute_active_units",
    "compute_gaussian_total_correlation",
    "compute_gaussian_wasserstein_correlation",
    "compute_mutual_info_score",
    "gaussian_total_correlation",
    "gaussian_wasserstein_correlation",
]


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """Total correlation (nats) of N(0, cov), cov (D, D) positive definite."""
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")  # exactly dependent latents
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """Squared W2 distance between N(0, cov) and N(0, diag(cov)), cov (D, D)."""
    import scipy.linalg  # deferred: keeps `import vaelab` (and every CLI start) light

    root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
    return float(2 * np.trace(cov) - 2 * np.real(np.trace(root)))


def _covariance(represent: Any, data: Any, rng, num_train: int) -> tuple[np.ndarray, int]:
    truth = as_ground_truth(represent, data)
    codes, _ = truth.sample(num_train, rng)
    codes = codes[:, np.ptp(codes, axis=0) > 0]
    return np.atleast_2d(np.cov(codes, rowvar=False)), codes.shape[1]


@METRICS.register("gaussian_total_correlation")
def compute_gaussian_total_correlation(
    represent: Any, data: Any = None, rng: np.random.Generator | None = None, *,
    num_train: int = 10000,
) -> dict[str, float]:
    """Gaussian total correlation of the codes (unsupervised: any dataset; no grid needed).

    Lower is better, >= 0; invariant to permuting and to rescaling latents (any non-zero factor).

    Returns:
        {"gaussian_total_correlation", "gaussian_total_correlation.num_dims"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    cov, kept = _covariance(represent, data, rng, num_train)
    value = gaussian_total_correlation(cov) if kept else 0.0
    return {"gaussian_total_correlation": value, "gaussian_total_correlation.num_dims": float(kept)}


@METRICS.register("gaussian_wasserstein_correlation")
def compute_gaussian_wasserstein_correlation(
    represent: Any, data: Any = None, rng: np.random.Generator | None = None, *,
    num_train: int = 10000,
) -> dict[str, float]:
    """Gaussian Wasserstein correlation (unsupervised: any dataset; no grid needed).

    Lower is better, >= 0; invariant to permuting latents; scales with the latents' units
    (`..._norm`, divided by the total variance, is invariant to a common rescaling).

    Returns:
        {"gaussian_wasserstein_correlation", "gaussian_wasserstein_correlation_norm"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    cov, kept = _covariance(represent, data, rng, num_train)
    if not kept:
        return {"gaussian_wasserstein_correlation": 0.0, "gaussian_wasserstein_correlation_norm": 0.0}
    value = gaussian_wasserstein_correlation(cov)
    return {
        "gaussian_wasserstein_correlation": value,
        "gaussian_wasserstein_correlation_norm": value / float(np.trace(cov)),
    }


@METRICS.register("mutual_info_score")
def compute_mutual_info_score(
    represent: Any, data: Any = None, rng: np.random.Generator | None = None, *,
    num_train: int = 10000, num_bins: int = 20, bin_dtype: str = "representation",
) -> dict[str, float]:
    """Mean histogram mutual information between distinct latents (unsupervised; no grid needed).

    disentanglement_lib's unsupervised `mutual_info_score`: the mean of I(z_i; z_j) over the
    D^2 - D ordered pairs i != j, 20-bin histograms (`bin_dtype` as in `mig`).

    Lower is better, >= 0; invariant to permuting latents and to strictly increasing rescaling.

    Returns:
        {"mutual_info_score"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    truth = as_ground_truth(represent, data)
    codes, _ = truth.sample(num_train, rng)
    binned = discretize(truth.binned_codes(codes, bin_dtype), num_bins)
    d = codes.shape[1]
    if d < 2:
        return {"mutual_info_score": 0.0}
    mi = mutual_information(binned, binned)
    np.fill_diagonal(mi, 0.0)
    return {"mutual_info_score": float(mi.sum() / (d * d - d))}


@METRICS.register("active_units")
def compute_active_units(
    represent: Any, data: Any = None, rng: np.random.Generator | None = None, *,
    num_train: int = 10000, threshold: float = 0.01,
) -> dict[str, float]:
    """Number of latents whose code variance exceeds `threshold` (unsupervised; no grid needed).

    Invariant to permuting latents (not to rescaling: the threshold is absolute).

    Returns:
        {"active_units": count, "active_units.fraction": count / D}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    truth = as_ground_truth(represent, data)
    codes, _ = truth.sample(num_train, rng)
    active = float((codes.var(axis=0, ddof=1) > threshold).sum())
    return {"active_units": active, "active_units.fraction": active / codes.shape[1]}
