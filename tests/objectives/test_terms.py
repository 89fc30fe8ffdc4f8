"""Known-answer and oracle tests of the shared loss pieces (vaelab/objectives/terms.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vaelab.objectives.terms import (
    LIKELIHOODS,
    gaussian_kl,
    gaussian_kl_per_dim,
    kl_terms,
    linear_anneal,
    linear_warmup,
    log_normal,
    reconstruction_loss,
)


@pytest.mark.parametrize(("mu", "logvar", "expected"), [
    (0.0, 0.0, 0.0),                                  # posterior equals prior
    (1.0, 0.0, 0.5),                                  # mean shift only: mu^2 / 2
    (0.0, math.log(2.0), 0.5 * (1 - math.log(2.0))),  # variance 2, mean 0
    (2.0, math.log(0.5), 0.5 * (4 + 0.5 - 1 - math.log(0.5))),
])
def test_gaussian_kl_known_values(mu, logvar, expected):
    kl = gaussian_kl(torch.tensor([[mu]]), torch.tensor([[logvar]]))
    assert kl.shape == (1,)
    assert kl.item() == pytest.approx(expected)


def test_gaussian_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    logvar = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p)  # (5, 4)
    torch.testing.assert_close(gaussian_kl_per_dim(mu, logvar), expected)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected.sum(-1))


finite = st.floats(-8, 8, allow_nan=False)


@settings(deadline=None, max_examples=50)
@given(mu=arrays(np.float64, (3, 4), elements=finite),
       logvar=arrays(np.float64, (3, 4), elements=finite))
def test_gaussian_kl_is_nonnegative(mu, logvar):
    kl = gaussian_kl(torch.from_numpy(mu), torch.from_numpy(logvar))
    assert kl.shape == (3,) and (kl >= -1e-9).all()


def test_kl_terms_keys_and_values():
    mu = torch.tensor([[1.0, 0.0, 0.0], [3.0, 0.0, 2.0]])
    logvar = torch.zeros(2, 3)
    terms = kl_terms(mu, logvar)
    assert list(terms) == ["kl", "kl_0", "kl_1", "kl_2"]
    assert all(v.dim() == 0 for v in terms.values())
    # KL_j = mean_b mu_bj^2 / 2: (0.5 + 4.5)/2, 0, (0 + 2)/2
    assert terms["kl_0"].item() == pytest.approx(2.5)
    assert terms["kl_1"].item() == pytest.approx(0.0)
    assert terms["kl_2"].item() == pytest.approx(1.0)
    assert terms["kl"].item() == pytest.approx(3.5)


def test_log_normal_matches_torch_normal():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 3, generator=gen, dtype=torch.float64)
    mu = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64)
    logvar = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64)
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(x)  # (6, 4, 3)
    torch.testing.assert_close(log_normal(x, mu, logvar), expected)
    # standard normal at 0: -log(2 pi) / 2
    value = log_normal(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0))
    assert value.item() == pytest.approx(-0.5 * math.log(2 * math.pi))


def _two_pixel_batch():
    # Two images of 1x1x2 pixels; x_hat = sigmoid(logits) chosen to be simple numbers.
    x_hat = torch.tensor([[[[0.5, 0.8]]], [[[0.25, 0.5]]]], dtype=torch.float64)
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.5, 1.0]]]], dtype=torch.float64)
    return torch.logit(x_hat), x_hat, x


def test_reconstruction_loss_hand_computed():
    logits, _, x = _two_pixel_batch()
    # bernoulli: image 1: -log .5 - log .2; image 2: -(.5 log .25 + .5 log .75) - log .5
    image1 = -math.log(0.5) - math.log(0.2)
    image2 = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) - math.log(0.5)
    bern = reconstruction_loss(logits, x, "bernoulli")
    assert bern.dim() == 0 and bern.item() == pytest.approx((image1 + image2) / 2)
    # gaussian: 255 * sum of squares / B = 255 * (.25 + .64 + .0625 + .25) / 2
    gauss = reconstruction_loss(logits, x, "gaussian")
    assert gauss.item() == pytest.approx(255 * (0.25 + 0.64 + 0.0625 + 0.25) / 2)
    # laplace: 3 * sum of |.| / B = 3 * (.5 + .8 + .25 + .5) / 2
    laplace = reconstruction_loss(logits, x, "laplace")
    assert laplace.item() == pytest.approx(3 * (0.5 + 0.8 + 0.25 + 0.5) / 2)


def test_bernoulli_matches_bce_on_probabilities():
    gen = torch.Generator().manual_seed(2)
    logits = 3 * torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64)
    x = torch.rand(4, 1, 8, 8, generator=gen, dtype=torch.float64)
    expected = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum") / 4
    torch.testing.assert_close(reconstruction_loss(logits, x, "bernoulli"), expected)


def test_bernoulli_is_stable_for_extreme_logits():
    logits = torch.tensor([[[[200.0, -200.0]]]])
    x = torch.tensor([[[[0.0, 1.0]]]])
    loss = reconstruction_loss(logits, x, "bernoulli")
    assert loss.item() == pytest.approx(400.0)  # the seed's clamped logs would give 200


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_reconstruction_loss_gradients_are_finite(likelihood):
    logits = torch.randn(3, 1, 4, 4, requires_grad=True)
    reconstruction_loss(logits, torch.rand(3, 1, 4, 4), likelihood).backward()
    assert torch.isfinite(logits.grad).all()


def test_unknown_likelihood_lists_known_ones():
    with pytest.raises(ValueError, match="bernoulli, laplace, gaussian"):
        reconstruction_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "poisson")


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3), "bernoulli")


@pytest.mark.parametrize(("step", "steps", "expected"), [
    (1, 0, 1.0), (0, 10, 0.0), (1, 10, 0.1), (5, 10, 0.5), (10, 10, 1.0), (25, 10, 1.0),
])
def test_linear_warmup_values(step, steps, expected):
    weight = linear_warmup(torch.tensor(step), steps)
    assert weight.dim() == 0 and weight.dtype == torch.float32
    assert weight.item() == pytest.approx(expected)


def test_linear_warmup_rejects_negative_steps():
    with pytest.raises(ValueError, match="steps"):
        linear_warmup(torch.tensor(1), -1)


@pytest.mark.parametrize(("step", "start", "end", "steps", "expected"), [
    (1, 0.0, 25.0, 0, 25.0),          # no ramp: the final value
    (0, 0.0, 25.0, 100_000, 0.0),
    (50_000, 0.0, 25.0, 100_000, 12.5),
    (100_000, 0.0, 25.0, 100_000, 25.0),
    (200_000, 0.0, 25.0, 100_000, 25.0),  # stays at the end
    (7, 5.0, 5.0, 10, 5.0),           # start == end (the seed asserts and crashes)
    (5, 10.0, 0.0, 10, 5.0),          # decreasing ramp
])
def test_linear_anneal_values(step, start, end, steps, expected):
    value = linear_anneal(torch.tensor(step), start, end, steps)
    assert value.item() == pytest.approx(expected)
