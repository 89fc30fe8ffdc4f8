"""kl_decomposition: the blocked MSS decomposition against brute force and its sum rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab.metrics.decomposition import compute_kl_decomposition, mss_decomposition


def _posteriors(b=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(b, d))
    logvar = rng.normal(scale=0.3, size=(b, d)) - 1.0
    z = mu + np.exp(0.5 * logvar) * rng.normal(size=(b, d))
    return z, mu, logvar


def _brute_force(z, mu, logvar, n):
    """MSS (Chen et al. App. C.2) from torch.distributions, one code at a time: weights 1/N for
    the code's own posterior, (N - M)/(N M) for the next one (cyclically), 1/M for the rest."""
    b, m = len(z), len(z) - 1
    posterior = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar)))
    mi = tc = dw = 0.0
    for i in range(b):
        w = np.full(b, 1.0 / m)
        w[i], w[(i + 1) % b] = 1.0 / n, (n - m) / (n * m)
        log_q = posterior.log_prob(torch.tensor(z[i])[None]).numpy()  # (B, D): log q(z_id|x_j)
        log_qz = np.log(np.sum(w * np.exp(log_q.sum(1))))
        log_prod = np.sum(np.log(np.sum(w[:, None] * np.exp(log_q), axis=0)))
        log_qz_x = log_q[i].sum()
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(torch.tensor(z[i])).sum().item()
        mi += (log_qz_x - log_qz) / b
        tc += (log_qz - log_prod) / b
        dw += (log_prod - log_pz) / b
    return {"mi": mi, "tc": tc, "dw_kl": dw}


@pytest.mark.parametrize("block", [7, 256])
def test_blocked_decomposition_matches_brute_force(block):
    z, mu, logvar = _posteriors()
    got = mss_decomposition(z, mu, logvar, dataset_size=1000, block=block)
    expected = _brute_force(z, mu, logvar, 1000)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def test_sum_is_the_one_sample_kl():
    z, mu, logvar = _posteriors(b=64, d=4, seed=1)
    got = mss_decomposition(z, mu, logvar, dataset_size=500)
    q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar)))
    p = torch.distributions.Normal(0.0, 1.0)
    kl = (q.log_prob(torch.tensor(z)) - p.log_prob(torch.tensor(z))).sum(1).mean().item()
    assert got["mi"] + got["tc"] + got["dw_kl"] == pytest.approx(kl, abs=1e-9)


def test_sharp_separated_posteriors_have_mi_log_n():
    # The whole dataset as the batch, sharp posteriors far apart: q(z_i) = q(z_i|x_i) / N.
    n, d = 50, 2
    mu = np.arange(n * d, dtype=float).reshape(n, d) * 100
    logvar = np.full((n, d), math.log(1e-4))
    got = mss_decomposition(mu, mu, logvar, dataset_size=n)
    assert got["mi"] == pytest.approx(math.log(n), abs=1e-6)


def test_metric_on_arrays_needs_variances_and_reports_the_batch():
    z, mu, logvar = _posteriors(b=300)
    scores = compute_kl_decomposition((mu, logvar), None, np.random.default_rng(0),
                                      batch_size=200)
    assert scores["kl_decomposition.batch_size"] == 200
    assert np.isfinite([scores[f"kl_decomposition.{k}"] for k in ("mi", "tc", "dw_kl")]).all()
