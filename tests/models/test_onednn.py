"""The inference-only oneDNN path of the encoders (`vaelab.models.onednn`): the same codes as the
eager encoder, fresh weights after an optimiser step, and the eager fallback where it cannot run."""

from __future__ import annotations

import pytest
import torch

import vaelab
from vaelab.metrics.ground_truth import bf16_supported, model_encoder
from vaelab.models import onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason="this PyTorch has no oneDNN")


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    # Non-binary images with large values, so that ReLUs cut and every layer matters.
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 3 - 1


def _noisy(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """`model` with non-zero biases (PyTorch's init makes them small), so a dropped bias shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=g))
    return model


@pytest.mark.parametrize("size", [32, 64])
def test_packed_fp32_codes_equal_the_eager_encoder(size):
    torch.manual_seed(0)
    model = _noisy(vaelab.create_model("burgess", latent_dim=6, channels=1, image_size=size))
    x = _images(48, size)
    packed = model_encoder(model)
    eager = model_encoder(model, packed=False)
    assert packed.packed and not eager.packed
    mu, logvar = packed(x)
    mu_ref, logvar_ref = eager(x)
    with torch.no_grad():  # and the plain forward, no channels-last, no inference mode
        mu_plain, logvar_plain = model.encoder(x)
    assert mu.dtype == torch.float32 and mu.shape == (48, 6)
    for ours, ref in ((mu, mu_ref), (logvar, logvar_ref), (mu, mu_plain), (logvar, logvar_plain)):
        assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert mu.std(0).min() > 1e-3  # the codes vary with the image (not a constant output)
    cl = packed(x.contiguous(memory_format=torch.channels_last))[0]  # any input layout
    assert torch.allclose(cl, mu, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no native bf16")
def test_packed_bf16_codes_track_the_eager_bf16_and_fp32_codes():
    torch.manual_seed(0)
    model = _noisy(vaelab.create_model("burgess", latent_dim=6, channels=1, image_size=64))
    x = _images(32, 64)
    mu16, lv16 = model_encoder(model, precision="bf16")(x)
    mu_e16, lv_e16 = model_encoder(model, precision="bf16", packed=False)(x)
    mu32, lv32 = model_encoder(model, packed=False)(x)
    assert not torch.equal(mu16, mu32)  # it did compute in bf16
    for ours, ref in ((mu16, mu_e16), (lv16, lv_e16), (mu16, mu32), (lv16, lv32)):
        assert (ours - ref).abs().max() <= 0.02 * ref.abs().max()  # 8 bits of mantissa
    with torch.inference_mode():  # on its own, outside the metrics' autocast
        alone = model.inference_posterior(torch.bfloat16)(x)["z"].mean.float()
    assert (alone - mu32).abs().max() <= 0.02 * mu32.abs().max()


def test_packed_weights_follow_an_optimiser_step():
    torch.manual_seed(0)
    model = _noisy(vaelab.create_model("burgess", latent_dim=4, channels=1, image_size=32))
    encode = model_encoder(model)
    x = _images(16, 32)
    before = encode(x)[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.encoder(x)[0].square().sum().backward()
    optimizer.step()  # in place, as in training between two metric evaluations
    after = encode(x)[0]
    with torch.no_grad():
        expected = model.encoder(x)[0]
    assert not torch.allclose(after, before, atol=1e-3)
    assert torch.allclose(after, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    old = model.encoder.conv2.weight
    new = torch.nn.Parameter(old.detach() * 0.5)
    with torch.no_grad():
        while new._version < old._version:  # the same version count: only the storage differs
            new.mul_(1.0)
    assert new._version == old._version
    model.encoder.conv2.weight = new
    with torch.no_grad():
        expected = model.encoder(x)[0]
    assert torch.allclose(encode(x)[0], expected, rtol=1e-5,
                          atol=1e-5 * expected.abs().max().item())
    model.encoder.conv3 = _noisy(torch.nn.Conv2d(32, 32, 4, 2, 1), seed=2)
    replaced = encode(x)[0]  # the same encoder sees a replaced parameter and a replaced layer
    with torch.no_grad():
        expected = model.encoder(x)[0]
    assert torch.allclose(replaced, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_conv_vae_is_packed_with_relu_and_no_norm_and_eager_otherwise():
    torch.manual_seed(0)
    plain = _noisy(vaelab.create_model("conv", latent_dim=3, channels=1, image_height=32,
                                       image_width=32, activation="relu", norm="none"))
    encode = model_encoder(plain)
    assert encode.packed
    x = _images(8, 32)
    with torch.no_grad():
        expected = plain.encoder(x)
    for ours, ref in zip(encode(x), expected):
        assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    relu_bn = vaelab.create_model("conv", latent_dim=3, channels=1, image_height=32,
                                  image_width=32, activation="relu", norm="batch")
    assert relu_bn.encoder.conv_stack() is None and not model_encoder(relu_bn).packed
    seed_like = vaelab.create_model("conv", latent_dim=3, channels=1, image_height=32,
                                    image_width=32).eval()  # LeakyReLU and batch norm
    encode = model_encoder(seed_like)
    assert not encode.packed and seed_like.inference_posterior(torch.float32) is None
    with torch.no_grad():
        assert torch.equal(encode(x)[0], seed_like.encoder(x.contiguous(
            memory_format=torch.channels_last))[0])


def test_models_without_a_conv_stack_keep_the_eager_posterior():
    model = vaelab.create_model("gmvae", K=3, z_dim=2, w_dim=2, hidden_dim=8, num_layers=1)
    assert model.inference_posterior(torch.float32) is None
    assert not model_encoder(model).packed


def test_packed_encoder_refuses_gradients_and_bad_dtypes():
    model = vaelab.create_model("burgess", latent_dim=4, channels=1, image_size=32)
    packed = onednn.packed_encoder(model.encoder, torch.float32)
    with pytest.raises(RuntimeError, match="inference-only"):
        packed(_images(2, 32))
    with pytest.raises(ValueError, match="dtype must be"):
        onednn.PackedEncoder(model.encoder, torch.float16)


def test_a_stack_that_stops_being_packable_falls_back_to_the_eager_forward(monkeypatch):
    torch.manual_seed(0)
    model = _noisy(vaelab.create_model("burgess", latent_dim=4, channels=1, image_size=32))
    encode = model_encoder(model)
    x = _images(8, 32)
    encode(x)  # packed once
    with torch.no_grad():
        model.encoder.conv2.weight.mul_(-1.0)
        expected = model.encoder(x)[0]
    monkeypatch.setattr(model.encoder, "conv_stack", lambda: None)
    assert torch.allclose(encode(x)[0], expected, rtol=1e-5,
                          atol=1e-5 * expected.abs().max().item())
