"""BetaVAE disentanglement score (Higgins et al., 2017), disentanglement_lib's protocol.

A training point: pick a factor k uniformly, draw `batch_size` pairs of points that share factor k
(the other factors random), and take the mean over the pairs of |z_1 - z_2| (a D-vector) with label
k. A logistic regression predicts k from the vector; the score is its accuracy on `num_train`
training points and `num_eval` fresh points. Points are drawn all at once (vectorised).

The default (`scaling="none"`) is disentanglement_lib's: the L2-penalised logistic regression sees
the raw feature vectors (scikit-learn's `LogisticRegression` defaults; `max_iter` 1000 instead of
100 so that the fit converges on unscaled features). `scaling="standardize"` is a deviation:
features standardised with the training points' mean and standard deviation, so the score does
not depend on the latents' units (it differs most when some dimensions are nearly constant).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.metrics.ground_truth import GroundTruth, as_ground_truth
from vaelab.registry import METRICS

__all__ = ["compute_beta_vae_score"]


def _points(truth: GroundTruth, factors: list[int], num: int, batch_size: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Features (num, D) and labels (num,) (positions in `factors`)."""
    dataset = truth.require_factors("beta_vae_score")
    labels = rng.integers(0, len(factors), size=num)
    features = None
    for position, k in enumerate(factors):
        which = np.flatnonzero(labels == position)
        if len(which) == 0:
            continue
        first = dataset.sample_factors(len(which) * batch_size, rng)  # (n * L, F)
        second = dataset.resample_with_fixed_factor(k, first[:, k], rng)  # shares factor k
        z1 = truth.codes(dataset.index_of_factors(first, rng))
        z2 = truth.codes(dataset.index_of_factors(second, rng))
        diff = np.abs(z1 - z2).reshape(len(which), batch_size, -1).mean(axis=1)  # (n, D)
        if features is None:
            features = np.zeros((num, diff.shape[1]))
        features[which] = diff
    assert features is not None
    return features, labels


@METRICS.register("beta_vae_score")
def compute_beta_vae_score(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    scaling: str = "none",
) -> dict[str, float]:
    """Higgins et al.'s classifier accuracy; see the module docstring.

    Works on any factor dataset (no full grid needed): the pairs come from
    `resample_with_fixed_factor`. Constant factors are left out. Range [0, 1] (chance about 1/F);
    invariant to permuting the latents; to positive rescaling only with "standardize".

    Args:
        represent: a representation function, model, codes (N, D) or `GroundTruth`.
        data: the factor dataset, or the factor array (N, F) of array codes.
        rng: the generator.
        batch_size: pairs averaged per point.
        num_train: training points.
        num_eval: evaluation points.
        scaling: "none" (disentanglement_lib) or "standardize" (see the module docstring).

    Returns:
        {"beta_vae_score.train_accuracy", "beta_vae_score.eval_accuracy"}.
    """
    if scaling not in ("none", "standardize"):
        raise ValueError(f"scaling must be 'none' or 'standardize', got {scaling!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    truth = as_ground_truth(represent, data)
    factors = truth.active_factors("beta_vae_score")
    x_train, y_train = _points(truth, factors, num_train, batch_size, rng)
    x_eval, y_eval = _points(truth, factors, num_eval, batch_size, rng)
    from sklearn.linear_model import LogisticRegression  # lazy: keeps `import vaelab` fast
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    scaler = (StandardScaler() if scaling == "standardize" else FunctionTransformer()).fit(x_train)
    model = LogisticRegression(max_iter=1000, random_state=int(rng.integers(2**31)))
    if len(np.unique(y_train)) < 2:
        raise ValueError("beta_vae_score needs num_train large enough to see two factors")
    model.fit(scaler.transform(x_train), y_train)
    return {
        "beta_vae_score.train_accuracy": float(model.score(scaler.transform(x_train), y_train)),
        "beta_vae_score.eval_accuracy": float(model.score(scaler.transform(x_eval), y_eval)),
    }
