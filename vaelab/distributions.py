"""The distribution pieces every model and objective shares, in one place.

Posterior parameters (`DiagonalGaussian`, `Categorical`) are what `Model.posterior(x)` returns for
each declared latent. The functions are the formulas the objectives are built from, each under a
known-answer test against `torch.distributions` (`tests/test_distributions.py`):

* `kl_normal_normal`: KL(N(mu_q, var_q) || N(mu_p, var_p)) between two diagonal Gaussians (the
  standard-normal KL of Kingma & Welling (2014), Appendix B, is the case mu_p = 0, var_p = 1);
* `kl_categorical_uniform`: KL(Cat(pi) || Uniform(K)) = sum_k pi_k log pi_k + log K;
* `gaussian_log_likelihood`: log N(x; mean, variance) with a given (not learned) variance, with
  its normaliser;
* `bernoulli_log_likelihood`: log Bernoulli(x; sigmoid(logits)), stable in the logits;
* `laplace_log_likelihood`: log Laplace(x; loc, scale), with its normaliser.

Every function sums over the event dimensions (all but the first) and then reduces over the batch
by `reduction`: "mean" (per-item sum, batch mean), "sum" (batch sum) or "none" (per item, (B,)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "Categorical",
    "DiagonalGaussian",
    "bernoulli_log_likelihood",
    "check_reduction",
    "expected_component_kl",
    "gaussian_log_likelihood",
    "kl_categorical_uniform",
    "kl_normal_normal",
    "kl_standard_normal",
    "log_normal",
    "laplace_log_likelihood",
    "reduce_batch",
]

REDUCTIONS = ("mean", "sum", "none")
_LOG_2PI = math.log(2.0 * math.pi)


def check_reduction(reduction: str) -> None:
    """Raises a ValueError naming the reductions when `reduction` is not one of them."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_batch(per_item: Tensor, reduction: str = "mean") -> Tensor:
    """Sums `per_item` over every dimension but the first, then reduces over the batch.

    Args:
        per_item: values (B, ...) of B items.
        reduction: "mean" | "sum" | "none".

    Returns:
        0-d tensor ("mean", "sum") or (B,) ("none").
    """
    check_reduction(reduction)
    per_item = per_item.reshape(per_item.shape[0], -1).sum(dim=1) if per_item.dim() > 1 else per_item
    if reduction == "none":
        return per_item
    return per_item.sum() if reduction == "sum" else per_item.mean()


@dataclass
class DiagonalGaussian:
    """N(mu, diag(exp(logvar))): the parameters of a Gaussian latent, each (B, D)."""

    mu: Tensor
    logvar: Tensor

    @property
    def mean(self) -> Tensor:
        return self.mu

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample(self) -> Tensor:
        """A reparameterised draw mu + exp(logvar / 2) * eps, eps ~ N(0, I) (the global RNG)."""
        return self.mu + torch.exp(0.5 * self.logvar) * torch.randn_like(self.mu)

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; mu, exp(logvar)) summed over the last dimension: (B,)."""
        return log_normal(z, self.mu, self.logvar).sum(-1)

    def kl_standard_normal(self) -> Tensor:
        """KL(this || N(0, I)) per latent dimension: (B, D) (`kl_standard_normal`)."""
        return kl_standard_normal(self.mu, self.logvar)


def log_normal(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(x; mu, exp(logvar)); the arguments broadcast against each other.

    Args:
        x: Points, any shape.
        mu: Means, broadcastable to `x`.
        logvar: Log-variances, broadcastable to `x`.

    Returns:
        Log-densities in nats, the broadcast shape.
    """
    return -0.5 * (_LOG_2PI + logvar + (x - mu).pow(2) * torch.exp(-logvar))


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for every example and latent dimension.

    Closed form from Kingma & Welling (2014), Appendix B: 1/2 (mu^2 + exp(logvar) - 1 - logvar),
    the special case mu_p = 0, logvar_p = 0 of `kl_normal_normal` (written out: the same value
    with fewer operations, so the objectives' numbers do not depend on the general form).

    Args:
        mu: Posterior means, shape (B, D).
        logvar: Posterior log-variances, shape (B, D).

    Returns:
        KL in nats, shape (B, D).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


@dataclass
class Categorical:
    """Cat(softmax(logits)): the parameters of a categorical latent, (B, K)."""

    logits: Tensor

    @property
    def probs(self) -> Tensor:
        return torch.softmax(self.logits, dim=-1)

    @property
    def mean(self) -> Tensor:
        """The probabilities (B, K), the mean of the one-hot variable."""
        return self.probs


def kl_normal_normal(
    mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor | float = 0.0, logvar_p: Tensor | float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))), diagonal, summed over dimensions.

    Per dimension: 1/2 [logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1].

    Args:
        mu_q, logvar_q: the first Gaussian, (B, D).
        mu_p, logvar_p: the second, broadcastable to (B, D) (default N(0, I)).
        reduction: "mean" | "sum" | "none".

    Returns:
        KL in nats: 0-d, or (B,) with "none".
    """
    mu_p = torch.as_tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
    logvar_p = torch.as_tensor(logvar_p, dtype=mu_q.dtype, device=mu_q.device)
    per_dim = 0.5 * (logvar_p - logvar_q
                     + (logvar_q.exp() + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p) - 1.0)
    return reduce_batch(per_dim, reduction)


def expected_component_kl(
    mu_q: Tensor, logvar_q: Tensor, z: Tensor, pi: Tensor, mu_p: Tensor, logvar_p: Tensor,
    estimator: str = "analytic",
) -> Tensor:
    """sum_k pi_k KL(q || p_k) of a Gaussian q against the components p_k of a mixture prior.

    `estimator="analytic"`: sum_k pi_k KL(N(mu_q, var_q) || N(mu_k, var_k)) in closed form;
    `"sample"`: the one-sample log-ratio log q(z) - sum_k pi_k log p_k(z) at the sample `z` (the
    Gaussian constants cancel as sum_k pi_k = 1). Used by the GMVAE conditional-prior term and
    UG-VAE's local KL.

    Args:
        mu_q, logvar_q, z: q's parameters and a sample of it, (B, D).
        pi: component weights (B, K), rows summing to 1.
        mu_p, logvar_p: the components, broadcastable to (B, K, D).

    Returns:
        (B,) in nats.
    """
    B, K = pi.shape
    D = mu_q.shape[-1]
    mu_p, logvar_p = mu_p.expand(B, K, D), logvar_p.expand(B, K, D)
    if estimator == "analytic":
        kl = kl_normal_normal(mu_q[:, None].expand(B, K, D).reshape(-1, D),
                              logvar_q[:, None].expand(B, K, D).reshape(-1, D),
                              mu_p.reshape(-1, D), logvar_p.reshape(-1, D),
                              reduction="none").view(B, K)
        return (pi * kl).sum(-1)
    if estimator != "sample":
        raise ValueError(f"estimator must be 'analytic' or 'sample', got {estimator!r}")
    log_q = DiagonalGaussian(mu_q, logvar_q).log_prob(z)  # (B,)
    log_p = DiagonalGaussian(mu_p, logvar_p).log_prob(z[:, None, :])  # (B, K)
    return log_q - (pi * log_p).sum(-1)


def kl_categorical_uniform(logits: Tensor, reduction: str = "mean") -> Tensor:
    """KL(Cat(softmax(logits)) || Uniform(K)) = sum_k pi_k log pi_k + log K.

    Args:
        logits: unnormalised log-probabilities (B, K).
        reduction: "mean" | "sum" | "none".

    Returns:
        KL in nats: 0-d, or (B,) with "none".
    """
    log_pi = torch.log_softmax(logits, dim=-1)
    per_item = (log_pi.exp() * log_pi).sum(-1) + math.log(logits.shape[-1])
    return reduce_batch(per_item, reduction)


def gaussian_log_likelihood(
    x: Tensor, mean: Tensor, variance: float | Tensor, reduction: str = "mean"
) -> Tensor:
    """log N(x; mean, variance), with the normaliser, summed over every pixel of an item.

    Args:
        x: observations (B, ...).
        mean: means, the same shape.
        variance: the variance sigma^2 (> 0), a number or broadcastable tensor.
        reduction: "mean" | "sum" | "none".
    """
    variance = torch.as_tensor(variance, dtype=x.dtype, device=x.device)
    elementwise = -0.5 * (_LOG_2PI + torch.log(variance) + (x - mean).pow(2) / variance)
    return reduce_batch(elementwise, reduction)


def bernoulli_log_likelihood(logits: Tensor, x: Tensor, reduction: str = "mean") -> Tensor:
    """log Bernoulli(x; sigmoid(logits)) summed over every pixel; x may be grey levels in [0, 1].

    Computed as -BCE-with-logits, which is stable for large |logits|.
    """
    elementwise = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return reduce_batch(elementwise, reduction)


def laplace_log_likelihood(
    x: Tensor, loc: Tensor, scale: float | Tensor, reduction: str = "mean"
) -> Tensor:
    """log Laplace(x; loc, scale) = -log(2 scale) - |x - loc| / scale, summed over every pixel."""
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    elementwise = -torch.log(2.0 * scale) - (x - loc).abs() / scale
    return reduce_batch(elementwise, reduction)
