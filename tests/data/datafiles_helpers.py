"""Writers of tiny data files in the real formats, shared by the data tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from vaelab.data.download import Resource

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resource_for(path: Path, urls: tuple[str, ...] = ()) -> Resource:
    """A Resource whose checksum and size match the file at `path`."""
    return Resource(path.name, urls, sha256(path), path.stat().st_size)


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x00 0x00 0x08 ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(array)))
    return path


def write_cifar_tarball(path: Path, n_per_batch: int = 3, seed: int = 0) -> dict:
    """A cifar-10-python.tar.gz with 5 train batches and a test batch of n images each."""
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as archive:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, n_per_batch).tolist()
            batches[name] = (data, labels)
            blob = pickle.dumps({b"batch_label": b"x", b"data": data, b"labels": labels}, protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return batches


def write_image(path: Path, array: np.ndarray) -> Path:
    """Saves an (H, W) or (H, W, 3) uint8 array; format from the suffix (JPEG at quality 95)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=95)
    else:
        image.save(path)
    return path


def banded_face(height: int = 218, width: int = 178, colour=(200, 40, 40)) -> np.ndarray:
    """A portrait image: a uniform centre square in `colour`, green bands above and below it."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = (0, 255, 0)
    top = (height - width) // 2
    image[top : top + width] = colour
    return image
