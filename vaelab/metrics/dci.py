"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams, 2018).

For each factor a classifier predicts it from all latents; its feature importances form the
importance matrix R (D, F). Disentanglement = sum_d rho_d (1 - H_F(R[d] / sum R[d])), with
rho_d = sum_k R[d, k] / sum R; completeness = sum_k rho_k (1 - H_D(R[:, k] / sum R[:, k])) with
rho_k = sum_d R[d, k] / sum R (entropies in base F and base D); informativeness = the
classifiers' accuracy. As disentanglement_lib's `dci.py`.

`dci` uses disentanglement_lib's published protocol: scikit-learn's `GradientBoostingClassifier`
with default settings, 10,000 training and 5,000 test points. It fits 100 trees per class per
factor (11,300 trees on dSprites), which takes minutes. `dci_fast` is a LABELLED fast alternative:
impurity importances of an extremely randomised forest (Geurts et al., 2006; Eastwood & Williams
also used random forests) with `n_estimators` trees of depth `max_depth`. Its numbers are NOT
comparable with published `dci` numbers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.registry import METRICS

if TYPE_CHECKING:
    from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier

__all__ = ["compute_dci", "compute_dci_fast", "dci_from_importance"]


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) from an importance matrix (D, F) >= 0."""
    import scipy.stats  # deferred: keeps `import vaelab` (and every CLI start) light

    importance = np.asarray(importance, dtype=np.float64)
    d, f = importance.shape
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    per_code = 1.0 - scipy.stats.entropy(importance.T + 1e-11, base=f) if f > 1 else np.ones(d)
    per_factor = 1.0 - scipy.stats.entropy(importance + 1e-11, base=d) if d > 1 else np.ones(f)
    code_weight = weights.sum(axis=1) / weights.sum()
    factor_weight = weights.sum(axis=0) / weights.sum()
    return float(np.sum(per_code * code_weight)), float(np.sum(per_factor * factor_weight))


def _fit_factor(make_model, seed: int, x_train: np.ndarray, y_train: np.ndarray,
                x_test: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, float, float]:
    """One factor's classifier: (|feature importances| (D,), train accuracy, test accuracy)."""
    model = make_model(seed)
    model.fit(x_train, y_train)
    train_acc = float(np.mean(model.predict(x_train) == y_train))
    test_acc = float(np.mean(model.predict(x_test) == y_test)) if len(x_test) else np.nan
    return np.abs(model.feature_importances_), train_acc, test_acc


# Below this many training points the fits take less than the worker processes take to start.
PARALLEL_FROM = 2000


def _dci(represent: Any, data: Any, rng: np.random.Generator, name: str, make_model,
         num_train: int, num_test: int, n_jobs: int = 1) -> dict[str, float]:
    truth = as_ground_truth(represent, data)
    factors = truth.active_factors(name)
    train_index, test_index = truth.split_index(num_train, num_test, rng)
    x_train, x_test = truth.codes(train_index), truth.codes(test_index)
    y_train, y_test = truth.factors_of(train_index), truth.factors_of(test_index)
    seeds = [int(rng.integers(2**31)) for _ in factors]  # drawn in factor order, as before
    jobs = [(make_model, seed, x_train, y_train[:, k], x_test, y_test[:, k])
            for seed, k in zip(seeds, factors)]
    if n_jobs == -1:  # one per core, for fits that outweigh starting the processes (~2 s)
        big = len(x_train) >= PARALLEL_FROM
        n_jobs = min(len(jobs), os.cpu_count() or 1) if big else 1
    n_jobs = max(1, n_jobs)
    if n_jobs > 1:  # one process per factor: each fit depends only on its seed and data
        results = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_fit_factor)(*job) for job in jobs)
    else:
        results = [_fit_factor(*job) for job in jobs]
    importance = np.stack([r[0] for r in results], axis=1)  # (D, F)
    train_acc = [r[1] for r in results]
    test_acc = [r[2] for r in results]
    disentanglement, completeness = dci_from_importance(importance)
    return {
        f"{name}.disentanglement": disentanglement,
        f"{name}.completeness": completeness,
        f"{name}.informativeness_train": float(np.mean(train_acc)),
        f"{name}.informativeness_test": float(np.mean(test_acc)),
    }


def _gradient_boosting(seed: int) -> GradientBoostingClassifier:
    from sklearn.ensemble import GradientBoostingClassifier  # lazy: keeps `import vaelab` fast

    return GradientBoostingClassifier(random_state=seed)  # picklable, for the worker processes


@METRICS.register("dci")
def compute_dci(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    n_jobs: int = -1,
) -> dict[str, float]:
    """DCI with gradient-boosted trees (disentanglement_lib's published protocol; slow).

    Works on any factor dataset (no full grid needed). All scores in [0, 1]; invariant to
    permuting the latents and to strictly increasing rescaling (trees split on order only).
    The factors' classifiers are fitted in `n_jobs` processes (-1: one per core, at most one per
    factor, from 2,000 training points; fewer are fitted in this process; 1: in this process);
    each has its own seed, so the numbers do not depend on n_jobs.

    Returns:
        {"dci.disentanglement", "dci.completeness", "dci.informativeness_train",
        "dci.informativeness_test"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    return _dci(represent, data, rng, "dci",
                _gradient_boosting, num_train, num_test, n_jobs)


@METRICS.register("dci_fast")
def compute_dci_fast(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    num_train: int = 10000,
    num_test: int = 5000,
    n_estimators: int = 10,
    max_depth: int = 8,
) -> dict[str, float]:
    """DCI with extra-trees importances: a fast alternative to `dci`, NOT the published protocol.

    Works on any factor dataset (no full grid needed). All scores in [0, 1]; invariant to
    permuting the latents and to strictly increasing rescaling.

    Returns:
        {"dci_fast.disentanglement", "dci_fast.completeness", "dci_fast.informativeness_train",
        "dci_fast.informativeness_test"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng

    def make(seed: int) -> ExtraTreesClassifier:
        # max_features=None: every split weighs every latent, so importance does not leak to
        # latents that were merely the only candidate at a node.
        from sklearn.ensemble import ExtraTreesClassifier


        return ExtraTreesClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                    max_features=None, random_state=seed, n_jobs=1)

    return _dci(represent, data, rng, "dci_fast", make, num_train, num_test)
