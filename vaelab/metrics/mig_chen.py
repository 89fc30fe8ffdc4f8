"""MIG with Chen et al.'s (2018) estimator over the whole dataset, done right; AAM on the same MI.

Every item's posterior q(z|x_n) = N(mu_n, diag exp(logvar_n)) is sampled once (z_n ~ q(z|x_n)).
The marginal entropy of latent j under the aggregate posterior q(z_j) = (1/N) sum_n q(z_j|x_n) is

    H(z_j) = -(1/S) sum_s log q(z_sj),  log q(z_sj) = logsumexp_n log q(z_sj | x_n) - log N,

over S = min(n_samples, N) samples drawn without replacement, each latent scored on ITS OWN values
(the seed's `view` reshaped (S, D) into (D, S) and mixed the latents, `disvae/evaluate.py`). The
conditional entropy H(z_j | v_k) = sum_v p(v) H(z_j | v_k = v) applies the same estimator to the
items with v_k = v (the mixture runs over those items only). Items are grouped by factor LABELS,
not by reshaping, so datasets that are not full grids work too; p(v) and H(v_k) are the empirical
frequencies and entropy (uniform on a grid, as Chen's log |V_k|). Then
I[j, k] = H(z_j) - H(z_j | v_k), clamped at 0, and MIG = mean_k (I_(1) - I_(2)) / H(v_k).

Cost: (1 + F) S N D log-densities (about 4.4e11 for dSprites). The kernel is written with torch
ops in float32 (no library computes a Gaussian-mixture entropy over 737,280 components), one latent
at a time, in blocks of `block` values: `tile` components by block/tile samples, so every pass of a
block stays in the core's cache however many components there are (the earlier blocks held all N
components of one sample: 29 MB at N = 737,280, streamed from memory). Each block is
sum_n w_n exp(-h_n (z - mu_n)^2) with w_n = 1 / sqrt(2 pi var_n), h_n = 1 / (2 var_n): sub, square,
mul, a clamp of the exponent at -80 (torch's exp is ~15x slower where its result underflows, which
is most components of a sharp latent), exp and a matrix-vector product with w, summed over tiles in
float64, with no max pass. That needs no shift: every sample is drawn from one of the components
it is scored on, whose term is w exp(-eps^2 / 2) with eps its standard-normal draw, far above the
clamp, and a term never exceeds its w. Samples whose sum comes within e^20 of the clamp's floor
(the public `estimate_entropies` takes any samples) are recomputed with a log-sum-exp. The latents
run in parallel on the intra-op threads (one single-threaded worker per thread: 1.4-1.6x the
two-thread speed of one op at a time). Measured here (idle, 2 threads): see the README's
`benchmarks/metrics_speed.py --kernel` row; within 1e-7 of float64.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from vaelab.metrics._info import discrete_entropy
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.metrics.mig import aam_from_mi
from vaelab.registry import METRICS

__all__ = ["compute_mig_chen", "estimate_entropies"]

_LOG_2PI = math.log(2 * math.pi)
#: exponents are clamped here: torch's exp runs ~15x slower on arguments whose result underflows
#: float32 (below about -87), and a term of exp(-80) is below 1e-34 of its weight
_FLOOR = -80.0


def estimate_entropies(
    samples: np.ndarray,
    mu: np.ndarray,
    logvar: np.ndarray,
    block: int = 2**18,
    tile: int = 1024,
    workers: int | None = None,
) -> np.ndarray:
    """Monte-Carlo entropies H(z_j) (D,) of the mixture (1/M) sum_m N(mu_mj, exp(logvar_mj)).

    Args:
        samples: S samples (S, D) of the mixture, each latent scored on its own column.
        mu: component means (M, D).
        logvar: component log-variances (M, D).
        block: log-densities evaluated at once (memory: 4 bytes each; cache-sized by default).
        tile: components per block (at most `block`); float32 sums run over one tile.
        workers: latents evaluated at once, each on one thread (default: torch's thread count).
    """
    s, d = samples.shape
    m = mu.shape[0]
    logvar = np.asarray(logvar, dtype=np.float64)
    mu_t = torch.as_tensor(np.ascontiguousarray(mu.T), dtype=torch.float32)  # (D, M)
    neg_h = torch.as_tensor(np.ascontiguousarray(-0.5 * np.exp(-logvar.T)), dtype=torch.float32)
    weight = torch.as_tensor(np.ascontiguousarray(np.exp(-0.5 * (_LOG_2PI + logvar.T))),
                             dtype=torch.float32)
    z = torch.as_tensor(np.ascontiguousarray(samples.T), dtype=torch.float32)  # (D, S)
    tile = max(1, min(tile, block, m))
    chunk = max(1, block // tile)

    def log_sums(j: int) -> float:  # sum_s log sum_n w_n exp(-h_n (z_sj - mu_nj)^2)
        tiles = list(zip(mu_t[j].split(tile), neg_h[j].split(tile), weight[j].split(tile)))
        buffer = torch.empty(chunk * tile)
        sums = torch.zeros(s, dtype=torch.float64)
        with torch.inference_mode():
            for zc, acc in zip(z[j, :, None].split(chunk), sums.split(chunk)):  # (c, 1), (c,)
                for mu_p, neg_h_p, weight_p in tiles:
                    q = buffer[: len(zc) * len(mu_p)].view(len(zc), len(mu_p))
                    torch.sub(zc, mu_p, out=q).square_().mul_(neg_h_p).clamp_(min=_FLOOR).exp_()
                    acc += torch.mv(q, weight_p)
            # a sum near its floor (every term clamped) is redone exactly with a log-sum-exp
            low = torch.nonzero(sums < math.exp(_FLOOR + 20.0) * float(weight[j].sum())).flatten()
            logs = sums.log()
            log_weight = weight[j].log() if len(low) else None
            for i in low.tolist():
                log_q = (log_weight + (z[j, i] - mu_t[j]).square() * neg_h[j]).double()
                logs[i] = torch.logsumexp(log_q, dim=0)
        return float(logs.sum())

    threads = torch.get_num_threads()
    workers = max(1, min(d, threads if workers is None else workers))
    if workers == 1:
        totals = [log_sums(j) for j in range(d)]
    else:
        torch.set_num_threads(1)  # each worker's ops run on its own thread
        try:
            with ThreadPoolExecutor(workers) as pool:
                totals = list(pool.map(log_sums, range(d)))
        finally:
            torch.set_num_threads(threads)
    return -(np.array(totals) / s - math.log(m))


@METRICS.register("mig_chen")
def compute_mig_chen(
    represent: Any,
    data: Any = None,
    rng: np.random.Generator | None = None,
    *,
    n_samples: int = 10000,
    use_mean: bool = False,
) -> dict[str, float]:
    """Chen et al.'s MIG over every item of the dataset, and the seed's AAM on the same MI.

    Needs the posterior (mu, logvar) of a Gaussian encoder (or a (mu, logvar) pair of arrays) and
    encodes the WHOLE dataset. Works on datasets that are not full grids (grouping by factor
    labels). Range [0, 1]; invariant to permuting latents and to positive rescaling of a latent
    together with its posterior (mu -> c mu, logvar -> logvar + 2 log c).

    Args:
        represent: a Gaussian encoder (model), (mu, logvar) arrays, or `GroundTruth`.
        data: the factor dataset, or the factor array (N, F) of array inputs.
        rng: draws the posterior samples and the S entropy samples.
        n_samples: S, samples per entropy estimate (capped at the subset size).
        use_mean: use the posterior means instead of samples (the seed's disvae behaviour).

    Returns:
        {"mig_chen", "mig_chen.<factor>", "aam_chen"}.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    truth = as_ground_truth(represent, data)
    factors = truth.active_factors("mig_chen")
    everything = np.arange(len(truth))
    mu, logvar = truth.posterior(everything)
    z = mu if use_mean else mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    labels = truth.dataset.factors[:, factors]  # (N, F)

    def entropy_of(rows: np.ndarray) -> np.ndarray:
        pick = rows[rng.permutation(len(rows))[: min(n_samples, len(rows))]]
        return estimate_entropies(z[pick], mu[rows], logvar[rows])

    marginal = entropy_of(everything)  # (D,)
    conditional = np.zeros((len(factors), mu.shape[1]))  # (F, D)
    for position in range(len(factors)):
        column = labels[:, position]
        for value in np.unique(column):
            rows = np.flatnonzero(column == value)
            conditional[position] += len(rows) / len(column) * entropy_of(rows)
    mi = np.maximum(marginal[None, :] - conditional, 0.0).T  # (D, F)
    ordered = -np.sort(-mi, axis=0)
    second = ordered[1] if len(ordered) > 1 else 0.0
    per_factor = (ordered[0] - second) / discrete_entropy(labels)
    names = [truth.dataset.factor_names[k] for k in factors]
    return {
        "mig_chen": float(per_factor.mean()),
        **{f"mig_chen.{n}": float(v) for n, v in zip(names, per_factor)},
        "aam_chen": float(aam_from_mi(mi).mean()),
    }
