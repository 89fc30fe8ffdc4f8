"""Gaussian VAE with disentanglement_lib's convolutional encoder and decoder (`dlib_conv`).

The architecture of Locatello et al., "Challenging Common Assumptions in the Unsupervised
Learning of Disentangled Representations" (ICML 2019) and of every model of its
`unsupervised_study_v1`, as disentanglement_lib's `methods/shared/architectures.py` builds it
(`conv_encoder`, `deconv_decoder`), for 64x64 images:

    encoder: conv 32 k4 s2 -> conv 32 k4 s2 -> conv 64 k2 s2 -> conv 64 k2 s2 (ReLU each,
             TensorFlow "same" padding: 64 -> 32 -> 16 -> 8 -> 4) -> flatten 1024 -> dense 256
             ReLU -> two dense heads, means and log-variances (D = 10)
    decoder: dense 256 ReLU -> dense 1024 ReLU -> reshape (64, 4, 4) -> deconv 64 k4 s2 ->
             deconv 32 k4 s2 -> deconv 32 k4 s2 (ReLU each) -> deconv C k4 s2 (logits)

The third and fourth encoder convolutions have 2x2 kernels in disentanglement_lib's code, while
the table of the beta-VAE paper its docstring cites (Higgins et al. 2017, Table 1, row 3) and the
prose of the study describe 4x4 kernels throughout; `encoder_kernels = [4, 4, 4, 4]` gives that
variant (4x4 stride 2 with one pixel of padding halves the map as well). The default is the code
that trained the study's models.

TensorFlow's "same" padding is symmetric here (kernel 4, stride 2, even sizes: one pixel each
side; kernel 2, stride 2: none), so PyTorch's `padding=1` / `padding=0` compute the same maps; a
transposed convolution with kernel 4, stride 2 and padding 1 doubles the size as TensorFlow's
"same" one does. Weights start Glorot-uniform with zero biases, TensorFlow 1's `tf.layers`
defaults. The decoder returns logits; the Bernoulli likelihood applies the sigmoid, as
disentanglement_lib's `bernoulli_loss` does on its logits. Differences from the Burgess model
(`burgess`, vaelab's default): 64 channels in the last two convolutions instead of 32, one dense
layer of 256 instead of two in the encoder, separate mean and log-variance heads, 64x64 inputs
only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vaelab.models.vae import GaussianVAE
from vaelab.registry import MODELS

__all__ = ["DlibConfig", "DlibConvVAE", "DlibDecoder", "DlibEncoder"]

CHANNELS = (32, 32, 64, 64)


@dataclass(frozen=True, kw_only=True)
class DlibConfig:
    """disentanglement_lib's conv VAE. Channels default to the dataset's; images are 64x64."""

    latent_dim: int = 10  # D (encoder.num_latent of the study)
    channels: int = 0  # C of the input; 0: taken from the data
    image_size: int = 0  # H = W; must be 64 (0: taken from the data)
    encoder_kernels: tuple[int, int, int, int] = (4, 4, 2, 2)  # (4, 4, 4, 4): the paper's table
    hidden_dim: int = 256  # the dense layer after the convolutions (and first of the decoder)

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.image_size not in (0, 64):
            raise ValueError(
                f"the dlib_conv model takes 64x64 images (disentanglement_lib's datasets), got "
                f"image_size={self.image_size}; set data.image_size=64 or use the 'conv' model"
            )
        if self.channels < 0:
            raise ValueError(f"channels must be >= 0, got {self.channels}")
        kernels = tuple(self.encoder_kernels)
        if len(kernels) != 4 or any(k not in (2, 4) for k in kernels):
            raise ValueError(f"encoder_kernels must be four sizes, each 2 or 4 (stride 2 halves "
                             f"the map with either), got {list(kernels)}")
        if self.hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {self.hidden_dim}")


def glorot_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases on every conv and linear layer (TF1 defaults)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class DlibEncoder(nn.Module):
    """x (B, C, 64, 64) -> (mu, logvar), each (B, D)."""

    def __init__(self, channels: int, latent_dim: int, kernels: tuple[int, ...],
                 hidden_dim: int) -> None:
        super().__init__()
        sizes = (channels, *CHANNELS)
        self.convs = nn.ModuleList(
            nn.Conv2d(sizes[i], sizes[i + 1], k, stride=2, padding=(k - 2) // 2)
            for i, k in enumerate(kernels))
        self.dense = nn.Linear(CHANNELS[-1] * 4 * 4, hidden_dim)
        self.means = nn.Linear(hidden_dim, latent_dim)
        self.log_var = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = x
        for conv in self.convs:
            h = torch.relu(conv(h))  # 64 -> 32 -> 16 -> 8 -> 4
        return self.head(h)

    def conv_stack(self) -> list[tuple[nn.Conv2d, bool]]:
        """The convolutions, each followed by a ReLU (for `vaelab.models.onednn`)."""
        return [(conv, True) for conv in self.convs]

    def head(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) from the last convolution's activations (B, 64, 4, 4)."""
        h = torch.relu(self.dense(h.flatten(1)))  # (B, 1024) -> (B, 256)
        return self.means(h), self.log_var(h)


class DlibDecoder(nn.Module):
    """z (B, D) -> logits (B, C, 64, 64)."""

    def __init__(self, channels: int, latent_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(latent_dim, hidden_dim)
        self.dense2 = nn.Linear(hidden_dim, 64 * 4 * 4)
        sizes = (64, 64, 32, 32, channels)
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(sizes[i], sizes[i + 1], 4, stride=2, padding=1) for i in range(4))

    def forward(self, z: Tensor) -> Tensor:
        h = torch.relu(self.dense1(z))
        h = torch.relu(self.dense2(h)).view(-1, 64, 4, 4)
        for deconv in self.deconvs[:-1]:
            h = torch.relu(deconv(h))  # 4 -> 8 -> 16 -> 32
        return self.deconvs[-1](h)  # (B, C, 64, 64) logits


@MODELS.register("dlib_conv")
class DlibConvVAE(GaussianVAE):
    """Gaussian VAE with disentanglement_lib's conv encoder/decoder (Locatello et al., 2019).

    For 1x64x64 inputs and D = 10: 690,517 parameters (764,245 with `encoder_kernels` 4, 4, 4, 4).
    """

    config_class = DlibConfig

    def __init__(self, config: DlibConfig = DlibConfig()) -> None:
        super().__init__()
        channels = config.channels or 1
        self.config = config
        self.latent_dim = config.latent_dim
        self.image_shape = (channels, 64, 64)
        self.encoder = DlibEncoder(channels, config.latent_dim, tuple(config.encoder_kernels),
                                   config.hidden_dim)
        self.decoder = DlibDecoder(channels, config.latent_dim, config.hidden_dim)
        glorot_init(self)
