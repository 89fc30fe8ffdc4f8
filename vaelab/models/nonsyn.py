"""The Non-Synergistic VAE's conv encoder and decoder (Barrientos & Sootla, 2019).

Seed: Gonzalob90/non-synergistic-vae, `models/model_vae.py` (dSprites) and
`models/model_vae_celeba.py` (CelebA). It differs from the Burgess
model (`vaelab.models.vae`) in four ways, all reproduced here:

* the conv stack is 32, 32, 64, 64 channels (Burgess: 32 throughout) and the MLP is one hidden
  layer of 128 (dSprites) or 256 (CelebA) units;
* the encoder's head splits its 2D outputs **by halves** (mu = first D, logvar = last D), where
  disvae interleaves mu_j, logvar_j;
* the dSprites encoder has no activation after its hidden linear layer (the seed commented the
  ReLU out: "Try leaving the Relus just for the decoder"); the CelebA one keeps it
  (`encoder_relu`);
* weights keep PyTorch's default initialisation (no Kaiming re-init).

The seed samples z in eval mode too; here sampling follows `GaussianVAE.forward` (train mode, or
`sample=True`), so embeddings and traversals use the posterior mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from vaelab.models.vae import GaussianVAE
from vaelab.registry import MODELS

__all__ = ["NonSynConfig", "NonSynDecoder", "NonSynEncoder", "NonSynVAE"]

_CONV_CHANNELS = (32, 32, 64, 64)  # four k4 s2 p1 blocks: 64 -> 32 -> 16 -> 8 -> 4


@dataclass(frozen=True, kw_only=True)
class NonSynConfig:
    """Shape of the Non-Syn VAE. The seed's dSprites model is the default; its CelebA model is
    `channels=3, hidden_dim=256, encoder_relu=True`."""

    latent_dim: int = 10  # D
    channels: int = 0  # C of the input; 0: taken from the data
    image_size: int = 0  # H = W; must be 64; 0: taken from the data
    hidden_dim: int = 128  # MLP width: 128 (dSprites) or 256 (CelebA)
    encoder_relu: bool = False  # ReLU after the encoder's hidden linear layer (CelebA: True)

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.channels < 0:
            raise ValueError(f"channels must be >= 0, got {self.channels}")
        if self.image_size not in (0, 64):
            raise ValueError(
                f"the Non-Syn model takes 64x64 images, got image_size={self.image_size}; "
                "resize the data or use the configurable 'conv' model"
            )
        if self.hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {self.hidden_dim}")


class NonSynEncoder(nn.Module):
    """x (B, C, 64, 64) -> (mu, logvar), each (B, D); the head's outputs split by halves."""

    def __init__(self, channels: int, latent_dim: int, hidden_dim: int, encoder_relu: bool) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[nn.Module] = []
        previous = channels
        for c in _CONV_CHANNELS:
            layers += [nn.Conv2d(previous, c, 4, 2, 1), nn.ReLU()]
            previous = c
        layers += [nn.Flatten(), nn.Linear(64 * 4 * 4, hidden_dim)]
        if encoder_relu:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(hidden_dim, 2 * latent_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        stats = self.net(x)  # (B, 2D): [mu_0..mu_{D-1}, logvar_0..logvar_{D-1}]
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]


class NonSynDecoder(nn.Module):
    """z (B, D) -> logits (B, C, 64, 64)."""

    def __init__(self, channels: int, latent_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 64 * 4 * 4), nn.ReLU(),
        )
        self.convs = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),  # (B, 64, 8, 8)
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),  # (B, 32, 16, 16)
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),  # (B, 32, 32, 32)
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # (B, C, 64, 64) logits
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.convs(self.mlp(z).view(-1, 64, 4, 4))


@MODELS.register("nonsyn_burgess")
class NonSynVAE(GaussianVAE):
    """Gaussian VAE with the Non-Syn seed's encoder/decoder for 64x64 inputs.

    498,005 parameters for 1x64x64 with D = 10 (the dSprites model); 766,295 for the CelebA
    variant (3x64x64, hidden_dim 256, encoder_relu).
    """

    config_class = NonSynConfig

    def __init__(self, config: NonSynConfig = NonSynConfig()) -> None:
        super().__init__()
        channels = config.channels or 1
        self.config = config
        self.latent_dim = config.latent_dim
        self.image_shape = (channels, 64, 64)
        self.encoder = NonSynEncoder(channels, config.latent_dim, config.hidden_dim,
                                     config.encoder_relu)
        self.decoder = NonSynDecoder(channels, config.latent_dim, config.hidden_dim)

