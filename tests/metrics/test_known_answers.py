"""Hand-computable cases and disentanglement_lib transcriptions that pin each metric's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from metric_data import grid_factors
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

import vaelab.metrics.factor_vae_score as factor_vae_module
from vaelab.metrics._info import discretize
from vaelab.metrics.beta_vae_score import _points, compute_beta_vae_score
from vaelab.metrics.dci import dci_from_importance
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.metrics.irs import compute_irs, irs_from_codes
from vaelab.metrics.mig_chen import compute_mig_chen
from vaelab.metrics.modularity import compute_modularity_explicitness, modularity_from_mi
from vaelab.metrics.sap import _accuracy_1d, compute_sap, sap_from_matrix
from vaelab.metrics.unsupervised import (
    compute_mutual_info_score,
    gaussian_wasserstein_correlation,
)

# -- SAP -----------------------------------------------------------------------------------------


def test_sap_from_matrix_known_answer():
    # The gap of the two most predictive latents of each factor: [1 - 0.3, 0.9 - 0.5].
    score = np.array([[1.0, 0.5], [0.3, 0.9], [0.2, 0.1]])
    np.testing.assert_allclose(sap_from_matrix(score), [0.7, 0.4], atol=1e-12)


def test_sap_accuracy_of_a_separable_binary_latent_is_one():
    y = np.tile([0, 1], 100)
    for scaling in ("none", "standardize"):
        assert _accuracy_1d(y * 10.0, y, y * 10.0, y, scaling) == 1.0


@pytest.mark.parametrize("scale", [10.0, 1.0, 1e-3])
def test_sap_accuracy_is_disentanglement_libs_svm_on_the_raw_latent(scale):
    # Oracle: sklearn's LinearSVC(C=0.01, class_weight="balanced") fitted on the raw latent, as
    # disentanglement_lib does. A 4-valued factor: one-vs-rest on one feature, where the units
    # matter (0.75 at scale 10, 0.5 at scale 1e-3; standardised: 0.5 at any scale).
    y = np.tile([0, 1, 2, 3], 100)
    x = y * scale
    oracle = LinearSVC(C=0.01, class_weight="balanced").fit(x[:, None], y)
    expected = np.mean(oracle.predict(x[:, None]) == y)
    assert _accuracy_1d(x, y, x, y) == pytest.approx(expected, abs=1e-12)
    assert _accuracy_1d(x, y, x, y, "standardize") == pytest.approx(0.5, abs=1e-12)


def test_sap_default_depends_on_the_units_as_disentanglement_lib():
    factors = grid_factors((4, 4), tiles=40)
    sizes = {"num_train": 400, "num_test": 200}
    raw = [compute_sap(factors * s, factors, np.random.default_rng(0), **sizes)["sap"]
           for s in (10.0, 1e-3)]
    standard = [compute_sap(factors * s, factors, np.random.default_rng(0), **sizes,
                            scaling="standardize")["sap"] for s in (10.0, 1e-3)]
    assert raw[0] > raw[1] + 0.1
    assert standard[0] == standard[1]


# -- BetaVAE score ---------------------------------------------------------------------------------


def test_beta_vae_features_are_mean_absolute_differences_with_zero_on_the_fixed_factor():
    factors = grid_factors((2, 3, 4), tiles=4)
    truth = as_ground_truth(factors.astype(float), factors)
    features, labels = _points(truth, [0, 1, 2], 60, 8, np.random.default_rng(0))
    # identity codes: the fixed factor's latent never differs inside a pair
    assert np.all(features[np.arange(60), labels] == 0)
    assert np.all(features.sum(axis=1) > 0)


def test_beta_vae_score_fits_raw_features_by_default():
    # disentanglement_lib: LogisticRegression on the raw features (oracle: sklearn on the same
    # points). One latent nearly constant: standardising would change the fit.
    factors = grid_factors((2, 3, 4), tiles=20)
    codes = factors * np.array([1.0, 1e-3, 1.0]) + np.random.default_rng(0).normal(
        scale=0.05, size=factors.shape) * np.array([1.0, 1e-3, 1.0])
    sizes = {"num_train": 200, "num_eval": 100, "batch_size": 8}
    scores = compute_beta_vae_score(codes, factors, np.random.default_rng(3), **sizes)
    rng = np.random.default_rng(3)
    truth = as_ground_truth(codes, factors)
    x_train, y_train = _points(truth, [0, 1, 2], 200, 8, rng)
    x_eval, y_eval = _points(truth, [0, 1, 2], 100, 8, rng)
    oracle = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    assert scores["beta_vae_score.eval_accuracy"] == oracle.score(x_eval, y_eval)
    assert scores["beta_vae_score.train_accuracy"] == oracle.score(x_train, y_train)
    standard = compute_beta_vae_score(codes, factors, np.random.default_rng(3), **sizes,
                                      scaling="standardize")
    assert standard["beta_vae_score.eval_accuracy"] > scores["beta_vae_score.eval_accuracy"]


# -- IRS -----------------------------------------------------------------------------------------


def _irs_case():
    # One latent, one factor with two values; groups [0, 1, 5] and [10, 11, 15].
    codes = np.array([0.0, 1.0, 5.0, 10.0, 11.0, 15.0])[:, None]
    factors = np.array([0, 0, 0, 1, 1, 1])[:, None]
    return codes, factors


def test_irs_known_answer():
    # Group means 2 and 12, |deviations| [2, 1, 3] in both; the latent's largest deviation from
    # its mean 7 is 8. Quantile 0.5 of [1, 2, 3] is 2: IRS = 1 - 2/8. Quantile 0.99 (linear
    # interpolation) is 2 + 0.98 = 2.98: IRS = 1 - 2.98/8.
    codes, factors = _irs_case()
    assert irs_from_codes(codes, factors, diff_quantile=0.5) == pytest.approx(0.75, abs=1e-12)
    assert irs_from_codes(codes, factors, diff_quantile=0.99) == pytest.approx(1 - 2.98 / 8)
    scores = compute_irs(codes, factors, np.random.default_rng(0), num_train=6)
    assert scores["irs"] == pytest.approx(1 - 2.98 / 8, abs=1e-12)


def _dlib_irs(codes, factors, diff_quantile=0.99, num_bins=20):
    """disentanglement_lib's irs.py (scalable_disentanglement_score on 20-bin factors),
    transcribed with its (num_factors, num_points) layout."""
    ys = factors.T.astype(float)
    ys_discrete = np.zeros_like(ys)
    for i in range(ys.shape[0]):
        ys_discrete[i, :] = np.digitize(ys[i, :], np.histogram(ys[i, :], num_bins)[1][:-1])
    mus = codes.T
    mus = mus[np.std(mus, axis=1) > 0.0, :]
    gen_factors, latents = ys_discrete.T, mus.T
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros([latents.shape[1], gen_factors.shape[1]])
    for i in range(gen_factors.shape[1]):
        unique_factors = np.unique(gen_factors[:, i], axis=0)
        for k in range(unique_factors.shape[0]):
            match = gen_factors[:, i] == unique_factors[k]
            e_loc = np.mean(latents[match, :], axis=0)
            diffs = np.abs(latents[match, :] - e_loc)
            cum_deviations[:, i] += np.percentile(diffs, q=diff_quantile * 100, axis=0)
        cum_deviations[:, i] /= unique_factors.shape[0]
    irs_matrix = 1.0 - cum_deviations / max_deviations[:, np.newaxis]
    return float(np.average(irs_matrix.max(axis=1), weights=max_deviations))


def test_irs_reproduces_disentanglement_lib_with_binned_factors():
    factors = grid_factors((3, 40, 32), tiles=1)  # 40 and 32 values: 20 bins merge them
    rng = np.random.default_rng(0)
    codes = factors @ rng.normal(size=(3, 4)) + rng.normal(scale=2.0, size=(len(factors), 4))
    n = len(factors)
    binned = compute_irs(codes, factors, np.random.default_rng(0), num_train=n)["irs"]
    indices = compute_irs(codes, factors, np.random.default_rng(0), num_train=n,
                          factors="indices")["irs"]
    assert binned == pytest.approx(_dlib_irs(codes, factors), abs=1e-12)
    assert abs(binned - indices) > 1e-4


# -- DCI, modularity, explicitness -----------------------------------------------------------------


def test_dci_known_answer():
    # R (D=3, F=2). Rows: [1/2, 1/2] has entropy 1 bit (base F = 2), [1, 0] and [0, 1] none;
    # row weights 2/4, 1/4, 1/4: disentanglement = 0.5 * 0 + 0.25 + 0.25. Columns [1/2, 1/2, 0]
    # have entropy log 2 / log 3 in base D = 3; completeness = 1 - log 2 / log 3.
    importance = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    disentanglement, completeness = dci_from_importance(importance)
    assert disentanglement == pytest.approx(0.5, abs=1e-8)
    assert completeness == pytest.approx(1 - math.log(2) / math.log(3), abs=1e-8)


def test_modularity_known_answer():
    # m = [2, 1, 1]: squared [4, 1, 1]; 1 - (6 - 4) / (4 * (3 - 1)) = 0.75. A latent with no
    # information scores 0; a latent on one factor scores 1.
    mi = np.array([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    assert modularity_from_mi(mi) == pytest.approx((0.75 + 0.0 + 1.0) / 3, abs=1e-12)


def test_explicitness_known_answer():
    # One latent, one binary factor: the one-vs-rest ROC AUCs of a monotone classifier are the
    # latent's own AUC. Positives {2, 4, 5}, negatives {0, 1, 3}: 8 of 9 pairs ordered, 8/9.
    x = np.tile(np.arange(6.0), 50)[:, None]
    y = np.tile([0, 0, 1, 0, 1, 1], 50)[:, None]
    scores = compute_modularity_explicitness(x, y, np.random.default_rng(0), num_train=300,
                                             num_test=0)
    assert scores["explicitness_train"] == pytest.approx(8 / 9, abs=1e-12)


# -- FactorVAE score: evaluation votes, not training votes ----------------------------------------


def test_factor_vae_score_evaluates_on_fresh_votes(monkeypatch):
    # Training votes V = [[5, 1], [0, 4]]: latent 0 -> factor 0, latent 1 -> factor 1, train
    # accuracy 9/10. Evaluation votes [[2, 3], [1, 4]]: accuracy (2 + 4) / 10.
    counts = iter([np.array([[5, 1], [0, 4]]), np.array([[2, 3], [1, 4]])])
    monkeypatch.setattr(factor_vae_module, "_votes", lambda *args, **kwargs: next(counts))
    factors = grid_factors((2, 3), tiles=10)
    scores = factor_vae_module.compute_factor_vae_score(
        factors.astype(float), factors, np.random.default_rng(0), num_variance_estimate=60)
    assert scores["factor_vae_score.train_accuracy"] == pytest.approx(0.9)
    assert scores["factor_vae_score.eval_accuracy"] == pytest.approx(0.6)


# -- mig_chen: normalised by the empirical factor entropy -----------------------------------------


def test_mig_chen_normalises_by_the_empirical_entropy():
    # An unbalanced binary factor (1 : 3) in its own sharp latent, plus a balanced one: each
    # latent's MI equals its factor's entropy, so both gaps are 1 with the empirical entropy
    # (H = 0.562 nats for the unbalanced one, not log 2).
    f0 = np.array([0, 1, 1, 1] * 2)
    f1 = np.repeat([0, 1], 4)
    factors = np.stack([f0, f1], axis=1)
    mu = factors * 10.0
    logvar = np.full(mu.shape, math.log(1e-4))
    scores = compute_mig_chen((mu, logvar), factors, np.random.default_rng(0))
    assert scores["mig_chen"] == pytest.approx(1.0, abs=1e-3)


# -- unsupervised ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cov", [
    [[1.0, 0.6], [0.6, 1.0]],
    [[4.0, 1.2, 0.0], [1.2, 1.0, 0.3], [0.0, 0.3, 2.0]],
])
def test_gaussian_wasserstein_known_answer(cov):
    cov = np.array(cov)
    # W2^2(N(0, S), N(0, Dg)) = tr S + tr Dg - 2 tr (Dg^1/2 S Dg^1/2)^1/2 (Gelbrich / Dowson &
    # Landau), with Dg = diag(S); for unit variances and correlation rho, 4 - 2 (sqrt(1 + rho)
    # + sqrt(1 - rho)).
    half = np.diag(np.sqrt(np.diag(cov)))
    expected = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(half @ cov @ half)).real
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(expected, rel=1e-9)
    if len(cov) == 2:
        assert expected == pytest.approx(4 - 2 * (math.sqrt(1.6) + math.sqrt(0.4)), rel=1e-12)


def test_mutual_info_score_known_answer():
    # z0 = z1 a fair bit, z2 an independent fair bit (an exact grid): I(z0; z1) = log 2 for the
    # two ordered pairs, 0 for the other four: the mean over D^2 - D = 6 pairs is log 2 / 3.
    bits = grid_factors((2, 2), tiles=50)
    codes = np.stack([bits[:, 0], bits[:, 0], bits[:, 1]], axis=1).astype(float)
    score = compute_mutual_info_score(codes, None, np.random.default_rng(0), num_train=200)
    assert score["mutual_info_score"] == pytest.approx(math.log(2) / 3, abs=1e-12)


def test_discretize_keeps_float32_edges():
    # A value that lies on a float64 edge but not on the float32 one bins differently: the bins
    # must come from the codes' own type, as numpy's histogram (and so disentanglement_lib) does.
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(1000, 3)).astype(np.float32)
    expected = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) - 1 for c in codes.T], 1)
    np.testing.assert_array_equal(discretize(codes, 20), expected)
    assert np.histogram(codes[:, 0], 20)[1].dtype == np.float32


def test_float32_codes_are_binned_with_float32_edges():
    # A float32 value on a float32 bin edge that lies below the float64 edge: numpy (and so
    # disentanglement_lib) puts it in the upper bin; float64 edges would put it one lower.
    ends = np.array([0.0, 0.7], dtype=np.float32)
    edges32 = np.histogram_bin_edges(ends, 20)
    edges64 = np.histogram_bin_edges(ends.astype(np.float64), 20)
    candidates = [k for k in range(1, 20) if float(edges32[k]) < edges64[k]]
    assert candidates, "the test needs an edge where float32 rounds down"
    k = candidates[0]
    column = np.array([0.0, 0.7, edges32[k]], dtype=np.float32)[:, None]
    assert discretize(column)[2, 0] == k
    assert discretize(column.astype(np.float64))[2, 0] == k - 1


def test_mig_normalises_by_the_empirical_factor_entropy():
    from vaelab.metrics.mig import compute_mig

    # an unbalanced factor (counts 1, 1, 8): latent 0 is the factor, latent 1 is constant, so
    # MI_0 = H(v) and MI_1 = 0 and MIG = H(v) / H(v) = 1 (not H(v) / log 3 = 0.58)
    factor = np.array([0, 1, 2, 2, 2, 2, 2, 2, 2, 2])
    codes = np.stack([factor.astype(np.float64), np.zeros(10)], axis=1)
    score = compute_mig(codes, factor[:, None], num_train=10)
    assert score["mig"] == pytest.approx(1.0)


def test_active_units_counts_variances_above_the_threshold():
    from vaelab.metrics.unsupervised import compute_active_units

    rng = np.random.default_rng(0)
    # sample variances ~0.0025, ~0.04 and ~1 against the threshold 0.01: two active
    codes = rng.normal(size=(4000, 3)) * np.array([0.05, 0.2, 1.0])
    scores = compute_active_units(codes, None, num_train=4000, threshold=0.01)
    assert scores["active_units"] == 2.0 and scores["active_units.fraction"] == pytest.approx(2 / 3)
