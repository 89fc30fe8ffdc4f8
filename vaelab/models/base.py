"""The model contract: every registered model declares its latents and serves this interface.

Consumers (the engine, every metric, every plot kind, the training GIF, run loading) use only
what is defined here, never a model's internals, so a new latent structure is one model file:

* `image_shape` (C, H, W) of the inputs, and `latents`: a tuple of `LatentSpec` (name, dim, kind
  "gaussian" | "categorical", scope "item" | "batch"). A batch-scope latent is shared by every
  item of a batch (UG-VAE's global code).
* `output_type`: the family's forward output (e.g. `VAEOutput`); objectives declare the output
  types they accept (`Objective.accepts`), which is how incompatible pairs are refused.
* `forward(x) -> output_type`; `posterior(x) -> {name: DiagonalGaussian | Categorical}` (the
  parameters of each latent); `decode(latents) -> logits` from a mapping name -> tensor of every
  name in `decoder_inputs`; `sample_prior(n, generator, **given) -> {name: tensor}`.
* `represent(x) -> (B, D)`: what metrics score, the posterior means of the `represented`
  latents side by side; `traversal_latent`: the Gaussian latent that traversals move.
* optional `cluster(x)` where `num_clusters > 0`: the argmax of the categorical latent
  `cluster_latent`.

Helpers built on these (`reconstruct`, `generate`, `representation`, `prior_center`) are shared by
every model and need no override.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vaelab.distributions import Categorical, DiagonalGaussian
from vaelab.errors import VaelabError

__all__ = ["LATENT_KINDS", "LATENT_SCOPES", "LatentSpec", "Model"]

LATENT_KINDS = ("gaussian", "categorical")
LATENT_SCOPES = ("item", "batch")


@dataclass(frozen=True)
class LatentSpec:
    """One declared latent variable.

    Attributes:
        name: its key in `posterior`, `decode` and `sample_prior` ("z", "w", "y", ...).
        dim: its size D (K for a categorical).
        kind: "gaussian" (diagonal) or "categorical".
        scope: "item" (one per image) or "batch" (one shared by the batch).
    """

    name: str
    dim: int
    kind: str = "gaussian"
    scope: str = "item"

    def __post_init__(self) -> None:
        if self.kind not in LATENT_KINDS:
            raise ValueError(f"latent {self.name!r}: kind must be one of {LATENT_KINDS}, "
                             f"got {self.kind!r}")
        if self.scope not in LATENT_SCOPES:
            raise ValueError(f"latent {self.name!r}: scope must be one of {LATENT_SCOPES}, "
                             f"got {self.scope!r}")
        if self.dim < 1:
            raise ValueError(f"latent {self.name!r}: dim must be >= 1, got {self.dim}")

    def describe(self) -> str:
        scope = "" if self.scope == "item" else ", per batch"
        return f"{self.name}: {self.kind} ({self.dim}{scope})"


Posterior = DiagonalGaussian | Categorical


class Model(nn.Module):
    """Base class of every registered model; see the module docstring for the contract."""

    config_class: type
    #: the forward output type of this family (objectives accept output types)
    output_type: type
    image_shape: tuple[int, int, int]
    latents: tuple[LatentSpec, ...]
    #: latents `decode` takes, in order
    decoder_inputs: tuple[str, ...]
    #: latents whose posterior means `represent` concatenates (item-scope)
    represented: tuple[str, ...]
    #: the Gaussian latent that traversals and the training GIF move
    traversal_latent: str
    #: K of a cluster structure (`cluster(x)`); 0: none
    num_clusters: int = 0
    #: the categorical latent whose argmax is `cluster(x)` ("" without clusters)
    cluster_latent: str = ""
    #: whether p(z) of the `represented` latents is N(0, I); False for mixture priors (GMVAE,
    #: UG-VAE), where `kl_decomposition` leaves out its dimension-wise KL against N(0, I)
    standard_normal_prior: bool = True

    # -- the contract ---------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Any:
        raise NotImplementedError

    def posterior(self, x: Tensor) -> dict[str, Posterior]:
        """The parameters of every latent's posterior given images x (B, C, H, W)."""
        raise NotImplementedError

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        """Decoder logits (B, C, H, W) from a mapping holding every name of `decoder_inputs`."""
        raise NotImplementedError

    def inference_posterior(self, dtype: torch.dtype) -> Callable[[Tensor], dict] | None:
        """A faster inference-only `posterior` on CPU, computing in `dtype` (torch.float32 or
        torch.bfloat16), or None when the model has none (then `posterior` is used).

        Used under `torch.inference_mode` by the metrics' encoder (`model_encoder`); the
        Burgess VAE's runs its convolutions in oneDNN's blocked layout
        (`vaelab.models.onednn`). The default is None.
        """
        return None

    def sample_prior(
        self, n: int, generator: torch.Generator | None = None, **given: Any
    ) -> dict[str, Tensor]:
        """n draws of every decoder input from the prior, on `generator`'s device (CPU default).

        `given` fixes parts of the draw where a model supports it (e.g. `component=k`).
        """
        raise NotImplementedError

    def cluster(self, x: Tensor) -> Tensor:
        """Cluster index (B,) of each image; only for models with `num_clusters > 0`."""
        raise VaelabError(
            f"model {type(self).__name__} has no clusters (clustering needs a mixture model "
            "such as a GMVAE)"
        )

    # -- shared helpers -------------------------------------------------------------------------

    def spec(self, name: str) -> LatentSpec:
        """The declared latent `name`."""
        for latent in self.latents:
            if latent.name == name:
                return latent
        known = ", ".join(latent.name for latent in self.latents)
        raise KeyError(f"unknown latent {name!r} of {type(self).__name__}; its latents: {known}")

    @property
    def traversal_dim(self) -> int:
        """D of the traversal latent (the rows of a traversal grid, the kl_j of the log)."""
        return self.spec(self.traversal_latent).dim

    @property
    def representation_dim(self) -> int:
        return sum(self.spec(name).dim for name in self.represented)

    def representation(
        self, posterior: Mapping[str, Posterior]
    ) -> tuple[Tensor, Tensor | None]:
        """Codes (B, D) of a posterior, and their log-variances when every part is Gaussian."""
        parts = [posterior[name] for name in self.represented]
        codes = torch.cat([p.mean for p in parts], dim=-1) if len(parts) > 1 else parts[0].mean
        if not all(isinstance(p, DiagonalGaussian) for p in parts):
            return codes, None
        logvar = (torch.cat([p.logvar for p in parts], dim=-1) if len(parts) > 1
                  else parts[0].logvar)
        return codes, logvar

    @torch.no_grad()
    def represent(self, x: Tensor) -> Tensor:
        """What metrics score: the posterior means of the `represented` latents, (B, D)."""
        return self.representation(self.posterior(x))[0]

    def posterior_center(self, posterior: Mapping[str, Posterior]) -> dict[str, Tensor]:
        """The decoder inputs at the posterior means (categoricals: their most likely value)."""
        center = {}
        for name in self.decoder_inputs:
            part = posterior[name]
            if isinstance(part, Categorical):
                center[name] = nn.functional.one_hot(
                    part.logits.argmax(-1), part.logits.shape[-1]).to(part.logits.dtype)
            else:
                center[name] = part.mean
        return center

    def prior_center(self) -> dict[str, Tensor]:
        """The decoder inputs at the centre of the prior, each (1, dim): the base of prior
        traversals. Zeros (the mean of N(0, I)) unless a model says otherwise."""
        return {name: torch.zeros(1, self.spec(name).dim) for name in self.decoder_inputs}

    @torch.no_grad()
    def generate(self, latents: Mapping[str, Tensor]) -> Tensor:
        """Likelihood means sigmoid(decode(latents)) in (0, 1), shape (B, C, H, W)."""
        return torch.sigmoid(self.decode(latents))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoded posterior means in (0, 1), shape (B, C, H, W)."""
        return torch.sigmoid(self.decode(self.posterior_center(self.posterior(x))))

    @classmethod
    def describe(cls) -> str:
        """One line: the output type, for `vaelab list models`."""
        return cls.output_type.__name__
