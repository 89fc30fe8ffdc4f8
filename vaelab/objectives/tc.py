"""beta-TCVAE: the KL decomposed into index-code MI, total correlation and dimension-wise KL.

Chen et al., "Isolating Sources of Disentanglement in Variational Autoencoders" (NeurIPS 2018),
eq. 2 (the decomposition) and Appendix C (the minibatch estimators of log q(z)):

    loss = recon + alpha * I[z; x] + beta * KL[q(z) || prod_j q(z_j)]
                 + w_t * gamma * sum_j KL[q(z_j) || p(z_j)]

the index-code mutual information (mi), total correlation (tc) and dimension-wise KL (dw_kl),
estimated, for the codes z_i ~ q(z|x_i) of a batch, as

    mi    = mean_i (log q(z_i|x_i) - log q(z_i))
    tc    = mean_i (log q(z_i) - sum_d log q(z_id))
    dw_kl = mean_i (sum_d log q(z_id) - log p(z_i))

so mi + tc + dw_kl = mean_i (log q(z_i|x_i) - log p(z_i)), a one-sample estimate of the KL,
whatever the estimator of the aggregate posterior q(z) = (1/N) sum_n q(z|x_n).

Estimators (`estimate_log_qz`), mat[i, j, d] = log q(z_id | x_j):

* "mss", minibatch stratified sampling (App. C.2): log q(z_i) = logsumexp_j (sum_d mat[i,j,d] +
  log W[i,j]), W from `log_importance_weight_matrix` (1/N on the diagonal, the own posterior;
  (N - M)/(N M) on the cyclic super-diagonal; 1/M elsewhere; M = B - 1). Unbiased for q(z_i)
  when the rest of the batch is a uniform draw from the other N - 1 examples.
* "mws", minibatch weighted sampling (App. C.1): the batch mixture with the paper's constant,
  log q(z_i) = logsumexp_j sum_d mat[i,j,d] - log(N B). Compared with the exact aggregate
  posterior of a dataset that *is* the batch it is low by exactly log N (tested). Against the
  true q(z) of N examples the offset depends on the posteriors, so the shifts of the reported
  terms are not constants: for broad, overlapping posteriors (the batch mixture already close to
  q(z)) mi is shifted by about +log N, tc by +(D-1) log N and dw_kl by -D log N; for sharp,
  separated posteriors only the own posterior counts in each sum, and the mi shift is about
  +log B instead (mi about log N + log B, not log N).

Seed bugs (disentangling-vae's `BtcvaeLoss` and `log_importance_weight_matrix`; its issue #60),
reproduced only with `disvae_compat=True`: the MSS weight matrix puts
1/N in column 0 instead of on the diagonal (and row B-2 sums to more than 1); log W is added to
every latent dimension before summing, so the joint gets D log W; the MWS path lacks the
-log(N B) constants. Together they saturate the seed's mi at about
[(B-1) D log(B-1) + D log N] / B (42.9 nats at B = 64, D = 10, N = 737,280).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vaelab.distributions import log_normal
from vaelab.models.vae import VAEOutput
from vaelab.objectives.base import Objective
from vaelab.objectives.elbo import elbo_terms
from vaelab.objectives.terms import check_likelihood, linear_warmup
from vaelab.registry import OBJECTIVES

__all__ = [
    "ESTIMATORS",
    "BetaTCConfig",
    "BetaTCVAE",
    "estimate_log_qz",
    "log_importance_weight_matrix",
]

ESTIMATORS = ("mss", "mws")


def log_importance_weight_matrix(
    batch_size: int,
    dataset_size: int,
    *,
    disvae_compat: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """log W of minibatch stratified sampling (Chen et al., 2018, App. C.2).

    W[i, j] weighs the posterior q(z|x_j) in the estimate of q(z_i). With M = B - 1 and
    s = (N - M) / (N M): W[i, i] = 1/N, W[i, (i + 1) mod B] = s, and 1/M elsewhere; every row sums
    to 1/N + s + (B - 2)/M = 1. With `disvae_compat` the seed's layout instead (rtqichen's): 1/N
    in column 0 and s in column 1 of every row, and W[B-2, 0] = s.

    Args:
        batch_size: B >= 2.
        dataset_size: N >= B, the number of training examples.
        disvae_compat: Build the seed's (wrong) layout.
        device: Device of the result.
        dtype: Floating dtype of the result (default: torch's default dtype).

    Returns:
        log W, shape (B, B).

    Raises:
        ValueError: B < 2 or N < B.
    """
    if batch_size < 2:
        raise ValueError(f"minibatch stratified sampling needs a batch of >= 2, got {batch_size}")
    if dataset_size < batch_size:
        raise ValueError(f"dataset size N={dataset_size} is smaller than the batch B={batch_size}")
    n, m = dataset_size, batch_size - 1
    s = (n - m) / (n * m)
    weights = torch.full((batch_size, batch_size), 1.0 / m, device=device, dtype=dtype)
    if disvae_compat:
        # The seed's W.view(-1)[::M+1] = 1/N; stride M + 1 = B hits column 0, not the diagonal.
        weights[:, 0] = 1.0 / n
        weights[:, 1] = s
        weights[m - 1, 0] = s
    else:
        rows = torch.arange(batch_size, device=device)
        weights[rows, rows] = 1.0 / n
        weights[rows, (rows + 1) % batch_size] = s
    return weights.log()


def estimate_log_qz(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    dataset_size: int,
    *,
    estimator: str = "mss",
    disvae_compat: bool = False,
    log_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Minibatch estimates of log q(z_i) and sum_d log q(z_id) for every code of a batch.

    Args:
        z: Codes z_i ~ q(z|x_i), shape (B, D).
        mu: Posterior means of the same batch, shape (B, D).
        logvar: Posterior log-variances, shape (B, D).
        dataset_size: N, the number of training examples.
        estimator: "mss" or "mws" (see the module docstring).
        disvae_compat: Reproduce the seed's estimator bugs (see the module docstring).
        log_weights: Precomputed `log_importance_weight_matrix(B, N, ...)` for "mss" (a cache);
            built here when None.

    Returns:
        (log_qz, log_prod_qzj), each shape (B,).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    batch_size = z.shape[0]
    # Score every code z_i under every posterior q(.|x_j) of the batch.
    mat = log_normal(z[:, None], mu[None], logvar[None])  # (B, B, D): [i, j, d]
    if estimator == "mws":
        log_qz = torch.logsumexp(mat.sum(-1), dim=1)  # (B,)
        log_qzj = torch.logsumexp(mat, dim=1)  # (B, D)
        if not disvae_compat:
            log_nb = math.log(dataset_size * batch_size)
            log_qz = log_qz - log_nb
            log_qzj = log_qzj - log_nb
        return log_qz, log_qzj.sum(-1)
    if log_weights is None:
        log_weights = log_importance_weight_matrix(
            batch_size, dataset_size, disvae_compat=disvae_compat, device=z.device, dtype=z.dtype
        )
    if disvae_compat:
        mat = mat + log_weights[:, :, None]  # the seed adds log W to each of the D dimensions
        log_qz = torch.logsumexp(mat.sum(-1), dim=1)  # so the joint gets D * log W
        log_prod_qzj = torch.logsumexp(mat, dim=1).sum(-1)
        return log_qz, log_prod_qzj
    log_qz = torch.logsumexp(mat.sum(-1) + log_weights, dim=1)  # (B,), log W added once
    log_prod_qzj = torch.logsumexp(mat + log_weights[:, :, None], dim=1).sum(-1)  # (B,)
    return log_qz, log_prod_qzj


@dataclass(frozen=True, kw_only=True)
class BetaTCConfig:
    """Weights of the decomposed KL in beta-TCVAE (Chen et al., 2018)."""

    likelihood: str = "bernoulli"  # "bernoulli" | "laplace" | "gaussian"
    alpha: float = 1.0  # index-code mutual information (the seed's `best_*` presets use < 0)
    beta: float = 6.0  # total correlation
    gamma: float = 1.0  # dimension-wise KL
    estimator: str = "mss"  # "mss" | "mws"
    warmup_steps: int = 0  # linear warm-up of the dimension-wise KL weight, as the seed; 0: none
    disvae_compat: bool = False  # reproduce the seed's estimator bugs (module docstring)

    def __post_init__(self) -> None:
        check_likelihood(self.likelihood)
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be 'mss' or 'mws', got {self.estimator!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@OBJECTIVES.register("beta_tcvae")
class BetaTCVAE(Objective):
    """recon + alpha * mi + beta * tc + w_t * gamma * dw_kl (Chen et al., 2018, eq. 4).

    Needs N, the training-set size, through `set_dataset_size(n)` before the first step. Reports
    mi, tc, dw_kl, the warm-up weight w_t ("warmup") and, for comparison and latent ordering,
    the closed-form kl and kl_j. In eval mode w_t = 1.
    """

    config_class = BetaTCConfig
    accepts = (VAEOutput,)
    needs_dataset_size = True

    def __init__(self, config: BetaTCConfig = BetaTCConfig()) -> None:
        super().__init__(config)
        self._log_weights: dict[tuple, Tensor] = {}  # (B, N, device, dtype) -> log W

    def _cached_log_weights(self, z: Tensor) -> Tensor:
        key = (z.shape[0], self.dataset_size, z.device, z.dtype)
        if key not in self._log_weights:
            self._log_weights[key] = log_importance_weight_matrix(
                z.shape[0], self.dataset_size, disvae_compat=self.config.disvae_compat,
                device=z.device, dtype=z.dtype,
            )
        return self._log_weights[key]

    def forward(self, out: VAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        config = self.config
        if self.dataset_size < 1:
            raise ValueError(
                "beta_tcvae needs the training-set size N: call objective.set_dataset_size(n) "
                "before computing the loss"
            )
        if out.z.shape[0] < 2:
            raise ValueError(f"beta_tcvae needs a batch of >= 2 codes, got {out.z.shape[0]}")
        terms = elbo_terms(out, x, config.likelihood)
        log_weights = self._cached_log_weights(out.z) if config.estimator == "mss" else None
        log_qz, log_prod_qzj = estimate_log_qz(
            out.z, out.mu, out.logvar, self.dataset_size, estimator=config.estimator,
            disvae_compat=config.disvae_compat, log_weights=log_weights,
        )
        log_qz_x = log_normal(out.z, out.mu, out.logvar).sum(-1)  # (B,)
        zeros = torch.zeros_like(out.z)
        log_pz = log_normal(out.z, zeros, zeros).sum(-1)  # (B,)
        mi = (log_qz_x - log_qz).mean()
        tc = (log_qz - log_prod_qzj).mean()
        dw_kl = (log_prod_qzj - log_pz).mean()
        weight = linear_warmup(step, config.warmup_steps if self.training else 0)
        loss = (terms["recon"] + config.alpha * mi + config.beta * tc
                + weight * config.gamma * dw_kl)
        return {"loss": loss, **terms, "mi": mi, "tc": tc, "dw_kl": dw_kl, "warmup": weight}
