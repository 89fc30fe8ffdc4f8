"""The model contract's declared promises (vaelab/models/base.py), for every registered model.

Each model is built from its config class's defaults at the smallest toy_squares size it takes,
so a newly registered model is checked without an edit. What is checked is what consumers rely
on: metrics encode in chunks (the represented codes of an item must not depend on its batch
mates), traversals move the traversal latent as a Gaussian, plots decode `sample_prior` draws,
cluster plots read `cluster(x)`.

Comparisons between different batch compositions run in float64: a batch of 3 and a batch of 8
may take different kernels (oneDNN picks one per shape and host), so float32 results agree only
to rounding, while float64 makes any real dependence on the batch mates stand out.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.registry_cases import build_model_on_toy
from vaelab.distributions import Categorical, DiagonalGaussian
from vaelab.errors import VaelabError
from vaelab.models.base import LatentSpec, Model
from vaelab.registry import MODELS

B = 8


@pytest.fixture(params=MODELS.names())
def built(request):
    model, batch = build_model_on_toy(request.param, n=B)
    return model.eval(), batch.x


def test_declarations_name_declared_latents_of_the_right_kind_and_scope(built):
    model, x = built
    assert isinstance(model, Model) and model.latents
    assert all(isinstance(s, LatentSpec) for s in model.latents)
    names = [s.name for s in model.latents]
    assert len(set(names)) == len(names), f"duplicate latent names {names}"
    assert model.image_shape == tuple(x.shape[1:])
    assert model.decoder_inputs and set(model.decoder_inputs) <= set(names)
    # traversals move the traversal latent of one item along Gaussian quantiles
    traversal = model.spec(model.traversal_latent)
    assert (traversal.kind, traversal.scope) == ("gaussian", "item")
    assert model.traversal_dim == traversal.dim
    # `represent` gives one row per item: the represented latents are per item
    assert model.represented
    assert all(model.spec(n).scope == "item" for n in model.represented), model.represented
    assert model.representation_dim == sum(model.spec(n).dim for n in model.represented)
    if model.num_clusters:
        cluster = model.spec(model.cluster_latent)
        assert (cluster.kind, cluster.dim) == ("categorical", model.num_clusters)


def test_forward_and_posterior_match_the_declared_latents(built):
    model, x = built
    assert isinstance(model(x), model.output_type)
    posterior = model.posterior(x)
    assert set(posterior) == {s.name for s in model.latents}
    for spec in model.latents:
        part = posterior[spec.name]
        rows = B if spec.scope == "item" else 1
        if spec.kind == "gaussian":
            assert type(part) is DiagonalGaussian, spec
            assert part.mean.shape == part.logvar.shape == (rows, spec.dim), spec
        else:
            assert type(part) is Categorical, spec
            assert part.logits.shape == (rows, spec.dim), spec


def test_represent_is_the_represented_posterior_means_side_by_side(built):
    model, x = built
    posterior = model.posterior(x)
    expected = torch.cat([posterior[n].mean for n in model.represented], dim=-1)
    assert torch.equal(model.represent(x), expected)
    assert expected.shape == (B, model.representation_dim)


def test_item_scope_posteriors_do_not_depend_on_the_batch_mates(built):
    """In eval mode (how metrics encode, in chunks): the first 3 items alone, and the batch
    reversed, give the same item-scope posteriors as the whole batch; float64 (see top)."""
    model, x = built
    model, x = model.double(), x.double()
    whole = model.posterior(x)
    part = model.posterior(x[:3])
    flipped = model.posterior(x.flip(0))
    for spec in model.latents:
        if spec.scope != "item":
            continue
        for field in ("mean", "logvar") if spec.kind == "gaussian" else ("logits",):
            a = getattr(whole[spec.name], field)
            torch.testing.assert_close(getattr(part[spec.name], field), a[:3], msg=spec.name)
            torch.testing.assert_close(getattr(flipped[spec.name], field), a.flip(0),
                                       msg=spec.name)
    torch.testing.assert_close(model.represent(x[:3]), model.represent(x)[:3])


def test_sample_prior_draws_every_decoder_input_reproducibly_and_decode_takes_them(built):
    model, _ = built
    draw = model.sample_prior(5, torch.Generator().manual_seed(0))
    again = model.sample_prior(5, torch.Generator().manual_seed(0))
    other = model.sample_prior(5, torch.Generator().manual_seed(1))
    for name in model.decoder_inputs:
        assert draw[name].shape == (5, model.spec(name).dim), name
        assert torch.equal(draw[name], again[name]), name
    assert any(not torch.equal(draw[n], other[n]) for n in model.decoder_inputs)
    logits = model.decode(draw)
    assert logits.shape == (5, *model.image_shape)
    torch.testing.assert_close(model.generate(draw), torch.sigmoid(logits))
    with pytest.raises(TypeError, match="mapping"):
        model.decode(draw[model.traversal_latent])  # a bare tensor is refused


def test_centres_hold_every_decoder_input(built):
    model, x = built
    center = model.prior_center()
    assert set(center) == set(model.decoder_inputs)
    assert all(center[n].shape == (1, model.spec(n).dim) for n in center)
    assert model.decode(center).shape == (1, *model.image_shape)
    posterior = model.posterior(x)
    at_mean = model.posterior_center(posterior)
    assert set(at_mean) == set(model.decoder_inputs)
    for name in model.decoder_inputs:
        part = posterior[name]
        if isinstance(part, Categorical):
            expected = nn.functional.one_hot(part.logits.argmax(-1), part.logits.shape[-1])
            assert torch.equal(at_mean[name], expected.to(at_mean[name].dtype)), name
        else:
            assert torch.equal(at_mean[name], part.mean), name
    torch.testing.assert_close(model.reconstruct(x), torch.sigmoid(model.decode(at_mean)))


def test_cluster_is_the_argmax_of_the_cluster_latent_or_a_clear_error(built):
    model, x = built
    if not model.num_clusters:
        with pytest.raises(VaelabError, match="has no clusters"):
            model.cluster(x)
        return
    expected = model.posterior(x)[model.cluster_latent].logits.argmax(-1)
    assert torch.equal(model.cluster(x), expected)


def test_the_fast_inference_posterior_gives_the_posterior(built):
    """`inference_posterior` (None, or the metrics' faster encoder) agrees with `posterior` to
    float32 rounding: a few ulps of the largest value, relative 1e-5 as in test_onednn.py."""
    model, x = built
    fast = model.inference_posterior(torch.float32)
    if fast is None:
        return
    with torch.inference_mode():
        got, want = fast(x), model.posterior(x)
    for name in model.represented:
        a, b = got[name].mean, want[name].mean
        assert a.shape == b.shape, name
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item()), name
