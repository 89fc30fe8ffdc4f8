"""Oracles for UG-VAE (issue 35): the estimator the objective uses, the hybrid as another
objective, reduction "sum" vs "mean" under Adam, the forward's wiring recomputed by hand, and
Monte Carlo validation terms."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import distributions as D

from vaelab.factory import create_objective
from vaelab.models.ugvae import UGVAE, UGVAEConfig, UGVAEOutput

STEP = torch.tensor(1)


def _normal(mu, logvar):
    return D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)


def _output(B=5, K=3, Dz=2, Db=2, seed=0) -> UGVAEOutput:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    return UGVAEOutput(m=r(B, Dz), logvar_z=r(B, Dz, scale=0.3), z=r(B, Dz),
                       pi_logits=r(B, K), mu_beta=r(1, Db), logvar_beta=r(1, Db, scale=0.3),
                       beta=r(1, Db), prior_mu=r(K, Dz), prior_logvar=torch.tanh(r(K, Dz)),
                       logits=r(B, 1, 2, 2))


def _model(seed=0, **options) -> UGVAE:
    torch.manual_seed(seed)
    return UGVAE(UGVAEConfig(architecture="k_vae", z_dim=2, beta_dim=2, K=3, image_size=28,
                             **options))


def test_the_objective_uses_its_estimator():
    out = _output(seed=3)
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pi = torch.softmax(out.pi_logits, -1)
    q = _normal(out.m, out.logvar_z)
    components = _normal(out.prior_mu, out.prior_logvar)  # batch (K,)
    sampled = (q.log_prob(out.z) - (pi * components.log_prob(out.z[:, None])).sum(-1)).sum()
    hybrid = (pi * D.kl_divergence(_normal(out.m[:, None], out.logvar_z[:, None]),
                                   components)).sum()
    mc = create_objective("ugvae", estimator="monte_carlo")(out, x, STEP)
    torch.testing.assert_close(mc["kl_z"], sampled)
    torch.testing.assert_close(create_objective("ugvae")(out, x, STEP)["kl_z"], hybrid)
    assert abs(sampled.item() - hybrid.item()) > 0.1


def test_the_hybrid_is_another_objective_in_one_dimension():
    # q(z|x) = N(0, 1), components N(-+2, 1) at the sampled beta, pi the Bayes-rule posterior of
    # the sampled z; z on the quantiles of q so a batch mean is E_q. KL(q || N(+-2, 1)) = 2 for
    # both components: the hybrid is 2 per image; the ELBO's term (monte_carlo) is 1.459 less.
    n = 20000
    z = D.Normal(0.0, 1.0).icdf((torch.arange(n, dtype=torch.float64) + 0.5) / n)[:, None]
    prior_mu = torch.tensor([[-2.0], [2.0]], dtype=torch.float64)
    zeros = torch.zeros(n, 1, dtype=torch.float64)
    out = UGVAEOutput(m=zeros, logvar_z=zeros, z=z,
                      pi_logits=D.Normal(prior_mu[:, 0], 1.0).log_prob(z),
                      mu_beta=zeros[:1], logvar_beta=zeros[:1], beta=zeros[:1], prior_mu=prior_mu,
                      prior_logvar=torch.zeros_like(prior_mu),
                      logits=torch.zeros(n, 1, 1, 1, dtype=torch.float64))
    x = torch.full((n, 1, 1, 1), 0.5, dtype=torch.float64)
    hybrid = create_objective("ugvae", reduction="mean")(out, x, STEP)["kl_z"].item()
    mc = create_objective("ugvae", reduction="mean", estimator="monte_carlo")(out, x, STEP)
    assert hybrid == pytest.approx(2.0, abs=1e-12)
    assert hybrid - mc["kl_z"].item() == pytest.approx(1.459, abs=3e-3)


def test_sum_and_mean_take_the_same_adam_steps():
    # Adam's step m / (sqrt(v) + eps) is invariant to a constant scale of the loss ("sum" is
    # B x "mean") up to eps; with the default eps = 1e-8 the elements whose gradient is ~1e-8
    # (dead ReLU units) move differently, so eps is taken to 1e-16 here, in float64 (in float32
    # the rounding noise of a zero gradient would be such an element). An SGD step is not
    # invariant: the gradient itself scales with B.
    torch.manual_seed(0)
    first = UGVAE(UGVAEConfig(architecture="k_vae", z_dim=2, beta_dim=2, K=3, image_size=8)).double()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    models = {"sum": copy.deepcopy(first), "mean": copy.deepcopy(first)}
    for reduction, model in models.items():
        objective = create_objective("ugvae", reduction=reduction)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-16)
        for step in range(3):
            torch.manual_seed(10 + step)  # the same draws for both
            optimiser.zero_grad()
            objective(model(x), x, STEP)["loss"].backward()
            optimiser.step()
    for (name, a), b in zip(models["sum"].named_parameters(), models["mean"].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=0.0, msg=name)
    moved = max((a - p).abs().max().item() for a, p in
                zip(models["sum"].parameters(), first.parameters()))
    assert moved > 2e-3  # three steps of about lr each


def test_forward_wiring_recomputed_by_hand():
    model = _model(seed=1).train()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(7)
    out = model(x)
    torch.manual_seed(7)
    with torch.no_grad():
        h = model.pre_encoder(x)
        m, logvar_z = model.q_z(h).chunk(2, -1)
        z = m + (0.5 * logvar_z).exp() * torch.randn(4, 2)  # sampled z ...
        pi_logits = model.q_d(z)  # ... gives pi in training mode
        a, ell = model.expert(torch.cat([h, torch.softmax(pi_logits, -1)], -1)).chunk(2, -1)
        precision = (-ell).exp().sum(0, keepdim=True)  # experts fed softmax(pi), pooled
        mu_beta = ((-ell).exp() * a).sum(0, keepdim=True) / precision
        beta = mu_beta + precision.rsqrt() * torch.randn(1, 2)  # one beta for the batch
        heads = torch.cat([head(beta) for head in model.prior])
        logits = model.decoder(torch.cat([z, beta.expand(4, 2)], -1))
    for name, value in (("m", m), ("logvar_z", logvar_z), ("z", z), ("pi_logits", pi_logits),
                        ("mu_beta", mu_beta), ("logvar_beta", -precision.log()),
                        ("beta", beta), ("prior_mu", heads[:, :2]),
                        ("prior_logvar", torch.tanh(heads[:, 2:])), ("logits", logits)):
        torch.testing.assert_close(getattr(out, name), value, msg=name)


def test_compute_samples_in_eval_mode_so_validation_estimates_the_elbo():
    model = _model(seed=2).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    batch = type("Batch", (), {"x": x})()
    objective = create_objective("ugvae").eval()
    with torch.no_grad():
        torch.manual_seed(4)
        terms = objective.compute(model, batch, STEP)
        torch.manual_seed(4)
        sampled = model(x, sample=True)
        plug_in = model(x)  # eval mode: the means
        by_hand = objective(sampled, x, STEP)
        means = objective(plug_in, x, STEP)
    torch.testing.assert_close(sampled.pi_logits, model.q_d(sampled.z))
    assert not torch.equal(sampled.z, sampled.m) and not torch.equal(sampled.beta,
                                                                     sampled.mu_beta)
    for name in ("loss", "recon", "kl_z", "kl_d", "kl_beta"):
        torch.testing.assert_close(terms[name], by_hand[name], msg=name)
    assert abs(terms["loss"].item() - means["loss"].item()) > 1e-3
