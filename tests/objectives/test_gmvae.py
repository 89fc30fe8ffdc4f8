"""The GMVAE objective term by term against torch.distributions, and its options."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from vaelab.factory import create_objective
from vaelab.models.gmvae import GMVAEOutput
from vaelab.objectives.gmvae import GMVAEObjectiveConfig, conditional_prior_term


def _output(B=4, K=3, Dz=2, Dw=2, seed=0, samples=1) -> GMVAEOutput:
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return GMVAEOutput(mu_z=r(B, Dz), logvar_z=r(B, Dz) * 0.3, mu_w=r(B, Dw), logvar_w=r(B, Dw) * 0.3,
                       z=r(samples * B, Dz), w=r(samples * B, Dw), cluster_logits=r(samples * B, K),
                       prior_mu=r(samples * B, K, Dz), prior_logvar=r(samples * B, K, Dz) * 0.3,
                       logits=r(samples * B, 1, 2, 2), samples=samples)


def _normal(mu, logvar):
    return D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)


def test_cp_sample_estimator_is_the_log_ratio_with_full_densities():
    out = _output()
    pi = torch.softmax(out.cluster_logits, -1)
    log_q = _normal(out.mu_z, out.logvar_z).log_prob(out.z)
    log_p = _normal(out.prior_mu, out.prior_logvar).log_prob(out.z[:, None])  # (B, K)
    expected = log_q - (pi * log_p).sum(-1)
    torch.testing.assert_close(conditional_prior_term(out, pi, "sample"), expected)


def test_cp_analytic_is_the_pi_weighted_gaussian_kl():
    out = _output(seed=1)
    pi = torch.softmax(out.cluster_logits, -1)
    kl = D.kl_divergence(_normal(out.mu_z[:, None], out.logvar_z[:, None]),
                         _normal(out.prior_mu, out.prior_logvar))  # (B, K)
    torch.testing.assert_close(conditional_prior_term(out, pi, "analytic"), (pi * kl).sum(-1))


def test_every_term_against_torch_distributions():
    out = _output(seed=2)
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    objective = create_objective("gmvae", sigma=0.05)
    terms = objective(out, x, torch.tensor(1))
    mean = torch.sigmoid(out.logits)
    recon = -D.Normal(mean, math.sqrt(0.05)).log_prob(x).sum((1, 2, 3)).mean()
    pi = D.Categorical(logits=out.cluster_logits)
    kl_y = D.kl_divergence(pi, D.Categorical(probs=torch.full((4, 3), 1 / 3.0))).mean()
    kl_w = D.kl_divergence(_normal(out.mu_w, out.logvar_w),
                           _normal(torch.zeros(4, 2), torch.zeros(4, 2))).mean()
    cp = conditional_prior_term(out, pi.probs, "sample").mean()
    for name, value in (("recon", recon), ("kl_y", kl_y), ("kl_w", kl_w), ("cp", cp)):
        torch.testing.assert_close(terms[name], value, msg=name)
    torch.testing.assert_close(terms["loss"], recon + cp + kl_w + kl_y)
    bernoulli = create_objective("gmvae", likelihood="bernoulli")(out, x, torch.tensor(1))
    expected = -D.Bernoulli(logits=out.logits, validate_args=False).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(bernoulli["recon"], expected.mean())


def test_y_prior_known_values_and_the_reverse_kl_of_the_old_seed():
    out = _output()
    out.cluster_logits = torch.zeros(4, 3, dtype=torch.float64)  # uniform pi
    x = torch.rand(4, 1, 2, 2, dtype=torch.float64)
    assert create_objective("gmvae")(out, x, torch.tensor(1))["kl_y"].item() == \
        pytest.approx(0.0, abs=1e-12)
    out.cluster_logits = torch.tensor([[60.0, 0, 0]] * 4, dtype=torch.float64)  # one-hot
    assert create_objective("gmvae")(out, x, torch.tensor(1))["kl_y"].item() == \
        pytest.approx(math.log(3), abs=1e-6)
    out = _output(seed=4)
    reverse = create_objective("gmvae", y_prior="reverse")(out, x, torch.tensor(1))["kl_y"]
    pi = D.Categorical(logits=out.cluster_logits)
    expected = D.kl_divergence(D.Categorical(probs=torch.full((4, 3), 1 / 3.0)), pi).mean()
    torch.testing.assert_close(reverse, expected)


def test_minimum_information_constraint_is_a_floor_on_the_y_prior_term():
    out = _output(seed=5)
    x = torch.rand(4, 1, 2, 2, dtype=torch.float64)
    plain = create_objective("gmvae")(out, x, torch.tensor(1))
    kl_y = plain["kl_y"].item()
    high = create_objective("gmvae", min_information=kl_y + 1.0)(out, x, torch.tensor(1))
    assert high["loss"].item() == pytest.approx(plain["loss"].item() + 1.0)
    low = create_objective("gmvae", min_information=kl_y / 2)(out, x, torch.tensor(1))
    assert low["loss"].item() == pytest.approx(plain["loss"].item())


def _y_term(logits, **options):
    """The y-prior part of the loss: the loss minus the loss with a uniform (zero-KL) posterior."""
    out = _output(B=len(logits), K=len(logits[0]), seed=6)
    x = torch.rand(len(logits), 1, 2, 2, dtype=torch.float64)
    objective = create_objective("gmvae", cp_estimator="analytic", **options)
    out.cluster_logits = torch.tensor(logits, dtype=torch.float64)
    terms = objective(out, x, torch.tensor(1))
    # cp depends on pi too: remove it and the other terms, keeping the y-prior contribution only
    return (terms["loss"] - terms["recon"] - terms["cp"] - terms["kl_w"]).item(), terms


HOT = 60.0  # a logit gap that makes pi one-hot to float64 precision


def test_information_split_known_values():
    log2 = math.log(2)
    # two images in two different clusters: pi_bar uniform (marginal 0), I = log 2
    spread = [[HOT, 0.0], [0.0, HOT]]
    value, terms = _y_term(spread, min_information_on="information")
    assert terms["kl_y_marginal"].item() == pytest.approx(0.0, abs=1e-12)
    assert value == pytest.approx(log2)  # lambda 0, balance 1: the ELBO's kl_y
    assert _y_term(spread, min_information_on="information", min_information=1.0)[0] == \
        pytest.approx(1.0)  # max(I = log 2, 1)
    assert _y_term(spread, min_information_on="information", min_information=0.5)[0] == \
        pytest.approx(log2)
    # both images in one cluster: marginal log 2, I = 0, so the threshold adds lambda
    same = [[HOT, 0.0], [HOT, 0.0]]
    value, terms = _y_term(same, min_information_on="information", min_information=1.0)
    assert terms["kl_y_marginal"].item() == pytest.approx(log2)
    assert value == pytest.approx(log2 + 1.0)
    assert _y_term(same, min_information_on="information", min_information=1.0, balance=5.0)[0] \
        == pytest.approx(5 * log2 + 1.0)
    # the paper's form on the same case: max(kl_y = log 2, 1) = 1, blind to the imbalance
    assert _y_term(same, min_information=1.0)[0] == pytest.approx(1.0)


def test_information_split_marginal_against_torch_distributions():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(7, 4, generator=g, dtype=torch.float64) * 2
    value, terms = _y_term(logits.tolist(), min_information_on="information", balance=3.0,
                           min_information=10.0)
    pi_bar = torch.softmax(logits, -1).mean(0)
    marginal = D.kl_divergence(D.Categorical(probs=pi_bar),
                               D.Categorical(probs=torch.full((4,), 0.25, dtype=torch.float64)))
    torch.testing.assert_close(terms["kl_y_marginal"], marginal)
    assert value == pytest.approx(3.0 * marginal.item() + 10.0)  # I < 10: the threshold binds
    # lambda 0 and balance 1 are the ELBO: the split adds up to kl_y
    exact, terms = _y_term(logits.tolist(), min_information_on="information")
    assert exact == pytest.approx(terms["kl_y"].item())
    assert exact == pytest.approx(_y_term(logits.tolist())[0])


def test_noisy_reconstruction_costs_half_a_nat_per_pixel_on_average():
    # E[(mu + sqrt(s) eps - x)^2] / (2 s) - (mu - x)^2 / (2 s) = 1/2 per pixel: D/2 per image.
    torch.manual_seed(0)
    out = _output(B=2000)
    out.logits = torch.zeros(2000, 1, 2, 2, dtype=torch.float64)
    x = torch.full((2000, 1, 2, 2), 0.5, dtype=torch.float64)
    clean = create_objective("gmvae", sigma=0.01)(out, x, torch.tensor(1))["recon"]
    noisy = create_objective("gmvae", sigma=0.01, noisy_reconstruction=True)(
        out, x, torch.tensor(1))["recon"]
    # sd of the mean over 8000 chi-square(1)/2 pixels, x4 per image: 4 * sqrt(0.5 / 8000) = 0.03
    assert (noisy - clean).item() == pytest.approx(4 * 0.5, abs=0.15)


@pytest.mark.parametrize(("options", "match"), [
    ({"sigma": 0.0}, "variance"),
    ({"samples": 0}, "samples"),
    ({"cp_estimator": "exact"}, "cp_estimator"),
    ({"y_prior": "both"}, "y_prior"),
    ({"likelihood": "bernoulli", "noisy_reconstruction": True}, "gaussian likelihood only"),
    ({"min_information_on": "mi"}, "min_information_on"),
    ({"balance": 2.0}, "min_information_on='information'"),
    ({"balance": -1.0, "min_information_on": "information"}, "balance must be >= 0"),
    ({"min_information_on": "information", "y_prior": "reverse"}, "y_prior='forward'"),
])
def test_objective_config_errors(options, match):
    with pytest.raises(ValueError, match=match):
        GMVAEObjectiveConfig(**options)


