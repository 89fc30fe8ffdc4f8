"""Weakly supervised VAEs on pairs of images that share factors: Ada-GVAE, Ada-ML-VAE, and the
GroupVAE / ML-VAE that know how many factors differ.

Locatello et al., "Weakly-Supervised Disentanglement Without Compromises" (ICML 2020), Section 4.
A pair (x1, x2) (`data.batches = "pairs"`, `vaelab.data.pairs`) is encoded by the one Gaussian
encoder into q(z|x1) = N(mu1, v1) and q(z|x2) = N(mu2, v2). Per latent j,

    delta_j = KL(q(z_j|x1) || q(z_j|x2)),

and the latents estimated to be shared, S, get one posterior for both images, an average a_j of
the two (the other latents keep their own). The loss is the beta-VAE ELBO of both images with
these posteriors (the paper's objective for the pair, its eq. (3) with the aggregated encoders):

    loss = 1/2 [ E_q~(z|x1) -log p(x1|z) + E_q~(z|x2) -log p(x2|z)
                 + beta KL(q~(z|x1) || N(0, I)) + beta KL(q~(z|x2) || N(0, I)) ],

averaged over the pairs: per image, like the other objectives (disentanglement_lib's `weak_vae`
weighs both images by 1/2 too), so `recon` and `kl` read as a beta-VAE's. KL is summed over the
latents, recon over the pixels, per image; neither is divided by the pixel count.

Which latents are shared:

* ``ada_gvae``, ``ada_mlvae`` (adaptive, k unknown): tau = 1/2 (max_j delta_j + min_j delta_j)
  per pair, and S = {j : delta_j < tau} (the paper's threshold; disentanglement_lib bins delta
  into two bins of equal width between min and max, the same rule). When every delta_j is
  equal (a pair of identical images, which the paper's sampler draws when a resampled factor
  keeps its value) every latent is shared; disentanglement_lib's binning is undefined there.
* ``group_vae``, ``ml_vae`` (k known): S = the d - k latents with the smallest delta_j, k the
  number of factors that differ in the pair ("To obtain an estimate of S we choose for every
  pair the d - k coordinates with the smallest D_KL", Section 4; quoted in disentanglement_lib
  issue #36). k is read from the pair's ground-truth factors (`vaelab.data.pairs`).

How the two posteriors are combined on S:

* GVAE (Hosoya, 2019; ``ada_gvae``, ``group_vae``): the average of the means and of the
  variances, a = N((mu1 + mu2) / 2, (v1 + v2) / 2) (variances, not log-variances, are averaged).
* ML-VAE (Bouchacourt et al., 2018; ``ada_mlvae``, ``ml_vae``): the product of the two Gaussians,
  normalised: precision 1/v = 1/v1 + 1/v2, mean v (mu1/v1 + mu2/v2) (precision-weighted).
  disentanglement_lib's `mlvae` keeps that mean but takes the variance 2 v1 v2 / (v1 + v2), twice
  the product's (the normalised geometric mean of the two densities: precisions averaged);
  `combine = "geometric"` reproduces it.

A batch that holds no pairs (validation batches, `evaluate_terms`) has no pair information: it is
scored as the beta-VAE ELBO of each image with its own posterior (nothing shared). Training on
such batches is refused when the config is built (the objective declares `batches = "pairs"`).

The model is a plain Gaussian VAE: metrics, traversals and the other pictures encode single
images (disentanglement_lib issue #36 asks how; nothing about a pair is needed at test time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vaelab.distributions import kl_normal_normal
from vaelab.models.vae import VAEOutput
from vaelab.objectives.base import Objective
from vaelab.objectives.elbo import elbo_terms
from vaelab.objectives.terms import check_likelihood, gaussian_kl_per_dim, reconstruction_loss
from vaelab.registry import OBJECTIVES

__all__ = [
    "COMBINES",
    "AdaGVAE",
    "AdaMLVAE",
    "GroupVAE",
    "MLVAE",
    "WeakConfig",
    "adaptive_shared",
    "adaptive_threshold",
    "average_gvae",
    "average_mlvae",
    "known_k_shared",
    "pair_kl_per_dim",
    "shared_posteriors",
]

COMBINES = ("product", "geometric")


def pair_kl_per_dim(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """delta_j = KL(N(mu1_j, v1_j) || N(mu2_j, v2_j)) per pair and latent, (b, D)."""
    b, d = mu1.shape
    flat = kl_normal_normal(mu1.reshape(-1, 1), logvar1.reshape(-1, 1), mu2.reshape(-1, 1),
                            logvar2.reshape(-1, 1), reduction="none")  # (b * D,)
    return flat.view(b, d)


def adaptive_threshold(delta: Tensor) -> Tensor:
    """tau = 1/2 (max_j delta_j + min_j delta_j) per pair, (b,) from delta (b, D)."""
    return 0.5 * (delta.max(dim=1).values + delta.min(dim=1).values)


def adaptive_shared(delta: Tensor) -> Tensor:
    """The latents estimated to be shared, delta_j < tau, (b, D) bool; every latent of a pair
    whose deltas are all equal (identical posteriors: nothing tells the latents apart)."""
    flat = delta.max(dim=1).values == delta.min(dim=1).values
    return (delta < adaptive_threshold(delta)[:, None]) | flat[:, None]


def known_k_shared(delta: Tensor, k: Tensor) -> Tensor:
    """The d - k latents with the smallest delta_j are shared, (b, D) bool.

    Args:
        delta: (b, D) per-latent KL between the two posteriors.
        k: (b,) number of factors that differ in each pair (clamped to 0..D).
    """
    d = delta.shape[1]
    rank = delta.argsort(dim=1).argsort(dim=1)  # 0: smallest delta
    keep = (d - k.to(delta.device).long()).clamp(0, d)  # (b,) shared count
    return rank < keep[:, None]


def average_gvae(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor
                 ) -> tuple[Tensor, Tensor]:
    """GVAE average: mean (mu1 + mu2) / 2 and variance (v1 + v2) / 2, as (mu, logvar)."""
    mu = 0.5 * (mu1 + mu2)
    logvar = torch.logaddexp(logvar1, logvar2) - torch.log(torch.tensor(2.0, dtype=mu.dtype))
    return mu, logvar


def average_mlvae(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor,
                  combine: str = "product") -> tuple[Tensor, Tensor]:
    """ML-VAE: the normalised product of the two Gaussians, as (mu, logvar).

    "product": precision 1/v1 + 1/v2, mean v (mu1/v1 + mu2/v2). "geometric" (disentanglement_lib):
    the same mean, precision (1/v1 + 1/v2) / 2.
    """
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    precision1, precision2 = torch.exp(-logvar1), torch.exp(-logvar2)
    precision = precision1 + precision2
    mu = (mu1 * precision1 + mu2 * precision2) / precision
    logvar = -torch.log(precision)
    if combine == "geometric":
        logvar = logvar + torch.log(torch.tensor(2.0, dtype=mu.dtype))
    return mu, logvar


def shared_posteriors(mu: Tensor, logvar: Tensor, shared: Tensor, average: str,
                      combine: str = "product") -> tuple[Tensor, Tensor]:
    """The posteriors (2b, D) of a pair batch with the shared latents replaced by their average.

    Args:
        mu, logvar: posteriors of the 2b images, (2b, D): first the x1s, then the x2s.
        shared: (b, D) bool, the shared latents of each pair.
        average: "gvae" or "mlvae".
        combine: the ML-VAE variance rule ("product" or "geometric").
    """
    b = shared.shape[0]
    mu1, mu2, lv1, lv2 = mu[:b], mu[b:], logvar[:b], logvar[b:]
    if average == "gvae":
        mu_a, lv_a = average_gvae(mu1, lv1, mu2, lv2)
    else:
        mu_a, lv_a = average_mlvae(mu1, lv1, mu2, lv2, combine)
    both = torch.cat([shared, shared])  # (2b, D)
    return (torch.where(both, torch.cat([mu_a, mu_a]), mu),
            torch.where(both, torch.cat([lv_a, lv_a]), logvar))


@dataclass(frozen=True, kw_only=True)
class WeakConfig:
    """The weakly supervised VAEs: beta-VAE ELBO of a pair with shared latents averaged."""

    likelihood: str = "bernoulli"  # "bernoulli" | "laplace" | "gaussian"
    beta: float = 1.0  # weight of the KL of both images, >= 0
    combine: str = "product"  # ML-VAE variance: "product" | "geometric" (disentanglement_lib)

    def __post_init__(self) -> None:
        check_likelihood(self.likelihood)
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}, got "
                             f"{self.combine!r}")


class _WeakVAE(Objective):
    """Shared body of the four; subclasses set `average` ("gvae" | "mlvae") and `adaptive`."""

    config_class = WeakConfig
    accepts = (VAEOutput,)
    #: the `data.batches` this objective trains on (checked when the config is built)
    batches = "pairs"
    average = "gvae"
    adaptive = True

    def __init__(self, config: WeakConfig = WeakConfig()) -> None:
        super().__init__(config)

    def forward(self, out: VAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        """A batch without pairs: the beta-VAE ELBO of each image, nothing shared."""
        terms = elbo_terms(out, x, self.config.likelihood)
        shared = torch.zeros((), device=x.device)
        return {"loss": terms["recon"] + self.config.beta * terms["kl"], **terms,
                "shared": shared}

    def shared_mask(self, delta: Tensor, batch) -> Tensor:
        """(b, D) bool: which latents each pair shares."""
        if self.adaptive:
            return adaptive_shared(delta)
        from vaelab.data.pairs import pair_differences

        return known_k_shared(delta, pair_differences(batch).sum(dim=1))

    def pair_terms(self, model, x: Tensor, shared_of) -> dict[str, Tensor]:
        """Every term of a pair batch (2b images: the first halves of both pairs, then the
        second halves).

        The model's forward runs with a `posterior` hook that replaces the encoder's (2b, D)
        posteriors by the pair-shared ones (in fp32, so the adaptive threshold is not computed
        in bf16 under mixed precision); `shared_of(delta)` gives the (b, D) shared mask from the
        per-dimension KL between the pair's posteriors.
        """
        seen: dict[str, Tensor] = {}

        def share(mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
            mu, logvar = mu.float(), logvar.float()
            b = mu.shape[0] // 2
            delta = pair_kl_per_dim(mu[:b], logvar[:b], mu[b:], logvar[b:])  # (b, D)
            shared = shared_of(delta.detach())
            seen["delta"], seen["shared"] = delta, shared
            return shared_posteriors(mu, logvar, shared, self.average, self.config.combine)

        out = model(x, posterior=share)  # z sampled in training, the mean in evaluation
        mu_s, logvar_s = out.mu.float(), out.logvar.float()
        recon = reconstruction_loss(out.logits.float(), x, self.config.likelihood)  # per image
        kl_per_dim = gaussian_kl_per_dim(mu_s, logvar_s).mean(dim=0)  # (D,)
        kl = kl_per_dim.sum()
        terms = {"loss": recon + self.config.beta * kl, "recon": recon, "kl": kl}
        for j, value in enumerate(kl_per_dim.unbind(0)):
            terms[f"kl_{j}"] = value
        terms["shared"] = seen["shared"].float().sum(dim=1).mean()  # latents shared per pair
        terms["delta"] = seen["delta"].sum(dim=1).mean()  # KL between the pair's posteriors
        return terms

    def compute(self, model, batch, step: Tensor) -> dict[str, Tensor]:
        if not getattr(batch, "pairs", 0):
            return self(model(batch.x), batch.x, step)
        return self.pair_terms(model, batch.x, lambda delta: self.shared_mask(delta, batch))


@OBJECTIVES.register("ada_gvae")
class AdaGVAE(_WeakVAE):
    """Ada-GVAE: adaptive threshold, GVAE average (Locatello et al., 2020, Section 4)."""

    average, adaptive = "gvae", True


@OBJECTIVES.register("ada_mlvae")
class AdaMLVAE(_WeakVAE):
    """Ada-ML-VAE: adaptive threshold, ML-VAE product (Locatello et al., 2020, Section 4)."""

    average, adaptive = "mlvae", True


@OBJECTIVES.register("group_vae")
class GroupVAE(_WeakVAE):
    """GroupVAE with k known: the d - k least different latents shared, GVAE average."""

    average, adaptive = "gvae", False


@OBJECTIVES.register("ml_vae")
class MLVAE(_WeakVAE):
    """ML-VAE with k known: the d - k least different latents shared, product of Gaussians."""

    average, adaptive = "mlvae", False
