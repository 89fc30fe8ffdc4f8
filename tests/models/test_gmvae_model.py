"""The GMVAE model: its architectures (seed dense and CNN, the paper's), sampling, clusters, options."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from vaelab.data.base import Batch
from vaelab.factory import create_model, create_objective
from vaelab.models.gmvae import GMVAEConfig, dense_net


def _normal(mu, logvar):
    return D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)


def test_samples_average_over_draws():
    torch.manual_seed(0)
    model = create_model("gmvae", image_height=4, image_width=4, z_dim=2, w_dim=2, K=3)
    x = torch.rand(5, 1, 4, 4)
    out = model(x, samples=3)
    assert out.z.shape == (15, 2) and out.logits.shape == (15, 1, 4, 4) and out.samples == 3
    assert torch.equal(out.mu_z, model.q_z(x)[0])
    terms = create_objective("gmvae", samples=3).compute(model, Batch(x), torch.tensor(1))
    assert all(torch.isfinite(v) for v in terms.values())
    model.eval()
    assert model(x, samples=3).samples == 1  # eval: the posterior means


def test_bayes_cluster_posterior_is_bayes_rule():
    torch.manual_seed(0)
    model = create_model("gmvae", image_height=4, image_width=4, z_dim=2, w_dim=2, K=3,
                         cluster_posterior="bayes")
    assert model.y_net is None
    w, z = torch.randn(6, 2), torch.randn(6, 2)
    mu, logvar = model.prior_heads(w)
    likelihood = _normal(mu.double(), logvar.double()).log_prob(z[:, None].double()).exp()
    expected = likelihood / likelihood.sum(-1, keepdim=True)  # uniform p(y) cancels
    got = torch.softmax(model.cluster_logits(w, z), -1).double()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_dense_net_depth_semantics_and_cnn_shapes():
    assert len([m for m in dense_net(4, 2, 8, 1, 0.0) if isinstance(m, torch.nn.Linear)]) == 1
    assert len([m for m in dense_net(4, 2, 8, 2, 0.0) if isinstance(m, torch.nn.Linear)]) == 2
    for height, width in ((28, 28), (28, 20)):
        model = create_model("gmvae", architecture="cnn", image_height=height, image_width=width)
        x = torch.rand(2, 1, height, width)
        assert model(x).logits.shape == (2, 1, height, width)
        assert model.q_z.hidden.in_features == 64 * math.ceil(height / 8) * math.ceil(width / 8)
        vae = create_model("seed_vae", architecture="cnn", image_height=height, image_width=width)
        assert vae(x).logits.shape == (2, 1, height, width)


def test_sample_prior_of_a_component_and_cluster():
    torch.manual_seed(0)
    model = create_model("gmvae", image_height=4, image_width=4, z_dim=2, w_dim=2, K=3).eval()
    drawn = model.sample_prior(4000, torch.Generator().manual_seed(1), component=2)
    assert (drawn["y"] == 2).all()
    mu, logvar = model.prior_heads(drawn["w"])
    # standardised residuals of component 2 are N(0, 1): mean within 4 sd of 1/sqrt(8000)
    residual = (drawn["z"] - mu[:, 2]) / torch.exp(0.5 * logvar[:, 2])
    assert abs(residual.mean().item()) < 0.05 and abs(residual.std().item() - 1) < 0.05
    x = torch.rand(3, 1, 4, 4)
    expected = model.y_net(torch.cat([model.q_w(x)[0], model.q_z(x)[0]], -1)).argmax(-1)
    assert torch.equal(model.cluster(x), expected)
    with pytest.raises(ValueError, match="component must be in 0..2"):
        model.sample_prior(2, component=3)


def test_dropout_is_active_in_train_mode_only():
    model = create_model("gmvae", image_height=4, image_width=4, dropout=0.5)
    x = torch.rand(8, 1, 4, 4)
    model.train()
    assert not torch.equal(model.q_z(x)[0], model.q_z(x)[0])
    model.eval()
    assert torch.equal(model.q_z(x)[0], model.q_z(x)[0])


@pytest.mark.parametrize(("options", "match"), [
    ({"K": 1}, "K must be >= 2"),
    ({"architecture": "cnn", "image_height": 30}, "divisible by 4"),
    ({"cluster_posterior": "em"}, "cluster_posterior"),
    ({"dropout": 1.0}, "dropout"),
])
def test_model_config_errors(options, match):
    with pytest.raises(ValueError, match=match):
        GMVAEConfig(**options)


def test_paper_architecture_is_dilokthanakul_et_als_networks():
    """architecture="paper": one BatchNorm trunk shared by q(z|x) and q(w|x), heads in the order
    mu_z, logvar_z, mu_w, logvar_w; a Tanh prior trunk with linear log-variances (no floor); a
    decoder with two hidden layers; PyTorch's (= Torch7's) default init."""
    torch.manual_seed(0)
    model = create_model("gmvae", architecture="paper", image_height=4, image_width=4, z_dim=2,
                         w_dim=3, K=3, hidden_dim=8, cluster_posterior="bayes")
    assert not hasattr(model, "q_z") and not hasattr(model, "q_w")
    x = torch.rand(5, 1, 4, 4)
    lin1, bn1, _, _, lin2, bn2 = list(model.encoder.trunk)[:6]
    model.train()
    h = torch.relu(torch.nn.functional.batch_norm(lin1(x.flatten(1)), None, None, bn1.weight,
                                                  bn1.bias, training=True))
    h = torch.relu(torch.nn.functional.batch_norm(lin2(h), None, None, bn2.weight, bn2.bias,
                                                  training=True))
    heads = model.encoder.heads(h)
    expected = (heads[:, :2], heads[:, 2:4], heads[:, 4:7], heads[:, 7:])
    for got, want in zip(model.encode(x), expected, strict=True):
        torch.testing.assert_close(got, want)
    model.eval()  # BatchNorm's running statistics in eval mode: a different, fixed answer
    assert not torch.allclose(model.encode(x)[0], expected[0])
    assert torch.equal(model.encode(x)[0], model.encode(x)[0])

    w = torch.tensor([[-3.0, 0.5, 2.0], [0.0, -1.0, 4.0]])
    mu, logvar = model.prior_heads(w)
    h = torch.tanh(model.prior_trunk[0](w))
    torch.testing.assert_close(mu, model.prior_mean(h).view(2, 3, 2))
    torch.testing.assert_close(logvar, model.prior_variance(h).view(2, 3, 2))  # no floor
    with torch.no_grad():  # a floor (the seed's softplus + 0.1) would give log 0.1 here
        model.prior_variance.weight.zero_()
        model.prior_variance.bias.fill_(-10.0)
    assert torch.equal(model.prior_heads(w)[1], torch.full((2, 3, 2), -10.0))
    assert len([m for m in model.decoder.net if isinstance(m, torch.nn.Linear)]) == 3
    assert model(x).logits.shape == (5, 1, 4, 4)
    bound = 1 / math.sqrt(8)  # PyTorch's default bias init, not the seed's N(0, 1) symmetry break
    assert model.prior_mean.bias.abs().max() <= bound
    with pytest.raises(ValueError, match="architecture must be one of"):
        create_model("seed_vae", architecture="paper")


def test_paper_architecture_shares_the_trunk_and_learns():
    torch.manual_seed(1)
    model = create_model("gmvae", architecture="paper", image_height=4, image_width=4, z_dim=2,
                         w_dim=2, K=3, hidden_dim=8, cluster_posterior="bayes")
    x = torch.rand(6, 1, 4, 4)
    first = model.encoder.trunk[0].weight
    for part in (0, 2):  # mu_z and mu_w both reach the shared first layer
        grad, = torch.autograd.grad(model.encode(x)[part].sum(), first)
        assert grad.abs().sum() > 0
    objective = create_objective("gmvae", likelihood="bernoulli", cp_estimator="analytic")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = objective(model(x), x, torch.tensor(0.0))["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0 and all(math.isfinite(v) for v in losses)
