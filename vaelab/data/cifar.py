"""CIFAR-10 (Krizhevsky, 2009): 50,000 train / 10,000 test colour 32x32 images in 10 classes.

Read straight from the official `cifar-10-python.tar.gz` (no extraction): the pickled batches
`data_batch_1..5` (train) and `test_batch` (test), each a dict with `data` (10000, 3072) uint8
laid out as 1024 red, 1024 green, 1024 blue values in row-major order, and `labels`. Images are
uint8 (N, 3, 32, 32). The batches are unpickled with a restricted unpickler that accepts only
the NumPy array constructors they need, so a tampered archive cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.base import DataConfig, DataError, ImageDataset, data_home, no_valid_split
from vaelab.data.download import Resource, fetch_all, import_resources
from vaelab.registry import DATASETS

__all__ = ["CIFAR10", "CIFAR10Config", "read_cifar_archive"]

CIFAR10_ARCHIVE = Resource(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    170_498_071,
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The only globals a CIFAR batch pickle may reference (NumPy array reconstruction).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # byte strings pickled by Python 3 at protocol 2
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name} in a CIFAR batch")


def _read_batch(blob: bytes, member: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as error:
        raise DataError(f"CIFAR batch {member} is corrupt: {error}") from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"CIFAR batch {member}: data {data.shape}, {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels  # channel-major rows -> (n, C, H, W)


def read_cifar_archive(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one split of a CIFAR-10 python tarball.

    Raises:
        DataError: the archive cannot be read or a batch is missing or corrupt.
    """
    names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    images, labels = [], []
    try:
        with tarfile.open(path) as archive:
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            for name in names:
                if name not in members:
                    raise DataError(f"{path}: batch {name} missing from the archive")
                handle = archive.extractfile(members[name])
                batch_images, batch_labels = _read_batch(handle.read(), name)
                images.append(batch_images)
                labels.append(batch_labels)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{path}: not a readable tar.gz archive ({error})") from error
    return np.concatenate(images), np.concatenate(labels)


@dataclass(frozen=True, kw_only=True)
class CIFAR10Config(DataConfig):
    """Options of `cifar10` (root, split, limit)."""


@DATASETS.register("cifar10")
class CIFAR10(ImageDataset):
    """CIFAR-10: colour 32x32 images, labels 0..9 in the order of `CLASSES`."""

    config_class = CIFAR10Config
    name = "cifar10"
    archive = CIFAR10_ARCHIVE

    @classmethod
    def expected_shape(cls, config: CIFAR10Config) -> tuple[int, int, int]:
        return (3, 32, 32)

    @classmethod
    def load(cls, config: CIFAR10Config | None = None) -> CIFAR10:
        config = config or CIFAR10Config()
        if config.split == "valid":
            raise no_valid_split(cls.name)
        folder = data_home(config.root or None) / cls.name
        (path,) = fetch_all([cls.archive], folder, dataset=cls.name)
        images, labels = read_cifar_archive(path, config.split)
        if config.limit:
            images, labels = images[: config.limit], labels[: config.limit]
        return cls(torch.from_numpy(np.ascontiguousarray(images)), labels=labels, name=cls.name)

    @classmethod
    def prepare(cls, config: CIFAR10Config | None = None, from_path: str | None = None) -> dict:
        """Downloads (or imports from `from_path`) and verifies the archive."""
        config = config or CIFAR10Config()
        folder = data_home(config.root or None) / cls.name
        if from_path is not None:
            (path,) = import_resources([cls.archive], from_path, folder, dataset=cls.name)
        else:
            (path,) = fetch_all([cls.archive], folder, dataset=cls.name)
        items = sum(len(read_cifar_archive(path, split)[1]) for split in ("train", "test"))
        return {"path": str(folder), "items": items, "bytes": path.stat().st_size}
