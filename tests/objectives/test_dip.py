"""DIP-VAE-I and -II: closed-form penalties on hand-made codes, conventions, validation."""

from __future__ import annotations

import math

import pytest
import torch

from vaelab.config import ConfigError
from vaelab.factory import create_objective
from vaelab.models.vae import VAEOutput
from vaelab.objectives.terms import gaussian_kl, reconstruction_loss

# Four codes with mean (3, -1) (the centring matters) and biased covariance [[.5, .5], [.5, .5]]
# (the unbiased one is 2/3 everywhere).
MU = torch.tensor([[4.0, 0.0], [2.0, -2.0], [3.0, -1.0], [3.0, -1.0]])
# posterior variances: E[sigma^2] = (0.5, 2.0)
VAR = torch.tensor([[0.5, 1.0], [0.5, 3.0], [0.5, 1.0], [0.5, 3.0]])
# sampled codes far from the means: a penalty computed on z instead of mu comes out different
Z = torch.tensor([[0.0, 5.0], [1.0, -3.0], [-2.0, 0.5], [7.0, 1.0]])


def _output():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 4, 4, generator=gen)
    x = torch.rand(4, 1, 4, 4, generator=gen)
    return VAEOutput(mu=MU.clone(), logvar=VAR.log(), z=Z.clone(), logits=logits), x


def _recon_kl(out, x):
    recon = reconstruction_loss(out.logits, x, "bernoulli").item()
    return recon, gaussian_kl(out.mu, out.logvar).mean().item()


def test_dip_i_closed_form_on_hand_made_codes():
    # Cov[mu] = [[.5, .5], [.5, .5]]: off = 2 * .25 (both triangles) = .5, diag = 2 * .25 = .5;
    # lambda_od = 2, lambda_d = 10 * 2 = 20 -> 2 * .5 + 20 * .5 = 11.
    out, x = _output()
    terms = create_objective("dip_vae_i", lambda_od=2.0)(out, x, torch.tensor(1))
    assert terms["dip_od"].item() == pytest.approx(0.5)
    assert terms["dip_d"].item() == pytest.approx(0.5)
    assert terms["dip"].item() == pytest.approx(11.0)
    recon, kl = _recon_kl(out, x)
    assert terms["loss"].item() == pytest.approx(recon + kl + 11.0)
    assert all(v.dim() == 0 for v in terms.values())


def test_dip_ii_closed_form_on_hand_made_codes():
    # Cov_q(z) = Cov[mu] + diag(.5, 2) = [[1, .5], [.5, 2.5]]: off = .5, diag = 0 + 1.5^2 = 2.25;
    # lambda_od = 2, lambda_d = 1 * 2 -> 2 * .5 + 2 * 2.25 = 5.5.
    out, x = _output()
    terms = create_objective("dip_vae_ii", lambda_od=2.0)(out, x, torch.tensor(1))
    assert terms["dip_od"].item() == pytest.approx(0.5)
    assert terms["dip_d"].item() == pytest.approx(2.25)
    assert terms["dip"].item() == pytest.approx(5.5)
    recon, kl = _recon_kl(out, x)
    assert terms["loss"].item() == pytest.approx(recon + kl + 5.5)


def test_disentanglement_lib_weights_by_default_and_explicit_factor():
    assert create_objective("dip_vae_i", lambda_od=5.0).config.lambda_d == 50.0
    assert create_objective("dip_vae_ii", lambda_od=5.0).config.lambda_d == 5.0
    out, x = _output()
    # lambda_d_factor 0: only the off-diagonal part, 3 * .5
    terms = create_objective("dip_vae_i", lambda_od=3.0, lambda_d_factor=0.0)(
        out, x, torch.tensor(1))
    assert terms["dip"].item() == pytest.approx(1.5)


def test_penalty_matches_the_torch_biased_covariance_on_random_codes():
    gen = torch.Generator().manual_seed(1)
    mu = torch.randn(64, 5, generator=gen) * torch.tensor([0.5, 1, 2, 1, 3]) + 4.0
    logvar = torch.randn(64, 5, generator=gen)
    out = VAEOutput(mu=mu, logvar=logvar, z=torch.randn(64, 5, generator=gen),
                    logits=torch.zeros(64, 1, 2, 2))
    x = torch.full((64, 1, 2, 2), 0.5)
    for name, cov in (("dip_vae_i", torch.cov(mu.T, correction=0)),
                      ("dip_vae_ii", torch.cov(mu.T, correction=0)
                       + torch.diag(logvar.exp().mean(0)))):
        eye = torch.eye(5)
        off = ((cov * (1 - eye)) ** 2).sum().item()
        diag = ((torch.diagonal(cov) - 1) ** 2).sum().item()
        terms = create_objective(name, lambda_od=1.5, lambda_d_factor=4.0)(
            out, x, torch.tensor(1))
        assert terms["dip"].item() == pytest.approx(1.5 * off + 6.0 * diag, rel=1e-5)


def test_identity_covariance_costs_nothing():
    # +-1 on each axis separately: Cov[mu] = I exactly (biased), so DIP-I adds nothing.
    mu = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) * math.sqrt(2)
    out = VAEOutput(mu=mu, logvar=torch.zeros(4, 2), z=mu, logits=torch.zeros(4, 1, 2, 2))
    terms = create_objective("dip_vae_i")(out, torch.full((4, 1, 2, 2), 0.5), torch.tensor(1))
    assert terms["dip"].item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_reaches_means_and_log_variances():
    out, x = _output()
    out.mu.requires_grad_(True)
    out.logvar.requires_grad_(True)
    terms = create_objective("dip_vae_ii")(out, x, torch.tensor(1))
    terms["dip"].backward()
    assert out.mu.grad.abs().sum() > 0 and out.logvar.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [{"lambda_od": -1.0}, {"lambda_d_factor": -0.5},
                                 {"likelihood": "poisson"}])
def test_bad_values_are_refused(bad):
    with pytest.raises((ValueError, ConfigError)):
        create_objective("dip_vae_i", **bad)
