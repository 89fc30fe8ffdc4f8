"""Known answers, invariances, bounds and determinism of every registered metric (small sizes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from metric_data import grid_factors, identity_codes

import vaelab.metrics  # noqa: F401  (fills METRICS)
from vaelab.errors import VaelabError
from vaelab.metrics.dci import dci_from_importance
from vaelab.metrics.properties import (
    BOUNDED_0_1,
    NEEDS_POSTERIOR,
    PERMUTATION_INVARIANT,
    RESCALING_INVARIANT,
    SUPERVISED,
    UNSUPERVISED,
)
from vaelab.registry import METRICS


@pytest.fixture
def factors() -> np.ndarray:
    return grid_factors()


@pytest.fixture
def identity(factors) -> np.ndarray:
    return identity_codes(factors)

SMALL = {"num_train": 400, "num_test": 80}
SIZES = {
    "mig": {"num_train": 480},
    "aam": {"num_train": 480},
    "factor_vae_score": {"num_train": 300, "num_eval": 100, "num_variance_estimate": 480,
                         "batch_size": 16},
    "beta_vae_score": {"num_train": 300, "num_eval": 100, "batch_size": 16},
    "dci": {"num_train": 120, "num_test": 60},  # gradient boosting: keep it tiny
    "dci_fast": SMALL,
    "sap": SMALL,
    "modularity_explicitness": SMALL,
    "irs": {"num_train": 480},
    "gaussian_total_correlation": {"num_train": 480},
    "gaussian_wasserstein_correlation": {"num_train": 480},
    "mutual_info_score": {"num_train": 480},
    "active_units": {"num_train": 480},
    "clustering": {"num_train": 480},
    "mig_chen": {"n_samples": 200},
    "kl_decomposition": {"batch_size": 200},
}
ARRAY_METRICS = sorted(set(METRICS.names()) - NEEDS_POSTERIOR)


def score(name, codes, factors, seed=0):
    return METRICS.get(name)(codes, factors, np.random.default_rng(seed), **SIZES[name])


def test_every_registered_metric_has_test_sizes_and_properties():
    assert set(METRICS.names()) == set(SIZES)
    assert set(METRICS.names()) == SUPERVISED | UNSUPERVISED | {"clustering"}


# -- known answers -------------------------------------------------------------------------------

# metric -> {key: lower bound for the identity}
IDENTITY_NEAR_ONE = {
    "mig": {"mig": 0.95},
    "aam": {"aam": 0.95},
    "factor_vae_score": {"factor_vae_score.eval_accuracy": 0.99},
    "beta_vae_score": {"beta_vae_score.eval_accuracy": 0.99},
    "dci": {"dci.disentanglement": 0.95, "dci.completeness": 0.95,
            "dci.informativeness_test": 0.99},
    "dci_fast": {"dci_fast.disentanglement": 0.95, "dci_fast.completeness": 0.95},
    "modularity_explicitness": {"modularity": 0.95, "explicitness_test": 0.95},
}


@pytest.mark.parametrize("name", sorted(IDENTITY_NEAR_ONE))
def test_identity_and_permuted_rescaled_identity_score_about_one(name, factors, identity):
    transformed = identity[:, [2, 0, 1]] * np.array([3.0, 0.5, 7.0])
    for codes in (identity, transformed):
        result = score(name, codes, factors)
        for key, low in IDENTITY_NEAR_ONE[name].items():
            assert result[key] >= low, key


def test_irs_of_a_tight_identity_is_about_one(factors):
    assert score("irs", identity_codes(factors, jitter=0.005), factors)["irs"] >= 0.98


def test_sap_of_binary_factors_identity_is_one_minus_chance():
    # SAP's second-best latent still classifies a balanced binary factor at chance (1/2), so the
    # identity scores 1 - 1/2 (an SAP property, as in disentanglement_lib).
    factors = grid_factors((2, 2, 2), tiles=60)
    assert score("sap", identity_codes(factors), factors)["sap"] == pytest.approx(0.5, abs=0.08)


def test_clustering_of_separated_clusters_is_perfect():
    labels = np.repeat(np.arange(4), 120)
    rng = np.random.default_rng(0)
    codes = np.eye(4)[labels] * 10 + rng.normal(scale=0.1, size=(480, 4))
    scores = score("clustering", codes, labels)
    assert scores["clustering.nmi"] == pytest.approx(1.0)
    assert scores["clustering.ari"] == pytest.approx(1.0)
    assert scores["clustering.accuracy"] == pytest.approx(1.0)


ZERO_FOR_CONSTANT = [("mig", "mig"), ("aam", "aam"), ("dci", "dci.disentanglement"),
                     ("dci_fast", "dci_fast.disentanglement"), ("sap", "sap"),
                     ("modularity_explicitness", "modularity"), ("irs", "irs"),
                     ("factor_vae_score", "factor_vae_score.eval_accuracy"),
                     ("mutual_info_score", "mutual_info_score"), ("active_units", "active_units")]


@pytest.mark.parametrize(("name", "key"), ZERO_FOR_CONSTANT)
def test_constant_representation_scores_zero(name, key, factors):
    assert score(name, np.full((len(factors), 3), 0.7), factors)[key] == pytest.approx(0.0, abs=1e-9)


# Noise: independent of the factors. Accuracy-type scores fall to chance (1/3 for 3 factors).
NOISE_BOUNDS = [("mig", "mig", 0.05), ("aam", "aam", 0.05), ("sap", "sap", 0.05),
                ("dci_fast", "dci_fast.disentanglement", 0.05),
                ("factor_vae_score", "factor_vae_score.eval_accuracy", 0.5),
                ("beta_vae_score", "beta_vae_score.eval_accuracy", 0.5),
                ("modularity_explicitness", "explicitness_test", 0.6)]


@pytest.mark.parametrize(("name", "key", "high"), NOISE_BOUNDS)
def test_independent_noise_scores_about_zero_or_chance(name, key, high, factors):
    noise = np.random.default_rng(5).normal(size=(len(factors), 3))
    assert score(name, noise, factors)[key] <= high


def test_duplicated_latents_give_mig_and_aam_zero(factors, identity):
    duplicated = np.concatenate([identity, identity], axis=1)
    assert score("mig", duplicated, factors)["mig"] == pytest.approx(0.0, abs=1e-12)
    assert score("aam", duplicated, factors)["aam"] == pytest.approx(0.0, abs=1e-12)


def _rotate_last_two(codes, angle=math.pi / 4):
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    out = codes.copy()
    out[:, 1:] = codes[:, 1:] @ rotation
    return out


ROTATION_LOWER = [("mig", "mig"), ("aam", "aam"), ("sap", "sap"), ("irs", "irs"),
                  ("factor_vae_score", "factor_vae_score.eval_accuracy"),
                  ("beta_vae_score", "beta_vae_score.eval_accuracy"),
                  ("dci", "dci.disentanglement"), ("dci_fast", "dci_fast.disentanglement"),
                  ("modularity_explicitness", "modularity")]


@pytest.mark.parametrize(("name", "key"), ROTATION_LOWER)
def test_entangled_rotation_scores_lower_than_identity(name, key, factors, identity):
    assert score(name, _rotate_last_two(identity), factors)[key] < score(name, identity, factors)[key] - 0.05


def test_unsupervised_scores_see_dependence(factors, identity):
    rotated = _rotate_last_two(identity * np.array([1.0, 1.0, 2.0]))  # unequal spreads: correlated
    for name, key in [("gaussian_total_correlation", "gaussian_total_correlation"),
                      ("gaussian_wasserstein_correlation", "gaussian_wasserstein_correlation"),
                      ("mutual_info_score", "mutual_info_score")]:
        assert score(name, rotated, factors)[key] > score(name, identity, factors)[key] + 0.01
    assert score("gaussian_total_correlation", identity, factors)["gaussian_total_correlation"] < 1e-2


def test_gaussian_total_correlation_known_value():
    # Two unit Gaussians with correlation rho: TC = -0.5 log(1 - rho^2).
    rho = 0.6
    cov = np.array([[1.0, rho], [rho, 1.0]])
    codes = np.random.default_rng(0).multivariate_normal([0, 0], cov, size=200_000)
    tc = METRICS.get("gaussian_total_correlation")(codes, None, np.random.default_rng(0),
                                                   num_train=200_000)
    assert tc["gaussian_total_correlation"] == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.01)


# -- invariances, bounds, determinism --------------------------------------------------------------


# The properties are exact; only float rounding (summation order in the solvers, bin edges
# computed from rescaled values) separates the two runs. The tree ensembles of dci/dci_fast draw
# candidate features at random, so permuting or rescaling the columns changes which trees grow:
# they get a statistical tolerance.
INVARIANCE_TOLERANCE = {"dci": 0.03, "dci_fast": 0.03}
# Invariant with their named option only (disentanglement_lib's defaults depend on the units).
RESCALING_OPTIONS = {"sap": {"scaling": "standardize"}, "beta_vae_score": {"scaling": "standardize"}}


@pytest.mark.parametrize("name", sorted(PERMUTATION_INVARIANT - NEEDS_POSTERIOR))
def test_permutation_invariance(name, factors):
    codes = _rotate_last_two(identity_codes(factors), 0.3)
    base = score(name, codes, factors)
    permuted = score(name, codes[:, [1, 2, 0]], factors)
    assert permuted.keys() == base.keys()
    for key in base:
        assert permuted[key] == pytest.approx(base[key], abs=INVARIANCE_TOLERANCE.get(name, 1e-9)), key


@pytest.mark.parametrize("name", sorted((RESCALING_INVARIANT - {"mig_chen"}) | set(RESCALING_OPTIONS)))
def test_positive_rescaling_invariance(name, factors):
    codes = _rotate_last_two(identity_codes(factors), 0.3)
    options = RESCALING_OPTIONS.get(name, {})
    base = METRICS.get(name)(codes, factors, np.random.default_rng(0), **SIZES[name], **options)
    rescaled = METRICS.get(name)(codes * np.array([4.0, 0.5, 2.5]), factors,
                                 np.random.default_rng(0), **SIZES[name], **options)
    for key in base:
        assert rescaled[key] == pytest.approx(base[key], abs=INVARIANCE_TOLERANCE.get(name, 1e-9)), key


def test_mutual_info_score_is_between_zero_and_log_bins(factors):
    for codes in (identity_codes(factors), np.random.default_rng(1).normal(size=(480, 4))):
        value = score("mutual_info_score", codes, factors)["mutual_info_score"]
        assert 0.0 <= value <= math.log(20)
    duplicated = np.repeat(identity_codes(factors)[:, :1], 2, axis=1)
    assert score("mutual_info_score", duplicated, factors)["mutual_info_score"] > 0.5


@pytest.mark.parametrize("name", sorted(set(BOUNDED_0_1) - {"mig_chen"}))  # see test_mig_chen.py
def test_scores_lie_in_unit_interval(name, factors):
    for codes in (identity_codes(factors), np.random.default_rng(1).normal(size=(480, 4))):
        result = score(name, codes, factors)
        assert BOUNDED_0_1[name]  # a listed metric names its bounded keys
        for key in BOUNDED_0_1[name]:
            assert -1e-12 <= result[key] <= 1 + 1e-12, key


@pytest.mark.parametrize("name", ARRAY_METRICS)
def test_same_seed_same_scores(name, factors):
    codes = _rotate_last_two(identity_codes(factors), 0.3)
    assert score(name, codes, factors, seed=3) == score(name, codes, factors, seed=3)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_codes_raise(bad, factors, identity):
    codes = identity.copy()
    codes[5, 1] = bad
    with pytest.raises(VaelabError, match=r"NaN/inf.*latent dims \[1\]"):
        score("mig", codes, factors)


def test_mismatched_lengths_raise(factors, identity):
    with pytest.raises(ValueError, match="mismatched lengths: 479 codes but 480"):
        score("mig", identity[:-1], factors)


@pytest.mark.parametrize("name", sorted(SUPERVISED - NEEDS_POSTERIOR))
def test_supervised_metric_without_factors_raises(name, identity):
    with pytest.raises(VaelabError, match=f"metric '{name}' needs ground-truth factors"):
        METRICS.get(name)(identity, None, np.random.default_rng(0))


def test_unknown_metric_name_lists_known_ones():
    with pytest.raises(KeyError, match="unknown metric 'migg'.*known metrics: aam"):
        METRICS.get("migg")


@pytest.mark.heavy  # joblib worker processes and six boosted fits, ~5 s
def test_dci_in_parallel_gives_the_same_numbers():
    from sklearn.ensemble import GradientBoostingClassifier

    factors = grid_factors(sizes=(2, 3))  # two factors keep the six boosted fits short
    codes = identity_codes(factors) + np.random.default_rng(1).normal(0, 0.5, factors.shape)
    options = {"num_train": 80, "num_test": 40}
    serial = METRICS.get("dci")(codes, factors, np.random.default_rng(4), n_jobs=1, **options)
    parallel = METRICS.get("dci")(codes, factors, np.random.default_rng(4), n_jobs=2, **options)
    assert parallel == serial
    # the loop it replaced: one seed per factor drawn in order, then fit and score
    rng = np.random.default_rng(4)
    order = rng.permutation(len(codes))
    train, test = order[:80], order[80:120]
    importance, accuracy = [], []
    for k in range(factors.shape[1]):
        model = GradientBoostingClassifier(random_state=int(rng.integers(2**31)))
        model.fit(codes[train], factors[train, k])
        importance.append(np.abs(model.feature_importances_))
        accuracy.append(np.mean(model.predict(codes[test]) == factors[test, k]))
    expected = dci_from_importance(np.stack(importance, axis=1))
    assert (serial["dci.disentanglement"], serial["dci.completeness"]) == expected
    assert serial["dci.informativeness_test"] == float(np.mean(accuracy))
