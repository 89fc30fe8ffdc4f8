"""Known answers for the weakly supervised objectives (Locatello et al., 2020, Section 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from vaelab.data.base import FactorDataset
from vaelab.models.vae import GaussianVAE
from vaelab.objectives.weak import (
    MLVAE,
    AdaGVAE,
    AdaMLVAE,
    GroupVAE,
    WeakConfig,
    adaptive_shared,
    adaptive_threshold,
    average_gvae,
    average_mlvae,
    known_k_shared,
    pair_kl_per_dim,
    shared_posteriors,
)

LOG4 = math.log(4.0)


def test_pair_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    lv1, lv2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    expected = kl_divergence(Normal(mu1, (0.5 * lv1).exp()), Normal(mu2, (0.5 * lv2).exp()))
    torch.testing.assert_close(pair_kl_per_dim(mu1, lv1, mu2, lv2), expected)
    # KL(q1 || q2), not KL(q2 || q1): asymmetric in the variances
    one = pair_kl_per_dim(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1),
                          torch.full((1, 1), LOG4))
    assert one.item() == pytest.approx(0.5 * (LOG4 + 0.25 - 1.0))


def test_adaptive_threshold_is_the_midpoint_of_max_and_min():
    delta = torch.tensor([[0.0, 0.0, 0.0, 3.0, 10.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    torch.testing.assert_close(adaptive_threshold(delta), torch.tensor([5.0, 3.0]))
    # the mean (2.6) would leave latent 3 unshared; tau = 5 shares it
    assert adaptive_shared(delta).tolist() == [[True, True, True, True, False],
                                               [True, True, False, False, False]]
    # equal deltas (identical images): every latent is shared
    assert adaptive_shared(torch.zeros(1, 4)).all()
    assert adaptive_shared(torch.tensor([[0.0, 0.0, 1e-3]])).tolist() == [[True, True, False]]


def test_known_k_shares_the_d_minus_k_least_different_latents():
    delta = torch.tensor([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0],
                          [0.5, 0.4, 0.3, 0.2]])
    k = torch.tensor([1, 3, 0, 5])
    assert known_k_shared(delta, k).tolist() == [
        [False, True, True, True],     # k = 1: three shared
        [False, False, False, True],   # k = 3: the smallest only
        [True, True, True, True],      # identical images: all shared
        [False, False, False, False],  # k >= d: none
    ]


def test_gvae_averages_means_and_variances():
    mu, logvar = average_gvae(torch.tensor([1.0]), torch.tensor([0.0]),
                              torch.tensor([3.0]), torch.tensor([LOG4]))
    assert mu.item() == pytest.approx(2.0)
    assert logvar.exp().item() == pytest.approx(2.5)  # (1 + 4) / 2, not exp((0 + log 4) / 2)


def test_mlvae_is_the_normalised_product_of_the_two_gaussians():
    mu, logvar = average_mlvae(torch.tensor([1.0]), torch.tensor([0.0]),
                               torch.tensor([3.0]), torch.tensor([LOG4]))
    # precision 1 + 1/4 = 5/4, mean 4/5 (1/1 + 3/4) = 1.4
    assert mu.item() == pytest.approx(1.4) and logvar.exp().item() == pytest.approx(0.8)
    # the product of the densities, numerically: N(x; 1, 1) N(x; 3, 4) normalised
    x = torch.linspace(-15, 15, 300_001, dtype=torch.float64)
    density = Normal(1.0, 1.0).log_prob(x).exp() * Normal(3.0, 2.0).log_prob(x).exp()
    density = density / density.sum()
    mean = (density * x).sum()
    var = (density * (x - mean) ** 2).sum()
    assert mean.item() == pytest.approx(1.4, abs=1e-6) and var.item() == pytest.approx(0.8, 1e-5)
    mu_g, logvar_g = average_mlvae(torch.tensor([1.0]), torch.tensor([0.0]),
                                   torch.tensor([3.0]), torch.tensor([LOG4]), "geometric")
    assert mu_g.item() == pytest.approx(1.4) and logvar_g.exp().item() == pytest.approx(1.6)


def test_shared_posteriors_replace_only_the_shared_latents_of_both_images():
    mu = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])  # x1s: rows 0-1
    logvar = torch.zeros(4, 2)
    shared = torch.tensor([[True, False], [False, True]])
    mu_s, logvar_s = shared_posteriors(mu, logvar, shared, "gvae")
    assert mu_s.tolist() == [[2.0, 1.0], [2.0, 5.0], [2.0, 5.0], [6.0, 5.0]]
    assert torch.equal(logvar_s, logvar)


# ----------------------------------------------------------------------------------------------
# The loss on a hand-made pair


class _Fixed(nn.Module):
    def __init__(self, *out):
        super().__init__()
        self.out = out

    def forward(self, x):
        return self.out


class _View(nn.Module):
    def forward(self, z):
        return z.view(-1, 1, 1, 3)


class _FixedModel(GaussianVAE):
    """A GaussianVAE (the real forward) whose encoder returns given posteriors and whose decoder
    is the identity onto 1x1x3 images."""

    def __init__(self, mu, logvar):
        super().__init__()
        self.latent_dim, self.image_shape = 3, (1, 1, 3)
        self.encoder, self.decoder = _Fixed(mu, logvar), _View()


# pair: x1 posteriors N([0, 1, 2], [1, 1, 1]), x2 N([0.1, 1, -2], [1, 4, 1]);
# delta = [0.005, 0.318..., 8]: tau = 4.0025 shares latents 0 and 1.
MU = torch.tensor([[0.0, 1.0, 2.0], [0.1, 1.0, -2.0]])
LOGVAR = torch.tensor([[0.0, 0.0, 0.0], [0.0, LOG4, 0.0]])
X = torch.tensor([[0.2, 0.9, 0.6], [0.5, 0.1, 0.3]])


def _pair_batch(second_factors=(1, 0, 0)):
    """Two items x1, x2 (1x1x3 images) with factor rows (0, 0, 0) and `second_factors`."""
    images = (X * 255).round().to(torch.uint8).view(2, 1, 1, 3)
    data = FactorDataset(images, np.array([[0, 0, 0], list(second_factors)]),
                         ["a", "b", "c"], [2, 2, 2])
    return data.batch_of(torch.tensor([[0], [1]]))


def _expected_loss(mu_s, var_s, x, beta):
    """recon (Bernoulli, logits = z = mu_s in eval mode) + beta KL, per-image means."""
    mu_s, var_s = torch.tensor(mu_s), torch.tensor(var_s)
    recon = F.binary_cross_entropy_with_logits(mu_s, x, reduction="none").sum(1).mean()
    kl = kl_divergence(Normal(mu_s, var_s.sqrt()), Normal(0.0, 1.0)).sum(1).mean()
    return recon + beta * kl, recon, kl


@pytest.mark.parametrize(("cls", "mu_s", "var_s"), [
    (AdaGVAE, [[0.05, 1.0, 2.0], [0.05, 1.0, -2.0]], [[1.0, 2.5, 1.0], [1.0, 2.5, 1.0]]),
    (AdaMLVAE, [[0.05, 1.0, 2.0], [0.05, 1.0, -2.0]], [[0.5, 0.8, 1.0], [0.5, 0.8, 1.0]]),
])
def test_adaptive_loss_on_a_hand_computed_pair(cls, mu_s, var_s):
    batch = _pair_batch()
    x = batch.x.view(2, 3)
    objective = cls(WeakConfig(beta=2.0)).eval()
    terms = objective.compute(_FixedModel(MU, LOGVAR).eval(), batch, torch.tensor(1))
    loss, recon, kl = _expected_loss(mu_s, var_s, x, 2.0)
    torch.testing.assert_close(terms["recon"], recon)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["loss"], loss)
    assert terms["shared"].item() == 2.0
    delta = 0.5 * 0.01 + 0.5 * (LOG4 + 0.25 - 1.0) + 0.5 * 16.0
    assert terms["delta"].item() == pytest.approx(delta, rel=1e-5)
    kl_0 = kl_divergence(Normal(mu_s[0][0], math.sqrt(var_s[0][0])), Normal(0.0, 1.0))
    kl_1 = kl_divergence(Normal(mu_s[1][0], math.sqrt(var_s[1][0])), Normal(0.0, 1.0))
    assert terms["kl_0"].item() == pytest.approx(0.5 * (kl_0 + kl_1).item(), rel=1e-5)


@pytest.mark.parametrize(("cls", "var0"), [(GroupVAE, 1.0), (MLVAE, 0.5)])
def test_known_k_loss_shares_d_minus_k_latents(cls, var0):
    # the pair's factors differ in two places: k = 2, so only latent 0 (smallest delta) is shared
    batch = _pair_batch(second_factors=(1, 1, 0))
    objective = cls(WeakConfig(beta=1.0)).eval()
    terms = objective.compute(_FixedModel(MU, LOGVAR).eval(), batch, torch.tensor(1))
    mu_s = [[0.05, 1.0, 2.0], [0.05, 1.0, -2.0]]
    var_s = [[var0, 1.0, 1.0], [var0, 4.0, 1.0]]
    loss, _, _ = _expected_loss(mu_s, var_s, batch.x.view(2, 3), 1.0)
    torch.testing.assert_close(terms["loss"], loss)
    assert terms["shared"].item() == 1.0


def test_a_batch_without_pairs_is_the_beta_vae_elbo_of_each_image():
    from vaelab.models.vae import VAEOutput

    out = VAEOutput(mu=MU, logvar=LOGVAR, z=MU, logits=MU.view(2, 1, 1, 3))
    terms = AdaGVAE(WeakConfig(beta=3.0))(out, X.view(2, 1, 1, 3), torch.tensor(1))
    loss, _, _ = _expected_loss(MU.tolist(), LOGVAR.exp().tolist(), X, 3.0)
    torch.testing.assert_close(terms["loss"], loss)
    assert terms["shared"].item() == 0.0


def test_training_samples_around_the_shared_posterior():
    """In train mode z = mu~ + sigma~ eps: the shared latent's code is the same mean for both."""
    batch = _pair_batch()
    seen = {}

    class Spy(_View):
        def forward(self, z):
            seen["z"] = z
            return super().forward(z)

    model = _FixedModel(MU, LOGVAR.clone())
    model.decoder = Spy()
    torch.manual_seed(0)
    AdaGVAE(WeakConfig()).train().compute(model.train(), batch, torch.tensor(1))
    torch.manual_seed(0)
    eps = torch.randn(2, 3)
    mu_s = torch.tensor([[0.05, 1.0, 2.0], [0.05, 1.0, -2.0]])
    std_s = torch.tensor([[1.0, 2.5, 1.0], [1.0, 2.5, 1.0]]).sqrt()
    torch.testing.assert_close(seen["z"], mu_s + std_s * eps)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="combine must be one of"):
        WeakConfig(combine="mean")
    with pytest.raises(ValueError, match="beta must be >= 0"):
        WeakConfig(beta=-1.0)
    with pytest.raises(ValueError, match="unknown likelihood"):
        WeakConfig(likelihood="poisson")
