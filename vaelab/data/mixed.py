"""Two-domain datasets for UG-VAE (Peis et al., 2020): `celeba_faces` and `cars_chairs`.

Each concatenates two component datasets (built by their own loaders, so files, crops and caches
are shared) at one common shape: colour S x S, grey images repeated over three channels. Every
item carries its domain: `domains` (N,) and `labels` both hold 0 for the first component and 1
for the second, named in `domain_names`.

`celeba_faces` = CelebA (0) + 3D FACES renders (1); `cars_chairs` = 3D car renders (0) + 3D
Chairs (1), as in the UG-VAE seed. `limit` applies per domain.

The seed draws each item's domain by `round(U(0,1))`, so its proportion `p` never mattered (its
bug 1). `sample_batch_indices` implements the intended samplers: "random" (each item from domain
0 with probability `proportion`) and "pure" (the whole batch from one domain, domain 0 with
probability `proportion`), uniform within a domain. Pure batches are what the domain-alignment
experiment needs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from vaelab.data.base import DataConfig, DataError, ImageDataset
from vaelab.data.batches import DomainBatches
from vaelab.data.cars import Cars3D
from vaelab.data.celeba import CelebA, Faces
from vaelab.data.chairs import Chairs
from vaelab.registry import DATASETS

__all__ = ["CarsChairs", "CelebAFaces", "MixedConfig", "MixedDomainDataset"]

SAMPLING_MODES = ("random", "pure")


@dataclass(frozen=True, kw_only=True)
class MixedConfig(DataConfig):
    """Options of the two-domain datasets; image options are passed to both components."""

    image_size: int = 64  # common side S
    squash: bool = False  # resize without cropping (the UG-VAE seed's way)
    workers: int = 0  # decoding processes for the first load (0: all cores)
    test_fraction: float = 0.1  # held-out share for components without an official split
    proportion: float = 0.5  # share of domain 0 in "random" / "pure" batches (data.batches)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.proportion <= 1.0:
            raise ValueError(f"proportion must be in [0, 1], got {self.proportion}")
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in [8, 1024], got {self.image_size}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")


class MixedDomainDataset(ImageDataset):
    """Images of two domains, concatenated; `domains` (N,) says which domain each item is from."""

    config_class = MixedConfig
    name = ""
    components: tuple[type, type] = ()  # (domain 0 loader, domain 1 loader)

    batch_modes = ("shuffle", *SAMPLING_MODES)

    @classmethod
    def expected_shape(cls, config: MixedConfig) -> tuple[int, int, int]:
        channels = max(component.channels for component in cls.components)
        return (channels, config.image_size, config.image_size)

    @classmethod
    def stand_in(cls, config: MixedConfig, n: int = 64, seed: int = 0) -> MixedDomainDataset:
        """n seeded random images of the configured shape, the first half domain 0."""
        shape = cls.expected_shape(config)
        rng = np.random.default_rng(seed)
        images = torch.from_numpy(rng.integers(0, 256, size=(n, *shape), dtype=np.uint8))
        return cls(images, (np.arange(n) >= n // 2).astype(np.int64), name=cls.name)

    def batch_source(self, config: MixedConfig, batch_size: int, generator: torch.Generator,
                     rank: int = 0, world_size: int = 1, subset: torch.Tensor | None = None):
        """"shuffle" (every item once per epoch), or "random" / "pure" batches with
        `config.proportion` of domain 0 (`vaelab.data.batches.DomainBatches`)."""
        if config.batches == "shuffle":
            return super().batch_source(config, batch_size, generator, rank, world_size, subset)
        self._check_batch_mode(config.batches)
        domains = torch.as_tensor(self.domains, device=generator.device)
        items = (torch.arange(len(self), device=generator.device) if subset is None
                 else subset.to(generator.device))
        pools = [items[domains[items] == k] for k in range(2)]
        return DomainBatches(pools, config.batches, config.proportion, batch_size, generator,
                             rank, world_size)

    def __init__(self, images: torch.Tensor, domains: np.ndarray, name: str = "") -> None:
        super().__init__(images, labels=domains, name=name)
        self.domains = np.asarray(domains, dtype=np.int64)
        self.domain_names = tuple(component.name for component in self.components)

    @classmethod
    def _component_config(cls, component: type, config: MixedConfig) -> DataConfig:
        fields = {f.name for f in dataclasses.fields(component.config_class)}
        values = {k: v for k, v in dataclasses.asdict(config).items() if k in fields}
        return component.config_class(**values)

    @classmethod
    def load(cls, config: MixedConfig | None = None) -> MixedDomainDataset:
        config = config or MixedConfig()
        parts, failures = [], []
        for component in cls.components:
            try:
                parts.append(component.load(cls._component_config(component, config)).data)
            except DataError as error:
                failures.append((component.name, error))
        if failures:  # name every missing domain, with each one's own fetch instructions
            names = " and ".join(c.name for c in cls.components)
            missing = ", ".join(name for name, _ in failures)
            details = "\n".join(f"[{name}] {error}" for name, error in failures)
            raise DataError(f"{cls.name} mixes {names}; cannot load {missing}:\n{details}")
        channels = max(part.shape[1] for part in parts)
        parts = [part.expand(-1, channels, -1, -1) for part in parts]  # grey -> colour
        domains = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)])
        return cls(torch.cat(parts).contiguous(), domains, name=cls.name)

    @classmethod
    def prepare(cls, config: MixedConfig | None = None, from_path: str | None = None) -> dict:
        """Prepares both components (already imported ones); `from_path` is not supported here."""
        if from_path is not None:
            names = " and ".join(c.name for c in cls.components)
            raise ValueError(
                f"{cls.name} is built from {names}: import each with `vaelab data NAME --from PATH`"
            )
        config = config or MixedConfig()
        reports = [c.prepare(cls._component_config(c, config)) for c in cls.components]
        return {
            "path": ", ".join(report["path"] for report in reports),
            "items": sum(report["items"] for report in reports),
            "bytes": sum(report["bytes"] for report in reports),
        }

    def sample_batch_indices(
        self,
        batch_size: int,
        rng: np.random.Generator,
        mode: str = "random",
        proportion: float = 0.5,
    ) -> np.ndarray:
        """Indices (batch_size,) of one batch: see the module docstring for the modes.

        Args:
            batch_size: items per batch.
            rng: random source.
            mode: "random" (domain drawn per item) or "pure" (one domain per batch).
            proportion: probability of domain 0, in [0, 1].
        """
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}")
        if not 0.0 <= proportion <= 1.0:
            raise ValueError(f"proportion must be in [0, 1], got {proportion}")
        pools = [np.flatnonzero(self.domains == k) for k in range(len(self.domain_names))]
        if mode == "pure":
            domain = np.full(batch_size, 0 if rng.random() < proportion else 1)
        else:
            domain = (rng.random(batch_size) >= proportion).astype(np.int64)
        index = np.empty(batch_size, dtype=np.int64)
        for k, pool in enumerate(pools):
            where = np.flatnonzero(domain == k)
            if len(where):
                if len(pool) == 0:
                    raise ValueError(f"{self.name}: domain {self.domain_names[k]} has no items")
                index[where] = pool[rng.integers(0, len(pool), size=len(where))]
        return index


@DATASETS.register("celeba_faces")
class CelebAFaces(MixedDomainDataset):
    """CelebA (domain 0) + 3D FACES renders (domain 1), colour 64x64."""

    name = "celeba_faces"
    components = (CelebA, Faces)


@DATASETS.register("cars_chairs")
class CarsChairs(MixedDomainDataset):
    """3D car renders (domain 0) + 3D Chairs (domain 1, grey repeated to colour), 64x64."""

    name = "cars_chairs"
    components = (Cars3D, Chairs)
