"""FactorVAE: permutation, discriminator ownership, gradient routing (with and without the leak)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelab.data.base import Batch
from vaelab.errors import VaelabError
from vaelab.factory import create_objective
from vaelab.models.vae import VAE, BurgessConfig, VAEOutput
from vaelab.objectives.factor import Discriminator, FactorVAEConfig, permute_dims
from vaelab.optim import Updater


def _setup(leak=False, d=4, b=8, seed=0):
    torch.manual_seed(seed)
    model = VAE(BurgessConfig(latent_dim=d, channels=1, image_size=32))
    objective = create_objective("factor_vae", latent_dim=d, hidden_dim=32, leak_disc_grad=leak)
    x = torch.rand(b, 1, 32, 32)
    return model, objective, x


def test_permute_dims_permutes_each_column_and_breaks_the_joint():
    b, d = 1000, 3
    z = torch.arange(b, dtype=torch.float32)[:, None].expand(b, d)  # every column equal
    perm = permute_dims(z, generator=torch.Generator().manual_seed(0))
    assert perm.shape == (b, d)
    for j in range(d):  # each column is a permutation of the original column
        torch.testing.assert_close(perm[:, j].sort().values, z[:, j])
    # Rows that keep two columns equal: Poisson with mean ~ 1 for independent permutations;
    # P(>= 10) < 1e-6. The sample correlation of independent columns is ~ N(0, 1/B), so
    # |r| < 5/sqrt(B).
    assert (perm[:, 0] == perm[:, 1]).sum().item() < 10
    r = torch.corrcoef(perm.T)[0, 1].item()
    assert abs(r) < 5 / math.sqrt(b)
    again = permute_dims(z, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(perm, again)  # reproducible with a generator


def test_discriminator_shape_and_init():
    disc = Discriminator(latent_dim=10)
    linears = [m for m in disc.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == (
        [(10, 1000)] + [(1000, 1000)] * 4 + [(1000, 2)])
    # Kaiming-uniform with the ReLU gain: bound sqrt(6 / fan_in)
    assert linears[1].weight.abs().max().item() <= math.sqrt(6 / 1000)
    assert linears[1].weight.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    assert disc(torch.zeros(3, 10)).shape == (3, 2)


def test_discriminator_is_in_the_objectives_state_dict_and_optimiser():
    objective = create_objective("factor_vae")
    keys = objective.state_dict().keys()
    assert "discriminator.net.0.weight" in keys and "discriminator.net.10.bias" in keys
    optimizer = objective.configure_optimizer()
    assert optimizer.defaults["lr"] == 5e-5 and optimizer.defaults["betas"] == (0.5, 0.9)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in objective.discriminator.parameters()}


def test_terms_on_the_two_halves():
    model, objective, x = _setup(b=9)  # odd: the last image is dropped
    terms = objective.compute(model, Batch(x), torch.tensor(1))
    assert {"loss", "recon", "kl", "kl_0", "kl_3", "tc", "disc_loss", "disc_acc"} <= set(terms)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())
    loss = terms["recon"] + terms["kl"] + 6.0 * terms["tc"]
    assert terms["loss"].item() == pytest.approx(loss.item(), rel=1e-5)


def test_tc_warmup_and_eval():
    model, objective, x = _setup()
    objective = create_objective("factor_vae", latent_dim=4, hidden_dim=32, warmup_steps=4)
    terms = objective.compute(model, Batch(x), torch.tensor(1))
    loss = terms["recon"] + terms["kl"] + 0.25 * 6.0 * terms["tc"]
    assert terms["warmup"].item() == pytest.approx(0.25)
    assert terms["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    objective.eval()
    model.eval()
    with torch.no_grad():
        terms = objective.compute(model, Batch(x), torch.tensor(1))  # evaluation: no updates, weight 1
    loss = terms["recon"] + terms["kl"] + 6.0 * terms["tc"]
    assert terms["loss"].item() == pytest.approx(loss.item(), rel=1e-5)


def _encoder_grads(loss, model):
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()), allow_unused=True,
                                retain_graph=True)
    return [g for g in grads if g is not None and g.abs().sum() > 0]


@pytest.mark.parametrize("leak", [False, True])
def test_discriminator_loss_reaches_the_encoder_only_with_the_leak(leak):
    model, objective, x = _setup(leak=leak)
    updater = Updater(model, torch.optim.SGD(model.parameters(), lr=0.0), objective,
                      own_optimizer=torch.optim.SGD(objective.parameters(), lr=0.0))
    torch.manual_seed(1)
    objective.update(updater, model, Batch(x), torch.tensor(1))
    got = [p.grad for p in model.encoder.parameters()]
    torch.manual_seed(1)
    terms = objective.compute(model, Batch(x), torch.tensor(1))
    # the disc loss shares the pass on z_1 with the TC term: only the routing keeps it out
    assert _encoder_grads(terms["disc_loss"], model)
    params = list(model.encoder.parameters())
    without = torch.autograd.grad(terms["loss"], params, retain_graph=True)
    with_leak = torch.autograd.grad(terms["loss"] + terms["disc_loss"], params)
    expected, other = (with_leak, without) if leak else (without, with_leak)
    for g, e, o in zip(got, expected, other):
        torch.testing.assert_close(g, e)
    assert any(not torch.allclose(g, o) for g, o in zip(got, other))


def _reference_update(objective, model, x, step, updater):
    """The implementation before issue 14: the whole batch decoded, the discriminator called
    three times (z_1 for the TC term, z_1 detached and permute(z_2) for its own loss)."""
    import torch.nn.functional as F

    from vaelab.objectives.elbo import elbo_terms

    x = x[: x.shape[0] // 2 * 2]
    out = model(x)
    half = x.shape[0] // 2
    first = VAEOutput(mu=out.mu[:half], logvar=out.logvar[:half], z=out.z[:half],
                      logits=out.logits[:half])
    terms = elbo_terms(first, x[:half], objective.config.likelihood)
    z_perm = permute_dims(out.z[half:2 * half].detach())
    logits_joint = objective.discriminator(first.z)
    tc = (logits_joint[:, 0] - logits_joint[:, 1]).mean()
    loss = terms["recon"] + terms["kl"] + objective.config.gamma * tc
    if not objective.config.leak_disc_grad:
        logits_joint = objective.discriminator(first.z.detach())
    logits_perm = objective.discriminator(z_perm)
    label = torch.zeros(half, dtype=torch.long)
    disc_loss = 0.5 * (F.cross_entropy(logits_joint, label)
                       + F.cross_entropy(logits_perm, label + 1))
    model_loss = loss + disc_loss if objective.config.leak_disc_grad else loss
    updater.minimize(model_loss, own_loss=disc_loss)
    return {"loss": loss.detach(), "recon": terms["recon"].detach(), "tc": tc.detach(),
            "disc_loss": disc_loss.detach()}


@pytest.mark.parametrize("leak", [False, True])
def test_decodes_one_half_and_calls_the_discriminator_twice_with_the_old_math(leak):
    """Issue 14: half the decoder work and one discriminator pass less per step, same numbers
    (terms and both networks' gradients) as the three-pass, full-decode implementation.

    In float64: decoding 8 images instead of 16 may take another kernel path (oneDNN picks one
    per shape and host; on Intel AMX hosts float32 gradients then differ by ~1e-5), so float32
    results agree only to float32 rounding amplified by the network. Float64 leaves the same
    mathematics agreeing to ~1e-12, far below any planted bug's effect, on every host."""
    model, objective, x = _setup(leak=leak, b=16)
    model.double()
    objective.double()
    x = x.double()
    calls, decoded = [], []
    objective.discriminator.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    model.decoder.register_forward_hook(lambda m, i, o: decoded.append(i[0].shape[0]))
    results = []
    for implementation in ("new", "reference"):
        m = VAE(BurgessConfig(latent_dim=4, channels=1, image_size=32)).double()
        m.load_state_dict(model.state_dict())
        m.decoder._forward_hooks = model.decoder._forward_hooks
        updater = Updater(m, torch.optim.SGD(m.parameters(), lr=0.0), objective,
                          own_optimizer=torch.optim.SGD(objective.parameters(), lr=0.0))
        calls.clear()
        decoded.clear()
        torch.manual_seed(3)
        if implementation == "new":
            terms = objective.update(updater, m, Batch(x), torch.tensor(1))
        else:
            terms = _reference_update(objective, m, x, torch.tensor(1), updater)
        results.append((terms, [p.grad.clone() for p in m.parameters()],
                        [p.grad.clone() for p in objective.parameters()],
                        list(calls), list(decoded)))
    (new, new_model, new_disc, new_calls, new_decoded), (ref, ref_model, ref_disc, ref_calls,
                                                         ref_decoded) = results
    assert new_calls == [8, 8] and ref_calls == ([8, 8] if leak else [8, 8, 8])
    assert new_decoded == [8] and ref_decoded == [16]
    for key in ref:  # float64's default tolerances: rtol 1e-7, atol 1e-7
        torch.testing.assert_close(new[key], ref[key])
    for got, want in zip(new_model + new_disc, ref_model + ref_disc):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("leak", [False, True])
def test_training_step_routes_each_gradient_to_its_own_parameters(leak):
    model, objective, x = _setup(leak=leak)
    # lr = 0 keeps the parameters, so .grad after the step can be compared with a recomputation
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    aux_optimizer = torch.optim.SGD(objective.discriminator.parameters(), lr=0.0)
    torch.manual_seed(1)
    updater = Updater(model, optimizer, objective, own_optimizer=aux_optimizer)
    terms = objective.update(updater, model, Batch(x), torch.tensor(1))
    assert all(not v.requires_grad for v in terms.values())
    torch.manual_seed(1)  # same reparameterisation noise and permutation
    again = objective.compute(model, Batch(x), torch.tensor(1))
    model_params = list(model.parameters())
    disc_params = list(objective.discriminator.parameters())
    model_loss = again["loss"] + again["disc_loss"] if leak else again["loss"]
    expected = torch.autograd.grad(model_loss, model_params, retain_graph=True)
    for p, g in zip(model_params, expected):
        torch.testing.assert_close(p.grad, g)
    # the discriminator gets only the gradient of its own loss, not that of the TC term
    expected = torch.autograd.grad(again["disc_loss"], disc_params)
    for p, g in zip(disc_params, expected):
        torch.testing.assert_close(p.grad, g)


def test_training_step_updates_both_networks():
    model, objective, x = _setup()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    aux_optimizer = objective.configure_optimizer()
    before_model = [p.detach().clone() for p in model.parameters()]
    before_disc = [p.detach().clone() for p in objective.discriminator.parameters()]
    updater = Updater(model, optimizer, objective, own_optimizer=aux_optimizer)
    objective.update(updater, model, Batch(x), torch.tensor(1))
    assert all(not torch.equal(a, p) for a, p in zip(before_model, model.parameters()))
    assert all(not torch.equal(a, p)
               for a, p in zip(before_disc, objective.discriminator.parameters()))


def test_errors():
    model, objective, x = _setup()
    with pytest.raises(ValueError, match=">= 2 images"):
        objective.compute(model, Batch(x[:1]), torch.tensor(1))
    wrong = create_objective("factor_vae", latent_dim=6, hidden_dim=32)
    with pytest.raises(ValueError, match="latent_dim=4"):
        wrong.compute(model, Batch(x), torch.tensor(1))
    updater = Updater(model, torch.optim.SGD(model.parameters(), lr=0.1), objective)
    updater.own_optimizer = None
    with pytest.raises(VaelabError, match="no optimiser of its own"):
        objective.update(updater, model, Batch(x), torch.tensor(1))


@pytest.mark.parametrize(("options", "match"), [
    ({"gamma": -1.0}, "gamma"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"num_layers": 1}, "num_layers"),
    ({"lr_disc": 0.0}, "lr_disc"),
    ({"betas_disc": (0.5, 1.0)}, "betas_disc"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"likelihood": "poisson"}, "likelihood"),
])
def test_config_validation(options, match):
    with pytest.raises(ValueError, match=match):
        FactorVAEConfig(**options)


# --- known answers for every term, against torch.distributions and a hand-made discriminator ----

class _LinearLogits(torch.nn.Module):
    """Logits (joint, permuted) = (z @ a, z @ b): a discriminator whose outputs are hand-checkable."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = torch.tensor(a), torch.tensor(b)

    def forward(self, z):
        return torch.stack([z @ self.a, z @ self.b], dim=-1)


def _known_output(b=6, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # The two halves differ strongly, so terms from the wrong half (or the whole batch) differ.
    mu = torch.randn(b, d, generator=gen) + torch.arange(b)[:, None].float()
    logvar = 0.3 * torch.randn(b, d, generator=gen)
    z = mu + 0.5 * torch.randn(b, d, generator=gen)
    logits = torch.randn(b, 1, 2, 2, generator=gen) * (1 + torch.arange(b))[:, None, None, None]
    x = (torch.rand(b, 1, 2, 2, generator=gen) > 0.5).float()  # binary: Bernoulli's support
    return VAEOutput(mu=mu, logvar=logvar, z=z, logits=logits), x


def test_factor_vae_terms_known_answer():
    out, x = _known_output()
    objective = create_objective("factor_vae", latent_dim=3, hidden_dim=4, gamma=2.5)
    objective.discriminator = _LinearLogits([0.7, -0.2, 0.1], [-0.3, 0.5, 0.4])
    half = 3
    torch.manual_seed(11)
    terms = objective(out, x, torch.tensor(1))
    # recon and KL of the first half only, from torch.distributions
    recon = -Bernoulli(logits=out.logits[:half]).log_prob(x[:half]).sum((1, 2, 3)).mean()
    posterior = Normal(out.mu[:half], (0.5 * out.logvar[:half]).exp())
    kl = kl_divergence(posterior, Normal(0.0, 1.0)).sum(-1).mean()
    # TC: mean over the first half of logit_joint - logit_permuted = z (a - b)
    z1 = out.z[:half]
    tc = (z1 @ torch.tensor([1.0, -0.7, -0.3])).mean()
    assert terms["recon"].item() == pytest.approx(recon.item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert terms["tc"].item() == pytest.approx(tc.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx((recon + kl + 2.5 * tc).item(), rel=1e-5)
    # Discriminator: 1/2 [-log softmax_joint(D(z_1)) - log softmax_perm(D(permute(z_2)))], with
    # z_2 the SECOND half, permuted column-wise (the same permutation: same seed, same call).
    torch.manual_seed(11)
    z2 = permute_dims(out.z[half:])
    assert not torch.equal(z2, out.z[half:])  # the permutation moved something
    log_p_joint = torch.log_softmax(objective.discriminator(z1), -1)[:, 0]
    log_p_perm = torch.log_softmax(objective.discriminator(z2), -1)[:, 1]
    disc = -0.5 * (log_p_joint.mean() + log_p_perm.mean())
    assert terms["disc_loss"].item() == pytest.approx(disc.item(), rel=1e-5)
    # accuracy: the mean over both halves of "classified as its own kind" (log p > log 1/2)
    right = torch.cat([log_p_joint > -math.log(2), log_p_perm > -math.log(2)]).float()
    assert 0 < right.mean() < 1  # a case where half-credit formulas differ
    assert terms["disc_acc"].item() == pytest.approx(right.mean().item())


def test_discriminator_loss_is_log2_at_chance_and_zero_when_perfect():
    out, x = _known_output()
    objective = create_objective("factor_vae", latent_dim=3, hidden_dim=4)
    objective.discriminator = _LinearLogits([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    assert objective(out, x, torch.tensor(1))["disc_loss"].item() == pytest.approx(math.log(2))
    assert objective(out, x, torch.tensor(1))["disc_acc"].item() == pytest.approx(0.5)


def test_permute_dims_is_not_the_identity():
    z = torch.arange(40.0).reshape(20, 2)
    assert not torch.equal(permute_dims(z, torch.Generator().manual_seed(0)), z)
