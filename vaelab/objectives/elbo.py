"""The ELBO and its reweighted forms: VAE, beta-VAE and the capacity-annealed VAE.

* ``vae``: the evidence lower bound (Kingma & Welling, 2014), negated:
  recon + w_t * KL.
* ``beta_vae``: Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
  Variational Framework" (ICLR 2017), eq. 4: recon + w_t * beta * KL.
* ``annealed_vae``: Burgess et al., "Understanding disentangling in beta-VAE" (2018), eq. 8:
  recon + gamma * |KL - C_t|, with the capacity C_t growing linearly.

recon = -log p(x|z) per image (`terms.reconstruction_loss`) and KL = KL(q(z|x) || N(0, I)) per
image, averaged over the batch. w_t is an optional linear warm-up (`warmup_steps`, the seed's
`reg_anneal`). The seed (disentangling-vae) warms up the KL of the plain "VAE" too (`BetaHLoss`),
so it is not the ELBO for the first 10,000 steps; here `warmup_steps` defaults to 0 everywhere
and the seed behaviour is a preset setting.

In eval mode (`objective.eval()`) schedules are at their final value (w = 1, C = c_final), as in
the seed's evaluation. The schedules are reported with the terms: "warmup" (w_t), "capacity" (C_t).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vaelab.distributions import gaussian_log_likelihood
from vaelab.models.vae import VAEOutput
from vaelab.objectives.base import Objective
from vaelab.objectives.terms import (
    check_likelihood,
    kl_terms,
    linear_anneal,
    linear_warmup,
    reconstruction_loss,
)
from vaelab.registry import OBJECTIVES

__all__ = [
    "ELBO",
    "AnnealedVAE",
    "AnnealedVAEConfig",
    "BetaVAE",
    "BetaVAEConfig",
    "ELBOConfig",
    "elbo_terms",
]


#: `normal`: N(x; sigmoid(logits), variance) with its normaliser (the VAE-GMVAE seed's, whose
#: `--sigma` is this variance); only the `vae` and `beta_vae` objectives take it.
NORMAL = "normal"


def elbo_terms(out: VAEOutput, x: Tensor, likelihood: str,
               variance: float = 0.0) -> dict[str, Tensor]:
    """recon (batch-mean -log p(x|z)), the batch-mean KL and its per-dimension parts.

    Args:
        out: The model's forward pass on `x`.
        x: Images in [0, 1], shape (B, C, H, W).
        likelihood: One of `terms.LIKELIHOODS`, or "normal" (with `variance`).
        variance: the variance of the "normal" likelihood.

    Returns:
        `{"recon", "kl", "kl_0", ..., "kl_{D-1}"}`, 0-d tensors.
    """
    if likelihood == NORMAL:
        recon = -gaussian_log_likelihood(x, torch.sigmoid(out.logits), variance)
    else:
        recon = reconstruction_loss(out.logits, x, likelihood)
    return {"recon": recon, **kl_terms(out.mu, out.logvar)}


def _check_likelihood(likelihood: str, variance: float) -> None:
    if likelihood == NORMAL:
        if variance <= 0:
            raise ValueError(f"likelihood 'normal' needs a variance > 0, got {variance}")
        return
    check_likelihood(likelihood)


def _check_nonnegative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True, kw_only=True)
class ELBOConfig:
    """The plain ELBO."""

    likelihood: str = "bernoulli"  # "bernoulli" | "laplace" | "gaussian" | "normal"
    warmup_steps: int = 0  # linear KL warm-up length; 0: none (the seed's "VAE" uses 10000)
    variance: float = 0.1  # variance of the "normal" likelihood (the VAE-GMVAE seed's sigma)

    def __post_init__(self) -> None:
        _check_likelihood(self.likelihood, self.variance)
        _check_nonnegative("warmup_steps", self.warmup_steps)


@dataclass(frozen=True, kw_only=True)
class BetaVAEConfig:
    """beta-VAE (Higgins et al., 2017): the KL weighted by beta."""

    likelihood: str = "bernoulli"  # "bernoulli" | "laplace" | "gaussian" | "normal"
    beta: float = 4.0  # weight of the KL, >= 0
    warmup_steps: int = 0  # linear warm-up of the KL weight; 0: none (seed ini: 10000)
    variance: float = 0.1  # variance of the "normal" likelihood (the VAE-GMVAE seed's sigma)

    def __post_init__(self) -> None:
        _check_likelihood(self.likelihood, self.variance)
        _check_nonnegative("beta", self.beta)
        _check_nonnegative("warmup_steps", self.warmup_steps)


@dataclass(frozen=True, kw_only=True)
class AnnealedVAEConfig:
    """Capacity-annealed beta-VAE (Burgess et al., 2018): gamma * |KL - C_t|."""

    likelihood: str = "bernoulli"  # "bernoulli" | "laplace" | "gaussian"
    gamma: float = 100.0  # weight of the capacity penalty, >= 0
    c_init: float = 0.0  # capacity C in nats at step 0, >= 0
    c_final: float = 25.0  # capacity from step `capacity_steps` on, >= 0
    capacity_steps: int = 100_000  # length of the linear ramp; 0: C = c_final throughout

    def __post_init__(self) -> None:
        check_likelihood(self.likelihood)
        _check_nonnegative("gamma", self.gamma)
        _check_nonnegative("c_init", self.c_init)
        _check_nonnegative("c_final", self.c_final)
        _check_nonnegative("capacity_steps", self.capacity_steps)


@OBJECTIVES.register("vae")
class ELBO(Objective):
    """The negative ELBO: recon + w_t * KL (Kingma & Welling, 2014)."""

    config_class = ELBOConfig
    accepts = (VAEOutput,)

    def __init__(self, config: ELBOConfig = ELBOConfig()) -> None:
        super().__init__(config)

    def forward(self, out: VAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        terms = elbo_terms(out, x, self.config.likelihood, self.config.variance)
        weight = linear_warmup(step, self.config.warmup_steps if self.training else 0)
        return {"loss": terms["recon"] + weight * terms["kl"], **terms, "warmup": weight}


@OBJECTIVES.register("beta_vae")
class BetaVAE(Objective):
    """beta-VAE: recon + w_t * beta * KL (Higgins et al., 2017, eq. 4)."""

    config_class = BetaVAEConfig
    accepts = (VAEOutput,)

    def __init__(self, config: BetaVAEConfig = BetaVAEConfig()) -> None:
        super().__init__(config)

    def forward(self, out: VAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        terms = elbo_terms(out, x, self.config.likelihood, self.config.variance)
        weight = linear_warmup(step, self.config.warmup_steps if self.training else 0)
        loss = terms["recon"] + weight * self.config.beta * terms["kl"]
        return {"loss": loss, **terms, "warmup": weight}


@OBJECTIVES.register("annealed_vae")
class AnnealedVAE(Objective):
    """Capacity annealing: recon + gamma * |KL - C_t| (Burgess et al., 2018, eq. 8).

    C_t goes linearly from `c_init` to `c_final` over `capacity_steps`, then stays (in eval mode
    C = c_final). The absolute value applies to the batch-mean KL, as in the seed. Unlike the
    seed, c_init == c_final (a constant capacity) and c_init > c_final are allowed.
    """

    config_class = AnnealedVAEConfig
    accepts = (VAEOutput,)

    def __init__(self, config: AnnealedVAEConfig = AnnealedVAEConfig()) -> None:
        super().__init__(config)

    def capacity(self, step: Tensor) -> Tensor:
        """C_t in nats, a 0-d tensor on `step`'s device."""
        config = self.config
        steps = config.capacity_steps if self.training else 0
        return linear_anneal(step, config.c_init, config.c_final, steps)

    def forward(self, out: VAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        terms = elbo_terms(out, x, self.config.likelihood)
        capacity = self.capacity(torch.as_tensor(step, device=out.mu.device))
        loss = terms["recon"] + self.config.gamma * (terms["kl"] - capacity).abs()
        return {"loss": loss, **terms, "capacity": capacity}
