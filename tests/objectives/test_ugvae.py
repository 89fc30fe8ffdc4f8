"""The UG-VAE objective: each term against torch.distributions, its estimators, pure-domain training."""

from __future__ import annotations

import math

import torch
from torch import distributions as D

from vaelab.factory import create_objective
from vaelab.models.ugvae import UGVAEOutput
from vaelab.objectives.ugvae import local_kl


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
