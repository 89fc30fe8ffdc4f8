"""Gaussian-latent VAE with the Burgess et al. (2018) conv encoder and decoder.

Burgess et al., "Understanding disentangling in beta-VAE" (2018), as implemented by
disentangling-vae (Dubs et al. 2019); layer for layer the same, so its checkpoints import exactly
(`vaelab.disvae_import`). One model serves VAE, beta-VAE, annealed VAE, FactorVAE and
beta-TCVAE: those differ only in the objective.

Differences from the seed, both invisible to its weights: the decoder returns logits and the
likelihood applies the sigmoid (so Bernoulli losses use the stable `binary_cross_entropy_with_logits`
instead of clamped logs), and sampling is explicit (`sample=True`) instead of tied to train mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vaelab.distributions import DiagonalGaussian
from vaelab.models.base import LatentSpec, Model
from vaelab.registry import MODELS

__all__ = [
    "VAE",
    "BurgessConfig",
    "BurgessDecoder",
    "BurgessEncoder",
    "GaussianVAE",
    "VAEOutput",
    "kaiming_init",
]


@dataclass(frozen=True, kw_only=True)
class BurgessConfig:
    """Shape of the Burgess VAE. Channels and image size default to the dataset's."""

    latent_dim: int = 10  # D
    channels: int = 0  # C of the input; 0: taken from the data
    image_size: int = 0  # H = W, 32 or 64; 0: taken from the data
    hidden_channels: int = 32
    hidden_dim: int = 256

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.image_size not in (0, 32, 64):
            raise ValueError(
                f"the Burgess model takes 32x32 or 64x64 images, got image_size={self.image_size}; "
                "resize the data or use the configurable 'conv' model"
            )
        if self.channels < 0:
            raise ValueError(f"channels must be >= 0, got {self.channels}")


@dataclass
class VAEOutput:
    """What a one-Gaussian-latent VAE's forward pass returns (the output type of its family).

    Attributes:
        mu: posterior means (B, D).
        logvar: posterior log-variances (B, D).
        z: latent codes fed to the decoder (B, D): a sample, or mu when not sampling.
        logits: decoder logits (B, C, H, W); the likelihood mean is sigmoid(logits).
    """

    mu: Tensor
    logvar: Tensor
    z: Tensor
    logits: Tensor

    @property
    def recon(self) -> Tensor:
        """Likelihood mean in (0, 1), shape (B, C, H, W)."""
        return torch.sigmoid(self.logits)


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-uniform (ReLU gain) weights of every conv and linear layer; biases keep defaults.

    As the seed: every layer, including the output heads, uses the ReLU rule.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")


class BurgessEncoder(nn.Module):
    """x (B, C, H, W) -> (mu, logvar), each (B, D). Head units interleave mu_j, logvar_j."""

    def __init__(self, channels: int, image_size: int, latent_dim: int, hidden: int = 32,
                 hidden_dim: int = 256) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.conv1 = nn.Conv2d(channels, hidden, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 4, stride=2, padding=1)
        self.conv3 = nn.Conv2d(hidden, hidden, 4, stride=2, padding=1)
        self.conv_64 = nn.Conv2d(hidden, hidden, 4, stride=2, padding=1) if image_size == 64 else None
        self.lin1 = nn.Linear(hidden * 4 * 4, hidden_dim)
        self.lin2 = nn.Linear(hidden_dim, hidden_dim)
        self.mu_logvar_gen = nn.Linear(hidden_dim, 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        if self.conv_64 is not None:
            h = torch.relu(self.conv_64(h))  # (B, 32, 4, 4)
        return self.head(h)

    def conv_stack(self) -> list[tuple[nn.Conv2d, bool]]:
        """The convolutions, each followed by a ReLU (for `vaelab.models.onednn`)."""
        convs = [self.conv1, self.conv2, self.conv3] + (
            [self.conv_64] if self.conv_64 is not None else [])
        return [(conv, True) for conv in convs]

    def head(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) from the last convolution's activations (B, 32, 4, 4)."""
        h = h.flatten(1)  # (B, 512), NCHW order whatever the memory layout
        h = torch.relu(self.lin1(h))
        h = torch.relu(self.lin2(h))
        mu_logvar = self.mu_logvar_gen(h).view(-1, self.latent_dim, 2)  # (B, D, 2) interleaved
        return mu_logvar[..., 0], mu_logvar[..., 1]


class BurgessDecoder(nn.Module):
    """z (B, D) -> logits (B, C, H, W)."""

    def __init__(self, channels: int, image_size: int, latent_dim: int, hidden: int = 32,
                 hidden_dim: int = 256) -> None:
        super().__init__()
        self.hidden = hidden
        self.lin1 = nn.Linear(latent_dim, hidden_dim)
        self.lin2 = nn.Linear(hidden_dim, hidden_dim)
        self.lin3 = nn.Linear(hidden_dim, hidden * 4 * 4)
        self.convT_64 = (
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1) if image_size == 64 else None
        )
        self.convT1 = nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1)
        self.convT2 = nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1)
        self.convT3 = nn.ConvTranspose2d(hidden, channels, 4, stride=2, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = torch.relu(self.lin1(z))
        h = torch.relu(self.lin2(h))
        h = torch.relu(self.lin3(h)).view(-1, self.hidden, 4, 4)  # (B, 32, 4, 4)
        if self.convT_64 is not None:
            h = torch.relu(self.convT_64(h))
        h = torch.relu(self.convT1(h))
        h = torch.relu(self.convT2(h))
        return self.convT3(h)  # logits; the seed applies the sigmoid here


class GaussianVAE(Model):
    """Shared behaviour of one-Gaussian-latent VAEs: reparameterisation, forward, the contract.

    One item-scope latent "z" (D = `latent_dim`) with a N(0, I) prior, decoded by `decoder`;
    subclasses set `encoder` (x -> (mu, logvar)), `decoder` (z -> logits), `latent_dim` and
    `image_shape`.
    """

    output_type = VAEOutput
    decoder_inputs = ("z",)
    represented = ("z",)
    traversal_latent = "z"
    latent_dim: int
    encoder: nn.Module
    decoder: nn.Module

    @property
    def latents(self) -> tuple[LatentSpec, ...]:
        return (LatentSpec("z", self.latent_dim),)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar), each (B, D)."""
        return self.encoder(x)

    def posterior(self, x: Tensor) -> dict[str, DiagonalGaussian]:
        mu, logvar = self.encoder(x)
        return {"z": DiagonalGaussian(mu, logvar)}

    def inference_posterior(self, dtype: torch.dtype) -> Callable[[Tensor], dict] | None:
        """`posterior` with the encoder's conv stack prepacked for oneDNN (`Model`), when the
        encoder declares one (`conv_stack`) and oneDNN is available; else None."""
        from vaelab.models.onednn import packed_encoder

        packed = packed_encoder(self.encoder, dtype)
        if packed is None:
            return None

        def posterior(x: Tensor) -> dict[str, DiagonalGaussian]:
            mu, logvar = packed(x)
            return {"z": DiagonalGaussian(mu, logvar)}

        return posterior

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        """Decoder logits (B, C, H, W) of `latents["z"]` (B, D)."""
        if isinstance(latents, Tensor):
            raise TypeError(f"{type(self).__name__}.decode takes a mapping of latents, "
                            "{'z': codes}, not a tensor")
        return self.decoder(latents["z"])

    def sample_prior(
        self, n: int, generator: torch.Generator | None = None, **given: Any
    ) -> dict[str, Tensor]:
        """z ~ N(0, I_D), (n, D), on `generator`'s device (CPU without one)."""
        if given:
            raise ValueError(f"{type(self).__name__}.sample_prior takes no "
                             f"{', '.join(sorted(given))}: its prior is N(0, I)")
        device = generator.device if generator is not None else None
        return {"z": torch.randn(n, self.latent_dim, generator=generator, device=device)}

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (`DiagonalGaussian.rsample`)."""
        return DiagonalGaussian(mu, logvar).rsample()

    #: `forward(x, decode_first=n)` decodes only the first n codes (FactorVAE uses half).
    partial_decode = True

    def forward(self, x: Tensor, sample: bool | None = None,
                decode_first: int | None = None,
                posterior: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
                ) -> VAEOutput:
        """Encodes, draws z (sampling when `sample`, default: in train mode), decodes.

        `decode_first=n` decodes only z[:n] (`logits` is then (n, C, H, W)); the codes of every
        image are still drawn, so the random stream is that of a full pass.
        `posterior(mu, logvar) -> (mu, logvar)` replaces the encoder's posteriors before z is
        drawn (the weakly supervised objectives share latents across a pair this way); the
        output's `mu` and `logvar` are the replaced ones. It runs inside `forward`, so mixed
        precision's autocast and DDP's gradient hooks cover the whole pass.
        """
        mu, logvar = self.encoder(x)
        if posterior is not None:
            mu, logvar = posterior(mu, logvar)
        if sample is None:
            sample = self.training
        z = self.reparameterize(mu, logvar) if sample else mu
        decoded = z if decode_first is None else z[:decode_first]
        return VAEOutput(mu=mu, logvar=logvar, z=z, logits=self.decoder(decoded))


@MODELS.register("burgess")
class VAE(GaussianVAE):
    """Gaussian VAE with the Burgess conv encoder/decoder for 32x32 or 64x64 inputs.

    502,005 parameters for 1x64x64 inputs with D = 10 (504,055 for 3x64x64, 469,173 for 1x32x32).
    """

    config_class = BurgessConfig

    def __init__(self, config: BurgessConfig = BurgessConfig()) -> None:
        super().__init__()
        channels = config.channels or 1
        size = config.image_size or 64
        self.config = config
        self.latent_dim = config.latent_dim
        self.image_shape = (channels, size, size)
        args = (channels, size, config.latent_dim, config.hidden_channels, config.hidden_dim)
        self.encoder = BurgessEncoder(*args)
        self.decoder = BurgessDecoder(*args)
        kaiming_init(self)
