"""Pure loss pieces shared by every objective: KL, log-densities, likelihoods, schedules.

Kingma & Welling, "Auto-Encoding Variational Bayes" (2014), Appendix B (closed-form Gaussian KL);
the reconstruction losses and schedules follow disentangling-vae (Dubs et al. 2019; its
`rec_dist` choices and linear annealing). Every function here is a formula under a known-answer test
(`tests/objectives/test_terms.py`). Nothing here syncs with the host: schedules take the step as a
0-d tensor and return one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vaelab.distributions import check_reduction, kl_standard_normal, log_normal

__all__ = [
    "LIKELIHOODS",
    "check_likelihood",
    "gaussian_kl",
    "gaussian_kl_per_dim",
    "kl_terms",
    "linear_anneal",
    "linear_warmup",
    "log_normal",
    "reconstruction_loss",
]

#: Names accepted by `reconstruction_loss` (the seed's `rec_dist`).
LIKELIHOODS = ("bernoulli", "laplace", "gaussian")


def check_likelihood(likelihood: str) -> None:
    """Raises a ValueError naming the known likelihoods when `likelihood` is not one of them."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"unknown likelihood {likelihood!r}; known likelihoods: {', '.join(LIKELIHOODS)}"
        )


def gaussian_kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for every example and latent dimension, (B, D): the
    vocabulary's `vaelab.distributions.kl_standard_normal` (Kingma & Welling 2014, App. B)."""
    return kl_standard_normal(mu, logvar)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over latent dimensions.

    Args:
        mu: Posterior means, shape (B, D).
        logvar: Posterior log-variances, shape (B, D).

    Returns:
        Per-example KL in nats, shape (B,).
    """
    return gaussian_kl_per_dim(mu, logvar).sum(dim=-1)


def kl_terms(mu: Tensor, logvar: Tensor) -> dict[str, Tensor]:
    """The batch-mean total KL and the batch-mean KL of every latent dimension.

    Every objective reports these (the seed's `kl_loss` and `kl_loss_<j>`), so plots can order
    latents by how much information they carry.

    Args:
        mu: Posterior means, shape (B, D).
        logvar: Posterior log-variances, shape (B, D).

    Returns:
        `{"kl": KL, "kl_0": KL_0, ..., "kl_{D-1}": KL_{D-1}}`, each a 0-d tensor in nats, with
        KL = sum_j KL_j.
    """
    per_dim = gaussian_kl_per_dim(mu, logvar).mean(dim=0)  # (D,)
    terms = {"kl": per_dim.sum()}
    for j, value in enumerate(per_dim.unbind(0)):
        terms[f"kl_{j}"] = value
    return terms


def _bernoulli_nll(logits: Tensor, x: Tensor, dims: tuple[int, ...] | None) -> Tensor:
    if dims is None:
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dims)


def _gaussian_nll(logits: Tensor, x: Tensor, dims: tuple[int, ...] | None) -> Tensor:
    squared = (torch.sigmoid(logits) - x).pow(2)
    return 255.0 * (squared.sum() if dims is None else squared.sum(dims))


def _laplace_nll(logits: Tensor, x: Tensor, dims: tuple[int, ...] | None) -> Tensor:
    absolute = (torch.sigmoid(logits) - x).abs()
    return 3.0 * (absolute.sum() if dims is None else absolute.sum(dims))


# name -> f(logits, x, dims): the NLL summed over `dims` (None: over everything, batch included)
_NEGATIVE_LOG_LIKELIHOODS = {
    "bernoulli": _bernoulli_nll,
    "laplace": _laplace_nll,
    "gaussian": _gaussian_nll,
}
assert tuple(_NEGATIVE_LOG_LIKELIHOODS) == LIKELIHOODS


def reconstruction_loss(
    logits: Tensor, x: Tensor, likelihood: str = "bernoulli", reduction: str = "mean"
) -> Tensor:
    """Negative log-likelihood -log p(x|z) per image, summed over pixels, reduced over the batch.

    The likelihood mean is x_hat = sigmoid(logits). The three choices follow the seed's
    `rec_dist` (disentangling-vae's `-r`); none has a learned variance, and constants that do not
    depend on the parameters are dropped (`vaelab.distributions` has the normalised densities):

    * ``"bernoulli"``: sum BCE(x_hat, x) = -sum [x log x_hat + (1 - x) log(1 - x_hat)], computed
      from the logits with `binary_cross_entropy_with_logits`, which is stable where the seed
      clamps each log at -100. Grey-level targets in [0, 1] are allowed (continuous relaxation).
    * ``"gaussian"``: 255 * sum (x_hat - x)^2, the seed's squared error on the [0, 255] scale
      divided by 255. It is the NLL of N(x; x_hat, sigma^2) with a fixed variance
      1 / (2 sigma^2) = 255, i.e. sigma^2 = 1/510 (sigma ~= 0.044 on the [0, 1] scale), without
      the log-normaliser.
    * ``"laplace"``: 3 * sum |x_hat - x|, the NLL of Laplace(x; x_hat, b) with a fixed scale
      b = 1/3, without the log-normaliser. The factor 3 is the seed's empirical choice that puts
      the values on the Bernoulli scale. The seed multiplies the sum by (sum != 0) "against NaN";
      that only matters when a whole batch is reconstructed exactly, and is not reproduced.

    Args:
        logits: Decoder logits, shape (B, C, H, W).
        x: Targets in [0, 1], same shape.
        likelihood: One of `LIKELIHOODS`.
        reduction: "mean" (the batch mean of the per-image NLL, the seed's), "sum" (the batch
            sum) or "none" (per image, (B,)).

    Returns:
        0-d tensor in nats (up to constants), or (B,) with "none".

    Raises:
        ValueError: `likelihood` or `reduction` is unknown, or the shapes differ.
    """
    check_likelihood(likelihood)
    check_reduction(reduction)
    if logits.shape != x.shape:
        raise ValueError(f"logits and x must have the same shape, got {tuple(logits.shape)} "
                         f"and {tuple(x.shape)}")
    nll = _NEGATIVE_LOG_LIKELIHOODS[likelihood]
    if reduction == "none":
        return nll(logits, x, tuple(range(1, x.dim())))
    total = nll(logits, x, None)  # one sum over the whole batch, then / B: the seed's rounding
    return total if reduction == "sum" else total / x.shape[0]


def linear_warmup(step: Tensor, steps: int) -> Tensor:
    """Weight min(step / steps, 1) of a linear warm-up; 1 when `steps == 0`.

    The seed's `linear_annealing(0, 1, step, steps)`; pure tensor ops, so no host sync.

    Args:
        step: 1-based optimiser step, 0-d tensor (any device).
        steps: Length of the warm-up in steps (>= 0).

    Returns:
        0-d float tensor in [0, 1] on `step`'s device.
    """
    step = torch.as_tensor(step)
    if steps < 0:
        raise ValueError(f"warm-up steps must be >= 0, got {steps}")
    if steps == 0:
        return torch.ones((), dtype=torch.get_default_dtype(), device=step.device)
    return torch.clamp(step.to(torch.get_default_dtype()) / steps, max=1.0)


def linear_anneal(step: Tensor, start: float, end: float, steps: int) -> Tensor:
    """start + (end - start) * min(step / steps, 1): a linear ramp that then stays at `end`.

    The seed's `linear_annealing(init, fin, step, steps)` (used for the capacity C of
    Burgess et al. 2018), which returns `end` when `steps == 0`. Unlike the seed, `start == end`
    (a constant) and `start > end` (a decreasing ramp) are allowed.

    Args:
        step: 1-based optimiser step, 0-d tensor (any device).
        start: Value at step 0.
        end: Value from step `steps` on.
        steps: Length of the ramp in steps (>= 0).

    Returns:
        0-d float tensor on `step`'s device.
    """
    return start + (end - start) * linear_warmup(step, steps)
