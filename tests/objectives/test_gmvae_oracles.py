"""Oracles for the GMVAE objective (issue 35): its options against torch.distributions and
known answers, never against the objective's own helpers.

* the conditional-prior estimator the objective passes on (`cp_estimator`);
* S = 2 samples: the mean of two hand-built one-sample outputs, and the model's sample-major rows;
* the Bayes-rule identity that pins the sampled form, and the 1-D case where the analytic form
  is another objective;
* `cp_pi_gradient="negated"` (Nat-D/GMVAE's code): the loss value kept, autograd's gradient of cp
  with respect to pi negated above lambda;
* validation terms are Monte Carlo estimates (the forward samples in eval mode).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from vaelab.factory import create_objective
from vaelab.models.gmvae import GMVAE, GMVAEConfig, GMVAEOutput

STEP = torch.tensor(1)


def _normal(mu, logvar):
    return D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)


def _output(B=4, K=3, Dz=2, Dw=2, seed=0, grad=False) -> GMVAEOutput:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).requires_grad_(grad)

    return GMVAEOutput(mu_z=r(B, Dz), logvar_z=r(B, Dz, scale=0.3), mu_w=r(B, Dw),
                       logvar_w=r(B, Dw, scale=0.3), z=r(B, Dz), w=r(B, Dw),
                       cluster_logits=r(B, K), prior_mu=r(B, K, Dz),
                       prior_logvar=r(B, K, Dz, scale=0.3), logits=r(B, 1, 2, 2))


def _x(B=4, seed=9):
    return torch.rand(B, 1, 2, 2, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


def _cp_oracle(out: GMVAEOutput, estimator: str, pi=None):
    """cp per row from torch.distributions: the sampled log-ratio or the pi-weighted KL."""
    pi = torch.softmax(out.cluster_logits, -1) if pi is None else pi
    q = _normal(out.mu_z, out.logvar_z)
    components = _normal(out.prior_mu, out.prior_logvar)  # batch (B, K)
    if estimator == "sample":
        return q.log_prob(out.z) - (pi * components.log_prob(out.z[:, None])).sum(-1)
    kl = D.kl_divergence(_normal(out.mu_z[:, None], out.logvar_z[:, None]), components)
    return (pi * kl).sum(-1)


def _kl_y_oracle(logits):
    K = logits.shape[-1]
    uniform = D.Categorical(probs=torch.full(logits.shape, 1.0 / K, dtype=logits.dtype))
    return D.kl_divergence(D.Categorical(logits=logits), uniform)


@pytest.mark.parametrize("estimator", ["sample", "analytic"])
def test_the_objective_passes_cp_estimator_on(estimator):
    out = _output(seed=1)
    terms = create_objective("gmvae", cp_estimator=estimator)(out, _x(), STEP)
    torch.testing.assert_close(terms["cp"], _cp_oracle(out, estimator).mean())
    other = "analytic" if estimator == "sample" else "sample"
    assert abs(terms["cp"].item() - _cp_oracle(out, other).mean().item()) > 0.1


@pytest.mark.parametrize("estimator", ["sample", "analytic"])
def test_two_samples_are_the_mean_of_two_one_sample_outputs(estimator):
    a, b = _output(seed=2), _output(seed=3)
    for name in ("mu_z", "logvar_z", "mu_w", "logvar_w"):  # one posterior, two draws
        setattr(b, name, getattr(a, name))
    both = GMVAEOutput(mu_z=a.mu_z, logvar_z=a.logvar_z, mu_w=a.mu_w, logvar_w=a.logvar_w,
                       **{name: torch.cat([getattr(a, name), getattr(b, name)])
                          for name in ("z", "w", "cluster_logits", "prior_mu", "prior_logvar",
                                       "logits")}, samples=2)
    objective = create_objective("gmvae", cp_estimator=estimator, likelihood="bernoulli")
    x = _x()
    two, one_a, one_b = (objective(out, x, STEP) for out in (both, a, b))
    for name in ("loss", "recon", "cp", "kl_w", "kl_y"):
        torch.testing.assert_close(two[name], (one_a[name] + one_b[name]) / 2, msg=name)


def test_the_models_two_samples_are_sample_major_draws_of_one_posterior():
    torch.manual_seed(0)
    model = GMVAE(GMVAEConfig(z_dim=2, w_dim=3, K=3, hidden_dim=8, image_height=4, image_width=4))
    x = torch.rand(5, 1, 4, 4)
    torch.manual_seed(1)
    out = model(x, samples=2)
    torch.manual_seed(1)
    mu_z, logvar_z, mu_w, logvar_w = model.encode(x)
    eps_z, eps_w = torch.randn(10, 2), torch.randn(10, 3)  # z first, then w
    z = torch.cat([mu_z, mu_z]) + torch.cat([logvar_z, logvar_z]).mul(0.5).exp() * eps_z
    w = torch.cat([mu_w, mu_w]) + torch.cat([logvar_w, logvar_w]).mul(0.5).exp() * eps_w
    torch.testing.assert_close(out.z, z)  # row s B + b: sample s of image b
    torch.testing.assert_close(out.w, w)
    assert out.samples == 2 and out.logits.shape == (10, 1, 4, 4)


def _bayes_output(B=6, K=4, Dz=3, seed=4) -> GMVAEOutput:
    """Hand-built rows whose cluster logits are Bayes' rule: log N(z; mu_k, v_k)."""
    out = _output(B=B, K=K, Dz=Dz, seed=seed)
    out.cluster_logits = _normal(out.prior_mu, out.prior_logvar).log_prob(out.z[:, None])
    return out


def _mixture_identity(out: GMVAEOutput) -> torch.Tensor:
    """log q(z|x) - logsumexp_k log N(z; mu_k, v_k) + log K per row."""
    log_p = _normal(out.prior_mu, out.prior_logvar).log_prob(out.z[:, None])
    K = log_p.shape[-1]
    return _normal(out.mu_z, out.logvar_z).log_prob(out.z) - log_p.logsumexp(-1) + math.log(K)


def test_sampled_cp_with_the_bayes_posterior_is_the_kl_to_the_mixture_per_row():
    out = _bayes_output()
    expected = _mixture_identity(out)
    objective = create_objective("gmvae", cp_estimator="sample")
    for row in range(len(out.z)):  # per row: one-row outputs
        one = GMVAEOutput(**{name: getattr(out, name)[row:row + 1]
                             for name in ("mu_z", "logvar_z", "mu_w", "logvar_w", "z", "w",
                                          "cluster_logits", "prior_mu", "prior_logvar", "logits")})
        terms = objective(one, _x(1), STEP)
        torch.testing.assert_close(terms["cp"] + terms["kl_y"], expected[row])
    analytic = create_objective("gmvae", cp_estimator="analytic")(out, _x(6), STEP)
    assert abs((analytic["cp"] + analytic["kl_y"]).item() - expected.mean().item()) > 0.5


def test_the_models_bayes_posterior_meets_the_mixture_identity():
    torch.manual_seed(0)
    model = GMVAE(GMVAEConfig(z_dim=2, w_dim=2, K=4, hidden_dim=8, image_height=4, image_width=4,
                              cluster_posterior="bayes"))
    x = torch.rand(6, 1, 4, 4)
    out = model(x)
    terms = create_objective("gmvae", cp_estimator="sample", likelihood="bernoulli")(out, x, STEP)
    torch.testing.assert_close(terms["cp"] + terms["kl_y"], _mixture_identity(out).mean())


def test_the_analytic_form_is_another_objective_in_one_dimension():
    # q(z|x) = N(0, 1), p(z|w, k) = N(-2, 1) and N(2, 1), pi = Bayes' rule at z. z on the
    # quantiles of q, so a batch mean is E_q. Known answers: KL(q || N(+-2, 1)) = 2 for both
    # components, so the analytic cp is 2 on every row; the sampled cp + kl_y is
    # KL(q || the mixture) + log 2 = 0.9433 (quadrature on a fine grid: 0.94334).
    n = 20000
    z = D.Normal(0.0, 1.0).icdf((torch.arange(n, dtype=torch.float64) + 0.5) / n)[:, None]
    mu_p = torch.tensor([[-2.0], [2.0]], dtype=torch.float64).expand(n, 2, 1)
    zeros = torch.zeros(n, 1, dtype=torch.float64)
    out = GMVAEOutput(mu_z=zeros, logvar_z=zeros, mu_w=zeros, logvar_w=zeros, z=z, w=zeros,
                      cluster_logits=D.Normal(mu_p[..., 0], 1.0).log_prob(z), prior_mu=mu_p,
                      prior_logvar=torch.zeros_like(mu_p),
                      logits=torch.zeros(n, 1, 1, 1, dtype=torch.float64))
    x = torch.full((n, 1, 1, 1), 0.5, dtype=torch.float64)
    sampled = create_objective("gmvae", cp_estimator="sample")(out, x, STEP)
    analytic = create_objective("gmvae", cp_estimator="analytic")(out, x, STEP)
    assert analytic["cp"].item() == pytest.approx(2.0, abs=1e-12)
    assert (sampled["cp"] + sampled["kl_y"]).item() == pytest.approx(0.94334, abs=2e-3)
    difference = (analytic["cp"] - sampled["cp"]).item()  # kl_y is the same in both
    assert difference == pytest.approx(1.459, abs=3e-3)


# -- cp_pi_gradient="negated": Nat-D/GMVAE's gradient ----------------------------------------


def _grads(loss, out):
    return torch.autograd.grad(loss, [out.cluster_logits, out.prior_mu, out.mu_z])


@pytest.mark.parametrize("estimator", ["analytic", "sample"])
def test_negated_cp_gradient_keeps_the_loss_and_negates_the_pi_gradient_of_cp(estimator):
    x = _x()
    exact = create_objective("gmvae", cp_estimator=estimator)
    code = create_objective("gmvae", cp_estimator=estimator, cp_pi_gradient="negated")
    out = _output(seed=5, grad=True)
    terms_exact, terms_code = exact(out, x, STEP), code(out, x, STEP)
    for name in terms_exact:
        assert terms_code[name].item() == terms_exact[name].item(), name  # the same value, bit for bit
    logits_exact, prior_exact, mu_exact = _grads(terms_exact["loss"], out)
    logits_code, prior_code, mu_code = _grads(terms_code["loss"], out)
    # autograd's gradients of the two pieces that depend on the cluster logits (leaves here)
    grad_cp, = torch.autograd.grad(_cp_oracle(out, estimator).mean(), out.cluster_logits)
    grad_y, = torch.autograd.grad(_kl_y_oracle(out.cluster_logits).mean(), out.cluster_logits)
    torch.testing.assert_close(logits_exact, grad_y + grad_cp)
    torch.testing.assert_close(logits_code, grad_y - grad_cp)  # kl_y = 0.47 > lambda = 0
    torch.testing.assert_close(prior_code, prior_exact)  # cp's other paths: autograd's
    torch.testing.assert_close(mu_code, mu_exact)


def test_negated_cp_gradient_is_autograds_below_lambda():
    x = _x()
    out = _output(seed=5, grad=True)
    kl_y = _kl_y_oracle(out.cluster_logits).mean().item()
    options = {"cp_estimator": "analytic", "min_information": kl_y + 0.5}  # below: no flip
    exact = create_objective("gmvae", **options)(out, x, STEP)
    code = create_objective("gmvae", cp_pi_gradient="negated", **options)(out, x, STEP)
    grad_cp, = torch.autograd.grad(_cp_oracle(out, "analytic").mean(), out.cluster_logits)
    logits_exact, logits_code = (_grads(t["loss"], out)[0] for t in (exact, code))
    torch.testing.assert_close(logits_code, logits_exact)
    torch.testing.assert_close(logits_code, grad_cp)  # the y-prior gradient is cut below lambda


def test_negated_cp_gradient_thresholds_the_information_when_split():
    # min_information_on="information": the flip follows the thresholded term, I, not kl_y.
    x = _x()
    out = _output(seed=5, grad=True)
    out.cluster_logits = torch.tensor([[3.0, 0, 0], [2.0, 0, 1], [0, 3.0, 0], [2.5, 0, 0]],
                                      dtype=torch.float64, requires_grad=True)  # unbalanced
    pi = torch.softmax(out.cluster_logits, -1)
    kl_y = _kl_y_oracle(out.cluster_logits).mean()
    marginal = _kl_y_oracle(pi.mean(0).log()[None])[0]
    information = (kl_y - marginal).item()
    assert information < kl_y.item() - 0.01
    options = {"cp_estimator": "analytic", "min_information_on": "information"}
    grad_cp, = torch.autograd.grad(_cp_oracle(out, "analytic").mean(), out.cluster_logits)
    between = (information + kl_y.item()) / 2  # I < lambda < kl_y: no flip
    for lam, sign in ((between, 1.0), (information / 2, -1.0)):
        exact = create_objective("gmvae", min_information=lam, **options)(out, x, STEP)
        code = create_objective("gmvae", min_information=lam, cp_pi_gradient="negated",
                                **options)(out, x, STEP)
        logits_exact, logits_code = (_grads(t["loss"], out)[0] for t in (exact, code))
        torch.testing.assert_close(logits_code, logits_exact - (1 - sign) * grad_cp)


def test_cp_pi_gradient_option_is_checked():
    with pytest.raises(ValueError, match="cp_pi_gradient"):
        create_objective("gmvae", cp_pi_gradient="flipped")


# -- validation: Monte Carlo terms in eval mode ------------------------------------------------


def test_compute_samples_in_eval_mode_so_validation_estimates_the_objective():
    torch.manual_seed(0)
    model = GMVAE(GMVAEConfig(z_dim=2, w_dim=2, K=3, hidden_dim=8, image_height=4, image_width=4,
                              cluster_posterior="bayes")).eval()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float32)
    batch = type("Batch", (), {"x": x})()
    objective = create_objective("gmvae", likelihood="bernoulli", samples=2).eval()
    torch.manual_seed(3)
    terms = objective.compute(model, batch, STEP)
    torch.manual_seed(3)
    with torch.no_grad():
        mu_z, logvar_z, mu_w, logvar_w = model.encode(x)
        z = mu_z.repeat(2, 1) + logvar_z.repeat(2, 1).mul(0.5).exp() * torch.randn(10, 2)
        w = mu_w.repeat(2, 1) + logvar_w.repeat(2, 1).mul(0.5).exp() * torch.randn(10, 2)
        prior_mu, prior_logvar = model.prior_heads(w)
        out = GMVAEOutput(mu_z=mu_z, logvar_z=logvar_z, mu_w=mu_w, logvar_w=logvar_w, z=z, w=w,
                          cluster_logits=_normal(prior_mu, prior_logvar).log_prob(z[:, None]),
                          prior_mu=prior_mu, prior_logvar=prior_logvar, logits=model.decoder(z),
                          samples=2)
        by_hand = objective(out, x, STEP)
        plug_in = objective(model(x), x, STEP)  # the posterior means: another number
    for name in ("loss", "recon", "cp", "kl_y"):
        torch.testing.assert_close(terms[name], by_hand[name], msg=name)
    assert abs(terms["loss"].item() - plug_in["loss"].item()) > 1e-3


def test_the_code_preset_is_the_k30_one_with_the_codes_gradient_and_latent_sizes():
    from vaelab.presets import load_preset
    from vaelab.workflow import build_run_config

    code, k30 = load_preset("gmvae_dilokthanakul_code_k30"), load_preset("gmvae_dilokthanakul_k30")
    for data in (code, k30):
        data.pop("description"), data.pop("name")
    assert (code["model"].pop("z_dim"), code["model"].pop("w_dim")) == (200, 150)  # the code's
    assert code["objective"].pop("cp_pi_gradient") == "negated"
    k30["model"].pop("z_dim"), k30["model"].pop("w_dim")
    assert code == k30  # nothing else differs
    config = build_run_config("gmvae_dilokthanakul_code_k30")
    assert config.objective.config.cp_pi_gradient == "negated"
