"""The VAE-GMVAE seed's models: the Gaussian-mixture VAE (latents w, y, z) and its plain VAE.

Dilokthanakul et al., "Deep Unsupervised Clustering with Gaussian Mixture Variational
Autoencoders" (arXiv 1611.02648), as implemented by psanch21/VAE-GMVAE:

    p: w ~ N(0, I),  y ~ Cat(1/K),  z | w, y=k ~ N(mu_k(w), diag v_k(w)),  x | z ~ p(x | z)
    q: q(z|x) = N(mu_z(x), v_z(x)),  q(w|x) = N(mu_w(x), v_w(x)),  pi = p(y | w, z)

Architectures (`architecture`): "dense" (the seed's model_type 2; `DenseNet` blocks of
`num_layers` layers, width `hidden_dim`) and "cnn" (model_type 3; `ConvNet3Gauss` encoders and
the `DeconvNet3` decoder), for 28x28 (MNIST) and 28x20 (Frey) inputs or any size divisible by 4.
The GMVAE also has "paper": the fully connected networks of Dilokthanakul et al.'s own code
(Nat-D/GMVAE, `models/FullyConnected.lua`), where q(z|x) and q(w|x) share one trunk of two
[Linear(hidden), BatchNorm, ReLU] with linear mean and log-variance heads, the prior trunk is
Linear + Tanh with linear log-variance heads (no floor), the decoder has two hidden ReLU layers,
and the init is PyTorch's default (Torch7's nn.Linear init). On MNIST it clusters better than the
seed's separate encoders at the same step count (`benchmarks/gmvae_clustering.py`, docs/results.md).
`GMVAE.cluster_posterior` chooses pi: "network" (the seed: a learned MLP on [w; z]) or "bayes"
(the paper: Bayes' rule from the K Gaussians p(z|w, y=k) and the uniform p(y)).

In "dense" and "cnn", variances are produced directly by softplus (the seed's choice), with its
0.1 floor on the prior heads and the dense q(w|x); latents are declared with log-variances.
Initialisation as the seed: Glorot-uniform weights, zero biases, except the prior heads' biases
~ truncated N(0, 1), which break the symmetry between clusters.

Fixed here (the seed's bugs): dropout (`dropout`) really is applied in the dense
hidden layers in train mode (the seed's never fires); decoding returns logits and the mean is
sigmoid(logits) (no observation noise is added to pictures); generation draws w, y, z and x in
one pass (the seed's three session runs mismatch them).

`SeedVAE` ("seed_vae") is the seed's plain VAE (model_type 0 dense, 1 CNN): q(z|x) with a mean
network and a separate softplus variance network, and the same decoders. It trains with the ELBO
objectives (`vae`, with `likelihood="normal"` and `variance` = the seed's sigma).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaelab.distributions import Categorical, DiagonalGaussian
from vaelab.models.base import LatentSpec, Model
from vaelab.models.vae import GaussianVAE
from vaelab.registry import MODELS

__all__ = ["GMVAE", "GMVAEConfig", "GMVAEOutput", "SeedVAE", "SeedVAEConfig", "dense_net"]

ARCHITECTURES = ("dense", "cnn")
#: the GMVAE's also: "paper", the fully connected networks of Dilokthanakul et al.'s own code
GMVAE_ARCHITECTURES = (*ARCHITECTURES, "paper")
CLUSTER_POSTERIORS = ("network", "bayes")
VARIANCE_FLOOR = 0.1  # the seed's softplus_bias


# ----------------------------------------------------------------------------------------------
# Blocks


def dense_net(n_in: int, n_out: int, hidden: int, num_layers: int, dropout: float) -> nn.Sequential:
    """The seed's `DenseNet`: (num_layers - 1) x [Linear(hidden), ReLU, Dropout] + Linear(n_out).

    num_layers = 1 is a single linear layer. The output activation is the caller's.
    """
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(num_layers - 1):
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _glorot(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


def _log_variance(raw: Tensor, floor: float = 0.0) -> Tensor:
    """log(softplus(raw) + floor): the seed's directly produced variance, as a log-variance."""
    variance = F.softplus(raw) + floor
    return torch.log(variance.clamp_min(1e-12))


class _DenseGaussian(nn.Module):
    """x (B, C, H, W) -> (mu, logvar) (B, D): separate mean and softplus-variance DenseNets."""

    def __init__(self, n_in: int, dim: int, hidden: int, num_layers: int, dropout: float,
                 floor: float) -> None:
        super().__init__()
        self.mean = dense_net(n_in, dim, hidden, num_layers, dropout)
        self.variance = dense_net(n_in, dim, hidden, num_layers, dropout)
        self.floor = floor

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        flat = x.flatten(1)
        return self.mean(flat), _log_variance(self.variance(flat), self.floor)


class _ConvGaussian(nn.Module):
    """The seed's `ConvNet3Gauss`: three k4 s2 convs (32, 64, 64; SAME padding), Dense(2 dim),
    then mean and softplus-variance heads. 28x28 -> 4x4x64; 28x20 -> 4x3x64."""

    def __init__(self, channels: int, size: tuple[int, int], dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = channels
        height, width = size
        for out in (32, 64, 64):
            # TF's SAME padding for k4 s2: output ceil(n / 2); pad 1 before and 2 after, or 1, 1
            layers += [_SamePad(height, width), nn.Conv2d(previous, out, 4, 2), nn.ReLU()]
            previous, height, width = out, math.ceil(height / 2), math.ceil(width / 2)
        self.convs = nn.Sequential(*layers)
        self.hidden = nn.Linear(64 * height * width, 2 * dim)
        self.mean = nn.Linear(2 * dim, dim)
        self.variance = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.relu(self.hidden(self.convs(x).flatten(1)))
        return self.mean(h), _log_variance(self.variance(h))


class _PaperEncoder(nn.Module):
    """x -> (mu_z, logvar_z, mu_w, logvar_w): the recogniser of Dilokthanakul et al.'s code
    (Nat-D/GMVAE, models/FullyConnected.lua): one trunk of two [Linear(hidden), BatchNorm, ReLU]
    shared by q(z|x) and q(w|x), then four linear heads (means and log-variances).
    Dropout, when asked for, follows each ReLU."""

    def __init__(self, n_in: int, z_dim: int, w_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout))
        self.heads = nn.Linear(hidden, 2 * (z_dim + w_dim))  # [mu_z, logvar_z, mu_w, logvar_w]
        self.sizes = (z_dim, z_dim, w_dim, w_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.heads(self.trunk(x.flatten(1))).split(self.sizes, dim=-1)


class _SamePad(nn.Module):
    """Zero padding so a k4 s2 convolution gives ceil(n / 2), as TensorFlow's SAME."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()

        def split(n: int) -> tuple[int, int]:
            total = max((math.ceil(n / 2) - 1) * 2 + 4 - n, 0)
            return total // 2, total - total // 2

        (top, bottom), (left, right) = split(height), split(width)
        self.padding = (left, right, top, bottom)

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x, self.padding)


class _DenseDecoder(nn.Module):
    """z -> logits (B, C, H, W): `hidden_layers` x Dense(hidden, ReLU) -> Dense(C H W); the seed
    always has one hidden layer, Dilokthanakul et al.'s code ("paper") two."""

    def __init__(self, z_dim: int, hidden: int, shape: tuple[int, int, int],
                 hidden_layers: int = 1) -> None:
        super().__init__()
        self.shape = shape
        layers: list[nn.Module] = []
        width = z_dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, shape[0] * shape[1] * shape[2]))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.shape)


class _DeconvDecoder(nn.Module):
    """The seed's `DeconvNet3`: Dense(3 z_dim) -> Dense(H/4 W/4 64) -> two k4 s2 transposed convs
    (64, 32) -> a k4 s1 transposed conv to C channels (SAME padding throughout) -> logits."""

    def __init__(self, z_dim: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        channels, height, width = shape
        self.base = (height // 4, width // 4)
        self.mlp = nn.Sequential(nn.Linear(z_dim, 3 * z_dim), nn.ReLU(),
                                 nn.Linear(3 * z_dim, 64 * self.base[0] * self.base[1]), nn.ReLU())
        # k4 s2 with padding 1 doubles a side exactly (SAME); k4 s1 keeps it with a 1/2 crop.
        self.up = nn.Sequential(nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU())
        self.out = nn.ConvTranspose2d(32, channels, 4, 1, 0)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mlp(z).view(-1, 64, *self.base))
        return self.out(h)[:, :, 1:-2, 1:-2]  # (B, C, H, W): SAME for k4 s1 crops 1 then 2


# ----------------------------------------------------------------------------------------------
# Configs


def _check_shape_options(config: Any, architectures: tuple[str, ...] = ARCHITECTURES) -> None:
    if config.architecture not in architectures:
        raise ValueError(f"architecture must be one of {architectures}, got "
                         f"{config.architecture!r}")
    for name in ("hidden_dim", "num_layers", "z_dim"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
    if config.architecture == "cnn":
        for name in ("image_height", "image_width"):
            size = getattr(config, name)
            if size and size % 4:
                raise ValueError(f"the cnn architecture needs image sides divisible by 4 (28x28, "
                                 f"28x20), got {name}={size}; use architecture='dense'")


@dataclass(frozen=True, kw_only=True)
class GMVAEConfig:
    """The GMVAE seed's flags (its argparse defaults) and vaelab's fixes."""

    architecture: str = "dense"  # "dense" (seed model_type 2) | "cnn" (model_type 3) | "paper"
    z_dim: int = 3  # the mixture-prior latent z
    w_dim: int = 3  # the latent w that parametrises the mixture
    K: int = 10  # clusters (the seed's K_clusters), >= 2
    hidden_dim: int = 50  # dense width
    num_layers: int = 2  # depth of the dense encoders and of the y network
    dropout: float = 0.0  # drop probability of the dense hidden layers (applied, unlike the seed)
    cluster_posterior: str = "network"  # "network" (seed) | "bayes" (Dilokthanakul et al.)
    channels: int = 0  # 0: from the data
    image_height: int = 0  # 0: from the data
    image_width: int = 0  # 0: from the data

    def __post_init__(self) -> None:
        _check_shape_options(self, GMVAE_ARCHITECTURES)
        if self.K < 2:
            raise ValueError(f"K must be >= 2 clusters, got {self.K}")
        if self.w_dim < 1:
            raise ValueError(f"w_dim must be >= 1, got {self.w_dim}")
        if self.cluster_posterior not in CLUSTER_POSTERIORS:
            raise ValueError(f"cluster_posterior must be one of {CLUSTER_POSTERIORS}, got "
                             f"{self.cluster_posterior!r}")


@dataclass(frozen=True, kw_only=True)
class SeedVAEConfig:
    """The VAE-GMVAE seed's plain VAE (model_type 0 dense, 1 CNN)."""

    architecture: str = "dense"  # "dense" | "cnn"
    z_dim: int = 3
    hidden_dim: int = 50
    num_layers: int = 2
    dropout: float = 0.0
    channels: int = 0
    image_height: int = 0
    image_width: int = 0

    def __post_init__(self) -> None:
        _check_shape_options(self)


def _shape(config: Any) -> tuple[int, int, int]:
    return (config.channels or 1, config.image_height or 28, config.image_width or 28)


def _encoder(config: Any, shape: tuple[int, int, int], dim: int, floor: float) -> nn.Module:
    if config.architecture == "cnn":
        return _ConvGaussian(shape[0], shape[1:], dim)
    n_in = shape[0] * shape[1] * shape[2]
    return _DenseGaussian(n_in, dim, config.hidden_dim, config.num_layers, config.dropout, floor)


def _decoder(config: Any, shape: tuple[int, int, int]) -> nn.Module:
    if config.architecture == "cnn":
        return _DeconvDecoder(config.z_dim, shape)
    return _DenseDecoder(config.z_dim, config.hidden_dim, shape)


# ----------------------------------------------------------------------------------------------
# GMVAE


@dataclass
class GMVAEOutput:
    """A GMVAE forward pass: S samples of (w, z) for each of B images, flattened to S B rows.

    Attributes:
        mu_z, logvar_z: q(z|x), (B, Dz).   mu_w, logvar_w: q(w|x), (B, Dw).
        z, w: the samples, (S B, Dz) and (S B, Dw); sample s of image b is row s B + b.
        cluster_logits: log pi up to a constant, (S B, K).
        prior_mu, prior_logvar: p(z | w, y=k) at each sampled w, (S B, K, Dz).
        logits: decoder logits of each z, (S B, C, H, W).
        samples: S.
    """

    mu_z: Tensor
    logvar_z: Tensor
    mu_w: Tensor
    logvar_w: Tensor
    z: Tensor
    w: Tensor
    cluster_logits: Tensor
    prior_mu: Tensor
    prior_logvar: Tensor
    logits: Tensor
    samples: int = 1


@MODELS.register("gmvae")
class GMVAE(Model):
    """The Gaussian-mixture VAE: latents z (Gaussian, mixture prior), w (Gaussian), y (K)."""

    config_class = GMVAEConfig
    output_type = GMVAEOutput
    decoder_inputs = ("z",)
    represented = ("z",)
    traversal_latent = "z"
    cluster_latent = "y"
    standard_normal_prior = False  # a mixture prior on z

    def __init__(self, config: GMVAEConfig = GMVAEConfig()) -> None:
        super().__init__()
        self.config = config
        self.image_shape = _shape(config)
        self.num_clusters = config.K
        self.latents = (LatentSpec("z", config.z_dim), LatentSpec("w", config.w_dim),
                        LatentSpec("y", config.K, kind="categorical"))
        self.paper = paper = config.architecture == "paper"
        if paper:
            pixels = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
            self.encoder = _PaperEncoder(pixels, config.z_dim, config.w_dim, config.hidden_dim,
                                         config.dropout)
        else:
            self.q_z = _encoder(config, self.image_shape, config.z_dim, 0.0)
            self.q_w = _encoder(config, self.image_shape, config.w_dim, VARIANCE_FLOOR)
        self.y_net = (dense_net(config.w_dim + config.z_dim, config.K, config.hidden_dim,
                                config.num_layers, config.dropout)
                      if config.cluster_posterior == "network" else None)
        self.prior_trunk = nn.Sequential(nn.Linear(config.w_dim, config.hidden_dim),
                                         nn.Tanh() if paper else nn.ReLU())
        self.prior_mean = nn.Linear(config.hidden_dim, config.K * config.z_dim)
        self.prior_variance = nn.Linear(config.hidden_dim, config.K * config.z_dim)
        self.decoder = (_DenseDecoder(config.z_dim, config.hidden_dim, self.image_shape, 2)
                        if paper else _decoder(config, self.image_shape))
        if not paper:  # "paper" keeps PyTorch's default init, which is Torch7's nn.Linear one
            _glorot(self)
            with torch.no_grad():  # symmetry breaking between clusters, as the seed
                for head in (self.prior_mean, self.prior_variance):
                    nn.init.trunc_normal_(head.bias, std=1.0, a=-2.0, b=2.0)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The parameters of q(z|x) and q(w|x): mu_z, logvar_z, mu_w, logvar_w."""
        if self.paper:
            if self.training and x.shape[0] == 1:
                raise ValueError("architecture='paper' normalises each batch (BatchNorm): a "
                                 "training batch needs at least 2 images, got 1; raise "
                                 "train.batch_size or use architecture='dense'")
            return self.encoder(x)
        return (*self.q_z(x), *self.q_w(x))

    # -- pieces -------------------------------------------------------------------------------

    def prior_heads(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Means and log-variances of p(z | w, y=k) for every k: each (B, K, Dz)."""
        h = self.prior_trunk(w)
        shape = (-1, self.config.K, self.config.z_dim)
        raw = self.prior_variance(h)
        # "paper": linear log-variance heads as Dilokthanakul et al.'s code; else the seed's floor
        logvar = raw if self.paper else _log_variance(raw, VARIANCE_FLOOR)
        return self.prior_mean(h).view(shape), logvar.view(shape)

    def cluster_logits(self, w: Tensor, z: Tensor, prior_mu: Tensor | None = None,
                       prior_logvar: Tensor | None = None) -> Tensor:
        """log p(y=k | w, z) up to a constant per row, (B, K)."""
        if self.y_net is not None:
            return self.y_net(torch.cat([w, z], dim=-1))  # w first, as the seed
        if prior_mu is None or prior_logvar is None:
            prior_mu, prior_logvar = self.prior_heads(w)
        # Bayes' rule with the uniform p(y): pi_k ∝ N(z; mu_k(w), v_k(w)).
        return DiagonalGaussian(prior_mu, prior_logvar).log_prob(z[:, None, :])

    # -- the contract -------------------------------------------------------------------------

    def forward(self, x: Tensor, samples: int = 1, sample: bool | None = None) -> GMVAEOutput:
        """Encodes, draws `samples` (w, z) per image when `sample` (default: in train mode), else
        takes the means (one row per image). The objective's `compute` samples in eval mode too,
        so validation losses are Monte Carlo estimates, as the seeds'."""
        mu_z, logvar_z, mu_w, logvar_w = self.encode(x)
        if self.training if sample is None else sample:
            z = DiagonalGaussian(mu_z.repeat(samples, 1), logvar_z.repeat(samples, 1)).rsample()
            w = DiagonalGaussian(mu_w.repeat(samples, 1), logvar_w.repeat(samples, 1)).rsample()
        else:
            samples = 1
            z, w = mu_z, mu_w
        prior_mu, prior_logvar = self.prior_heads(w)
        return GMVAEOutput(
            mu_z=mu_z, logvar_z=logvar_z, mu_w=mu_w, logvar_w=logvar_w, z=z, w=w,
            cluster_logits=self.cluster_logits(w, z, prior_mu, prior_logvar),
            prior_mu=prior_mu, prior_logvar=prior_logvar, logits=self.decoder(z),
            samples=samples,
        )

    def posterior(self, x: Tensor) -> dict[str, DiagonalGaussian | Categorical]:
        """q(z|x), q(w|x), and p(y | w, z) at their means."""
        mu_z, logvar_z, mu_w, logvar_w = self.encode(x)
        return {"z": DiagonalGaussian(mu_z, logvar_z), "w": DiagonalGaussian(mu_w, logvar_w),
                "y": Categorical(self.cluster_logits(mu_w, mu_z))}

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        if isinstance(latents, Tensor):
            raise TypeError("GMVAE.decode takes a mapping of latents, {'z': codes}, not a tensor")
        return self.decoder(latents["z"])

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None,
                     component: int | None = None, **given: Any) -> dict[str, Tensor]:
        """w ~ N(0, I), y ~ Uniform(K) (or y = `component`), z ~ p(z | w, y): {"z", "w", "y"}.

        Drawn on `generator`'s device (CPU without one) in one pass, so w, y and z match.
        """
        if given:
            raise ValueError(f"GMVAE.sample_prior takes component=k, not {', '.join(given)}")
        K = self.config.K
        if component is not None and not 0 <= component < K:
            raise ValueError(f"component must be in 0..{K - 1}, got {component}")
        device = generator.device if generator is not None else torch.device("cpu")
        w = torch.randn(n, self.config.w_dim, generator=generator, device=device)
        eps = torch.randn(n, self.config.z_dim, generator=generator, device=device)
        y = (torch.full((n,), component, device=device) if component is not None
             else torch.randint(0, K, (n,), generator=generator, device=device))
        model_device = self.prior_mean.weight.device
        mu, logvar = self.prior_heads(w.to(model_device))
        rows = torch.arange(n, device=model_device)
        picked = y.to(model_device)
        z = mu[rows, picked] + torch.exp(0.5 * logvar[rows, picked]) * eps.to(model_device)
        return {"z": z.to(device), "w": w, "y": y}

    def prior_center(self) -> dict[str, Tensor]:
        """z at the mean of the mixture at w = 0: the average of the K component means."""
        with torch.no_grad():
            w = torch.zeros(1, self.config.w_dim, device=self.prior_mean.weight.device)
            return {"z": self.prior_heads(w)[0].mean(dim=1).cpu()}

    @torch.no_grad()
    def cluster(self, x: Tensor) -> Tensor:
        """argmax_k p(y=k | w, z) at the posterior means, (B,)."""
        return self.posterior(x)["y"].logits.argmax(dim=-1)


# ----------------------------------------------------------------------------------------------
# The seed's plain VAE


@MODELS.register("seed_vae")
class SeedVAE(GaussianVAE):
    """The VAE-GMVAE seed's VAE: separate mean and softplus-variance encoders, its decoders."""

    config_class = SeedVAEConfig

    def __init__(self, config: SeedVAEConfig = SeedVAEConfig()) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.z_dim
        self.image_shape = _shape(config)
        self.encoder = _encoder(config, self.image_shape, config.z_dim, 0.0)
        self.decoder = _decoder(config, self.image_shape)
        _glorot(self)
