"""`dsprites_domains`: an offline two-domain dSprites for UG-VAE's domain experiments.

Domain 0 is dSprites as it is (white sprites on black); domain 1 is the same grid rendered
inverted (black sprites on white), or with `second_domain="textured"` the sprites on a fixed
diagonal-stripe background of grey level 0.5 (a texture no domain-0 image has). Both domains
share the 737,280 bit-packed images (nothing is stored twice): item i < N is image i of domain 0,
item N + i the same image in domain 1.

Factors, in order: domain (2), shape (3), scale (6), orientation (40), pos_x (32), pos_y (32) —
a full factorial grid of 1,474,560 items, domain varying slowest, so every factor metric applies.
`domains` and `labels` give the domain. Batches: "shuffle", "random" / "pure" (the mixed-domain
samplers, domain 0 with probability `proportion`), and "group" (all items share one value of a
factor of `group_factors`: all hearts, all of the largest scale, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vaelab.data.base import no_valid_split
from vaelab.data.batches import DomainBatches
from vaelab.data.dsprites import FACTOR_NAMES, FACTOR_SIZES, FACTOR_VALUES, DSprites, DSpritesConfig
from vaelab.registry import DATASETS

__all__ = ["DSpritesDomains", "DSpritesDomainsConfig"]

SECOND_DOMAINS = ("inverted", "textured")


@dataclass(frozen=True, kw_only=True)
class DSpritesDomainsConfig(DSpritesConfig):
    """Options of `dsprites_domains` (and those of `dsprites`)."""

    second_domain: str = "inverted"  # "inverted" | "textured"
    proportion: float = 0.5  # share of domain 0 in "random" / "pure" batches

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.second_domain not in SECOND_DOMAINS:
            raise ValueError(f"second_domain must be one of {SECOND_DOMAINS}, got "
                             f"{self.second_domain!r}")
        if not 0.0 <= self.proportion <= 1.0:
            raise ValueError(f"proportion must be in [0, 1], got {self.proportion}")
        if self.variant:
            raise ValueError("dsprites_domains has no colour variants; use data.name=dsprites "
                             "with data.variant")


def _stripes(size: int = 64) -> Tensor:
    """The textured domain's background: diagonal stripes 4 px wide, grey 0.5 on black."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((rows + cols) // 4) % 2).float().mul(0.5).view(1, 1, size, size)


@DATASETS.register("dsprites_domains")
class DSpritesDomains(DSprites):
    """dSprites in two renderings; see the module docstring."""

    config_class = DSpritesDomainsConfig
    factor_names = ("domain", *FACTOR_NAMES)
    factor_sizes = (2, *FACTOR_SIZES)
    batch_modes = ("shuffle", "group", "random", "pure")

    def __init__(self, base: DSprites, second_domain: str = "inverted",
                 name: str = "dsprites_domains") -> None:
        self.data = base.data  # the shared bit-packed images, (N, 512)
        self.name = name
        self.second_domain = second_domain
        self.base_size = len(base)
        base_factors = base.factors
        domains = np.repeat(np.arange(2), self.base_size)
        factors = np.concatenate([domains[:, None], np.tile(base_factors, (2, 1))], axis=1)
        self._init_factors(factors, ("domain", *FACTOR_NAMES), (2, *FACTOR_SIZES),
                           [np.arange(2), *FACTOR_VALUES])
        self.domains = domains
        self.labels = domains
        self.domain_names = ("dsprites", f"dsprites_{second_domain}")
        self._device_columns = {}
        self._texture = _stripes()

    @classmethod
    def load(cls, config: DSpritesDomainsConfig = DSpritesDomainsConfig()) -> DSpritesDomains:
        if config.split == "valid":
            raise no_valid_split("dsprites_domains")
        base = DSprites.load(DSpritesConfig(root=config.root, split=config.split,
                                            limit=config.limit, source=config.source,
                                            npz_path=config.npz_path))
        return cls(base, config.second_domain)

    @classmethod
    def stand_in(cls, config: DSpritesDomainsConfig, n: int = 64, seed: int = 0
                 ) -> DSpritesDomains:
        """n seeded random bit images (n // 2 per domain) with the first grid items' factors."""
        from vaelab.data.dsprites import PACKED_BYTES, grid_factors

        half = max(1, n // 2)
        rng = np.random.default_rng(seed)
        packed = torch.from_numpy(rng.integers(0, 256, size=(half, PACKED_BYTES), dtype=np.uint8))
        return cls(DSprites(packed, grid_factors()[:half]), config.second_domain)

    def __len__(self) -> int:
        return 2 * self.base_size

    def _render(self, index: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        second = (index >= self.base_size).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        sprites = self._unpack(index % self.base_size).float()  # (B, 1, 64, 64) in {0, 1}
        if self.second_domain == "inverted":
            other = 1.0 - sprites
        else:  # white sprites over the striped background
            other = torch.maximum(sprites, self._texture.to(self.device).expand_as(sprites))
        return torch.where(second, other, sprites)

    def batch(self, index: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        """Float images in [0, 1], shape (B, 1, 64, 64), on the storage device."""
        return self._render(index)

    def uint8(self, index: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        return self._render(index).mul(255.0).round().to(torch.uint8)

    def batch_source(self, config: DSpritesDomainsConfig, batch_size: int,
                     generator: torch.Generator, rank: int = 0, world_size: int = 1,
                     subset: Tensor | None = None):
        """"shuffle" and "group" as any factor dataset; "random" / "pure" domain batches."""
        if config.batches in ("shuffle", "group"):
            return super().batch_source(config, batch_size, generator, rank, world_size, subset)
        self._check_batch_mode(config.batches)
        device = generator.device
        items = (torch.arange(len(self), device=device) if subset is None
                 else subset.to(device))
        pools = [items[items < self.base_size], items[items >= self.base_size]]
        return DomainBatches(pools, config.batches, config.proportion, batch_size, generator,
                             rank, world_size)
