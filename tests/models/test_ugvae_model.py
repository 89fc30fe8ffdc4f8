"""The UG-VAE model: the pooled global posterior (product of experts), its pieces and prior, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from vaelab.factory import create_model
from vaelab.models.ugvae import UGVAEConfig, pool_experts
from vaelab.objectives.ugvae import UGVAEObjectiveConfig


def test_pooled_posterior_is_the_normalised_product_of_the_experts():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 1, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 1, generator=g, dtype=torch.float64) * 0.5
    mu, pooled_logvar = pool_experts(mean, logvar)
    # brute force on a fine grid: prod_i N(b; a_i, v_i), normalised
    grid = torch.linspace(-6, 6, 200001, dtype=torch.float64)
    log_density = D.Normal(mean, (0.5 * logvar).exp()).log_prob(grid[None]).sum(0)
    weights = torch.softmax(log_density, 0)
    grid_mean = (weights * grid).sum()
    grid_var = (weights * (grid - grid_mean) ** 2).sum()
    assert mu.item() == pytest.approx(grid_mean.item(), abs=1e-6)
    assert pooled_logvar.exp().item() == pytest.approx(grid_var.item(), rel=1e-4)


def test_identical_experts_shrink_the_variance_like_one_over_b():
    for B in (1, 2, 7, 128):
        mu, logvar = pool_experts(torch.full((B, 3), 0.7), torch.full((B, 3), math.log(2.0)))
        torch.testing.assert_close(mu, torch.full((1, 3), 0.7))
        torch.testing.assert_close(logvar.exp(), torch.full((1, 3), 2.0 / B))


def test_model_pieces_and_the_prior():
    torch.manual_seed(0)
    model = create_model("ugvae", architecture="k_vae", image_size=28, K=4)
    x = torch.rand(6, 1, 28, 28)
    out = model(x)
    assert out.beta.shape == (1, 20) and out.prior_mu.shape == (4, 20)
    assert out.logits.shape == (6, 1, 28, 28)
    assert (out.prior_logvar.abs() <= 1).all()  # variances in [1/e, e]
    drawn = model.sample_prior(3000, torch.Generator().manual_seed(1), component=1)
    assert (drawn["d"] == 1).all() and torch.equal(drawn["beta"][0], drawn["beta"][-1])
    mu, logvar = model.prior_heads(drawn["beta"][:1])
    residual = (drawn["z"] - mu[1]) / torch.exp(0.5 * logvar[1])
    assert abs(residual.mean().item()) < 0.05 and abs(residual.std().item() - 1) < 0.05
    fixed = torch.full((1, 20), 0.3)
    assert torch.equal(model.sample_prior(2, beta=fixed)["beta"], fixed.expand(2, -1))
    # encoding pools over the batch it is given: a different batch, another global code
    model.eval()
    whole = model.posterior(x)["beta"]
    half = model.posterior(x[:3])["beta"]
    assert not torch.allclose(whole.mu, half.mu)
    assert (whole.logvar < half.logvar).all()  # more experts, a sharper posterior


def test_bad_inputs():
    model = create_model("ugvae", architecture="k_vae", image_size=28)
    with pytest.raises(ValueError, match="a batch of 1 has no group"):
        model(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="K must be >= 1"):
        UGVAEConfig(K=0)
    with pytest.raises(ValueError, match="takes 64x64"):
        UGVAEConfig(architecture="beta_vae", image_size=28)
    with pytest.raises(ValueError, match="reduction"):
        UGVAEObjectiveConfig(reduction="median")
