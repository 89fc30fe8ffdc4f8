"""disentanglement_lib's conv VAE (`dlib_conv`): geometry, parameter count, padding alignment."""

from __future__ import annotations

import pytest
import torch

from vaelab.config import ConfigError
from vaelab.factory import create_model
from vaelab.models.dlib import DlibConfig, DlibConvVAE


def test_layer_shapes_and_parameter_count_by_hand():
    model = create_model("dlib_conv")
    # encoder: convs 1->32 k4 (544), 32->32 k4 (16,416), 32->64 k2 (8,256), 64->64 k2 (16,448);
    # dense 1024->256 (262,400); heads 256->10 twice (2 x 2,570). decoder: 10->256 (2,816),
    # 256->1024 (263,168), deconvs 64->64 (65,600), 64->32 (32,800), 32->32 (16,416), 32->1 (513)
    assert sum(p.numel() for p in model.parameters()) == 690_517
    x = torch.rand(3, 1, 64, 64)
    h, sizes = x, []
    for conv in model.encoder.convs:
        h = conv(h)
        sizes.append(tuple(h.shape[1:]))
    assert sizes == [(32, 32, 32), (32, 16, 16), (64, 8, 8), (64, 4, 4)]
    assert [conv.kernel_size for conv in model.encoder.convs] == [(4, 4), (4, 4), (2, 2), (2, 2)]
    out = model(x, sample=False)
    assert out.mu.shape == out.logvar.shape == (3, 10)
    assert out.logits.shape == (3, 1, 64, 64)
    assert [d.out_channels for d in model.decoder.deconvs] == [64, 32, 32, 1]


def test_paper_kernels_variant_and_colour_channels():
    model = create_model("dlib_conv", encoder_kernels=[4, 4, 4, 4], channels=3)
    # against the default: conv1 3 -> 32 (+1,024), conv3 k4 (+24,576), conv4 k4 (+49,152), last
    # deconv 32 -> 3 (+1,026)
    assert sum(p.numel() for p in model.parameters()) == 690_517 + 75_778
    assert model(torch.rand(2, 3, 64, 64)).logits.shape == (2, 3, 64, 64)


def test_tensorflow_same_padding_alignment():
    # TF "same" with kernel 4, stride 2 pads one pixel before: output (0, 0) sees input rows and
    # columns -1..2, so a pixel at (2, 2) reaches it and one at (3, 3) does not.
    conv = create_model("dlib_conv").encoder.convs[0]
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    for pixel, reaches in (((2, 2), True), ((3, 3), False)):
        x = torch.zeros(1, 1, 64, 64)
        x[0, 0, pixel[0], pixel[1]] = 1.0
        assert (conv(x)[0, 0, 0, 0].item() > 0) is reaches


def test_tensorflow_initialisation_zero_biases():
    model = DlibConvVAE(DlibConfig())
    for layer in model.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.ConvTranspose2d)):
            assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize("bad", [{"image_size": 32}, {"encoder_kernels": [4, 4, 3, 2]},
                                 {"latent_dim": 0}])
def test_bad_geometry_is_refused(bad):
    with pytest.raises((ValueError, ConfigError)):
        create_model("dlib_conv", **bad)


def test_metrics_encoder_packs_the_convolutions_and_gives_the_same_codes():
    from vaelab.metrics.ground_truth import model_encoder

    model = create_model("dlib_conv").eval()
    x = torch.rand(8, 1, 64, 64)
    encode = model_encoder(model)
    mu, logvar = encode(x)
    expected_mu, expected_logvar = model.encode(x)
    assert torch.allclose(mu, expected_mu, atol=1e-5)
    assert torch.allclose(logvar, expected_logvar, atol=1e-5)
