"""Frey faces (B. Frey): 1,965 grey 28x20 video frames of one face, from `frey_rawface.mat`.

The MATLAB v5 file holds one variable `ff`, uint8 (560, 1965): one frame per column, 28 rows x 20
columns in row-major order. Images are uint8 (N, 1, 28, 20). Splits follow the GMVAE seed's
sequential 80/10/10 cut: "train" is frames [0, 1572), "test" is frames [1768, 1965); the 196
validation frames in between belong to neither. `stretch=True` applies the seed's per-image
min-max normalisation (to 0..255 here, since images are stored as uint8). Labels are all 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.data.base import DataConfig, DataError, ImageDataset, data_home
from vaelab.data.download import Resource, fetch_all, import_resources
from vaelab.registry import DATASETS

__all__ = ["Frey", "FreyConfig", "read_frey"]

FREY_FILE = Resource(
    "frey_rawface.mat",
    (
        "https://cs.nyu.edu/~roweis/data/frey_rawface.mat",  # Sam Roweis' data page (the source)
        "http://www.cs.nyu.edu/~roweis/data/frey_rawface.mat",
    ),
    "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64",
    1_100_584,
)
ROWS, COLUMNS, FRAMES = 28, 20, 1965
TRAIN_END, TEST_START = 1572, 1768  # the seed's 80/10/10 sequential split


def read_frey(path: str | Path) -> np.ndarray:
    """All frames as uint8 (1965, 28, 20).

    Raises:
        DataError: not a MAT file, no variable `ff`, or `ff` is not (560, N) uint8-valued.
    """
    import scipy.io  # deferred: keeps `import vaelab` (and every CLI start) light

    try:
        ff = scipy.io.loadmat(str(path))["ff"]
    except KeyError:
        raise DataError(f"{path}: no variable 'ff' (is this frey_rawface.mat?)") from None
    except (scipy.io.matlab.MatReadError, ValueError, OSError, TypeError, NotImplementedError) as error:
        raise DataError(f"{path}: not a readable MATLAB file ({error})") from error
    if ff.ndim != 2 or ff.shape[0] != ROWS * COLUMNS:
        raise DataError(f"{path}: 'ff' has shape {ff.shape}, expected ({ROWS * COLUMNS}, frames)")
    return np.ascontiguousarray(ff.T.reshape(-1, ROWS, COLUMNS).astype(np.uint8))


def stretch_contrast(images: np.ndarray) -> np.ndarray:
    """Per-image min-max stretch of uint8 images (N, ...) to the full 0..255 range."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    scaled = (flat - low) / np.maximum(high - low, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8).reshape(images.shape)


@dataclass(frozen=True, kw_only=True)
class FreyConfig(DataConfig):
    """Options of `frey`."""

    stretch: bool = False  # per-image min-max contrast stretch (the GMVAE seed's normalisation)


@DATASETS.register("frey")
class Frey(ImageDataset):
    """Frey faces, 1,572 train / 197 test grey 28x20 frames; see the module docstring."""

    config_class = FreyConfig
    name = "frey"
    file = FREY_FILE

    @classmethod
    def expected_shape(cls, config: FreyConfig) -> tuple[int, int, int]:
        return (1, 28, 20)

    @classmethod
    def load(cls, config: FreyConfig | None = None) -> Frey:
        config = config or FreyConfig()
        folder = data_home(config.root or None) / cls.name
        (path,) = fetch_all([cls.file], folder, dataset=cls.name)
        frames = read_frey(path)
        frames = {"train": frames[:TRAIN_END], "valid": frames[TRAIN_END:TEST_START],
                  "test": frames[TEST_START:]}[config.split]
        if config.limit:
            frames = frames[: config.limit]
        if config.stretch:
            frames = stretch_contrast(frames)
        images = torch.from_numpy(np.ascontiguousarray(frames)[:, None])  # (N, 1, 28, 20)
        return cls(images, labels=np.zeros(len(frames), dtype=np.int64), name=cls.name)

    @classmethod
    def prepare(cls, config: FreyConfig | None = None, from_path: str | None = None) -> dict:
        """Downloads (or imports from `from_path`) and verifies `frey_rawface.mat`."""
        config = config or FreyConfig()
        folder = data_home(config.root or None) / cls.name
        if from_path is not None:
            (path,) = import_resources([cls.file], from_path, folder, dataset=cls.name)
        else:
            (path,) = fetch_all([cls.file], folder, dataset=cls.name)
        return {"path": str(folder), "items": len(read_frey(path)), "bytes": path.stat().st_size}
