"""The Non-Synergistic VAE's model (`nonsyn_burgess`): parameter counts, the mu/logvar split, sizes."""

from __future__ import annotations

import pytest
import torch

from vaelab.config import ConfigError, from_dict
from vaelab.factory import create_model
from vaelab.models.nonsyn import NonSynConfig, NonSynVAE


@pytest.mark.parametrize(
    ("options", "params", "shape"),
    [
        ({}, 498_005, (1, 64, 64)),  # spec §2.1, D = 10
        ({"channels": 3, "hidden_dim": 256, "encoder_relu": True}, 766_295, (3, 64, 64)),  # §2.2
    ],
)
def test_nonsyn_model_parameter_counts(options, params, shape):
    model = create_model("nonsyn_burgess", **options)
    assert sum(p.numel() for p in model.parameters()) == params
    out = model(torch.rand(2, *shape))
    assert out.logits.shape == (2, *shape) and out.mu.shape == (2, 10)


def test_nonsyn_model_splits_mu_logvar_by_halves():
    model = NonSynVAE(NonSynConfig(latent_dim=3))
    head = model.encoder.net[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.arange(6.0))
    mu, logvar = model.encode(torch.rand(1, 1, 64, 64))
    assert mu.tolist() == [[0.0, 1.0, 2.0]] and logvar.tolist() == [[3.0, 4.0, 5.0]]


def test_nonsyn_model_rejects_other_sizes():
    with pytest.raises(ConfigError, match="64x64"):
        from_dict(NonSynConfig, {"image_size": 32})
