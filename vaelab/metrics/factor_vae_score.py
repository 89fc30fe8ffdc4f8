"""FactorVAE disentanglement score (Kim & Mnih, 2018), disentanglement_lib's protocol.

1. Global variance of every latent from `num_variance_estimate` random points; latents whose
   standard deviation is below `prune_threshold` are "collapsed" and ignored.
2. A vote: pick a factor k uniformly, fix it to one random value, draw `batch_size` points with
   the other factors random, divide each latent by its global standard deviation and take the
   latent d* with the smallest variance. The pair (d*, k) is one vote.
3. The majority-vote classifier maps latent d to argmax_k V[d, k] on `num_train` votes; the score
   is its accuracy on the training votes and on `num_eval` fresh votes.

This is the canonical metric, not the seed's degenerate variant that divided by the standard
deviation of the same batch (Non-Syn's `test_metric_factorVAE.py`). Votes are drawn all at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.metrics.ground_truth import GroundTruth, as_ground_truth
from vaelab.registry import METRICS

__all__ = ["compute_factor_vae_score"]


def _votes(truth: GroundTruth, factors: list[int], num: int, batch_size: int,
           scale: np.ndarray, active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vote counts (D_active, F) of `num` votes."""
    dataset = truth.require_factors("factor_vae_score")
    votes = np.zeros((int(active.sum()), len(factors)), dtype=np.int64)
    chosen = rng.integers(0, len(factors), size=num)  # (num,) position in `factors`
    for position, k in enumerate(factors):
        which = np.flatnonzero(chosen == position)
        if len(which) == 0:
            continue
        values = dataset.sample_factors(len(which), rng)[:, k]  # one fixed value per vote
        codes = truth.codes_with_fixed_factor(k, values, batch_size, rng)  # (n, L, D)
        local = codes[:, :, active].var(axis=1, ddof=1) / scale[active] ** 2  # (n, D_active)
        np.add.at(votes[:, position], local.argmin(axis=1), 1)
    return votes


@METRICS.register("factor_vae_score")
def compute_factor_vae_score(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
) -> dict[str, float]:
    """Kim & Mnih's majority-vote accuracy; see the module docstring.

    Works on any factor dataset (no full grid needed): fixed-factor batches come from
    `resample_with_fixed_factor`. Constant factors are left out. Range [0, 1] (chance is about
    1/F); invariant to permuting the latents and to positive rescaling of latents that stay
    above the pruning threshold.

    Args:
        represent: a representation function, model, codes (N, D) or `GroundTruth`.
        data: the factor dataset, or the factor array (N, F) of array codes.
        rng: the generator.
        batch_size: points per vote (L).
        num_train: training votes.
        num_eval: evaluation votes.
        num_variance_estimate: points for the global variances.
        prune_threshold: latents with global standard deviation below this are ignored.

    Returns:
        {"factor_vae_score.train_accuracy", "factor_vae_score.eval_accuracy",
        "factor_vae_score.num_active_dims"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (a variance per vote), got {batch_size}")
    truth = as_ground_truth(represent, data)
    factors = truth.active_factors("factor_vae_score")
    codes, _ = truth.sample(num_variance_estimate, rng)
    scale = codes.std(axis=0, ddof=1)  # (D,) global standard deviations
    active = scale >= prune_threshold
    prefix = "factor_vae_score."
    if not active.any():
        return {prefix + "train_accuracy": 0.0, prefix + "eval_accuracy": 0.0,
                prefix + "num_active_dims": 0.0}
    train = _votes(truth, factors, num_train, batch_size, scale, active, rng)
    classifier = train.argmax(axis=1)  # (D_active,) factor predicted by each latent
    rows = np.arange(len(classifier))
    evaluation = _votes(truth, factors, num_eval, batch_size, scale, active, rng)
    return {
        prefix + "train_accuracy": float(train[rows, classifier].sum() / max(train.sum(), 1)),
        prefix + "eval_accuracy": float(evaluation[rows, classifier].sum() / max(evaluation.sum(), 1)),
        prefix + "num_active_dims": float(active.sum()),
    }
