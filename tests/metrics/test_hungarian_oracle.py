"""Hungarian (one-to-one) cluster accuracy against brute force over every matching (issue 35):
imperfect assignments, K <= 6, fewer clusters than classes and more."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vaelab.metrics.clustering import cluster_accuracy


def _brute_force(labels: np.ndarray, clusters: np.ndarray) -> float:
    """max over one-to-one maps of cluster ids into class ids (or classes into clusters) of the
    share of items whose cluster maps to their class, by enumerating every injective map."""
    cluster_ids, class_ids = np.unique(clusters), np.unique(labels)
    best = 0
    if len(cluster_ids) <= len(class_ids):
        for image in itertools.permutations(class_ids, len(cluster_ids)):
            mapping = dict(zip(cluster_ids, image))
            best = max(best, sum(mapping[c] == y for c, y in zip(clusters, labels)))
    else:
        for image in itertools.permutations(cluster_ids, len(class_ids)):
            mapping = dict(zip(class_ids, image))
            best = max(best, sum(mapping[y] == c for c, y in zip(clusters, labels)))
    return best / len(labels)


@pytest.mark.parametrize(("clusters", "classes"), [(2, 2), (3, 5), (4, 6), (5, 3), (6, 6),
                                                   (2, 6)])
def test_hungarian_accuracy_is_the_best_matching(clusters, classes):
    rng = np.random.default_rng(clusters * 10 + classes)
    for _ in range(5):
        labels = rng.integers(0, classes, size=40)
        # imperfect: a noisy function of the label, with cluster ids not in label order
        assigned = (labels * 7 + 3) % clusters
        noisy = rng.random(40) < 0.35
        assigned[noisy] = rng.integers(0, clusters, size=noisy.sum())
        assigned = assigned * 10 + 5  # arbitrary cluster ids
        assert cluster_accuracy(labels, assigned) == pytest.approx(_brute_force(labels, assigned))


def test_known_answers_with_fewer_clusters_than_classes():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    clusters = np.array([5, 5, 9, 9, 9, 9, 9, 5, 5, 5])
    # cluster 9 holds classes {0: 1, 1: 2, 2: 2}, cluster 5 {0: 2, 2: 2, 3: 1}: the best
    # one-to-one map is 9 -> 1 and 5 -> 2 (or 9 -> 2, 5 -> 0): 4 of 10
    assert cluster_accuracy(labels, clusters) == pytest.approx(0.4)
    assert cluster_accuracy(labels, np.zeros(10, dtype=int)) == pytest.approx(0.4)  # class 2
