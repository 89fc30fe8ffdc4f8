"""Shared machinery of the downloaded ground-truth benchmark datasets (Shapes3D, MPI3D,
SmallNORB, Cars3D): fetch, verify, convert once, then load in memory or through a memory map.

A `GroundTruthDataset` subclass names its files (`resources_for(config)`: `Resource`s with
checksums and at least two URLs each where two exist), and converts them (`convert`) into one
uncompressed uint8 array (N, C, 64, 64) plus integer factor indices (N, F). The conversion runs
once and is cached under `data_home(root)/<name>/cache/` as

* `<stem>.npy`: the images, (N, C, H, W) uint8, channel first (what `ImageDataset` serves);
* `<stem>.factors.npy`: the factor indices (N, F) int64;
* `<stem>.json`: the sidecar (format version, factor sizes, item count, image file size),
  written last: a cache without it is incomplete and rebuilt.

Every file is written to a temporary name and renamed into place, and a failing conversion
(a truncated or wrong source file) removes its temporary files: nothing half-written is left in
the cache. The images of a dataset larger than `memmap_mb` MiB are read through a copy-on-write
memory map (`np.load(mmap_mode="c")`) wrapped by `torch.from_numpy` without a copy: a batch
gathers only its own rows (`index_select`), so MPI3D (12.7 GB of pixels) trains with the page
cache holding what the kernel chooses and the process's anonymous memory holding one batch.
Smaller datasets are read into memory.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.data.base import DataConfig, DataError, FactorDataset, data_home
from vaelab.data.download import (
    Resource,
    fetch_all,
    import_resources,
    is_offline,
    missing_message,
)

__all__ = [
    "CACHE_FORMAT",
    "GroundTruthConfig",
    "GroundTruthDataset",
    "grid_factors",
    "open_images",
]

CACHE_FORMAT = 1  # bump when a conversion changes, so old caches are rebuilt
MEBIBYTE = 1 << 20


def grid_factors(sizes: Sequence[int]) -> np.ndarray:
    """Factor rows (prod(sizes), F) of a full grid in C order: the last factor varies fastest.

    This is the reshape order of every array-shaped benchmark file (`array.reshape(*sizes, ...)`).
    """
    sizes = [int(s) for s in sizes]
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1).astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class GroundTruthConfig(DataConfig):
    """Options of the downloaded ground-truth datasets."""

    memmap_mb: int = 1024  # image arrays above this many MiB are read through a memory map
    #                        instead of into memory (0: always map; -1: never)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memmap_mb < -1:
            raise ValueError(f"memmap_mb must be >= -1, got {self.memmap_mb}")


def open_images(path: Path, memmap_mb: int) -> np.ndarray:
    """The cached images (N, C, H, W) uint8: memory-mapped (copy-on-write) above `memmap_mb`
    MiB (`memmap_mb` 0: always, -1: never), else read into memory."""
    mapped = np.load(path, mmap_mode="c")
    if memmap_mb == 0 or (memmap_mb > 0 and mapped.nbytes > memmap_mb * MEBIBYTE):
        _advise_random(mapped)
        return mapped
    return np.array(mapped)  # one read into anonymous memory


def _advise_random(mapped: np.memmap) -> bool:
    """Tells the kernel the map is read at random (madvise MADV_RANDOM): a page fault then
    reads its own page, not the 128 KiB of read-ahead around it. Random batches of a 12 GB
    sparse MPI3D stand-in gather 20-25x faster with it on this host (benchmarks/
    memmap_throughput.py). numpy keeps the mmap object as `_mmap` (not public API: when it is
    absent, or the platform lacks madvise, the map works as before)."""
    handle = getattr(mapped, "_mmap", None)
    if handle is None or not hasattr(mmap, "MADV_RANDOM"):
        return False
    try:
        handle.madvise(mmap.MADV_RANDOM)
    except (OSError, ValueError):
        return False
    return True


def _replace_atomically(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(json.dumps(record, indent=1))
        _replace_atomically(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class GroundTruthDataset(FactorDataset):
    """Base class of the downloaded ground-truth datasets; see the module docstring.

    Subclasses set `name`, `factor_names`, `factor_sizes`, `channels`, `homepage`, `licence`,
    and implement `resources_for(config)`, `cache_stem(config)` and `convert(config, paths,
    allocate)`.
    """

    config_class = GroundTruthConfig
    name = ""
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    channels = 3
    image_size = 64
    homepage = ""
    licence = ""

    # -- what subclasses provide

    @classmethod
    def resources_for(cls, config: DataConfig) -> tuple[Resource, ...]:
        """The source files of `config` (variant, split)."""
        raise NotImplementedError

    @classmethod
    def cache_stem(cls, config: DataConfig) -> str:
        """The cache's file stem for `config` (one per variant or split)."""
        return cls.name

    @classmethod
    def convert(
        cls, config: DataConfig, paths: list[Path], allocate: Callable[[int], np.ndarray]
    ) -> tuple[np.ndarray, dict]:
        """Reads the verified source files `paths` (in `resources_for` order), fills the array
        `allocate(n)` returns ((n, C, H, W) uint8, on disk) and returns (factors (n, F) int64,
        extra sidecar fields). Raises `DataError` on a file of the wrong layout."""
        raise NotImplementedError

    # -- shared machinery

    @classmethod
    def expected_shape(cls, config: DataConfig) -> tuple[int, int, int]:
        return (cls.channels, cls.image_size, cls.image_size)

    @classmethod
    def dataset_folder(cls, config: DataConfig) -> Path:
        return data_home(config.root or None) / cls.name

    @classmethod
    def cache_paths(cls, config: DataConfig) -> tuple[Path, Path, Path]:
        """(images .npy, factors .npy, sidecar .json) of `config`'s cache."""
        base = cls.dataset_folder(config) / "cache" / cls.cache_stem(config)
        return (base.with_name(base.name + ".npy"), base.with_name(base.name + ".factors.npy"),
                base.with_name(base.name + ".json"))

    @classmethod
    def _meta(cls, config: DataConfig) -> dict:
        return {"format": CACHE_FORMAT, "dataset": cls.name,
                "factor_names": list(cls.factor_names),
                "factor_sizes": [int(s) for s in cls.factor_sizes],
                "image_shape": list(cls.expected_shape(config))}

    @classmethod
    def _read_cache(cls, config: DataConfig) -> tuple[np.ndarray, np.ndarray, dict] | None:
        images_path, factors_path, sidecar = cls.cache_paths(config)
        if not sidecar.is_file():
            return None
        problem = ""
        try:
            info = json.loads(sidecar.read_text())
            if any(info.get(k) != v for k, v in cls._meta(config).items()):
                problem = "was written by another version or for other factors"
            elif images_path.stat().st_size != info["bytes"]:
                problem = (f"has {images_path.stat().st_size:,} bytes, expected "
                           f"{info['bytes']:,} (truncated?)")
            else:
                images = open_images(images_path, getattr(config, "memmap_mb", 1024))
                factors = np.load(factors_path)
                if images.shape == (info["items"], *cls.expected_shape(config)) and \
                        factors.shape == (info["items"], len(cls.factor_sizes)):
                    return images, factors, info
                problem = f"holds images {images.shape} and factors {factors.shape}"
        except (OSError, ValueError, KeyError, TypeError) as error:
            problem = f"cannot be read ({type(error).__name__}: {error})"
        print(f"vaelab: the {cls.name} cache {images_path} {problem}; rebuilding it",
              file=sys.stderr)
        return None

    @classmethod
    def _build_cache(cls, config: DataConfig, paths: list[Path]) -> None:
        """Converts the source files into the cache; on any error nothing is left behind."""
        images_path, factors_path, sidecar = cls.cache_paths(config)
        images_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_images = images_path.with_name(f".{images_path.name}.{os.getpid()}.part")
        tmp_factors = factors_path.with_name(f".{factors_path.name}.{os.getpid()}.part")
        holder: dict = {}

        def allocate(n: int) -> np.ndarray:
            holder["array"] = np.lib.format.open_memmap(
                tmp_images, mode="w+", dtype=np.uint8, shape=(n, *cls.expected_shape(config)))
            return holder["array"]

        print(f"vaelab: converting {cls.name} once into {images_path} ...", file=sys.stderr,
              flush=True)
        try:
            factors, extra = cls.convert(config, paths, allocate)
            array = holder.get("array")
            if array is None or len(array) != len(factors):
                raise DataError(f"{cls.name}: the conversion gave {len(factors)} factor rows for "
                                f"{0 if array is None else len(array)} images")
            factors = np.asarray(factors, dtype=np.int64)
            sizes = np.asarray(cls.factor_sizes)
            if factors.size and ((factors < 0).any() or (factors >= sizes).any()):
                raise DataError(f"{cls.name}: factor indices out of range of {cls.factor_sizes}")
            array.flush()
            del holder["array"], array
            with open(tmp_factors, "wb") as handle:
                np.save(handle, factors)
            # An old cache stays whole until the new one is complete; from here on it is
            # incomplete until the sidecar is written back.
            sidecar.unlink(missing_ok=True)
            _replace_atomically(tmp_images, images_path)
            _replace_atomically(tmp_factors, factors_path)
            record = dict(cls._meta(config), items=int(len(factors)),
                          bytes=images_path.stat().st_size, **extra)
            _write_json(sidecar, record)
        except BaseException:
            holder.clear()
            for path in (tmp_images, tmp_factors):
                path.unlink(missing_ok=True)
            raise
        print(f"vaelab: {cls.name} ready ({len(factors):,} images)", file=sys.stderr, flush=True)

    @classmethod
    def _missing(cls, config: DataConfig, failures: Sequence[str] = ()) -> DataError:
        text = missing_message(cls.name, cls.dataset_folder(config), cls.resources_for(config),
                               failures)
        if cls.homepage:
            text += f"\nAbout the data: {cls.homepage}"
        return DataError(text)

    @classmethod
    def _sources(cls, config: DataConfig, from_path: str | None = None) -> list[Path]:
        """Verified source files: imported from `from_path`, present, or downloaded."""
        folder = cls.dataset_folder(config)
        resources = cls.resources_for(config)
        if from_path is not None:
            return import_resources(resources, from_path, folder, dataset=cls.name)
        if is_offline() and not all((folder / r.filename).is_file() for r in resources):
            raise cls._missing(config, ["offline (VAELAB_OFFLINE=1): the network is not used"])
        return fetch_all(resources, folder, dataset=cls.name)

    @classmethod
    def _arrays(cls, config: DataConfig, from_path: str | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict]:
        cached = None if from_path is not None else cls._read_cache(config)
        if cached is None:
            cls._build_cache(config, cls._sources(config, from_path))
            cached = cls._read_cache(config)
            if cached is None:
                raise DataError(f"{cls.name}: the cache just written cannot be read back")
        return cached

    @classmethod
    def load(cls, config: DataConfig | None = None) -> GroundTruthDataset:
        """Loads the dataset, downloading (or failing with instructions) and converting it on
        first use.

        Raises:
            DataError: files missing, not fetchable, corrupt or of the wrong layout.
        """
        config = config or cls.config_class()
        cls.check_split(config)
        images, factors, info = cls._arrays(config)
        mapped = isinstance(images, np.memmap)
        if config.limit:
            images, factors = images[: config.limit], factors[: config.limit]
        return cls(torch.from_numpy(images), factors, info, mapped=mapped)

    @classmethod
    def check_split(cls, config: DataConfig) -> None:
        """Raises for a split the dataset does not have (default: only "train")."""
        if config.split != "train":
            raise DataError(
                f"dataset {cls.name!r} has a single split (every paper trains and evaluates on "
                f"all of it); use data.split=train, and train.valid_holdout for a held-out part")

    @classmethod
    def prepare(cls, config: DataConfig | None = None, from_path: str | None = None) -> dict:
        """Downloads (or imports `from_path`: a file or a folder holding the files), verifies
        the checksums and converts into the cache.

        Returns:
            {"path": images cache file, "items": number of images, "bytes": its size}.
        """
        config = config or cls.config_class()
        images, _, info = cls._arrays(config, from_path)
        path = cls.cache_paths(config)[0]
        return {"path": str(path), "items": int(len(images)), "bytes": int(info["bytes"])}

    def __init__(self, images: torch.Tensor, factors: np.ndarray, info: dict | None = None,
                 mapped: bool = False) -> None:
        values = None
        if info and "factor_values" in info:
            values = [np.asarray(v) for v in info["factor_values"]]
        super().__init__(images, factors, self.factor_names, self.factor_sizes,
                         factor_values=values, name=self.name)
        self.mapped = mapped  # images read through a memory map: they stay in host memory
        self._target: torch.device | None = None  # where batches go when the storage stays

    @property
    def device(self) -> torch.device:
        """Where batches (and labels, indices) live: the storage's device, or for a memory-mapped
        dataset moved with `to`, that device (the map itself stays on the host)."""
        return self._target if self._target is not None else self.data.device

    def to(self, device: torch.device | str) -> GroundTruthDataset:
        """Moves the images to `device`; a memory-mapped dataset keeps them mapped on the host
        (copying 12.7 GB of MPI3D to an accelerator would read the whole file and may not fit)
        and sends each gathered batch there instead."""
        device = torch.device(device)
        if not self.mapped:
            self._target = None
            return super().to(device)
        self._target = None if device.type == "cpu" else device
        return self

    def _gather(self, index) -> torch.Tensor:
        host = torch.as_tensor(index, dtype=torch.long).cpu()
        rows = self.data.index_select(0, host)  # (B, C, H, W) uint8: only these rows are read
        if self._target is None:
            return rows
        return rows.pin_memory().to(self._target, non_blocking=True) \
            if self._target.type == "cuda" else rows.to(self._target)

    def batch(self, index) -> torch.Tensor:
        """Float images in [0, 1], (B, C, H, W), on `device`."""
        if not self.mapped:
            return super().batch(index)
        return self._gather(index).float().div_(255.0)

    def uint8(self, index) -> torch.Tensor:
        """uint8 images (B, C, H, W) on `device`."""
        if not self.mapped:
            return super().uint8(index)
        return self._gather(index)
