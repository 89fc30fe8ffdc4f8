"""Latent traversals: value ranges, latent ordering by KL, and decoding traversal rows.

Follows disentangling-vae's `Visualizer` with its posterior bug fixed:

* max traversal m >= 0.5: absolute range (-m, +m);
* m < 0.5 ("quantile" mode): the central 2m probability mass of N(mu, sigma^2), i.e.
  mu -+ sigma * Phi^-1(1/2 + m). For the prior that is -+1.96 at m = 0.475.

The seed computes the quantile range as (-v, +v) with v = mu + sigma * Phi^-1(1/2 - m): for the prior
it runs from +|v| down to -|v| (reversed against absolute mode), and for a posterior it is centred on
0 instead of mu (and flips direction when mu > sigma z). `mode="disvae"` reproduces that exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from vaelab.distributions import DiagonalGaussian

__all__ = [
    "TRAVERSAL_MODES",
    "decode",
    "encode_posterior",
    "model_device",
    "order_latents",
    "prior_codes",
    "traversal_range",
    "traversal_latents",
    "traversal_values",
    "traverse_latents",
]

TRAVERSAL_MODES = ("auto", "disvae")


def traversal_range(
    max_traversal: float, mu: float = 0.0, sigma: float = 1.0, mode: str = "auto"
) -> tuple[float, float]:
    """(start, end) of a traversal of one latent.

    Args:
        max_traversal: m > 0. m >= 0.5 means absolute values (-m, +m); m < 0.5 is the probability
            mass on each side of the mean (quantile mode).
        mu: mean of the latent's distribution (0 for the prior, the posterior mean otherwise).
        sigma: its standard deviation (> 0).
        mode: "auto" (correct: quantile ranges centred on mu, low to high) or "disvae" (the seed).

    Raises:
        ValueError: m not a finite positive number, sigma <= 0, or an unknown mode.
    """
    if mode not in TRAVERSAL_MODES:
        raise ValueError(f"traversal mode must be one of {TRAVERSAL_MODES}, got {mode!r}")
    if not np.isfinite(max_traversal) or max_traversal <= 0:
        raise ValueError(f"max traversal must be a finite number > 0, got {max_traversal}")
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if max_traversal >= 0.5:
        return -float(max_traversal), float(max_traversal)
    from scipy.stats import norm  # deferred: keeps `import vaelab` (and every CLI start) light

    if mode == "disvae":
        v = float(norm.ppf((1 - 2 * max_traversal) / 2, loc=mu, scale=sigma))
        return -v, v
    half_width = sigma * float(norm.ppf(0.5 + max_traversal))
    return mu - half_width, mu + half_width


def traversal_values(
    n: int, max_traversal: float, mu: float = 0.0, sigma: float = 1.0, mode: str = "auto"
) -> np.ndarray:
    """n evenly spaced traversal values (n,) over `traversal_range(...)`."""
    if n < 1:
        raise ValueError(f"a traversal needs at least 1 point, got {n}")
    start, end = traversal_range(max_traversal, mu, sigma, mode)
    return np.linspace(start, end, n)


def order_latents(kl_per_latent: Sequence[float] | np.ndarray) -> np.ndarray:
    """Latent indices by decreasing KL; a stable sort, so ties keep index order (the seed crashed)."""
    kl = np.nan_to_num(np.asarray(kl_per_latent, dtype=np.float64), nan=-np.inf)
    return np.argsort(-kl, kind="stable")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


@torch.no_grad()
def decode(model: nn.Module, latents: Mapping[str, Tensor]) -> Tensor:
    """Likelihood means in [0, 1] (B, C, H, W) of decoder inputs `latents` (name -> (B, dim)),
    as float32 on the model device (`Model.generate`)."""
    device = model_device(model)
    return model.generate({name: value.to(device) for name, value in latents.items()}).float()


@torch.no_grad()
def encode_posterior(model: nn.Module, x: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """The decoder inputs at the posterior means of images x (B, C, H, W), and the mean and
    standard deviation (B, D) of the traversal latent.

    Raises:
        ValueError: the model's traversal latent is not Gaussian.
    """
    posterior = model.posterior(x.to(model_device(model)))
    part = posterior[model.traversal_latent]
    if not isinstance(part, DiagonalGaussian):
        raise ValueError(
            f"{type(model).__name__}'s traversal latent {model.traversal_latent!r} is not "
            "Gaussian; posterior traversals need a Gaussian posterior"
        )
    return model.posterior_center(posterior), part.mu.float(), part.std.float()


def prior_codes(
    model: nn.Module, n: int, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """n draws of the decoder inputs from the model's prior (`Model.sample_prior`), on the CPU."""
    return {name: value.to("cpu") for name, value in model.sample_prior(n, generator).items()}


def traversal_latents(
    model: nn.Module, base: Mapping[str, Tensor], dims: Sequence[int], values: np.ndarray
) -> dict[str, Tensor]:
    """Decoder inputs (R * n, dim) on the CPU: row r moves latent `dims[r]` of the traversal
    latent through `values[r]`, every other input stays at `base` (name -> (1, dim) or (dim,)).

    Args:
        model: a vaelab model (its `traversal_latent` and `decoder_inputs`).
        base: the code of the other latents (`prior_center()`, or a posterior centre).
        dims: traversal-latent indices, one output row each.
        values: (n,) values shared by every row, or (len(dims), n) one range per row.
    """
    values = np.asarray(values, dtype=np.float32)
    dims = list(dims)
    if values.ndim == 1:
        values = np.broadcast_to(values, (len(dims), values.shape[0]))
    rows, n = values.shape
    if rows != len(dims):
        raise ValueError(f"{rows} value rows for {len(dims)} latents")
    name = model.traversal_latent
    codes = base[name].detach().float().to("cpu").reshape(1, 1, -1).repeat(rows, n, 1)  # (R, n, D)
    for r, j in enumerate(dims):
        codes[r, :, j] = torch.tensor(values[r])
    latents = {other: base[other].detach().float().to("cpu").reshape(1, -1).expand(rows * n, -1)
               for other in model.decoder_inputs if other != name}
    latents[name] = codes.reshape(rows * n, -1)
    return latents


@torch.no_grad()
def traverse_latents(
    model: nn.Module,
    base: Mapping[str, Tensor],
    dims: Sequence[int],
    values: np.ndarray,
) -> Tensor:
    """Decodes traversals of latents `dims` around `base` (see `traversal_latents`).

    Returns:
        Images in [0, 1], shape (len(dims), n, C, H, W), on the model device.
    """
    latents = traversal_latents(model, base, dims, values)
    rows = len(list(dims))
    images = decode(model, latents)  # (R n, C, H, W)
    return images.reshape(rows, -1, *images.shape[1:])
