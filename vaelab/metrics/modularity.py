"""Modularity and explicitness (Ridgeway & Mozer, 2018), disentanglement_lib's protocol.

Modularity: from the histogram mutual information m (D, F) (20 bins, as `mig`), each latent scores
1 - (sum_k m_dk^2 - max_k m_dk^2) / (max_k m_dk^2 (F - 1)) (0 for a latent with no information);
the score is the mean over latents. Explicitness: for each factor, a one-vs-rest view of a
logistic regression on all latents; the mean ROC AUC over classes, averaged over factors.

As in disentanglement_lib, latents are standardised (training mean and standard deviation)
before the logistic regression. One deviation: the ROC AUC is computed over the classifier's own
classes, skipping classes absent from the evaluated set (disentanglement_lib mis-aligns columns
then; with every class present, as on dSprites at these sizes, the numbers are the same).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from vaelab.metrics._info import discretize, mutual_information
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.registry import METRICS

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

__all__ = ["compute_modularity_explicitness", "modularity_from_mi"]


def modularity_from_mi(mi: np.ndarray) -> float:
    """Modularity score from a mutual-information matrix (D, F)."""
    squared = np.square(mi)
    top = squared.max(axis=1)
    f = mi.shape[1]
    if f < 2:
        return float(np.mean(top > 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_code = 1.0 - (squared.sum(axis=1) - top) / (top * (f - 1))
    return float(np.mean(np.where(top > 0, per_code, 0.0)))


def _mean_auc(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    proba = model.predict_proba(x)  # (n, classes)
    aucs = []
    for column, label in enumerate(model.classes_):
        positive = y == label
        if positive.all() or not positive.any():
            continue
        aucs.append(roc_auc_score(positive, proba[:, column]))
    return float(np.mean(aucs)) if aucs else float("nan")


@METRICS.register("modularity_explicitness")
def compute_modularity_explicitness(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    num_bins: int = 20,
    bin_dtype: str = "representation",
) -> dict[str, float]:
    """Modularity and explicitness; see the module docstring.

    Works on any factor dataset (no full grid needed). All scores in [0, 1] (explicitness 0.5 is
    chance); invariant to permuting the latents and to positive rescaling. `bin_dtype` as in
    `mig`.

    Returns:
        {"modularity", "explicitness_train", "explicitness_test"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    truth = as_ground_truth(represent, data)
    factors = truth.active_factors("modularity_explicitness")
    train_index, test_index = truth.split_index(num_train, num_test, rng)
    x_train, x_test = truth.codes(train_index), truth.codes(test_index)
    y_train = truth.factors_of(train_index)[:, factors]
    y_test = truth.factors_of(test_index)[:, factors]
    binned = discretize(truth.binned_codes(x_train, bin_dtype), num_bins)
    modularity = modularity_from_mi(mutual_information(binned, y_train))
    from sklearn.exceptions import ConvergenceWarning  # lazy: keeps `import vaelab` fast
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    s_train = scaler.transform(x_train)
    s_test = scaler.transform(x_test) if len(x_test) else x_test  # num_test=0: no test scores
    train_auc, test_auc = [], []
    for k in range(y_train.shape[1]):
        if len(np.unique(y_train[:, k])) < 2:
            continue
        model = LogisticRegression(max_iter=100)
        # One BLAS thread: the matrices are tiny, and threads only add overhead (4x measured).
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(s_train, y_train[:, k])
        train_auc.append(_mean_auc(model, s_train, y_train[:, k]))
        test_auc.append(_mean_auc(model, s_test, y_test[:, k]) if len(s_test) else np.nan)
    return {
        "modularity": modularity,
        "explicitness_train": float(np.nanmean(train_auc)) if train_auc else float("nan"),
        "explicitness_test": (float(np.nanmean(test_auc))
                              if np.isfinite(test_auc).any() else float("nan")),
    }
