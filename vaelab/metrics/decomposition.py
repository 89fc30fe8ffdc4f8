"""The KL decomposition of beta-TCVAE (Chen et al., 2018) at a large batch: mi, tc, dim-KL.

The training objectives estimate log q(z) from the minibatch, and at batch 64 that estimate is
strongly biased (the same codes give tc = -3.3 at B = 64 and +0.8 at B = 4096). This metric
gives an estimate to trust: `batch_size` distinct items (4,096 by default, or the whole dataset
when smaller) drawn with the metric's generator, one code z_i ~ q(z|x_i) each, and the minibatch-stratified-sampling estimator (MSS,
Chen et al. App. C.2, `vaelab.objectives.tc.log_importance_weight_matrix`) with N = the dataset
size:

    mi    = mean_i (log q(z_i|x_i) - log q(z_i))
    tc    = mean_i (log q(z_i) - sum_d log q(z_id))
    dw_kl = mean_i (sum_d log q(z_id) - log p(z_i))

computed in float64, in blocks of rows, so the (B, B, D) tensor is never held at once. When the
batch is the whole dataset (B = N, a held-out split smaller than `batch_size`), MSS's weights are
not the aggregate's (its W[i, i+1] = 1 / (N (N - 1))): the exact mixture
q(z) = (1/N) sum_j q(z|x_j) is used instead, weight 1/N for every posterior.

dw_kl scores the aggregate against N(0, I), which is the prior of the plain VAEs only. For a model
with a mixture prior (GMVAE, UG-VAE: `Model.standard_normal_prior = False`, carried by the
encoder `model_encoder` builds) the metric leaves dw_kl out; mi and tc do not involve the prior.

The items are drawn from the dataset being evaluated: `evaluate_run` (and so `vaelab eval` and
the end of `vaelab train`) scores it on the run's test split when the dataset has one, and
records which data it used as "scored_on" in the metric's protocol entry, next to `batch_size`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vaelab.distributions import log_normal
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.objectives.tc import log_importance_weight_matrix
from vaelab.registry import METRICS

__all__ = ["compute_kl_decomposition", "mss_decomposition"]


def mss_decomposition(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray, dataset_size: int,
                      block: int = 256) -> dict[str, float]:
    """mi, tc and dw_kl (nats) of codes z (B, D) ~ q(z|x) with posteriors (mu, logvar) (B, D).

    MSS weights for B < N; the exact 1/N mixture when the batch is the whole dataset (B = N).
    """
    z_t, mu_t, lv_t = (torch.as_tensor(a, dtype=torch.float64) for a in (z, mu, logvar))
    b = z_t.shape[0]
    if b == dataset_size:  # the whole dataset: q(z) = (1/N) sum_j q(z|x_j) exactly
        log_w = torch.full((b, b), -math.log(b), dtype=torch.float64)
    else:
        log_w = log_importance_weight_matrix(b, dataset_size, dtype=torch.float64)  # (B, B)
    log_qz = torch.empty(b, dtype=torch.float64)
    log_prod = torch.empty(b, dtype=torch.float64)
    for lo in range(0, b, block):
        mat = log_normal(z_t[lo:lo + block, None], mu_t[None], lv_t[None])  # (c, B, D)
        w = log_w[lo:lo + block]  # (c, B)
        log_qz[lo:lo + block] = torch.logsumexp(mat.sum(-1) + w, dim=1)
        log_prod[lo:lo + block] = torch.logsumexp(mat + w[:, :, None], dim=1).sum(-1)
    log_qz_x = log_normal(z_t, mu_t, lv_t).sum(-1)
    zeros = torch.zeros_like(z_t)
    log_pz = log_normal(z_t, zeros, zeros).sum(-1)
    return {"mi": float((log_qz_x - log_qz).mean()), "tc": float((log_qz - log_prod).mean()),
            "dw_kl": float((log_prod - log_pz).mean())}


@METRICS.register("kl_decomposition")
def compute_kl_decomposition(
    represent: Any, data: Any = None, rng: np.random.Generator | None = None, *,
    batch_size: int = 4096,
) -> dict[str, float]:
    """Index-code MI, total correlation and dimension-wise KL at a large batch (module docstring).

    Unsupervised (any dataset; no grid needed); needs the posterior (mu, logvar). Lower tc is
    more factorised; mi + tc + dw_kl is a one-sample estimate of the mean KL(q(z|x) || p(z)) for
    p(z) = N(0, I).

    Returns:
        {"kl_decomposition.mi", "kl_decomposition.tc", "kl_decomposition.dw_kl",
        "kl_decomposition.batch_size"}; without "kl_decomposition.dw_kl" when the representation
        declares a prior other than N(0, I) (`standard_normal_prior` False: GMVAE, UG-VAE).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    truth = as_ground_truth(represent, data)
    # Distinct items (MSS assumes the rest of the batch is drawn without replacement); a dataset
    # smaller than the batch is used whole.
    index = np.sort(rng.choice(len(truth), size=min(batch_size, len(truth)), replace=False))
    if len(index) < 2:
        raise ValueError(f"kl_decomposition needs >= 2 items, got {len(index)}")
    mu, logvar = truth.posterior(index)
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    terms = mss_decomposition(z, mu, logvar, len(truth))
    if not truth.standard_normal_prior:  # dw_kl would be against N(0, I), not the model's prior
        del terms["dw_kl"]
    return {**{f"kl_decomposition.{k}": v for k, v in terms.items()},
            "kl_decomposition.batch_size": float(len(index))}
