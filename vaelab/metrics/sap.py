"""Separated Attribute Predictability, SAP (Kumar et al., 2018), disentanglement_lib's protocol.

For every latent d and factor k, a linear classifier predicts factor k from latent d alone
(`LinearSVC(C=0.01, class_weight="balanced")`, trained on 10,000 points, accuracy on 5,000 test
points), giving a score matrix S (D, F). SAP = mean_k (S_(1)[k] - S_(2)[k]), the gap between the
two most predictive latents of each factor.

The default (`scaling="none"`) is disentanglement_lib's: the SVM sees the raw latent, so with the
strong regularisation (C = 0.01) the score depends on the latent's units (codes x 0.01 score
lower). `scaling="standardize"` is a deviation that removes this: each latent is standardised with
its training mean and standard deviation first (a constant latent then predicts the majority
class). `metrics.json`'s protocol section records which was used.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.registry import METRICS

__all__ = ["compute_sap", "sap_from_matrix"]


def sap_from_matrix(score: np.ndarray) -> np.ndarray:
    """Per-factor SAP (F,) from a score matrix (D, F)."""
    ordered = -np.sort(-score, axis=0)
    return ordered[0] - (ordered[1] if len(ordered) > 1 else 0.0)


SCALINGS = ("none", "standardize")


def _accuracy_1d(x_train, y_train, x_test, y_test, scaling: str = "none") -> float:
    """Test accuracy of `LinearSVC(C=0.01, class_weight="balanced")` on one latent."""
    std = x_train.std()
    if len(np.unique(y_train)) < 2 or (scaling == "standardize" and std == 0):
        majority = np.bincount(y_train).argmax()
        return float(np.mean(y_test == majority))
    mean, scale = (x_train.mean(), std) if scaling == "standardize" else (0.0, 1.0)
    # dual=False: the same L2 squared-hinge optimum, several times faster on one feature.
    from sklearn.exceptions import ConvergenceWarning  # lazy: keeps `import vaelab` fast
    from sklearn.svm import LinearSVC

    model = LinearSVC(C=0.01, class_weight="balanced", dual=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(((x_train - mean) / scale)[:, None], y_train)
    return float(np.mean(model.predict(((x_test - mean) / scale)[:, None]) == y_test))


@METRICS.register("sap")
def compute_sap(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    scaling: str = "none",
) -> dict[str, float]:
    """SAP score with per-latent linear SVMs on discrete factors; see the module docstring.

    Works on any factor dataset (no full grid needed). Range [0, 1]; invariant to permuting the
    latents; invariant to positive rescaling only with `scaling="standardize"`. Even a perfect representation scores below 1: the
    second-best latent still classifies at chance (about 1/2 for a balanced binary factor).

    Returns:
        {"sap": mean over factors, "sap.<factor>": per factor}.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    truth = as_ground_truth(represent, data)
    factors = truth.active_factors("sap")
    train_index, test_index = truth.split_index(num_train, num_test, rng)
    x_train, x_test = truth.codes(train_index), truth.codes(test_index)
    y_train, y_test = truth.factors_of(train_index), truth.factors_of(test_index)
    score = np.zeros((x_train.shape[1], len(factors)))
    for position, k in enumerate(factors):
        for d in range(x_train.shape[1]):
            score[d, position] = _accuracy_1d(
                x_train[:, d], y_train[:, k], x_test[:, d], y_test[:, k], scaling
            )
    per_factor = sap_from_matrix(score)
    names = [truth.dataset.factor_names[k] for k in factors]
    return {"sap": float(per_factor.mean()), **{f"sap.{n}": float(v) for n, v in zip(names, per_factor)}}
