"""Clustering scores of mixture models: known answers, baselines and the `vaelab eval` path."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.errors import VaelabError
from vaelab.metrics.clusters import cluster_scores, kmeans_scores, many_to_one_accuracy


def test_a_permutation_of_the_labels_scores_one_under_both_mappings():
    labels = np.repeat(np.arange(4), 5)
    clusters = (labels + 1) % 4  # a relabelling
    scores = cluster_scores(clusters, labels, 4)
    assert scores["accuracy"] == 1.0 and scores["hungarian_accuracy"] == 1.0
    assert scores["nmi"] == pytest.approx(1.0) and scores["ari"] == pytest.approx(1.0)
    assert scores["used"] == 4.0


def test_many_to_one_known_case():
    # cluster 0 holds labels {0, 0, 1} -> 0; cluster 1 {1, 1} -> 1; cluster 2 {2} -> 2
    fit_clusters = np.array([0, 0, 0, 1, 1, 2])
    fit_labels = np.array([0, 0, 1, 1, 1, 2])
    assert many_to_one_accuracy(fit_clusters, fit_labels, fit_clusters, fit_labels) == \
        pytest.approx(5 / 6)
    # on test: cluster 3 was never seen in the fit data: its item counts as wrong
    test_clusters, test_labels = np.array([0, 1, 2, 3]), np.array([0, 0, 2, 3])
    assert many_to_one_accuracy(fit_clusters, fit_labels, test_clusters, test_labels) == 0.5


def test_more_clusters_than_classes_has_no_hungarian_score():
    labels = np.repeat(np.arange(2), 6)
    clusters = np.arange(12) % 4  # 4 clusters, each holding both labels
    scores = cluster_scores(clusters, labels, 4)
    assert "hungarian_accuracy" not in scores and scores["used"] == 4.0


def test_kmeans_baseline_separates_blobs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    features = rng.normal(size=(150, 2)) * 0.1 + np.array([[0, 0], [5, 0], [0, 5]])[labels]
    scores = kmeans_scores(features, labels, 3)
    assert scores["kmeans.accuracy"] == 1.0 and scores["kmeans.hungarian_accuracy"] == 1.0


def _gmvae_run(tmp_path, data):
    import vaelab

    config = {"name": "g", "seed": 1, "model": {"name": "gmvae", "K": 3, "z_dim": 2, "w_dim": 2},
              "objective": {"name": "gmvae"}, "data": data,
              "train": {"steps": 4, "batch_size": 16, "log_every": 2, "metrics": [],
                        "progress": False, "checkpoint_every": 0}}
    return vaelab.train(config=config, out=tmp_path, verbose=False)


def test_eval_reports_clusters_on_labelled_data(tmp_path, monkeypatch):
    from vaelab.evaluation import evaluate_run
    from vaelab.registry import DATASETS

    images = np.random.default_rng(0).integers(0, 255, size=(48, 1, 8, 8), dtype=np.uint8)
    labels = np.repeat(np.arange(3), 16)
    _labelled(monkeypatch, images, labels)
    run = _gmvae_run(tmp_path, {"name": "labelled"})
    assert (tmp_path / "g" / "cluster_samples.png").is_file()
    scores = evaluate_run(run, progress=False)
    assert {"clusters.accuracy", "clusters.nmi", "clusters.ari", "clusters.used",
            "clusters.hungarian_accuracy"} <= set(scores)
    protocol = run.metrics["protocol"]["metrics"]["clusters"]
    # the stand-in declares no held-out split: said so, not called a test split
    assert protocol["scored_on"].startswith("the train split (") and "no held-out" in \
        protocol["scored_on"]
    assert protocol["mapping_fit_on"] == "the train split"
    assert DATASETS.get("labelled")


def test_clusters_need_labels_and_a_mixture_model(tmp_path, monkeypatch):
    from vaelab.evaluation import evaluate_run

    images = np.random.default_rng(0).integers(0, 255, size=(32, 1, 8, 8), dtype=np.uint8)
    _labelled(monkeypatch, images, None)
    run = _gmvae_run(tmp_path, {"name": "labelled"})
    with pytest.raises(VaelabError, match="need class labels"):
        evaluate_run(run, metrics="clusters", progress=False)
    assert "clusters.accuracy" not in evaluate_run(run, progress=False)  # default: skipped


def _labelled(monkeypatch, images, labels):
    """Registers a tiny labelled dataset `labelled` (8x8 grey) for the duration of a test."""
    import torch

    from vaelab.data.base import DataConfig, ImageDataset
    from vaelab.registry import DATASETS

    class Labelled(ImageDataset):
        config_class = DataConfig
        name = "labelled"

        @classmethod
        def expected_shape(cls, config):
            return (1, 8, 8)

        @classmethod
        def splits(cls, config):
            return ("train",)  # the same items for every split: nothing held out

        @classmethod
        def load(cls, config=None):
            return cls(torch.from_numpy(images), labels=labels, name="labelled")

    monkeypatch.setitem(DATASETS._items, "labelled", Labelled)
