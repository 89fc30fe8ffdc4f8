"""DIP-VAE-I and DIP-VAE-II: the ELBO plus a moment-matching penalty on the aggregate posterior.

Kumar, Sattigeri & Balakrishnan, "Variational Inference of Disentangled Latent Concepts from
Unlabeled Observations" (ICLR 2018). Both variants push a covariance matrix C (D, D) of the
inferred codes towards the identity, weighting its off-diagonal and diagonal entries apart:

    penalty(C) = lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2

* DIP-VAE-I (eq. 6): C = Cov_p(x)[mu(x)], the covariance of the posterior means.
* DIP-VAE-II (eq. 7): C = Cov_q(z)[z] = Cov_p(x)[mu(x)] + E_p(x)[diag sigma^2(x)], the
  covariance of the aggregate posterior q(z) = E_p(x)[q(z|x)] (law of total covariance).

The loss per batch is recon + KL + penalty(C), KL = KL(q(z|x) || N(0, I)) averaged over the batch
(`terms.kl_terms`), with C estimated on the batch. Conventions, as disentanglement_lib
(`methods/unsupervised/vae.py`: `compute_covariance_z_mean`, `regularize_diag_off_diag_dip`,
`DIPVAE`) does them:

* Cov[mu] is the biased (maximum-likelihood) batch covariance E[mu mu^T] - E[mu] E[mu]^T,
  dividing by B, not B - 1.
* the off-diagonal sum runs over every ordered pair i != j (each pair of latents counted twice),
  the diagonal sum over the D squared deviations from 1; neither is averaged.
* the diagonal weight is a multiple of the off-diagonal one: lambda_d = lambda_d_factor *
  lambda_od, with lambda_d_factor = 10 for DIP-VAE-I and 1 for DIP-VAE-II (the factors of the
  unsupervised_study_v1 sweep, Locatello et al. 2019).

The penalty is computed on the posterior means and log-variances only (never on the sampled z),
so it is deterministic given the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vaelab.models.vae import VAEOutput
from vaelab.objectives.base import Objective
from vaelab.objectives.elbo import elbo_terms
from vaelab.objectives.terms import check_likelihood
from vaelab.registry import OBJECTIVES

__all__ = [
    "DIPConfig",
    "DIPIIConfig",
    "DIPVAE",
    "DIPVAEII",
    "aggregate_posterior_covariance",
    "covariance_of_means",
    "dip_penalty",
]


def covariance_of_means(mu: Tensor) -> Tensor:
    """Biased batch covariance (D, D) of posterior means mu (B, D): dividing by B."""
    centered = mu - mu.mean(dim=0, keepdim=True)  # (B, D)
    return centered.T @ centered / mu.shape[0]


def aggregate_posterior_covariance(mu: Tensor, logvar: Tensor) -> Tensor:
    """Cov_q(z) (D, D) = Cov[mu] + E[diag exp(logvar)] over the batch (Kumar et al., eq. 7)."""
    return covariance_of_means(mu) + torch.diag(logvar.exp().mean(dim=0))


def dip_penalty(cov: Tensor, lambda_od: float, lambda_d: float) -> dict[str, Tensor]:
    """The DIP penalty of a covariance (D, D) and its two parts.

    Returns:
        {"dip": the weighted sum, "dip_od": off, "dip_d": diag}, with
        off = sum_{i != j} cov_ij^2 and diag = sum_i (cov_ii - 1)^2 (unweighted), 0-d tensors.
    """
    diagonal = torch.diagonal(cov)  # (D,)
    off = (cov - torch.diag(diagonal)).pow(2).sum()
    diag = (diagonal - 1.0).pow(2).sum()
    return {"dip": lambda_od * off + lambda_d * diag, "dip_od": off, "dip_d": diag}


@dataclass(frozen=True, kw_only=True)
class DIPConfig:
    """DIP-VAE-I: the covariance of the posterior means pushed towards I."""

    likelihood: str = "bernoulli"  # "bernoulli" | "laplace" | "gaussian"
    lambda_od: float = 10.0  # weight of the off-diagonal entries, >= 0
    lambda_d_factor: float = 10.0  # lambda_d = lambda_d_factor * lambda_od (disentanglement_lib)

    def __post_init__(self) -> None:
        check_likelihood(self.likelihood)
        for name in ("lambda_od", "lambda_d_factor"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    @property
    def lambda_d(self) -> float:
        return self.lambda_d_factor * self.lambda_od


@dataclass(frozen=True, kw_only=True)
class DIPIIConfig(DIPConfig):
    """DIP-VAE-II: the covariance of the aggregate posterior pushed towards I."""

    lambda_d_factor: float = 1.0  # lambda_d = lambda_d_factor * lambda_od (disentanglement_lib)


@OBJECTIVES.register("dip_vae_i")
class DIPVAE(Objective):
    """DIP-VAE-I: recon + KL + penalty(Cov[mu]) (Kumar et al., 2018, eq. 6)."""

    config_class = DIPConfig
    accepts = (VAEOutput,)

    def __init__(self, config: DIPConfig = DIPConfig()) -> None:
        super().__init__(config)

    def covariance(self, out: VAEOutput) -> Tensor:
        """The matrix the penalty pushes towards I, (D, D)."""
        return covariance_of_means(out.mu)

    def forward(self, out: VAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        terms = elbo_terms(out, x, self.config.likelihood)
        # in float32 under autocast: squared covariances of bf16 codes lose too much
        cov = self.covariance(VAEOutput(mu=out.mu.float(), logvar=out.logvar.float(), z=out.z,
                                        logits=out.logits))
        penalty = dip_penalty(cov, self.config.lambda_od, self.config.lambda_d)
        return {"loss": terms["recon"] + terms["kl"] + penalty["dip"], **terms, **penalty}


@OBJECTIVES.register("dip_vae_ii")
class DIPVAEII(DIPVAE):
    """DIP-VAE-II: recon + KL + penalty(Cov[mu] + E[diag sigma^2]) (Kumar et al., 2018, eq. 7)."""

    config_class = DIPIIConfig

    def __init__(self, config: DIPIIConfig = DIPIIConfig()) -> None:
        Objective.__init__(self, config)

    def covariance(self, out: VAEOutput) -> Tensor:
        return aggregate_posterior_covariance(out.mu, out.logvar)
