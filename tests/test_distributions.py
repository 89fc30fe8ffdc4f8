"""Known answers for the shared distribution pieces, against torch.distributions and by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from vaelab.distributions import (
    Categorical,
    DiagonalGaussian,
    bernoulli_log_likelihood,
    gaussian_log_likelihood,
    kl_categorical_uniform,
    kl_normal_normal,
    laplace_log_likelihood,
    reduce_batch,
)
from vaelab.objectives.terms import gaussian_kl, reconstruction_loss

torch.set_default_dtype(torch.float32)


def _normals(seed=0, shape=(5, 3)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(4)]


def test_kl_normal_normal_matches_torch_distributions():
    mu_q, logvar_q, mu_p, logvar_p = _normals()
    oracle = D.kl_divergence(D.Normal(mu_q, (0.5 * logvar_q).exp()),
                             D.Normal(mu_p, (0.5 * logvar_p).exp())).sum(-1)  # (B,)
    ours = kl_normal_normal(mu_q, logvar_q, mu_p, logvar_p, reduction="none")
    torch.testing.assert_close(ours, oracle)
    torch.testing.assert_close(kl_normal_normal(mu_q, logvar_q, mu_p, logvar_p), oracle.mean())
    torch.testing.assert_close(kl_normal_normal(mu_q, logvar_q, mu_p, logvar_p, "sum"),
                               oracle.sum())


@pytest.mark.parametrize(("mu_q", "var_q", "mu_p", "var_p", "expected"), [
    (0.0, 1.0, 0.0, 1.0, 0.0),  # equal
    (1.0, 1.0, 0.0, 1.0, 0.5),  # mean shift: d^2 / 2
    (0.0, 1.0, 0.0, 4.0, 0.5 * (math.log(4) + 0.25 - 1)),  # wider prior
    (3.0, 2.0, 1.0, 2.0, 1.0),  # shift 2 at variance 2: 4 / (2 * 2)
])
def test_kl_normal_normal_hand_values(mu_q, var_q, mu_p, var_p, expected):
    kl = kl_normal_normal(torch.tensor([[mu_q]]), torch.tensor([[math.log(var_q)]]),
                          torch.tensor([[mu_p]]), torch.tensor([[math.log(var_p)]]))
    assert kl.item() == pytest.approx(expected, abs=1e-6)


def test_standard_normal_kl_is_the_general_kl_against_n01():
    mu, logvar, _, _ = _normals(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), kl_normal_normal(mu, logvar, 0.0, 0.0,
                                                                         "none"))


def test_kl_categorical_uniform_matches_torch_distributions():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    oracle = D.kl_divergence(D.Categorical(logits=logits),
                             D.Categorical(probs=torch.full_like(logits, 0.2)))
    torch.testing.assert_close(kl_categorical_uniform(logits, "none"), oracle)
    torch.testing.assert_close(kl_categorical_uniform(logits), oracle.mean())
    # a one-hot posterior over K = 4 is log 4 from the uniform; the uniform itself is 0
    assert kl_categorical_uniform(torch.tensor([[50.0, -50, -50, -50]])).item() == \
        pytest.approx(math.log(4), abs=1e-5)
    assert kl_categorical_uniform(torch.zeros(1, 7)).item() == pytest.approx(0.0, abs=1e-6)


def test_gaussian_log_likelihood_matches_torch_distributions():
    x, mean, _, _ = _normals(3, (4, 1, 2, 3))
    oracle = D.Normal(mean, math.sqrt(0.3)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, 0.3, "none"), oracle)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, 0.3), oracle.mean())
    # one pixel at the mean, variance 1: -log(2 pi) / 2
    assert gaussian_log_likelihood(torch.zeros(1, 1), torch.zeros(1, 1), 1.0).item() == \
        pytest.approx(-0.5 * math.log(2 * math.pi))


def test_bernoulli_log_likelihood_matches_torch_distributions():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64) * 5
    x = (torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64) > 0.5).double()
    oracle = D.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x, "none"), oracle)
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x, "sum"), oracle.sum())


def test_laplace_log_likelihood_matches_torch_distributions():
    x, loc, _, _ = _normals(5, (3, 2, 2))
    oracle = D.Laplace(loc, 0.7).log_prob(x).sum((1, 2))
    torch.testing.assert_close(laplace_log_likelihood(x, loc, 0.7, "none"), oracle)
    torch.testing.assert_close(laplace_log_likelihood(x, loc, 0.7), oracle.mean())


def test_reduce_batch_and_errors():
    values = torch.arange(6.0).reshape(2, 3)  # per-item sums 3 and 12
    assert reduce_batch(values, "none").tolist() == [3.0, 12.0]
    assert reduce_batch(values, "sum").item() == 15.0
    assert reduce_batch(values).item() == 7.5
    with pytest.raises(ValueError, match="reduction must be one of"):
        reduce_batch(values, "median")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "laplace"])
def test_reconstruction_loss_reductions(likelihood):
    g = torch.Generator().manual_seed(6)
    logits, x = torch.randn(4, 1, 3, 3, generator=g), torch.rand(4, 1, 3, 3, generator=g)
    per_image = reconstruction_loss(logits, x, likelihood, reduction="none")
    assert per_image.shape == (4,)
    torch.testing.assert_close(reconstruction_loss(logits, x, likelihood), per_image.mean())
    torch.testing.assert_close(reconstruction_loss(logits, x, likelihood, "sum"), per_image.sum())
    # per image: the documented constants of the seed
    x_hat = torch.sigmoid(logits)
    bernoulli = D.Bernoulli(logits=logits, validate_args=False)  # grey levels: the relaxation
    expected = {"bernoulli": -bernoulli.log_prob(x).sum((1, 2, 3)),
                "gaussian": 255 * (x_hat - x).pow(2).sum((1, 2, 3)),
                "laplace": 3 * (x_hat - x).abs().sum((1, 2, 3))}[likelihood]
    torch.testing.assert_close(per_image, expected)


def test_posterior_parameter_types():
    mu, logvar = torch.zeros(2, 3), torch.log(torch.full((2, 3), 4.0))
    gaussian = DiagonalGaussian(mu, logvar)
    assert torch.equal(gaussian.mean, mu) and torch.allclose(gaussian.std, torch.full((2, 3), 2.0))
    z = torch.ones(2, 3)
    oracle = D.Normal(mu, 2.0).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian.log_prob(z), oracle)
    categorical = Categorical(torch.tensor([[0.0, math.log(3.0)]]))
    torch.testing.assert_close(categorical.probs, torch.tensor([[0.25, 0.75]]))
