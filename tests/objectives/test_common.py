"""Every disvae-family objective on a tiny Burgess model: the contract, finite losses, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vaelab.data.base import Batch
from vaelab.factory import create_objective
from vaelab.models.vae import VAE, BurgessConfig
from vaelab.objectives.base import Objective
from vaelab.optim import Updater
from vaelab.registry import OBJECTIVES

DISVAE_OBJECTIVES = ["vae", "beta_vae", "annealed_vae", "factor_vae", "beta_tcvae"]
LATENT_DIM = 4
# small discriminator for speed; the defaults are tested in test_factor.py
OPTIONS = {"factor_vae": {"latent_dim": LATENT_DIM, "hidden_dim": 32}}


def _build(name, seed=0):
    torch.manual_seed(seed)
    model = VAE(BurgessConfig(latent_dim=LATENT_DIM, channels=1, image_size=32))
    objective = create_objective(name, **OPTIONS.get(name, {}))
    if objective.needs_dataset_size:
        objective.set_dataset_size(1000)
    x = (torch.rand(8, 1, 32, 32) > 0.5).float()
    return model, objective, x


@pytest.mark.parametrize("name", DISVAE_OBJECTIVES)
def test_registered_with_a_default_config(name):
    cls = OBJECTIVES.get(name)
    assert issubclass(cls, Objective)
    config = cls.config_class()  # every field has a default
    assert dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen
    assert cls(config).config is config


@pytest.mark.parametrize("name", DISVAE_OBJECTIVES)
def test_forward_backward_gives_finite_loss_and_gradients(name):
    model, objective, x = _build(name)
    terms = objective.compute(model, Batch(x), torch.tensor(1))
    assert {"loss", "recon", "kl"} | {f"kl_{j}" for j in range(LATENT_DIM)} <= set(terms)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient on {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient on {param_name}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient on {param_name}"


@pytest.mark.parametrize("name", DISVAE_OBJECTIVES)
def test_training_steps_with_lightning_fabric(name):
    fabric_module = pytest.importorskip("lightning.fabric")
    fabric = fabric_module.Fabric(accelerator="cpu", devices=1)
    model, objective, x = _build(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model, optimizer = fabric.setup(model, optimizer)
    updater = Updater(model, optimizer, objective, fabric)
    before = [p.detach().clone() for p in model.parameters()]
    for step in (1, 2):
        terms = objective.update(updater, model, Batch(x), torch.tensor(step))
        assert all(not v.requires_grad and torch.isfinite(v) for v in terms.values())
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
