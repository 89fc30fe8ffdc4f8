"""Your own data: `image_folder` (a folder of image files) and `npz` (arrays in a `.npz` file).

* `image_folder`: every image under `data.path` (recursively; PNG, JPEG, ...), centre-cropped to a
  square and resized to `data.image_size` (or squashed, `data.squash=true`), grey or RGB
  (`data.channels`). Images in sub-folders get the sub-folder as their label (sorted order), for
  colouring projections. The decoded array is cached under `data_home()/image_folder/cache/`
  (never inside your folder), keyed by the file list and the options. A fixed
  `data.test_fraction` of the images (default 10%) is the "test" split.
* `npz`: `data.path` is a NumPy `.npz` file holding `images` (N, H, W), (N, H, W, C) or
  (N, C, H, W) with C = 1 or 3, as uint8 0..255, floats in [0, 1] or booleans; optionally
  `factors` (N, F) of ground-truth factor values (any numbers: each column's distinct values
  become indices 0..k-1 in sorted order) with `factor_names` (F strings), which makes it a factor
  dataset (metrics, mean activations, `train.metrics_every`), and `labels` (N,) integers. Other
  keys are ignored. A "test" split needs a `test_images` array (with `test_factors` /
  `test_labels` to match).

    vaelab train --set data.name=image_folder --set data.path=~/photos --set data.image_size=64
    vaelab train --set data.name=npz --set data.path=shapes.npz --set model.latent_dim=6
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.data.base import DataConfig, DataError, FactorDataset, ImageDataset, data_home
from vaelab.data.images import (
    FolderConfig,
    FolderDataset,
    ImageSpec,
    cached_images,
    labels_by_folder,
    list_images,
    split_indices,
)
from vaelab.registry import DATASETS

__all__ = ["ImageFolder", "ImageFolderConfig", "NpzConfig", "NpzImages", "images_from_array"]


def _require_path(name: str, path: str) -> Path:
    if not path:
        raise DataError(f"{name} needs data.path: set --set data.path=PATH (your "
                        f"{'folder of images' if name == 'image_folder' else '.npz file'})")
    return Path(path).expanduser()


@dataclass(frozen=True, kw_only=True)
class ImageFolderConfig(FolderConfig):
    """Options of `image_folder`."""

    path: str = ""  # the folder of images (searched recursively)
    channels: int = 3  # 1: grey, 3: RGB

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")


@DATASETS.register("image_folder")
class ImageFolder(FolderDataset):
    """Every image under a folder of yours; see the module docstring."""

    config_class = ImageFolderConfig
    name = "image_folder"

    @classmethod
    def images_root(cls, config: ImageFolderConfig) -> Path:
        return _require_path(cls.name, config.path)

    @classmethod
    def expected_shape(cls, config: ImageFolderConfig) -> tuple[int, int, int]:
        return (config.channels, config.image_size, config.image_size)

    @classmethod
    def load(cls, config: ImageFolderConfig | None = None) -> ImageFolder:
        config = config or cls.config_class()
        root = cls.images_root(config)
        if not root.is_dir():
            raise DataError(f"image_folder: {root} is not a folder (data.path must name the "
                            "folder that holds your images)")
        files = list_images(root)
        if not files:
            raise DataError(f"image_folder: no image files (.png, .jpg, ...) under {root}")
        labels = labels_by_folder(files, root)
        index = split_indices(len(files), config.split, config.test_fraction)
        files, labels = [files[i] for i in index], labels[index]
        if config.limit:
            files, labels = files[: config.limit], labels[: config.limit]
        spec = ImageSpec(config.image_size, config.channels, config.squash, config.crop)
        cache = data_home(config.root or None) / cls.name / "cache"
        array = cached_images(files, root, spec, cache, config.workers)
        has_labels = len(np.unique(labels)) > 1
        return cls(torch.from_numpy(array), labels=labels if has_labels else None, name=cls.name)

    @classmethod
    def prepare(cls, config=None, from_path=None) -> dict:
        raise DataError("image_folder reads your folder where it is: nothing to prepare; train "
                        "with --set data.name=image_folder --set data.path=FOLDER")


def images_from_array(images: np.ndarray, what: str = "images") -> np.ndarray:
    """uint8 (N, C, H, W) from (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}: uint8,
    floats in [0, 1] (rounded to 0..255) or booleans.

    Raises:
        DataError: another shape or type, or floats outside [0, 1].
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[1] not in (1, 3) and images.shape[3] in (1, 3):
        images = images.transpose(0, 3, 1, 2)  # channels last -> first
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise DataError(f"{what} must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3 "
                        f"and N >= 1, got shape {images.shape}")
    if images.dtype == np.bool_:
        return images.astype(np.uint8) * 255
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if np.issubdtype(images.dtype, np.floating):
        lo, hi = float(np.min(images)), float(np.max(images))
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise DataError(f"{what}: float pixels must lie in [0, 1], got [{lo:g}, {hi:g}]; "
                            "scale them, or store uint8 0..255")
        return np.clip(images * 255.0 + 0.5, 0, 255).astype(np.uint8)
    raise DataError(f"{what} must be uint8, float in [0, 1] or bool, got {images.dtype}")


@dataclass(frozen=True, kw_only=True)
class NpzConfig(DataConfig):
    """Options of `npz`."""

    path: str = ""  # the .npz file


@DATASETS.register("npz")
class NpzImages(ImageDataset):
    """Images (and optionally factors and labels) from a `.npz` file; see the module docstring."""

    config_class = NpzConfig
    may_have_factors = True  # a file with a `factors` array loads as a FactorDataset

    @classmethod
    def _arrays(cls, config: NpzConfig) -> dict[str, np.ndarray]:
        path = _require_path("npz", config.path)
        if not path.is_file():
            raise DataError(f"npz: no file at {path} (data.path must name a .npz file)")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError) as error:
            raise DataError(f"npz: cannot read {path} as a NumPy .npz file: {error}") from None

    @classmethod
    def prepare(cls, config=None, from_path=None) -> dict:
        raise DataError("npz reads your file where it is: nothing to prepare; train with "
                        "--set data.name=npz --set data.path=FILE.npz")

    @classmethod
    def expected_shape(cls, config: NpzConfig) -> tuple[int, int, int]:
        arrays = cls._arrays(config)
        return tuple(images_from_array(arrays["images"][:1]).shape[1:])  # type: ignore[return-value]

    @classmethod
    def load(cls, config: NpzConfig | None = None) -> ImageDataset:
        config = config or cls.config_class()
        arrays = cls._arrays(config)
        prefix = {"train": "", "test": "test_", "valid": "valid_"}[config.split]
        if prefix + "images" not in arrays:
            where = ("`images` array" if not prefix else
                     f"`{prefix}images` array for data.split={config.split}")
            raise DataError(f"npz: {config.path} has no {where} (it holds: "
                            f"{', '.join(sorted(arrays)) or 'nothing'})")
        images = images_from_array(arrays[prefix + "images"], f"{prefix}images")
        n = len(images)
        labels = arrays.get(prefix + "labels")
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"npz: {prefix}labels must be {n} integers, got "
                                f"{labels.dtype} of length {len(labels)}")
        factors = arrays.get(prefix + "factors")
        if config.limit:
            images = images[: config.limit]
            labels = None if labels is None else labels[: config.limit]
            factors = None if factors is None else factors[: config.limit]
        if factors is None:
            return ImageDataset(torch.from_numpy(images), labels=labels, name="npz")
        factors = np.asarray(factors)
        if factors.ndim == 1:
            factors = factors[:, None]
        if factors.ndim != 2 or len(factors) != len(images):
            raise DataError(f"npz: {prefix}factors must be (N, F) with N = {len(images)}, got "
                            f"shape {factors.shape}")
        names = [str(name) for name in arrays.get("factor_names", [])]
        if names and len(names) != factors.shape[1]:
            raise DataError(f"npz: {len(names)} factor_names for {factors.shape[1]} factor "
                            "columns")
        names = names or [f"factor_{k}" for k in range(factors.shape[1])]
        columns, values = [], []
        for k in range(factors.shape[1]):
            distinct, codes = np.unique(factors[:, k], return_inverse=True)
            columns.append(codes.reshape(-1))
            values.append(distinct)
        codes = np.stack(columns, axis=1)
        return FactorDataset(torch.from_numpy(images), codes, names, [len(v) for v in values],
                             factor_values=values, labels=labels, name="npz")
