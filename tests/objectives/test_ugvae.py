"""UG-VAE: the pooled global posterior, each term against torch.distributions, the options."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from vaelab.data.base import Batch
from vaelab.factory import create_model, create_objective
from vaelab.models.ugvae import UGVAEConfig, UGVAEOutput, pool_experts
from vaelab.objectives.ugvae import UGVAEObjectiveConfig, local_kl


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


def _output(B=5, K=3, Dz=2, Db=2, seed=0) -> UGVAEOutput:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    return UGVAEOutput(m=r(B, Dz), logvar_z=r(B, Dz, scale=0.3), z=r(B, Dz),
                       pi_logits=r(B, K), mu_beta=r(1, Db), logvar_beta=r(1, Db, scale=0.3),
                       beta=r(1, Db), prior_mu=r(K, Dz), prior_logvar=torch.tanh(r(K, Dz)),
                       logits=r(B, 1, 2, 2))


def _normal(mu, logvar):
    return D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)


def test_every_term_against_torch_distributions():
    out = _output()
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    terms = create_objective("ugvae", var_x=0.2)(out, x, torch.tensor(1))
    recon = -D.Normal(torch.sigmoid(out.logits), math.sqrt(0.2)).log_prob(x).sum()
    pi = torch.softmax(out.pi_logits, -1)
    kl_z = (pi * D.kl_divergence(_normal(out.m[:, None], out.logvar_z[:, None]),
                                 _normal(out.prior_mu[None], out.prior_logvar[None]))).sum()
    kl_d = D.kl_divergence(D.Categorical(logits=out.pi_logits),
                           D.Categorical(probs=torch.full((5, 3), 1 / 3.0))).sum()
    kl_beta = D.kl_divergence(_normal(out.mu_beta, out.logvar_beta),
                              _normal(torch.zeros(1, 2), torch.zeros(1, 2))).sum()
    for name, value in (("recon", recon), ("kl_z", kl_z), ("kl_d", kl_d), ("kl_beta", kl_beta)):
        torch.testing.assert_close(terms[name], value, msg=name)
    torch.testing.assert_close(terms["loss"], recon + kl_z + kl_d + kl_beta)
    mean = create_objective("ugvae", var_x=0.2, reduction="mean")(out, x, torch.tensor(1))
    torch.testing.assert_close(mean["loss"], terms["loss"] / 5)  # KL_beta shared: 1/B each


def test_monte_carlo_estimator_is_the_log_ratio_at_the_sample():
    out = _output(seed=2)
    pi = torch.softmax(out.pi_logits, -1)
    log_q = _normal(out.m, out.logvar_z).log_prob(out.z)
    log_p = _normal(out.prior_mu[None], out.prior_logvar[None]).log_prob(out.z[:, None])
    torch.testing.assert_close(local_kl(out, pi, "monte_carlo"), log_q - (pi * log_p).sum(-1))


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


def test_training_steps_on_pure_domain_batches(tmp_path):
    import vaelab

    config = {"name": "u", "seed": 1, "model": {"name": "ugvae", "K": 3, "z_dim": 4,
                                                "beta_dim": 3},
              "objective": {"name": "ugvae", "reduction": "mean"},
              "data": {"name": "dsprites_domains", "limit": 64, "batches": "pure"},
              "train": {"steps": 4, "batch_size": 16, "log_every": 2, "metrics": [],
                        "progress": False, "checkpoint_every": 0}}
    run = vaelab.train(config=config, out=tmp_path, verbose=False)
    assert run.step == 4 and (tmp_path / "u" / "cluster_samples.png").is_file()
    assert {"kl_beta", "kl_z", "kl_d"} <= set(run.log)
    assert isinstance(run.model(Batch(run.dataset().batch(torch.arange(4))).x), UGVAEOutput)
