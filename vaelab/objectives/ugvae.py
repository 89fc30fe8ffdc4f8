"""The UG-VAE objective: the negative ELBO of one batch treated as one group (Peis et al. 2020).

    L = -log p(X | Z, beta) + KL_z + KL_d + KL_beta

* recon: -sum_i log N(x_i; f([z_i; beta]), var_x), with its normaliser (the seed's);
* KL_z = sum_i sum_k pi_ik KL(q(z_i|x_i) || p(z | d=k, beta)): analytic in z, with pi from the
  sampled z and the prior at the sampled beta — the seed's hybrid (`estimator="hybrid"`).
  `estimator="monte_carlo"` instead takes log q(z_i|x_i) - sum_k pi_ik log p(z_i | k, beta) at the
  sampled z_i: the unbiased one-sample estimate of the ELBO's term
  E_q(z|x)[sum_k pi_k(z) (log q(z|x) - log p(z | k, beta))]. The hybrid is not a lower-variance
  estimate of that term: pi = q(d|z) depends on the sampled z, so E_z[sum_k pi_k(z) KL_k] is
  another number, a different objective (not in general a bound). On a 1-D case (q = N(0, 1),
  components N(-+2, 1), pi the Bayes-rule posterior of z) the two expectations of KL_z differ by
  1.46 nats (tests/objectives/test_ugvae_oracles.py);
* KL_d = sum_i KL(Cat(pi_i) || Uniform(K));
* KL_beta = KL(q(beta|X) || N(0, I)), once per batch.

`reduction`: "sum" is the seed's (a sum over the batch); "mean" divides the whole batch loss by B
(KL_beta included, as 1/B of it per image), so losses are per image and comparable across batch
sizes. The two train alike under Adam, which is invariant to a constant scale of the loss (up
to its eps): the choice changes the logged numbers, not the steps (a test pins three Adam steps
equal); it would change an SGD learning rate or a gradient-clipping threshold. Terms are logged
in the same reduction.

`compute` samples z and beta in eval mode too (`UGVAE.forward(sample=True)`), so validation's
`valid/loss`, which keep_best and early stopping use, is a one-sample Monte Carlo estimate of the
negative ELBO as in the seed, not the plug-in at the posterior means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

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

    def compute(self, model: nn.Module, batch: Any, step: Tensor) -> dict[str, Tensor]:
        """The terms at a sample of (z, beta), in train and eval mode alike (module docstring)."""
        return self(model(batch.x, sample=True), batch.x, step)

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
