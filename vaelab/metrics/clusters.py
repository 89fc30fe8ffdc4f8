"""Clustering evaluation of mixture models (GMVAE) against class labels, with k-means baselines.

The GMVAE seed computes no clustering score (psanch21/VAE-GMVAE); this protocol is vaelab's, as
in unsupervised-clustering papers (Dilokthanakul et al. 2016; Makhzani et al. 2016):

* cluster of an image: `model.cluster(x)`, the argmax of the cluster posterior at the posterior
  means;
* `accuracy`: the many-to-one mapping, each cluster labelled with the most frequent class of its
  members in the *fit* data (train or valid), scored on the test data; a cluster with no fit
  member counts as wrong. Suits K >= number of classes;
* `hungarian_accuracy`: the best one-to-one mapping (Hungarian algorithm), when K equals the
  number of classes;
* `nmi`, `ari`: scikit-learn's normalised mutual information and adjusted Rand index;
* `used`: the number of clusters holding any test image (degeneracy shows as few).

`kmeans_scores` gives the same numbers for k-means (K clusters) on any features: pixels, or a
plain VAE's codes — the baselines a GMVAE should beat.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vaelab.errors import VaelabError
from vaelab.metrics.clustering import cluster_accuracy

__all__ = ["assign_clusters", "cluster_scores", "evaluate_clusters", "kmeans_scores",
           "many_to_one_accuracy"]


def many_to_one_accuracy(fit_clusters: np.ndarray, fit_labels: np.ndarray,
                         clusters: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy on (clusters, labels) of the cluster -> majority-class map fitted on the fit data.

    Clusters that hold no fit item map to no class (their items count as wrong).
    """
    fit_clusters, fit_labels = np.asarray(fit_clusters), np.asarray(fit_labels)
    mapping: dict[int, Any] = {}
    for cluster in np.unique(fit_clusters):
        values, counts = np.unique(fit_labels[fit_clusters == cluster], return_counts=True)
        mapping[int(cluster)] = values[np.argmax(counts)]  # ties: the smallest class
    predicted = [mapping.get(int(c), None) for c in np.asarray(clusters)]
    return float(np.mean([p is not None and p == y for p, y in zip(predicted, labels)]))


def cluster_scores(clusters: np.ndarray, labels: np.ndarray, num_clusters: int,
                   fit_clusters: np.ndarray | None = None,
                   fit_labels: np.ndarray | None = None, prefix: str = "") -> dict[str, float]:
    """The scores of the module docstring for test clusters and labels (fit: the test itself)."""
    from sklearn.metrics import (  # lazy: keeps `import vaelab` fast
        adjusted_rand_score,
        normalized_mutual_info_score,
    )

    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if fit_clusters is None:
        fit_clusters, fit_labels = clusters, labels
    scores = {
        "accuracy": many_to_one_accuracy(fit_clusters, fit_labels, clusters, labels),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "used": float(len(np.unique(clusters))),
    }
    if num_clusters == len(np.unique(labels)):
        scores["hungarian_accuracy"] = cluster_accuracy(labels, clusters)
    return {prefix + k: v for k, v in scores.items()}


@torch.no_grad()
def assign_clusters(model: Any, dataset: Any, index: np.ndarray | None = None,
                    batch_size: int = 1024) -> np.ndarray:
    """`model.cluster` of the items `index` of `dataset` (default: all), (n,), in eval mode."""
    if not getattr(model, "num_clusters", 0):
        raise VaelabError(f"model {type(model).__name__} has no clusters (clustering scores "
                          "need a mixture model such as a GMVAE)")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    index = np.arange(len(dataset)) if index is None else np.asarray(index)
    try:
        parts = [model.cluster(dataset.batch(index[i:i + batch_size]).to(device)).cpu().numpy()
                 for i in range(0, len(index), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(parts)


def _labels(dataset: Any, role: str) -> np.ndarray:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise VaelabError(f"clustering scores need class labels, and the {role} data "
                          f"{getattr(dataset, 'name', '')!r} has none")
    return np.asarray(labels)


def evaluate_clusters(model: Any, test: Any, fit: Any = None) -> dict[str, float]:
    """`clusters.*` scores of a mixture model: mapping fitted on `fit` (default `test`).

    Raises:
        VaelabError: the model has no clusters, or a dataset has no labels.
    """
    labels = _labels(test, "test")
    clusters = assign_clusters(model, test)
    fit_clusters = fit_labels = None
    if fit is not None and fit is not test:
        fit_labels = _labels(fit, "fit")
        fit_clusters = assign_clusters(model, fit)
    return cluster_scores(clusters, labels, model.num_clusters, fit_clusters, fit_labels,
                          prefix="clusters.")


def kmeans_scores(features: np.ndarray, labels: np.ndarray, num_clusters: int, seed: int = 0,
                  prefix: str = "kmeans.", n_init: int = 3) -> dict[str, float]:
    """The same scores for k-means with `num_clusters` on `features` (N, F), fitted and scored
    on the same items."""
    from sklearn.cluster import KMeans  # lazy: keeps `import vaelab` fast

    kmeans = KMeans(n_clusters=num_clusters, n_init=n_init, random_state=seed)
    clusters = kmeans.fit_predict(np.asarray(features, dtype=np.float64).reshape(len(features), -1))
    return cluster_scores(clusters, labels, num_clusters, prefix=prefix)
