"""SmallNORB (LeCun, Huang & Bottou, 2004) in disentanglement_lib's layout: 96x96 grey stereo
photographs of 50 toys, the left camera's image resized to 64x64.

Factors (dlib's `data/ground_truth/norb.py`): category 5 (animal, human, airplane, truck, car),
elevation 9 (30 to 70 degrees in steps of 5), azimuth 18 (0 to 340 degrees in steps of 20; the
file stores 0, 2, ..., 34, halved here as in dlib), lighting 6. The toy instance (10 per category,
5 in each split) is a nuisance, not a factor, as in dlib: `sample_observations_from_factors`
draws one of the matching instances at random (FactorDataset's non-grid path), and the
instances are kept as `instances`. Items keep the file's order; the grid is not full (each
factor row has 5 instances per split), so `is_grid` is False.

Splits: the official ones, `train` (instances 4, 6, 7, 8, 9) and `test` (0, 1, 2, 3, 5), 24,300
images each. dlib trains and evaluates on both together (48,600 images): `combine_splits=True`
gives that set for `split="train"`.

Resize: Pillow's Lanczos filter (`Image.ANTIALIAS` in the Pillow dlib used is the same filter),
96x96 -> 64x64, on the uint8 image; the result is stored as uint8 (dlib divides it by 255).

The files are NYU's `smallnorb-5x<instances>x9x18x6x2x96x96-<training|testing>-<dat|cat|info>
.mat[.gz]` in the NORB binary matrix format, read by `read_norb_matrix`: a little-endian int32
magic number giving the element type (0x1E3D4C55 unsigned byte, 0x1E3D4C54 int32, 0x1E3D4C56
int16, 0x1E3D4C51 float32, 0x1E3D4C53 float64), an int32 number of dimensions, max(3, ndim)
int32 sizes (unused ones 1), then the data in C order. `dat` is (N, 2, 96, 96) uint8, `cat` (N,)
int32, `info` (N, 4) int32 (instance, elevation, azimuth, lighting). dlib maps the byte type to
int8; the format's byte matrix is unsigned, which vaelab uses (pixel values 128..255 would
otherwise turn negative).

Sources: cs.nyu.edu and its www.cs.nyu.edu alias (the same server; no independent mirror is
known). Checksums: no SHA-256 is published; the MD5s of the .gz files are disent's
(`SmallNorbData`, "full" hashes). Licence: none stated by NYU (free for research).
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab.data.base import DataConfig, DataError, no_valid_split
from vaelab.data.download import Resource
from vaelab.data.groundtruth import GroundTruthConfig, GroundTruthDataset
from vaelab.registry import DATASETS

__all__ = ["NORB_TYPES", "SMALLNORB_FILES", "SmallNORB", "SmallNORBConfig", "norb_bytes",
           "read_norb_matrix"]

NORB_TYPES = {
    0x1E3D4C55: np.dtype("u1"),
    0x1E3D4C54: np.dtype("<i4"),
    0x1E3D4C56: np.dtype("<i2"),
    0x1E3D4C51: np.dtype("<f4"),
    0x1E3D4C53: np.dtype("<f8"),
}
_BASE = ("https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/",
         "https://www.cs.nyu.edu/~ylclab/data/norb-v1.0-small/")
_CHUNKS = {"train": "5x46789x9x18x6x2x96x96-training", "test": "5x01235x9x18x6x2x96x96-testing"}
_MD5 = {  # disent's SmallNorbData "full" hashes of the .mat.gz files
    ("train", "dat"): "66054832f9accfe74a0f4c36a75bc0a2",
    ("train", "cat"): "23c8b86101fbf0904a000b43d3ed2fd9",
    ("train", "info"): "51dee1210a742582ff607dfd94e332e3",
    ("test", "dat"): "e4ad715691ed5a3a5f138751a4ceb071",
    ("test", "cat"): "5aa791cd7e6016cf957ce9bdb93b8603",
    ("test", "info"): "a9454f3864d7fd4bb3ea7fc3eb84924e",
}
SMALLNORB_FILES = {
    key: Resource(f"smallnorb-{_CHUNKS[key[0]]}-{key[1]}.mat.gz",
                  tuple(f"{base}smallnorb-{_CHUNKS[key[0]]}-{key[1]}.mat.gz" for base in _BASE),
                  sha256="", md5=md5)
    for key, md5 in _MD5.items()
}


def norb_bytes(array: np.ndarray) -> bytes:
    """The NORB binary matrix encoding of `array` (the writer, for stand-in files and tests)."""
    codes = {dtype: code for code, dtype in NORB_TYPES.items()}
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    code = codes[array.dtype]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    return (np.asarray([code, array.ndim, *dims], dtype="<i4").tobytes() + array.tobytes())


def read_norb_matrix(path: Path) -> np.ndarray:
    """Reads a NORB binary matrix file (gzipped or not); see the module docstring.

    Raises:
        DataError: unknown magic number, bad header, or a data size that does not match.
    """
    try:
        with open(path, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        with (gzip.open if gzipped else open)(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path} ({error}): truncated or not a NORB file") from None
    if len(raw) < 20:
        raise DataError(f"{path}: {len(raw)} bytes, too short for a NORB matrix header")
    magic, ndim = (int(v) for v in np.frombuffer(raw, "<i4", 2))
    if magic not in NORB_TYPES:
        raise DataError(f"{path}: magic number {magic:#x} is not a NORB matrix type "
                        f"({', '.join(f'{m:#x}' for m in NORB_TYPES)})")
    if not 1 <= ndim <= 16:
        raise DataError(f"{path}: {ndim} dimensions in the header")
    stored = max(3, ndim)
    offset = 8 + 4 * stored
    if len(raw) < offset:
        raise DataError(f"{path}: header truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, "<i4", stored, 8)[:ndim])
    dtype = NORB_TYPES[magic]
    expected = int(np.prod(dims)) * dtype.itemsize
    if any(d < 0 for d in dims) or len(raw) - offset != expected:
        raise DataError(f"{path}: the header says {dtype} {dims} ({expected:,} bytes) but "
                        f"{len(raw) - offset:,} bytes follow (truncated or corrupt)")
    return np.frombuffer(raw, dtype, offset=offset).reshape(dims)


@dataclass(frozen=True, kw_only=True)
class SmallNORBConfig(GroundTruthConfig):
    """Options of `smallnorb`."""

    combine_splits: bool = False  # split="train" gives both official splits (dlib's 48,600)


def resize_lanczos(images: np.ndarray, size: int = 64) -> np.ndarray:
    """uint8 images (N, H, W) -> (N, size, size) with Pillow's Lanczos filter."""
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
    return out


@DATASETS.register("smallnorb")
class SmallNORB(GroundTruthDataset):
    """SmallNORB, grey 64x64, dlib's 4 factors (instance a nuisance); see the module docstring."""

    config_class = SmallNORBConfig
    name = "smallnorb"
    factor_names = ("category", "elevation", "azimuth", "lighting")
    factor_sizes = (5, 9, 18, 6)
    channels = 1
    homepage = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
    licence = "none stated (free for research)"

    @classmethod
    def _splits(cls, config: DataConfig) -> tuple[str, ...]:
        if config.split == "train" and getattr(config, "combine_splits", False):
            return ("train", "test")
        return (config.split,)

    @classmethod
    def prepare(cls, config: DataConfig | None = None, from_path: str | None = None,
                split: str | None = None) -> dict:
        """`GroundTruthDataset.prepare` for one official split (`split`, default the config's:
        "train"); `vaelab data smallnorb --split test` fetches and converts the test files."""
        config = config or cls.config_class()
        if split is not None:
            config = dataclasses.replace(config, split=split)
        cls.check_split(config)
        return super().prepare(config, from_path)

    @classmethod
    def check_split(cls, config: DataConfig) -> None:
        if config.split == "valid":
            raise no_valid_split(cls.name)

    @classmethod
    def resources_for(cls, config: DataConfig) -> tuple[Resource, ...]:
        return tuple(SMALLNORB_FILES[(split, part)] for split in cls._splits(config)
                     for part in ("dat", "cat", "info"))

    @classmethod
    def cache_stem(cls, config: DataConfig) -> str:
        return "smallnorb_" + "_".join(cls._splits(config))

    @classmethod
    def convert(cls, config: DataConfig, paths: list[Path],
                allocate: Callable[[int], np.ndarray]) -> tuple[np.ndarray, dict]:
        parts = []
        for i in range(0, len(paths), 3):
            dat, cat, info = (read_norb_matrix(p) for p in paths[i:i + 3])
            n = len(cat)
            if dat.dtype != np.uint8 or dat.shape != (n, 2, 96, 96) or cat.shape != (n,) \
                    or info.shape != (n, 4):
                raise DataError(f"{paths[i].parent}: SmallNORB matrices of shapes {dat.shape}, "
                                f"{cat.shape}, {info.shape}; expected (N, 2, 96, 96) uint8, "
                                "(N,) and (N, 4) (dat, cat, info)")
            parts.append((dat, cat, info))
        n = sum(len(cat) for _, cat, _ in parts)
        out = allocate(n)
        rows, instances, start = [], [], 0
        for dat, cat, info in parts:
            for s in range(0, len(cat), 2048):
                block = dat[s:s + 2048, 0]  # the left camera, (B, 96, 96)
                out[start + s:start + s + len(block), 0] = resize_lanczos(block, cls.image_size)
            start += len(cat)
            azimuth = info[:, 2]
            if (azimuth % 2).any():
                raise DataError("SmallNORB info: odd azimuth values (expected 0, 2, ..., 34)")
            rows.append(np.stack([cat, info[:, 1], azimuth // 2, info[:, 3]], axis=1))
            instances.append(info[:, 0])
        factors = np.concatenate(rows).astype(np.int64)
        return factors, {"instances": np.concatenate(instances).astype(int).tolist()}

    def __init__(self, images: torch.Tensor, factors: np.ndarray, info: dict | None = None,
                 mapped: bool = False) -> None:
        super().__init__(images, factors, info, mapped)
        instances = (info or {}).get("instances")
        self.instances = None if instances is None else np.asarray(instances)[: len(factors)]
        self.labels = self.factors[:, 0]  # category, for colouring plots
