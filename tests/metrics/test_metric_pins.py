"""Metric behaviours of issue 35 (point 5), each on a hand-computed case: the clustering maps,
kl_decomposition's draws, DCI completeness weights, SAP's held-out scoring, the normalised
Gaussian Wasserstein correlation and MIG's bin type.

Every test here has a planted bug in `tools/mutate.py` (block "issue 35: behaviour pins").
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab.metrics.clusters import cluster_scores, evaluate_clusters
from vaelab.metrics.dci import dci_from_importance
from vaelab.metrics.decomposition import compute_kl_decomposition
from vaelab.metrics.ground_truth import GroundTruth
from vaelab.metrics.mig import compute_mig
from vaelab.metrics.sap import compute_sap
from vaelab.metrics.unsupervised import compute_gaussian_wasserstein_correlation

# -- clusters: many-to-one against Hungarian, and the split the map is fitted on ---------------


def test_many_to_one_accuracy_differs_from_hungarian_where_they_differ():
    # cluster 0 = {0, 0}, cluster 1 = {0, 0}, cluster 2 = {1, 1, 2, 2}. Many-to-one: clusters 0
    # and 1 both map to class 0 (4 right), cluster 2 to class 1 (tie: the smallest; 2 right):
    # 6/8. One-to-one (Hungarian): only one of clusters 0, 1 may take class 0: 4/8.
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    clusters = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    scores = cluster_scores(clusters, labels, 3)
    assert scores["accuracy"] == 0.75
    assert scores["hungarian_accuracy"] == 0.5


def test_cluster_map_is_fitted_on_the_fit_split_not_the_scored_one():
    # The fit split says cluster 0 is class 1 and cluster 1 class 0; the scored split holds the
    # opposite: accuracy 0 with the fit map (1 if the map were fitted on the scored split).
    fit_clusters, fit_labels = np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])
    clusters, labels = np.array([0, 0, 0, 1, 1]), np.array([0, 0, 0, 1, 1])
    assert cluster_scores(clusters, labels, 2, fit_clusters, fit_labels)["accuracy"] == 0.0
    assert cluster_scores(clusters, labels, 2)["accuracy"] == 1.0  # no fit split: the scored one


class _PixelClusters(torch.nn.Module):
    """A mixture-model stand-in: the cluster of an image is its first pixel's value."""

    num_clusters = 2

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def cluster(self, x):
        return x.flatten(1)[:, 0].long()


class _Labelled:
    def __init__(self, pixels, labels):
        self.images, self.labels = torch.tensor(pixels, dtype=torch.float32), np.array(labels)

    def __len__(self):
        return len(self.labels)

    def batch(self, index):
        return self.images[torch.as_tensor(index)].view(-1, 1, 1, 1)


def test_evaluate_clusters_fits_the_map_on_the_fit_dataset():
    fit = _Labelled([0, 0, 1, 1], [1, 1, 0, 0])
    test = _Labelled([0, 0, 0, 1, 1], [0, 0, 0, 1, 1])
    model = _PixelClusters()
    assert evaluate_clusters(model, test, fit)["clusters.accuracy"] == 0.0
    assert evaluate_clusters(model, test)["clusters.accuracy"] == 1.0


# -- kl_decomposition draws with the posterior's standard deviation ---------------------------


def test_kl_decomposition_draws_codes_with_the_posterior_sd():
    # Every posterior N(0, 4 I) (D = 4): the MSS weights of a row sum to 1, so q(z) = N(0, 4 I)
    # exactly; mi = tc = 0 and dw_kl = sum_d E[log N(z; 0, 4) - log N(z; 0, 1)]
    # = 4 (3/8 E z^2 - log 2), which is the KL 4 * (4 - 1 - log 4) / 2 = 1.614 when z has sd 2.
    # (z with sd 4, the variance: 4 (6 - log 2) = 21.2.) Standard error of the estimate ~0.13.
    n, d = 1000, 4
    mu, logvar = np.zeros((n, d)), np.full((n, d), math.log(4.0))
    scores = compute_kl_decomposition((mu, logvar), None, np.random.default_rng(0), batch_size=n)
    assert scores["kl_decomposition.mi"] == pytest.approx(0.0, abs=1e-9)
    assert scores["kl_decomposition.tc"] == pytest.approx(0.0, abs=1e-9)
    assert scores["kl_decomposition.dw_kl"] == pytest.approx(2 * (3 - math.log(4)), abs=0.4)


# -- DCI completeness weighs the factors by their importance ----------------------------------


def test_dci_completeness_weights_factors_by_importance():
    # R (D=3, F=2) = [[2, 0], [2, 0], [0, 1]]. Factor 0 (importance 4 of 5) is split over two
    # codes: 1 - H([1/2, 1/2, 0]) / log 3 = 1 - log 2 / log 3; factor 1 (1 of 5) sits in one
    # code: 1. Completeness = 4/5 (1 - log 2 / log 3) + 1/5 (equal weights would give 0.685).
    # Every code serves one factor: disentanglement 1.
    disentanglement, completeness = dci_from_importance(np.array([[2.0, 0], [2, 0], [0, 1]]))
    assert completeness == pytest.approx(0.8 * (1 - math.log(2) / math.log(3)) + 0.2, abs=1e-8)
    assert disentanglement == pytest.approx(1.0, abs=1e-8)


# -- SAP is scored on the held-out points -----------------------------------------------------


def test_sap_scores_on_the_held_out_points(monkeypatch):
    # Train rows 0..199, test rows 200..399. Latent 0 is 10 y on the train rows and 10 (1 - y)
    # on the test rows: it predicts the test points exactly wrong (0) though it fits the train
    # points (1); latent 1 is 10 y everywhere (1). Held out: SAP = 1 - 0 = 1; on the training
    # points it would be 1 - 1 = 0.
    y = np.tile([0, 1], 200)
    flipped = np.where(np.arange(400) < 200, y, 1 - y)
    codes = np.stack([10.0 * flipped, 10.0 * y], axis=1)
    split = (np.arange(200), np.arange(200, 400))
    monkeypatch.setattr(GroundTruth, "split_index", lambda self, a, b, rng: split)
    scores = compute_sap(codes, y[:, None], np.random.default_rng(0), num_train=200, num_test=200)
    assert scores["sap"] == pytest.approx(1.0)


# -- the normalised Gaussian Wasserstein correlation divides by the trace ----------------------


def test_gaussian_wasserstein_norm_divides_by_the_trace():
    # Codes whose sample covariance is exactly S = [[4, 1.2], [1.2, 1]] (tr S = 5). With
    # M = diag(S)^1/2 S diag(S)^1/2 = [[16, 2.4], [2.4, 1]], tr M^1/2 = sqrt(tr M + 2 sqrt(det M))
    # = sqrt(17 + 6.4) for a 2 x 2 matrix: W2^2 = 2 tr S - 2 sqrt(23.4), norm = W2^2 / 5.
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 2))
    z -= z.mean(0)
    whiten = np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)))
    target = np.linalg.cholesky(np.array([[4.0, 1.2], [1.2, 1.0]]))
    codes = z @ whiten.T @ target.T
    scores = compute_gaussian_wasserstein_correlation(codes, None, rng, num_train=500)
    value = 10 - 2 * math.sqrt(23.4)
    assert scores["gaussian_wasserstein_correlation"] == pytest.approx(value, rel=1e-9)
    assert scores["gaussian_wasserstein_correlation_norm"] == pytest.approx(value / 5, rel=1e-9)


# -- MIG bins in bin_dtype when asked ----------------------------------------------------------


def test_mig_bins_float64_codes_in_float32_when_asked():
    # One latent over [0, 0.7] in 20 bins; v = the float32 edge k, which lies below the float64
    # edge k: it bins into k with float32 edges and k - 1 with float64 ones. Points (value,
    # factor): (0, 0), (0.7, 1), (v, 2), (mid of bin k, 2), (mid of bin k - 1, 3).
    # float32: each bin holds one factor value: MI = H(f), MIG = 1. float64: bin k - 1 holds
    # factors 2 and 3: MI = H(f) - (2/5) log 2 with H(f) = -(3/5) log(1/5) - (2/5) log(2/5).
    ends = np.array([0.0, 0.7], dtype=np.float32)
    edges32 = np.histogram_bin_edges(ends, 20)
    edges64 = np.histogram_bin_edges(ends.astype(np.float64), 20)
    k = next(k for k in range(2, 19) if float(edges32[k]) < edges64[k])
    width = 0.7 / 20
    column = np.array([0.0, 0.7, float(edges32[k]), (k + 0.5) * width, (k - 0.5) * width])
    factors = np.array([0, 1, 2, 2, 3])[:, None]
    entropy = -0.6 * math.log(0.2) - 0.4 * math.log(0.4)
    as32 = compute_mig(column[:, None], factors, num_train="all", bin_dtype="float32")["mig"]
    as64 = compute_mig(column[:, None], factors, num_train="all", bin_dtype="float64")["mig"]
    default = compute_mig(column[:, None], factors, num_train="all")["mig"]  # float64 codes
    assert as32 == pytest.approx(1.0, abs=1e-12)
    assert as64 == pytest.approx(1 - 0.4 * math.log(2) / entropy, abs=1e-12)
    assert default == as64
