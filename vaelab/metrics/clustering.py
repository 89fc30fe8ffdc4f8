"""Clustering scores of a representation against class labels: k-means NMI, ARI and accuracy.

k-means (k = number of classes, `n_init` restarts) on the codes of `num_train` points; the clusters
are compared with the labels by normalised mutual information and the adjusted Rand index
(scikit-learn), and by the accuracy of the best one-to-one matching of clusters to classes
(Hungarian algorithm, as in unsupervised-clustering papers).

Labels are the dataset's `labels` (e.g. MNIST digits) or, with `factor` set, one ground-truth
factor (default for factor datasets without labels: the first factor with more than one value).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.errors import VaelabError
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.registry import METRICS

__all__ = ["cluster_accuracy", "compute_clustering"]


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy of the best one-to-one mapping of cluster ids to labels."""
    _, labels = np.unique(labels, return_inverse=True)
    _, clusters = np.unique(clusters, return_inverse=True)
    table = np.zeros((clusters.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, labels), 1)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(labels))


@METRICS.register("clustering")
def compute_clustering(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    num_train: int = 10000,
    n_init: int = 3,
    factor: str = "",
) -> dict[str, float]:
    """k-means clustering scores against labels; see the module docstring. No grid needed.

    Range: NMI and accuracy in [0, 1], ARI in [-1, 1] (0 is chance). Invariant to permuting
    latents (up to k-means' floating-point ties); not to rescaling (Euclidean k-means).

    Args:
        represent: a representation function, model, codes (N, D) or `GroundTruth`.
        data: a dataset with `labels` or factors, or a label/factor array for array codes.
        rng: the generator.
        num_train: points clustered.
        n_init: k-means restarts.
        factor: name of the factor used as labels ("": the dataset's labels if any, else the first
            non-constant factor).

    Returns:
        {"clustering.nmi", "clustering.ari", "clustering.accuracy"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    truth = as_ground_truth(represent, data)
    index, _ = truth.split_index(num_train, 0, rng)
    labels = getattr(truth.dataset, "labels", None)
    if factor or labels is None:
        if not truth.has_factors:
            raise VaelabError("metric 'clustering' needs class labels or ground-truth factors; "
                              f"dataset {truth.dataset.name!r} has neither")
        names = truth.dataset.factor_names
        if factor and factor not in names:
            raise VaelabError(f"clustering: unknown factor {factor!r}; factors: {', '.join(names)}")
        k = names.index(factor) if factor else truth.active_factors("clustering")[0]
        labels = truth.dataset.factors[:, k]
    y = np.asarray(labels)[index]
    codes = truth.codes(index)
    classes = len(np.unique(y))
    if classes < 2:
        raise VaelabError("clustering needs at least two classes among the drawn points")
    from sklearn.cluster import KMeans  # lazy: keeps `import vaelab` fast
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    kmeans = KMeans(n_clusters=classes, n_init=n_init, random_state=int(rng.integers(2**31)))
    clusters = kmeans.fit_predict(codes)
    return {
        "clustering.nmi": float(normalized_mutual_info_score(y, clusters)),
        "clustering.ari": float(adjusted_rand_score(y, clusters)),
        "clustering.accuracy": cluster_accuracy(y, clusters),
    }
