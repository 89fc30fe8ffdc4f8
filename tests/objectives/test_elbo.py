"""VAE, beta-VAE and capacity-annealed VAE: loss formulas, schedules, eval mode, validation."""

from __future__ import annotations

import pytest
import torch

from vaelab.factory import create_objective
from vaelab.models.vae import VAEOutput
from vaelab.objectives.elbo import AnnealedVAEConfig, BetaVAEConfig, ELBOConfig
from vaelab.objectives.terms import gaussian_kl, reconstruction_loss


def _output(b=4, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(b, d, generator=gen), torch.randn(b, d, generator=gen)
    logits = torch.randn(b, 1, 4, 4, generator=gen)
    out = VAEOutput(mu=mu, logvar=logvar, z=mu, logits=logits)
    return out, torch.rand(b, 1, 4, 4, generator=gen)


def _recon_kl(out, x, likelihood="bernoulli"):
    recon = reconstruction_loss(out.logits, x, likelihood).item()
    return recon, gaussian_kl(out.mu, out.logvar).mean().item()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "laplace"])
def test_vae_is_the_negative_elbo(likelihood):
    out, x = _output()
    terms = create_objective("vae", likelihood=likelihood)(out, x, torch.tensor(1))
    recon, kl = _recon_kl(out, x, likelihood)
    assert terms["recon"].item() == pytest.approx(recon)
    assert terms["kl"].item() == pytest.approx(kl)
    assert terms["loss"].item() == pytest.approx(recon + kl)  # no warm-up by default
    assert sum(terms[f"kl_{j}"].item() for j in range(3)) == pytest.approx(kl)
    assert all(v.dim() == 0 for v in terms.values())


def test_vae_warmup_as_the_seed():
    out, x = _output()
    objective = create_objective("vae", warmup_steps=10_000)
    recon, kl = _recon_kl(out, x)
    terms = objective(out, x, torch.tensor(2_500))
    assert terms["loss"].item() == pytest.approx(recon + 0.25 * kl)
    objective.eval()
    assert objective(out, x, torch.tensor(2_500))["loss"].item() == pytest.approx(recon + kl)


@pytest.mark.parametrize(("step", "weight"), [(1, 0.1), (5, 0.5), (10, 1.0), (50, 1.0)])
def test_beta_vae_loss_with_warmup(step, weight):
    out, x = _output()
    terms = create_objective("beta_vae", beta=4.0, warmup_steps=10)(out, x, torch.tensor(step))
    recon, kl = _recon_kl(out, x)
    assert terms["loss"].item() == pytest.approx(recon + weight * 4.0 * kl)
    assert terms["warmup"].item() == pytest.approx(weight)


def test_beta_vae_default_beta_is_4_without_warmup():
    out, x = _output()
    terms = create_objective("beta_vae")(out, x, torch.tensor(1))
    recon, kl = _recon_kl(out, x)
    assert terms["loss"].item() == pytest.approx(recon + 4.0 * kl)


@pytest.mark.parametrize(("step", "capacity"), [(1, 0.00025), (50_000, 12.5), (300_000, 25.0)])
def test_annealed_vae_capacity_schedule(step, capacity):
    out, x = _output()
    terms = create_objective("annealed_vae")(out, x, torch.tensor(step))  # 0 -> 25 over 100k
    recon, kl = _recon_kl(out, x)
    assert terms["capacity"].item() == pytest.approx(capacity)
    assert terms["loss"].item() == pytest.approx(recon + 100.0 * abs(kl - capacity), rel=1e-5)


def test_annealed_vae_constant_capacity_and_eval():
    out, x = _output()
    objective = create_objective("annealed_vae", c_init=5.0, c_final=5.0, gamma=10.0)
    recon, kl = _recon_kl(out, x)
    terms = objective(out, x, torch.tensor(3))  # the seed asserts c_final > c_init here
    assert terms["capacity"].item() == pytest.approx(5.0)
    assert terms["loss"].item() == pytest.approx(recon + 10 * abs(kl - 5.0), rel=1e-5)
    objective = create_objective("annealed_vae", c_final=20.0)
    objective.eval()  # evaluation uses C = c_final, as the seed
    assert objective(out, x, torch.tensor(3))["capacity"].item() == pytest.approx(20.0)


def test_schedules_follow_a_step_on_the_device_without_host_values():
    out, x = _output()
    step = torch.tensor(7)
    terms = create_objective("annealed_vae", c_final=10.0, capacity_steps=14)(out, x, step)
    assert terms["capacity"].device == out.mu.device
    assert terms["capacity"].item() == pytest.approx(5.0)


@pytest.mark.parametrize(("cls", "options", "match"), [
    (ELBOConfig, {"likelihood": "poisson"}, "bernoulli, laplace, gaussian"),
    (ELBOConfig, {"warmup_steps": -5}, "warmup_steps"),
    (BetaVAEConfig, {"beta": -1.0}, "beta"),
    (AnnealedVAEConfig, {"gamma": -1.0}, "gamma"),
    (AnnealedVAEConfig, {"c_final": -1.0}, "c_final"),
    (AnnealedVAEConfig, {"capacity_steps": -1}, "capacity_steps"),
])
def test_config_validation(cls, options, match):
    with pytest.raises(ValueError, match=match):
        cls(**options)


def test_unknown_option_is_a_config_error():
    from vaelab.config import ConfigError

    with pytest.raises(ConfigError, match="bta"):
        create_objective("beta_vae", bta=4.0)
