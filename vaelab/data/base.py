"""Dataset interfaces: in-memory image tensors drawn by index, and ground-truth factors.

`ImageDataset` holds every image as one uint8 tensor (N, C, H, W) and hands out float batches in
[0, 1] by index on whatever device the storage lives on, so training never collates items one by
one. `FactorDataset` adds ground-truth factors for the metrics: factor names and sizes, the factor
indices of every item, `sample_factors` and `sample_observations_from_factors`. It serves full
factorial grids (dSprites) and datasets that cover only part of the grid alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SPLITS",
    "Batch",
    "DataConfig",
    "DataError",
    "FactorDataset",
    "ImageDataset",
    "data_home",
    "no_valid_split",
]


SPLITS = ("train", "valid", "test")


class DataError(RuntimeError):
    """A data file is missing, corrupt, or cannot be fetched; the message says what to do."""


def no_valid_split(name: str) -> DataError:
    """The error for split="valid" on a dataset without a validation split."""
    return DataError(
        f"dataset {name!r} has no validation split; hold out part of the training set instead "
        "with train.valid_holdout (for example --set train.valid_holdout=0.1)"
    )


def data_home(root: str | os.PathLike | None = None) -> Path:
    """The folder where vaelab keeps downloaded and generated data.

    `root` wins, then the `VAELAB_DATA` environment variable, then `$XDG_CACHE_HOME/vaelab`,
    then `~/.cache/vaelab`.
    """
    if root:
        return Path(root).expanduser()
    if os.environ.get("VAELAB_DATA"):
        return Path(os.environ["VAELAB_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vaelab"


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Options every dataset takes."""

    root: str = ""  # data folder; "" means `data_home()` (VAELAB_DATA or ~/.cache/vaelab)
    split: str = "train"  # "train" | "valid" | "test" where the dataset has them
    limit: int = 0  # keep only the first `limit` items (0: all), for quick experiments and tests
    batches: str = "shuffle"  # training batches: "shuffle" (epoch permutation); factor sets
    #                           also "group" and "pairs", mixed-domain sets "random" and "pure"
    group_factors: tuple[str, ...] = ()  # "group" batches share a value of one of these
    #                                      factors (default: every factor)
    pair_k: int = 1  # "pairs": factors resampled per pair; 0: uniform in 1..d-1 per pair
    pair_sampler: str = "paper"  # "pairs": "paper" | "exact" | "simple_dynamics" (data/pairs.py)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")
        if self.pair_k < 0:
            raise ValueError(f"pair_k must be >= 0 (0: random per pair), got {self.pair_k}")
        if self.pair_sampler not in ("paper", "exact", "simple_dynamics"):
            raise ValueError("pair_sampler must be one of paper, exact, simple_dynamics, got "
                             f"{self.pair_sampler!r}")


@dataclass
class Batch:
    """One training or evaluation batch: the images and, lazily, what the dataset carries.

    Attributes:
        x: float images in [0, 1], (B, C, H, W), on the storage device.
        index: the dataset indices (B,) of the items, or None for images from elsewhere.
        dataset: the dataset the items come from (None with `index` None).
        pairs: b > 0 for a batch of b pairs (`data.batches = "pairs"`): the 2b images are
            first every x1, then every x2 (`vaelab.data.pairs`); 0 otherwise.
    """

    x: Tensor
    index: Tensor | None = None
    dataset: ImageDataset | None = None
    pairs: int = 0

    @property
    def labels(self) -> Tensor | None:
        """Integer labels (B,) on the images' device, or None when the dataset has none."""
        return None if self.dataset is None else self.dataset.labels_of(self.index)

    @property
    def domains(self) -> Tensor | None:
        """Domain of each item (B,) for mixed-domain datasets, else None."""
        return None if self.dataset is None else self.dataset.domains_of(self.index)


class ImageDataset:
    """Images held as a uint8 tensor (N, C, H, W) with values 0..255.

    Training batches come from `batch_source` (`batch_modes` names the kinds this dataset
    offers); `stand_in` makes a random dataset of the shape a config would load, for tests of
    datasets that must be downloaded.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: optional integer labels (N,), for colouring plots and clustering scores.
        name: registry name, for messages.
    """

    def __init__(self, images: Tensor, labels: np.ndarray | None = None, name: str = "") -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.data = images
        self.labels = None if labels is None else np.asarray(labels)
        self.name = name
        self._device_columns: dict[str, Tensor] = {}

    #: the `data.batches` kinds of `batch_source`
    batch_modes: tuple[str, ...] = ("shuffle",)

    @classmethod
    def splits(cls, config: DataConfig) -> tuple[str, ...]:
        """The splits `load(config)` gives distinct items for: a held-out "test" split is
        evaluated on when it is here. Datasets without one (dSprites, toy_squares: every split
        is the whole set) declare ("train",); loading a declared split may still fail (files
        absent), which the caller reports."""
        return ("train", "test")

    @classmethod
    def expected_shape(cls, config: DataConfig) -> tuple[int, int, int]:
        """(C, H, W) of the images `load(config)` gives, without reading any file."""
        raise NotImplementedError(f"{cls.__name__} does not declare its image shape")

    @classmethod
    def stand_in(cls, config: DataConfig, n: int = 64, seed: int = 0) -> ImageDataset:
        """n seeded random images of the shape `load(config)` would give, named as the dataset."""
        shape = cls.expected_shape(config)
        rng = np.random.default_rng(seed)
        images = torch.from_numpy(rng.integers(0, 256, size=(n, *shape), dtype=np.uint8))
        return ImageDataset(images, name=getattr(cls, "name", "") or cls.__name__.lower())

    def batch_source(self, config: DataConfig, batch_size: int, generator: torch.Generator,
                     rank: int = 0, world_size: int = 1, subset: Tensor | None = None):
        """The `BatchSource` of `config.batches` over this dataset (or its items `subset`)."""
        from vaelab.data.batches import EpochPermutation

        self._check_batch_mode(config.batches)
        n = len(self) if subset is None else len(subset)
        return EpochPermutation(n, batch_size, generator, rank, world_size, subset)

    def _check_batch_mode(self, mode: str) -> None:
        if mode not in self.batch_modes:
            raise DataError(
                f"dataset {self.name or type(self).__name__!r} draws batches as "
                f"{' or '.join(repr(m) for m in self.batch_modes)}, not data.batches={mode!r}"
            )

    def batch_of(self, index: Tensor) -> Batch:
        """The `Batch` of items `index` (B,): images now, labels and domains when asked for.

        A (2, b) index (a pair source's) gives a pair batch: 2b images, row 0 then row 1.
        """
        if index.dim() == 2:
            flat = index.reshape(-1)
            return Batch(self.batch(flat), flat, self, pairs=int(index.shape[1]))
        return Batch(self.batch(index), index, self)

    #: applied to training batches only (`training_batch`), e.g. `dynamic_binarize`
    batch_transform: Callable[[Batch], Batch] | None = None

    def training_batch(self, index: Tensor) -> Batch:
        """The `Batch` of items `index` as training sees it: `batch_of`, then `batch_transform`
        (validation, metrics and pictures see the stored images)."""
        batch = self.batch_of(index)
        return batch if self.batch_transform is None else self.batch_transform(batch)

    def _on_device(self, key: str, values: np.ndarray | None) -> Tensor | None:
        if values is None:
            return None
        cache = self.__dict__.setdefault("_device_columns", {})  # subclasses may skip __init__
        column = cache.get(key)
        if column is None or column.device != self.device:
            column = torch.as_tensor(np.asarray(values, dtype=np.int64), device=self.device)
            cache[key] = column
        return column

    def labels_of(self, index: Tensor | None) -> Tensor | None:
        """Labels (B,) of items `index` on the storage device (None without labels)."""
        column = self._on_device("labels", self.labels)
        return None if column is None or index is None else column[index]

    def domains_of(self, index: Tensor | None) -> Tensor | None:
        """Domains (B,) of items `index` (None unless the dataset is mixed-domain)."""
        column = self._on_device("domains", getattr(self, "domains", None))
        return None if column is None or index is None else column[index]

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(int(s) for s in self.data.shape[1:])  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        return self.data.device

    def to(self, device: torch.device | str) -> ImageDataset:
        """Moves the storage (in place) to `device`, so batches are drawn there."""
        self.data = self.data.to(device)
        return self

    def batch(self, index: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        """Float images in [0, 1], shape (B, C, H, W), on the storage device."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return self.data.index_select(0, index).float().div_(255.0)

    def uint8(self, index: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        """uint8 images (B, C, H, W), on the storage device."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return self.data.index_select(0, index)


class FactorDataset(ImageDataset):
    """An image dataset whose items carry ground-truth factor indices.

    Args:
        images: uint8 tensor (N, C, H, W).
        factors: integer factor indices (N, F); factor k takes values 0..factor_sizes[k]-1.
        factor_names: F names.
        factor_sizes: F cardinalities.
        factor_values: optional F arrays with the physical value of each factor index.
    """

    def __init__(
        self,
        images: Tensor,
        factors: np.ndarray,
        factor_names: Sequence[str],
        factor_sizes: Sequence[int],
        factor_values: Sequence[np.ndarray] | None = None,
        labels: np.ndarray | None = None,
        name: str = "",
    ) -> None:
        super().__init__(images, labels=labels, name=name)
        self._init_factors(factors, factor_names, factor_sizes, factor_values)

    def _init_factors(self, factors, factor_names, factor_sizes, factor_values) -> None:
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != len(factor_sizes):
            raise ValueError(f"factors must be (N, {len(factor_sizes)}), got {factors.shape}")
        if len(factor_names) != len(factor_sizes):
            raise ValueError("factor_names and factor_sizes differ in length")
        if factors.size and ((factors < 0).any() or (factors >= np.asarray(factor_sizes)).any()):
            raise ValueError("factor indices out of range of factor_sizes")
        self.factors = factors
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.factor_values = (
            [np.arange(s) for s in self.factor_sizes]
            if factor_values is None
            else [np.asarray(v) for v in factor_values]
        )
        # Mixed-radix code of each item's factor row; last factor varies fastest.
        self._bases = np.cumprod((1,) + self.factor_sizes[::-1])[:-1][::-1].astype(np.int64)
        codes = factors @ self._bases
        self.is_grid = len(factors) == int(np.prod(self.factor_sizes)) and bool(
            (codes == np.arange(len(codes))).all()
        )
        if not self.is_grid:
            order = np.argsort(codes, kind="stable")
            self._sorted_codes = codes[order]
            self._order = order

    batch_modes = ("shuffle", "group", "pairs")

    def factors_of(self, index: Tensor) -> Tensor:
        """Factor indices (B, F) of items `index` on the storage device."""
        return self._on_device("factors", self.factors)[index]

    @classmethod
    def stand_in(cls, config: DataConfig, n: int = 64, seed: int = 0) -> ImageDataset:
        """n seeded random images of the loaded shape, with random factor rows of the class's
        `factor_names` and `factor_sizes` where it declares both; else two stand-in factors (a
        2 x ceil(n/2) grid). Either way every batch mode of a factor dataset (pairs too) can
        draw."""
        names, sizes = getattr(cls, "factor_names", ()), getattr(cls, "factor_sizes", ())
        if not (isinstance(sizes, tuple) and sizes and len(names) == len(sizes)):
            plain = ImageDataset.stand_in.__func__(cls, config, n, seed)
            sizes = (2, max(1, -(-n // 2)))
            rows = np.stack(np.unravel_index(np.arange(n), sizes), axis=1)
            return FactorDataset(plain.data, rows, ("stand_in_0", "stand_in_1"), sizes,
                                 name=plain.name)
        rng = np.random.default_rng(seed)
        images = torch.from_numpy(
            rng.integers(0, 256, size=(n, *cls.expected_shape(config)), dtype=np.uint8))
        factors = np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)
        return FactorDataset(images, factors, names, sizes,
                             name=getattr(cls, "name", "") or cls.__name__.lower())

    def group_index(self, factor_names: Sequence[str] = ()) -> list[np.ndarray]:
        """Item indices of every (factor, value) group of `factor_names` (default: all factors),
        factor by factor in order, values ascending; empty groups left out."""
        names = list(factor_names) or list(self.factor_names)
        unknown = [n for n in names if n not in self.factor_names]
        if unknown:
            raise DataError(f"unknown factor {unknown[0]!r} for group batches; factors of "
                            f"{self.name or 'the dataset'}: {', '.join(self.factor_names)}")
        groups = []
        for name in names:
            column = self.factors[:, self.factor_names.index(name)]
            groups += [np.flatnonzero(column == v) for v in np.unique(column)]
        return groups

    def batch_source(self, config: DataConfig, batch_size: int, generator: torch.Generator,
                     rank: int = 0, world_size: int = 1, subset: Tensor | None = None):
        """"shuffle", "group": batches sharing one value of a factor of
        `config.group_factors` (all factors when the config has none), or "pairs"
        (`vaelab.data.pairs.PairBatches`)."""
        if config.batches == "pairs":
            from vaelab.data.pairs import PairBatches

            try:
                return PairBatches(self._on_device("factors", self.factors), self.factor_sizes,
                                   config.pair_k, config.pair_sampler, batch_size, generator,
                                   rank, world_size, subset, is_grid=self.is_grid)
            except ValueError as error:
                raise DataError(f"data.batches=pairs on {self.name or 'this dataset'} "
                                f"(factors {', '.join(self.factor_names)}): {error}") from None
        if config.batches != "group":
            return super().batch_source(config, batch_size, generator, rank, world_size, subset)
        from vaelab.data.batches import GroupBatches

        allowed = None if subset is None else np.isin(np.arange(len(self)),
                                                      subset.cpu().numpy())
        groups = [g if allowed is None else g[allowed[g]]
                  for g in self.group_index(getattr(config, "group_factors", ()))]
        device = generator.device
        return GroupBatches([torch.as_tensor(g, device=device) for g in groups], batch_size,
                            generator, rank, world_size)

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor rows (n, F) drawn from the data: uniform over the grid, or over the items."""
        if self.is_grid:
            return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1)
        return self.factors[rng.integers(0, len(self.factors), size=n)]

    def index_of_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Dataset indices (n,) of items with the given factor rows (n, F).

        On a grid the match is unique. Elsewhere one matching item is chosen at random; a row no
        item has raises `ValueError` (draw rows with `sample_factors`, or resample factors by
        replacing one coordinate with `resample_factor`).
        """
        codes = np.asarray(factors, dtype=np.int64) @ self._bases
        if self.is_grid:
            return codes
        left = np.searchsorted(self._sorted_codes, codes, side="left")
        right = np.searchsorted(self._sorted_codes, codes, side="right")
        missing = right <= left
        if missing.any():
            bad = np.asarray(factors)[np.argmax(missing)]
            raise ValueError(f"no item of {self.name or 'the dataset'} has factors {bad.tolist()}")
        pick = left + (rng.random(len(codes)) * (right - left)).astype(np.int64)
        return self._order[pick]

    def resample_with_fixed_factor(
        self, k: int, value: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Factor rows (n, F) drawn from the data with factor k equal to `value` (n,).

        On a grid the other factors are uniform; elsewhere an item with factor k == value is drawn.
        """
        value = np.asarray(value, dtype=np.int64)
        if self.is_grid:
            rows = self.sample_factors(len(value), rng)
            rows[:, k] = value
            return rows
        rows = np.empty((len(value), self.num_factors), dtype=np.int64)
        column = self.factors[:, k]
        for v in np.unique(value):
            pool = np.flatnonzero(column == v)
            if len(pool) == 0:
                raise ValueError(f"no item has {self.factor_names[k]} = {v}")
            where = np.flatnonzero(value == v)
            rows[where] = self.factors[pool[rng.integers(0, len(pool), size=len(where))]]
        return rows

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> Tensor:
        """Float images (n, C, H, W) in [0, 1] with the given factor rows (n, F)."""
        return self.batch(self.index_of_factors(factors, rng))


def dynamic_binarize(batch: Batch) -> Batch:
    """Every pixel drawn as Bernoulli(x): a fresh binary image at each visit (the dynamic
    binarisation of grey-level MNIST for Bernoulli likelihoods, e.g. Burda et al., 2016, IWAE).
    Draws from the global torch generator, which checkpoints save and restore."""
    batch.x = torch.bernoulli(batch.x)
    return batch


#: `train.binarize` -> the training-batch transform it names
BATCH_TRANSFORMS: dict[str, Callable[[Batch], Batch] | None] = {
    "none": None, "dynamic": dynamic_binarize}


def batch_transform(name: str) -> Callable[[Batch], Batch] | None:
    """The training-batch transform `train.binarize=name` names (None for "none")."""
    if name not in BATCH_TRANSFORMS:
        raise DataError(f"unknown batch transform {name!r}; known: {', '.join(BATCH_TRANSFORMS)}")
    return BATCH_TRANSFORMS[name]
