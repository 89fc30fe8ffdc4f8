"""Chen et al.'s MIG estimator: closed-form entropies, the oracle grid of metrics.md §2.9."""

from __future__ import annotations

import math

import numpy as np
import pytest
from metric_data import grid_factors

from vaelab.errors import VaelabError
from vaelab.metrics.mig_chen import compute_mig_chen, estimate_entropies


def test_entropy_of_a_single_gaussian_component_is_closed_form():
    rng = np.random.default_rng(0)
    sigma = np.array([0.5, 2.0])
    samples = rng.normal(size=(20000, 2)) * sigma  # S samples of N(0, sigma^2)
    mu, logvar = np.zeros((1, 2)), np.log(sigma**2)[None]
    expected = 0.5 * np.log(2 * math.pi * math.e * sigma**2)
    # Monte-Carlo std of -log q is sqrt(1/2) per sample: 0.7 / sqrt(20000) = 0.005; allow 4x.
    np.testing.assert_allclose(estimate_entropies(samples, mu, logvar), expected, atol=0.02)


def test_each_latent_is_scored_on_its_own_samples():
    # The seed's `view` bug mixed latents; with the transpose a latent far from the others keeps
    # its own (tiny) entropy.
    mu = np.array([[0.0, 100.0], [1.0, 101.0]])
    logvar = np.full((2, 2), math.log(1e-4))
    samples = mu.copy()
    h = estimate_entropies(samples, mu, logvar)
    point = 0.5 * math.log(2 * math.pi * 1e-4) + math.log(2)  # -log((1/2) N(0; 0, 1e-4))
    np.testing.assert_allclose(h, [point, point], atol=1e-3)


def _oracle(sizes=(2, 3)):
    """One-hot code of each factor (scaled) in its own latents, plus a constant latent."""
    factors = grid_factors(sizes, tiles=1)
    mu = np.concatenate([np.eye(s)[factors[:, k]] * 10 for k, s in enumerate(sizes)], axis=1)
    mu = np.concatenate([mu, np.zeros((len(mu), 1))], axis=1)
    return factors, mu, np.full(mu.shape, math.log(1e-4))


def test_one_hot_codes_spread_each_factor_over_latents_and_score_zero():
    # Each one-hot latent of a factor carries the same information: the gap is 0.
    factors, mu, logvar = _oracle()
    scores = compute_mig_chen((mu, logvar), factors, np.random.default_rng(0), n_samples=100)
    assert scores["mig_chen"] == pytest.approx(0.0, abs=1e-3)
    assert scores["aam_chen"] == pytest.approx(0.0, abs=1e-3)


def test_oracle_with_one_latent_per_factor_scores_one_for_both():
    factors = grid_factors((2, 3), tiles=1)
    mu = np.concatenate([factors * 10.0, np.zeros((6, 1))], axis=1)
    logvar = np.full(mu.shape, math.log(1e-4))
    scores = compute_mig_chen((mu, logvar), factors, np.random.default_rng(0))
    assert scores["mig_chen"] == pytest.approx(1.0, abs=1e-3)
    assert scores["aam_chen"] == pytest.approx(1.0, abs=1e-3)
    # Duplicating the latents drives both to 0; a constant encoder gives 0.
    dup = compute_mig_chen((np.tile(mu, 2), np.tile(logvar, 2)), factors, np.random.default_rng(0))
    assert dup["mig_chen"] == pytest.approx(0.0, abs=1e-3)
    assert dup["aam_chen"] == pytest.approx(0.0, abs=1e-3)
    const = compute_mig_chen((np.zeros_like(mu), logvar), factors, np.random.default_rng(0),
                             use_mean=True)
    assert const["mig_chen"] == pytest.approx(0.0, abs=1e-6)
    assert const["aam_chen"] == 0.0


def test_permutation_and_posterior_rescaling_invariance():
    factors = grid_factors((2, 3), tiles=3)
    rng = np.random.default_rng(1)
    mu = factors + 0.3 * rng.normal(size=factors.shape)
    mu = np.concatenate([mu, rng.normal(size=(len(mu), 1))], axis=1)
    logvar = np.full(mu.shape, math.log(0.05))
    base = compute_mig_chen((mu, logvar), factors, np.random.default_rng(2))
    perm = [2, 0, 1]
    permuted = compute_mig_chen((mu[:, perm], logvar[:, perm]), factors, np.random.default_rng(2),
                                use_mean=True)
    base_mean = compute_mig_chen((mu, logvar), factors, np.random.default_rng(2), use_mean=True)
    c = np.array([3.0, 0.2, 5.0])
    rescaled = compute_mig_chen((mu * c, logvar + 2 * np.log(c)), factors, np.random.default_rng(2))
    for key in base:
        assert rescaled[key] == pytest.approx(base[key], abs=1e-4), key
        assert permuted[key] == pytest.approx(base_mean[key], abs=1e-6), key


def test_needs_posterior_variances():
    factors, mu, _ = _oracle()
    with pytest.raises(VaelabError, match="posterior variances"):
        compute_mig_chen(mu, factors, np.random.default_rng(0))


def test_non_grid_dataset_groups_by_labels():
    factors, mu, logvar = _oracle((2, 3))
    keep = np.array([0, 1, 2, 3, 4])  # drop one grid cell
    scores = compute_mig_chen((mu[keep], logvar[keep]), factors[keep], np.random.default_rng(0))
    assert 0.0 <= scores["mig_chen"] <= 1.0 + 1e-9


def test_values_pinned_from_the_implementation_before_cache_sized_blocks():
    # `pinned`: the implementation before cache-sized blocks (2^24 log-densities: one block
    # here, its float32 sums off by up to 8e-7); `exact`: the same estimator in float64. The
    # default 2^18 splits the samples into 24 blocks and sums them in float64.
    rng = np.random.default_rng(7)
    factors = grid_factors((3, 4, 5), tiles=40)  # 2,400 items
    mu = np.concatenate([factors + rng.normal(0, 0.3, factors.shape),
                         rng.normal(0, 1, (len(factors), 2))], 1)
    logvar = rng.normal(-2, 0.5, mu.shape)
    out = compute_mig_chen((mu.astype(np.float32), logvar.astype(np.float32)), factors,
                           np.random.default_rng(3), n_samples=500)
    pinned = {"mig_chen": 0.6146615994024109, "mig_chen.factor_0": 0.5551751121046217,
              "mig_chen.factor_1": 0.6386062653629118, "mig_chen.factor_2": 0.6502034207396994,
              "aam_chen": 0.9705398153796527}
    exact = {"mig_chen": 0.6146612363118247, "mig_chen.factor_0": 0.5551742845721707,
             "mig_chen.factor_1": 0.6386056010799859, "mig_chen.factor_2": 0.6502038232833173,
             "aam_chen": 0.9705391937083933}
    assert out.keys() == pinned.keys()
    for key, value in pinned.items():
        assert out[key] == pytest.approx(value, abs=1e-6), key
        assert out[key] == pytest.approx(exact[key], abs=5e-8), key


def test_block_size_does_not_change_entropies():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(3000, 4)), rng.normal(-3, 1, size=(3000, 4))
    z = mu[:700] + np.exp(0.5 * logvar[:700]) * rng.normal(size=(700, 4))
    old = estimate_entropies(z, mu, logvar, block=2**24)  # the earlier default: one block
    for block in (2**18, 2**14, 300):
        assert np.abs(estimate_entropies(z, mu, logvar, block=block) - old).max() < 1e-6


def test_samples_far_from_every_component_fall_back_to_a_log_sum_exp():
    # z = 1 under N(0, 1e-4): log q = -0.5 log(2 pi 1e-4) - 1 / (2e-4), whose exp underflows float32.
    mu, logvar = np.zeros((3, 1)), np.full((3, 1), math.log(1e-4))
    samples = np.array([[1.0], [0.0]])
    expected = -0.5 * (-0.5 * math.log(2 * math.pi * 1e-4) - 5000.0
                       - 0.5 * math.log(2 * math.pi * 1e-4))
    np.testing.assert_allclose(estimate_entropies(samples, mu, logvar), [expected], rtol=1e-6)


def test_tiles_and_workers_match_a_float64_log_sum_exp():
    from scipy.special import logsumexp

    rng = np.random.default_rng(1)
    mu, logvar = rng.normal(size=(5000, 3)), rng.normal(-4, 2, size=(5000, 3))
    z = mu[:300] + np.exp(0.5 * logvar[:300]) * rng.normal(size=(300, 3))
    log_q = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2
                    / np.exp(logvar[None]))  # (S, M, D)
    oracle = -(logsumexp(log_q, axis=1) - math.log(len(mu))).mean(axis=0)
    for tile, block, workers in ((1024, 2**18, 1), (1024, 2**18, 2), (97, 1000, 3), (5000, 2**24, 2)):
        got = estimate_entropies(z, mu, logvar, block=block, tile=tile, workers=workers)
        assert np.abs(got - oracle).max() < 1e-6, (tile, block, workers)
