"""UG-VAE: a local latent per image, a global latent shared by the batch (Peis et al., 2020).

Peis, Olmos & Artés-Rodríguez, "Unsupervised Learning of Global Factors in Deep Generative
Models" (arXiv 2012.08234), as implemented by ipeis/UG-VAE (its `models.py`, class `UGVAE`):

    p: beta ~ N(0, I) once per batch,  d_i ~ Cat(1/K),  z_i | d_i=k, beta ~ N(mu_k(beta), s_k(beta)),
       x_i | z_i, beta ~ N(f([z_i; beta]), var_x)
    q: h_i = E(x_i);  q(z_i|x_i) = N(m_i, exp(u_i));  pi_i = q(d_i|z_i);
       q(beta | X) = the product of the B experts N(a_i, exp(l_i)) of [h_i; pi_i]

The pooled posterior's variance 1 / sum_i exp(-l_i) shrinks like 1/B: that is the model, kept as
is. Encoding a batch of another size than training's gives another scale of q(beta); `posterior`
pools over whatever batch it is given (document and choose the batch size when encoding).

Architectures: "k_vae" (dense, 28x28; the seed's MNIST model) and "beta_vae" (conv with
BatchNorm, 64x64). The seed runs its experiments with BatchNorm in train mode (batch statistics;
it never calls `eval()`); here `eval()` uses the running statistics and the experiments choose.
Prior variances are exp(tanh(r)) in [1/e, e] and posterior variances exp(u), as the seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vaelab.distributions import Categorical, DiagonalGaussian
from vaelab.models.base import LatentSpec, Model
from vaelab.registry import MODELS

__all__ = ["UGVAE", "UGVAEConfig", "UGVAEOutput", "pool_experts"]

ARCHITECTURES = ("k_vae", "beta_vae")
HIDDEN = 256


def pool_experts(mean: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    """The product of B Gaussian experts N(mean_i, exp(logvar_i)), normalised: (1, D) each.

    precision = sum_i exp(-logvar_i); mean = (sum_i exp(-logvar_i) mean_i) / precision.

    Args:
        mean, logvar: the experts, (B, D).

    Returns:
        (mu, logvar) of the pooled Gaussian, each (1, D).
    """
    precision = torch.exp(-logvar)  # (B, D)
    total = precision.sum(0, keepdim=True)  # (1, D)
    mu = (precision * mean).sum(0, keepdim=True) / total
    return mu, -torch.log(total)


@dataclass(frozen=True, kw_only=True)
class UGVAEConfig:
    """UG-VAE's flags (train.py defaults)."""

    architecture: str = "beta_vae"  # "beta_vae" (conv + BatchNorm, 64x64) | "k_vae" (dense)
    z_dim: int = 20  # local latent z
    beta_dim: int = 20  # global latent beta
    K: int = 20  # components of the local mixture prior, >= 1
    channels: int = 0  # 0: from the data
    image_size: int = 0  # 28 (k_vae) or 64 (beta_vae); 0: from the data

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got "
                             f"{self.architecture!r}")
        for name in ("z_dim", "beta_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.K < 1:
            raise ValueError(f"K must be >= 1 component, got {self.K}")
        if self.architecture == "beta_vae" and self.image_size not in (0, 64):
            raise ValueError(f"the beta_vae architecture takes 64x64 images, got image_size="
                             f"{self.image_size}; use architecture='k_vae' for 28x28")


@dataclass
class UGVAEOutput:
    """A UG-VAE forward pass on one batch (one group).

    Attributes:
        m, logvar_z: q(z_i|x_i), (B, Dz).   z: the samples (B, Dz).
        pi_logits: log q(d_i|z_i) up to a constant, (B, K).
        mu_beta, logvar_beta: the pooled q(beta|X), (1, Db).   beta: the sample (1, Db).
        prior_mu, prior_logvar: p(z | d=k, beta) for every k, (K, Dz).
        logits: decoder logits of [z_i; beta], (B, C, H, W).
    """

    m: Tensor
    logvar_z: Tensor
    z: Tensor
    pi_logits: Tensor
    mu_beta: Tensor
    logvar_beta: Tensor
    beta: Tensor
    prior_mu: Tensor
    prior_logvar: Tensor
    logits: Tensor


def _conv_block(n_in: int, n_out: int, kernel: int, stride: int, padding: int) -> list[nn.Module]:
    return [nn.Conv2d(n_in, n_out, kernel, stride, padding), nn.BatchNorm2d(n_out), nn.ReLU()]


@MODELS.register("ugvae")
class UGVAE(Model):
    """UG-VAE: latents z (per image), d (categorical, per image) and beta (per batch)."""

    config_class = UGVAEConfig
    output_type = UGVAEOutput
    decoder_inputs = ("z", "beta")
    represented = ("z",)
    traversal_latent = "z"
    cluster_latent = "d"
    standard_normal_prior = False  # a mixture prior on z

    def __init__(self, config: UGVAEConfig = UGVAEConfig()) -> None:
        super().__init__()
        self.config = config
        channels = config.channels or 1
        size = config.image_size or (64 if config.architecture == "beta_vae" else 28)
        self.image_shape = (channels, size, size)
        self.num_clusters = config.K if config.K > 1 else 0
        self.latents = (LatentSpec("z", config.z_dim), LatentSpec("d", config.K, "categorical"),
                        LatentSpec("beta", config.beta_dim, scope="batch"))
        Dz, Db, K = config.z_dim, config.beta_dim, config.K
        if config.architecture == "k_vae":
            self.pre_encoder = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size,
                                                                     HIDDEN), nn.ReLU())
            self.decoder = nn.Sequential(nn.Linear(Dz + Db, HIDDEN), nn.ReLU(),
                                         nn.Linear(HIDDEN, channels * size * size),
                                         nn.Unflatten(1, (channels, size, size)))
        else:
            self.pre_encoder = nn.Sequential(
                *_conv_block(channels, 32, 4, 2, 1), *_conv_block(32, 32, 4, 2, 1),
                *_conv_block(32, 64, 4, 2, 1), *_conv_block(64, 64, 4, 2, 1),
                *_conv_block(64, HIDDEN, 4, 1, 0), nn.Flatten())
            self.decoder = nn.Sequential(
                nn.Linear(Dz + Db, HIDDEN), nn.Unflatten(1, (HIDDEN, 1, 1)), nn.ReLU(),
                nn.ConvTranspose2d(HIDDEN, 64, 4, 1, 0), nn.ReLU(),
                nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(32, channels, 4, 2, 1))
        self.q_z = nn.Linear(HIDDEN, 2 * Dz)
        self.q_d = nn.Sequential(nn.Linear(Dz, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, K))
        self.expert = nn.Linear(HIDDEN + K, 2 * Db)
        self.prior = nn.ModuleList(nn.Sequential(nn.Linear(Db, HIDDEN), nn.ReLU(),
                                                 nn.Linear(HIDDEN, 2 * Dz)) for _ in range(K))

    # -- pieces -------------------------------------------------------------------------------

    def prior_heads(self, beta: Tensor) -> tuple[Tensor, Tensor]:
        """p(z | d=k, beta) for every k: means and log-variances (K, Dz), variance exp(tanh(r))."""
        out = torch.cat([head(beta.reshape(1, -1)) for head in self.prior])  # (K, 2 Dz)
        mu, raw = out.chunk(2, dim=-1)
        return mu, torch.tanh(raw)

    def _encode(self, x: Tensor, sample: bool) -> tuple[Tensor, ...]:
        m, logvar_z, z, pi_logits, a, ell = self._experts(x, sample)
        mu_beta, logvar_beta = pool_experts(a, ell)  # (1, Db) each
        return m, logvar_z, z, pi_logits, mu_beta, logvar_beta

    def _experts(self, x: Tensor, sample: bool) -> tuple[Tensor, ...]:
        h = self.pre_encoder(x)  # (B, 256)
        m, logvar_z = self.q_z(h).chunk(2, dim=-1)  # (B, Dz) each; s^2 = exp(u)
        z = DiagonalGaussian(m, logvar_z).rsample() if sample else m
        pi_logits = self.q_d(z)  # (B, K), from the sampled z in training, m otherwise
        a, ell = self.expert(torch.cat([h, torch.softmax(pi_logits, -1)], -1)).chunk(2, -1)
        return m, logvar_z, z, pi_logits, a, ell

    def experts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The per-image experts N(a_i, exp(l_i)) of q(beta | X) at the posterior means, before
        pooling: (a, l), each (B, Db). `pool_experts(a, l)` is `posterior(x)["beta"]`."""
        return self._experts(x, sample=False)[4:]

    def _decode(self, z: Tensor, beta: Tensor) -> Tensor:
        return self.decoder(torch.cat([z, beta.expand(len(z), -1)], dim=-1))

    # -- the contract -------------------------------------------------------------------------

    def forward(self, x: Tensor, sample: bool | None = None) -> UGVAEOutput:
        """One batch = one group: samples z_i and one beta when `sample` (default: in train
        mode), else the means. The objective's `compute` samples in eval mode too, so validation
        losses are Monte Carlo estimates of the ELBO, as the seed's."""
        if len(x) < 2 and self.training:
            raise ValueError("UG-VAE pools its global latent over the batch: a batch of 1 "
                             "has no group; use batch_size >= 2")
        sample = self.training if sample is None else sample
        m, logvar_z, z, pi_logits, mu_beta, logvar_beta = self._encode(x, sample)
        beta = DiagonalGaussian(mu_beta, logvar_beta).rsample() if sample else mu_beta
        prior_mu, prior_logvar = self.prior_heads(beta)
        return UGVAEOutput(m=m, logvar_z=logvar_z, z=z, pi_logits=pi_logits, mu_beta=mu_beta,
                           logvar_beta=logvar_beta, beta=beta, prior_mu=prior_mu,
                           prior_logvar=prior_logvar, logits=self._decode(z, beta))

    def posterior(self, x: Tensor) -> dict[str, DiagonalGaussian | Categorical]:
        """q(z|x) per image, q(d|z) at the means, and q(beta) pooled over this batch (1, Db)."""
        m, logvar_z, _, pi_logits, mu_beta, logvar_beta = self._encode(x, sample=False)
        return {"z": DiagonalGaussian(m, logvar_z), "d": Categorical(pi_logits),
                "beta": DiagonalGaussian(mu_beta, logvar_beta)}

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        """Logits of [z_i; beta] with z (B, Dz) and beta (B, Db) or (1, Db) (shared)."""
        if isinstance(latents, Tensor):
            raise TypeError("UGVAE.decode takes a mapping {'z': ..., 'beta': ...}, not a tensor")
        z, beta = latents["z"], latents["beta"]
        if beta.shape[0] == len(z):
            return self.decoder(torch.cat([z, beta], dim=-1))
        return self._decode(z, beta)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None,
                     component: int | None = None, beta: Tensor | None = None,
                     **given: Any) -> dict[str, Tensor]:
        """One batch of n: beta ~ N(0, I) (or the given `beta`), d_i ~ Uniform(K) (or
        `component`), z_i ~ p(z | d_i, beta). Returns {"z": (n, Dz), "beta": (n, Db), "d": (n,)}
        on `generator`'s device."""
        if given:
            raise ValueError(f"UGVAE.sample_prior takes component= and beta=, not "
                             f"{', '.join(given)}")
        K = self.config.K
        if component is not None and not 0 <= component < K:
            raise ValueError(f"component must be in 0..{K - 1}, got {component}")
        device = generator.device if generator is not None else torch.device("cpu")
        if beta is None:
            beta = torch.randn(1, self.config.beta_dim, generator=generator, device=device)
        beta = beta.reshape(1, -1).to(device)
        d = (torch.full((n,), component, device=device) if component is not None
             else torch.randint(0, K, (n,), generator=generator, device=device))
        eps = torch.randn(n, self.config.z_dim, generator=generator, device=device)
        model_device = self.q_z.weight.device
        mu, logvar = self.prior_heads(beta.to(model_device))
        picked = d.to(model_device)
        z = mu[picked] + torch.exp(0.5 * logvar[picked]) * eps.to(model_device)
        return {"z": z.to(device), "beta": beta.expand(n, -1).clone(), "d": d}

    def prior_center(self) -> dict[str, Tensor]:
        """beta = 0 (the prior's mean) and z the average of the K component means there."""
        with torch.no_grad():
            beta = torch.zeros(1, self.config.beta_dim, device=self.q_z.weight.device)
            return {"z": self.prior_heads(beta)[0].mean(0, keepdim=True).cpu(),
                    "beta": beta.cpu()}

    @torch.no_grad()
    def cluster(self, x: Tensor) -> Tensor:
        """argmax_k q(d=k | z=m) for each image, (B,)."""
        if not self.num_clusters:
            return super().cluster(x)
        return self.posterior(x)["d"].logits.argmax(-1)
