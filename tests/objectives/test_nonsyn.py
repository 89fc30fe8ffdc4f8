"""Non-Synergistic VAE: greedy selection known answers, the penalty, both update rules, presets."""

from __future__ import annotations

import copy
import math
import tomllib
from itertools import combinations
from pathlib import Path

import pytest
import torch
from torch import nn

from vaelab.config import ConfigError, TrainConfig, from_dict
from vaelab.data.base import Batch
from vaelab.factory import create_model, create_objective
from vaelab.models.vae import GaussianVAE
from vaelab.objectives.nonsyn import (
    NonSyn,
    NonSynObjectiveConfig,
    greedy_select_latents,
    synergy_penalty,
)
from vaelab.objectives.terms import gaussian_kl_per_dim, reconstruction_loss
from vaelab.optim import Updater

# Spec nonsyn-vae.md §3.2 worked example.
KL = [0.2, 4.0, 0.05, 3.0, 1.0, 0.5, 0.01, 2.9, 0.3, 0.0]


@pytest.mark.parametrize(
    ("omega", "best", "i_worst"),
    [
        (0.9, [1, 3, 7], 2.06),  # round 3 first accepts 4, then replaces it with 7
        (0.8, [1, 3, 7], 2.06),
        (0.5, [1], 7.96),
        (1.0, [1, 3, 7, 4, 5, 8, 0, 2, 6], 0.0),  # only the zero-KL latent 9 is left
    ],
)
def test_greedy_worked_example(omega, best, i_worst):
    chosen, worst = greedy_select_latents(KL, omega)
    assert chosen == best
    assert worst == sorted(set(range(10)) - set(best))
    assert sum(KL[j] for j in worst) == pytest.approx(i_worst)


def test_greedy_accepts_a_tensor():
    assert greedy_select_latents(torch.tensor(KL), 0.9) == ([1, 3, 7], [0, 2, 4, 5, 6, 8, 9])


def test_greedy_first_round_is_not_discounted():
    # Round 1 compares undiscounted I(c) > I_best: 1.05 > 1.0 replaces latent 0 by latent 1
    # (with the discount, 0.9 * 1.05 < 1.0 would keep latent 0 first).
    assert greedy_select_latents([1.0, 1.05], 0.9) == ([1, 0], [])
    # Later rounds are discounted: 0.5 * (3 + 1) = 2 is not > 3, so latent 1 is refused.
    assert greedy_select_latents([3.0, 1.0], 0.5) == ([0], [1])


def test_greedy_all_zero_kl_selects_nothing():
    assert greedy_select_latents([0.0] * 5, 0.9) == ([], [0, 1, 2, 3, 4])


def test_greedy_equal_kls_take_all_in_index_order():
    assert greedy_select_latents([1.0, 1.0, 1.0], 0.9) == ([0, 1, 2], [])


def test_greedy_tie_goes_to_lower_index():
    assert greedy_select_latents([0.0, 2.0, 2.0], 0.5) == ([1], [0, 2])


@pytest.mark.parametrize("omega", [1.0, 1.5, 3.0])
def test_greedy_omega_at_least_one_keeps_every_positive_latent(omega):
    best, worst = greedy_select_latents([0.5, 0.0, 2.0, 0.1], omega)
    assert set(best) >= {0, 2, 3}
    if omega == 1.0:  # a zero-KL latent adds nothing, so strict > rejects it
        assert worst == [1]
    else:  # omega * I > I for any positive I: even the zero-KL latent joins
        assert worst == []


def test_greedy_first_accept_threshold():
    # A later round's first pick j needs KL_j > (1 - omega) / omega * I(S): 11.1% at omega 0.9.
    assert greedy_select_latents([10.0, 1.12], 0.9)[0] == [0, 1]
    assert greedy_select_latents([10.0, 1.10], 0.9)[0] == [0]


def test_synergy_penalty_equals_brute_force():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 5, generator=gen), torch.randn(7, 5, generator=gen)
    kl = gaussian_kl_per_dim(mu, logvar)
    for size in range(6):
        for worst in combinations(range(5), size):
            expected = sum(kl[b, j].item() for b in range(7) for j in worst) / 7
            assert synergy_penalty(kl, worst).item() == pytest.approx(expected, abs=1e-5)


class _TinyEncoder(nn.Linear):
    def forward(self, x):
        return super().forward(x.flatten(1)).chunk(2, dim=1)  # (mu, logvar), each (B, 3)


class _TinyDecoder(nn.Linear):
    def forward(self, z):
        return super().forward(z).view(-1, 1, 2, 2)


class TinyVAE(GaussianVAE):
    """Linear encoder/decoder on 1x2x2 images, D = 3: fast, exact gradient tests."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim, self.image_shape = 3, (1, 2, 2)
        self.encoder = _TinyEncoder(4, 6)
        self.decoder = _TinyDecoder(3, 4)
        with torch.no_grad():  # latent 2 carries almost no KL, so the penalty has a target
            self.encoder.weight[[2, 5]] *= 0.01
            self.encoder.bias[[2, 5]] *= 0.01


def _batch() -> torch.Tensor:
    return torch.rand(8, 1, 2, 2, generator=torch.Generator().manual_seed(3))


def _hand_adam(theta, grads_seq, lr, betas=(0.9, 0.999), eps=1e-8):
    """Adam written out (Kingma & Ba, Algorithm 1) over successive gradients."""
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    for t, g in enumerate(grads_seq, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        theta = theta - lr * m_hat / (v_hat.sqrt() + eps)
    return theta


def test_two_step_matches_hand_made_two_step_adam():
    torch.manual_seed(0)
    model = TinyVAE().eval()  # z = mu: the forward pass is deterministic
    reference = copy.deepcopy(model)
    objective = NonSyn(NonSynObjectiveConfig(alpha=5.0, omega=0.9))
    x = _batch()
    lr = 1e-2

    # Gradients at theta_t, by hand.
    out = reference(x)
    kl = gaussian_kl_per_dim(out.mu, out.logvar)
    vae = reconstruction_loss(out.logits, x) + kl.sum(1).mean()
    _, worst = greedy_select_latents(kl.detach().mean(0), 0.9)
    assert worst, "the test needs a non-empty penalty"
    syn = 5.0 * synergy_penalty(kl, worst)
    params = list(reference.parameters())
    g_vae = torch.autograd.grad(vae, params, retain_graph=True)
    g_syn = torch.autograd.grad(syn, params, allow_unused=True)
    g_syn = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_syn)]
    expected = [_hand_adam(p.detach(), [a, b], lr) for p, a, b in zip(params, g_vae, g_syn)]

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    terms = objective.update(Updater(model, optimizer, objective), model, Batch(x), torch.tensor(1))
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    assert optimizer.state[next(iter(model.parameters()))]["step"].item() == 2
    # The decoder got a zero gradient in step 2, yet Adam's momentum moved it again.
    assert terms["syn"].item() == pytest.approx(syn.item(), rel=1e-5)

    # One step on the summed gradient is a different update (Adam is not linear).
    summed = [_hand_adam(p.detach(), [a + b], lr) for p, a, b in zip(params, g_vae, g_syn)]
    assert any(not torch.allclose(s, e, atol=1e-6) for s, e in zip(summed, expected))


def test_two_step_one_parameter_known_answer():
    # theta = 1, gradients g1 = 2 and g2 = -1 at the same theta, lr 0.1: first step moves by
    # lr * g1 / |g1| = 0.1; second: m = 0.9*0.2 - 0.1 = 0.08, v = 0.999*0.004 + 0.001 = 0.004996,
    # m_hat = 0.08 / 0.19, v_hat = 0.004996 / 0.001999.
    m_hat, v_hat = 0.08 / 0.19, 0.004996 / 0.001999
    expected = 1.0 - 0.1 - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8)
    theta = _hand_adam(torch.tensor(1.0), [torch.tensor(2.0), torch.tensor(-1.0)], lr=0.1)
    assert theta.item() == pytest.approx(expected, rel=1e-6)
    param = nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.Adam([param], lr=0.1)
    updater = Updater(nn.ParameterList([param]), optimizer, NonSyn())
    updater.step_with((torch.tensor(2.0),))
    updater.step_with((torch.tensor(-1.0),))
    assert param.item() == pytest.approx(expected, rel=1e-6)


def test_joint_is_one_step_on_the_total_loss():
    torch.manual_seed(0)
    model = TinyVAE().eval()
    reference = copy.deepcopy(model)
    objective = NonSyn(NonSynObjectiveConfig(update="joint"))
    x = _batch()
    out = reference(x)
    total = objective(out, x, torch.tensor(1))["loss"]
    grads = torch.autograd.grad(total, list(reference.parameters()))
    expected = [_hand_adam(p.detach(), [g], 1e-2) for p, g in zip(reference.parameters(), grads)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    objective.update(Updater(model, optimizer, objective), model, Batch(x), torch.tensor(1))
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    assert objective.best_counts.sum() + objective.worst_counts.sum() == 3


def test_resample_takes_the_penalty_at_the_updated_parameters():
    torch.manual_seed(0)
    model = TinyVAE().eval()
    objective = NonSyn(NonSynObjectiveConfig(resample=True))
    x = _batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    reference = copy.deepcopy(model)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    # By hand: VAE step, re-encode, penalty step.
    out = reference(x)
    vae = reconstruction_loss(out.logits, x) + gaussian_kl_per_dim(out.mu, out.logvar).sum(1).mean()
    ref_opt.zero_grad()
    vae.backward()
    ref_opt.step()
    out = reference(x)
    kl = gaussian_kl_per_dim(out.mu, out.logvar)
    ref_opt.zero_grad()
    for p in reference.parameters():  # the seed's zero_grad kept zero tensors
        p.grad = torch.zeros_like(p)
    (5.0 * synergy_penalty(kl, greedy_select_latents(kl.mean(0), 0.9)[1])).backward()
    ref_opt.step()
    objective.update(Updater(model, optimizer, objective), model, Batch(x), torch.tensor(1))
    for p, e in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)


def test_forward_terms():
    objective = create_objective("nonsyn", alpha=2.0, omega=0.9)
    model = TinyVAE().eval()
    x = _batch()
    terms = objective(model(x), x, torch.tensor(1))
    assert {"loss", "recon", "kl", "syn", "i_worst", "n_best", "kl_0", "kl_2"} <= set(terms)
    assert terms["syn"].item() == pytest.approx(2.0 * terms["i_worst"].item())
    total = terms["recon"] + terms["kl"] + terms["syn"]
    assert terms["loss"].item() == pytest.approx(total.item())
    assert 0 <= terms["i_worst"].item() <= terms["kl"].item() + 1e-6


def test_sse_likelihood_is_the_seed_celeba_loss():
    objective = NonSyn(NonSynObjectiveConfig(likelihood="sse"))
    logits, x = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert objective._recon(logits, x).item() == pytest.approx(4 * 0.25)  # 4 pixels of 0.5^2


def test_two_step_rejects_a_grad_scaler():
    class Precision:
        scaler = object()

    class Strategy:
        precision = Precision()

    class FakeFabric:
        strategy = Strategy()

    from vaelab.errors import VaelabError

    model = TinyVAE()
    objective = NonSyn()
    updater = Updater(model, torch.optim.Adam(model.parameters()), objective, FakeFabric())
    with pytest.raises(VaelabError, match="GradScaler"):
        objective.update(updater, model, Batch(_batch()), torch.tensor(1))


def test_counts_round_trip_through_extra_state():
    objective = NonSyn()
    model = TinyVAE()
    updater = Updater(model, torch.optim.Adam(model.parameters()), objective)
    objective.update(updater, model, Batch(_batch()), torch.tensor(1))
    state = objective.extra_state_dict()
    fresh = NonSyn()
    fresh.load_extra_state_dict(state)
    assert fresh.best_counts.tolist() == objective.best_counts.tolist()
    assert sum(state["best_counts"]) + sum(state["worst_counts"]) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"omega": 0.0}, "omega"),
        ({"update": "both"}, "update"),
        ({"resample": True, "update": "joint"}, "resample"),
        ({"likelihood": "poisson"}, "likelihood"),
    ],
)
def test_bad_objective_config(options, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(NonSynObjectiveConfig, options)


@pytest.mark.parametrize(
    ("preset", "steps", "likelihood", "params"),
    [
        ("nonsyn_dsprites", 299_520, "bernoulli", 498_005),  # 26 epochs of 11,520 batches
        ("nonsyn_celeba", 297_604, "sse", 766_295),  # 94 epochs of 3,166 batches
    ],
)
def test_presets_carry_the_seed_runs(preset, steps, likelihood, params):
    path = Path(__file__).resolve().parents[2] / "vaelab" / "presets" / f"{preset}.toml"
    d = tomllib.loads(path.read_text())
    assert d["name"] == preset and d["seed"] == 120 and d["description"]
    train = from_dict(TrainConfig, d["train"])
    assert (train.steps, train.batch_size, train.lr, train.adam_betas) == (
        steps, 64, 1e-4, (0.9, 0.999))
    objective = create_objective(**d["objective"])
    assert (objective.config.alpha, objective.config.omega) == (5.0, 0.9)
    assert objective.config.update == "two_step" and objective.config.likelihood == likelihood
    model = create_model(**d["model"])
    assert sum(p.numel() for p in model.parameters()) == params


class _TwoLayerEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(4, 5), nn.Linear(5, 6)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x.flatten(1)))).chunk(2, dim=1)


class _TwoLayerVAE(TinyVAE):
    """TinyVAE with a hidden encoder layer: the penalty's backward reads `out.weight`."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _TwoLayerEncoder()
        with torch.no_grad():  # latent 2 carries almost no KL, so the penalty has a target
            self.encoder.out.weight[[2, 5]] *= 0.01
            self.encoder.out.bias[[2, 5]] *= 0.01


def test_two_step_torch041_takes_the_penalty_with_updated_weights_and_old_activations():
    torch.manual_seed(0)
    model = _TwoLayerVAE().eval()
    reference = copy.deepcopy(model)
    x, lr = _batch(), 1e-2
    # By hand, at theta_t: the VAE gradient, then the penalty's gradient with respect to the
    # encoder output (mu, logvar), back through out.weight AFTER the first Adam step.
    enc = reference.encoder
    h = torch.tanh(enc.hidden(x.flatten(1))).detach()
    out = reference(x)
    kl = gaussian_kl_per_dim(out.mu, out.logvar)
    vae = reconstruction_loss(out.logits, x) + kl.sum(1).mean()
    _, worst = greedy_select_latents(kl.detach().mean(0), 0.9)
    assert worst
    params = dict(reference.named_parameters())
    g_vae = dict(zip(params, torch.autograd.grad(vae, list(params.values()), retain_graph=True)))
    syn = 5.0 * synergy_penalty(kl, worst)
    g_out = torch.autograd.grad(syn, [out.mu, out.logvar])
    g_out = torch.cat(g_out, dim=1)  # (B, 6): d syn / d(encoder output), at theta_t
    w_out_next = _hand_adam(params["encoder.out.weight"].detach(), [g_vae["encoder.out.weight"]], lr)
    g_h = (g_out @ w_out_next) * (1 - h * h)  # through tanh at the first pass's activations
    g_syn = {name: torch.zeros_like(p) for name, p in params.items()}
    g_syn["encoder.out.weight"] = g_out.T @ h
    g_syn["encoder.out.bias"] = g_out.sum(0)
    g_syn["encoder.hidden.weight"] = g_h.T @ x.flatten(1)
    g_syn["encoder.hidden.bias"] = g_h.sum(0)
    expected = {n: _hand_adam(p.detach(), [g_vae[n], g_syn[n]], lr) for n, p in params.items()}

    results = {}
    for update in ("two_step_torch041", "two_step"):
        trained = copy.deepcopy(model)
        objective = NonSyn(NonSynObjectiveConfig(alpha=5.0, omega=0.9, update=update))
        optimizer = torch.optim.Adam(trained.parameters(), lr=lr)
        objective.update(Updater(trained, optimizer, objective), trained, Batch(x), torch.tensor(1))
        results[update] = dict(trained.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(results["two_step_torch041"][name].detach(), value,
                                   rtol=1e-5, atol=1e-6)
    hidden = "encoder.hidden.weight"  # the only gradient that reads a saved weight
    assert not torch.allclose(results["two_step"][hidden], results["two_step_torch041"][hidden],
                              atol=1e-7)
    torch.testing.assert_close(results["two_step"]["decoder.weight"],
                               results["two_step_torch041"]["decoder.weight"])
