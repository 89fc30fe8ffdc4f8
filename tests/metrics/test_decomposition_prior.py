"""kl_decomposition (issue 35): the exact 1/N mixture when the batch is the whole dataset, and
no dw_kl against N(0, I) for models whose prior is a mixture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab.data.base import ImageDataset
from vaelab.metrics.decomposition import compute_kl_decomposition, mss_decomposition
from vaelab.metrics.ground_truth import as_ground_truth, model_encoder
from vaelab.models.gmvae import GMVAE, GMVAEConfig, SeedVAE, SeedVAEConfig
from vaelab.models.ugvae import UGVAE, UGVAEConfig


def _exact(z, mu, logvar):
    """mi, tc, dw_kl with q(z) = (1/N) sum_j q(z|x_j) over all N items, from torch.distributions."""
    n = len(z)
    posterior = torch.distributions.Normal(torch.tensor(mu)[None], torch.tensor(logvar)[None]
                                           .mul(0.5).exp())
    log_q = posterior.log_prob(torch.tensor(z)[:, None])  # (i, j, D): log q(z_id | x_j)
    log_qz = log_q.sum(-1).logsumexp(1) - math.log(n)
    log_prod = (log_q.logsumexp(1) - math.log(n)).sum(-1)
    log_qz_x = log_q.diagonal(dim1=0, dim2=1).sum(0)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(torch.tensor(z)).sum(-1)
    return {"mi": (log_qz_x - log_qz).mean().item(), "tc": (log_qz - log_prod).mean().item(),
            "dw_kl": (log_prod - log_pz).mean().item()}


def _posteriors(n=7, d=3, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, d))
    logvar = rng.normal(scale=0.3, size=(n, d)) - 0.5
    return mu + np.exp(0.5 * logvar) * rng.normal(size=(n, d)), mu, logvar


def test_a_whole_dataset_batch_uses_the_exact_mixture():
    z, mu, logvar = _posteriors()
    got = mss_decomposition(z, mu, logvar, dataset_size=len(z))
    expected = _exact(z, mu, logvar)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-10), key
    # with one more item in the dataset, the MSS weights (another number) are used
    assert mss_decomposition(z, mu, logvar, dataset_size=len(z) + 1)["mi"] != \
        pytest.approx(expected["mi"], abs=1e-3)


def test_the_metric_on_a_small_held_out_set_is_the_exact_decomposition():
    z, mu, logvar = _posteriors(n=9, seed=1)
    scores = compute_kl_decomposition((mu, logvar), None, np.random.default_rng(3))  # 9 < 4096
    rng = np.random.default_rng(3)
    rng.choice(9, size=9, replace=False)  # the metric's draws: the items, then the codes
    codes = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    expected = _exact(codes, mu, logvar)
    for key in expected:
        assert scores[f"kl_decomposition.{key}"] == pytest.approx(expected[key], abs=1e-10)


def _images(n=6, size=4):
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8))


@pytest.mark.parametrize(("model", "standard"), [
    (lambda: GMVAE(GMVAEConfig(z_dim=2, w_dim=2, K=3, hidden_dim=8, image_height=4,
                               image_width=4)), False),
    (lambda: UGVAE(UGVAEConfig(architecture="k_vae", z_dim=2, beta_dim=2, K=3, image_size=4)),
     False),
    (lambda: SeedVAE(SeedVAEConfig(z_dim=2, hidden_dim=8, image_height=4, image_width=4)), True),
], ids=["gmvae", "ugvae", "seed_vae"])
def test_dw_kl_only_for_a_standard_normal_prior(model, standard):
    torch.manual_seed(0)
    net = model().eval()
    assert net.standard_normal_prior is standard
    truth = as_ground_truth(model_encoder(net), _images())
    assert truth.standard_normal_prior is standard
    scores = compute_kl_decomposition(truth, None, np.random.default_rng(0))
    assert ("kl_decomposition.dw_kl" in scores) is standard
    assert np.isfinite([scores["kl_decomposition.mi"], scores["kl_decomposition.tc"]]).all()
