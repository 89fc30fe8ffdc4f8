"""The UG-VAE objective: the negative ELBO of one batch treated as one group (Peis et al. 2020).

    L = -log p(X | Z, beta) + KL_z + KL_d + KL_beta

* recon: -sum_i log N(x_i; f([z_i; beta]), var_x), with its normaliser (the seed's);
* KL_z = sum_i sum_k pi_ik KL(q(z_i|x_i) || p(z | d=k, beta)): analytic in z, with pi from the
  sampled z and the prior at the sampled beta — the seed's hybrid estimator (`estimator="hybrid"`);
  `estimator="monte_carlo"` instead takes log q(z_i|x_i) - sum_k pi_ik log p(z_i | k, beta) at the
  sampled z_i (an unbiased one-sample estimate of the same expectation);
* KL_d = sum_i KL(Cat(pi_i) || Uniform(K));
* KL_beta = KL(q(beta|X) || N(0, I)), once per batch.

`reduction`: "sum" is the seed's (a sum over the batch: Adam's effective learning rate then grows
with the batch size); "mean" divides the whole batch loss by B (KL_beta included, as 1/B of it
per image), so losses are per image and comparable across batch sizes. Terms are logged in the
same reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vaelab.distributions import (
    expected_component_kl,
    gaussian_log_likelihood,
    kl_categorical_uniform,
    kl_normal_normal,
)
from vaelab.models.ugvae import UGVAEOutput
from vaelab.objectives.base import Objective
from vaelab.registry import OBJECTIVES

__all__ = ["UGVAEObjective", "UGVAEObjectiveConfig", "local_kl"]

ESTIMATORS = ("hybrid", "monte_carlo")
REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True, kw_only=True)
class UGVAEObjectiveConfig:
    """UG-VAE's negative ELBO; see the module docstring."""

    var_x: float = 0.2  # the observation variance (train.py's --var_x)
    estimator: str = "hybrid"  # "hybrid" (the seed) | "monte_carlo"
    reduction: str = "sum"  # "sum" (the seed: over the batch) | "mean" (per image)

    def __post_init__(self) -> None:
        if self.var_x <= 0:
            raise ValueError(f"var_x must be > 0, got {self.var_x}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")


def local_kl(out: UGVAEOutput, pi: Tensor, estimator: str = "hybrid") -> Tensor:
    """KL_z per image, (B,): E_pi[KL(q(z|x) || p(z | d, beta))] (see the module docstring)."""
    return expected_component_kl(out.m, out.logvar_z, out.z, pi, out.prior_mu[None],
                                 out.prior_logvar[None],
                                 "analytic" if estimator == "hybrid" else "sample")


@OBJECTIVES.register("ugvae")
class UGVAEObjective(Objective):
    """-log p + KL_z + KL_d + KL_beta of one batch (module docstring)."""

    config_class = UGVAEObjectiveConfig
    accepts = (UGVAEOutput,)

    def __init__(self, config: UGVAEObjectiveConfig = UGVAEObjectiveConfig()) -> None:
        super().__init__(config)

    def forward(self, out: UGVAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        config = self.config
        B = x.shape[0]
        recon = -gaussian_log_likelihood(x, torch.sigmoid(out.logits), config.var_x, "sum")
        pi = torch.softmax(out.pi_logits, dim=-1)
        kl_z = local_kl(out, pi, config.estimator).sum()
        kl_d = kl_categorical_uniform(out.pi_logits, reduction="sum")
        kl_beta = kl_normal_normal(out.mu_beta, out.logvar_beta, reduction="sum")
        terms = {"recon": recon, "kl_z": kl_z, "kl_d": kl_d, "kl_beta": kl_beta}
        if config.reduction == "mean":
            terms = {k: v / B for k, v in terms.items()}
        terms["loss"] = terms["recon"] + terms["kl_z"] + terms["kl_d"] + terms["kl_beta"]
        return terms
