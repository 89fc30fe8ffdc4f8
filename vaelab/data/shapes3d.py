"""Shapes3D (Burgess & Kim, 2018; "3dshapes"): 480,000 renders 64x64x3 of one object in a room.

Factors, in the file's order (the last varies fastest), as disentanglement_lib's
`data/ground_truth/shapes3d.py` and DeepMind's `3d-shapes` README give them:

===========  ===========  ===================================================
factor       cardinality  values in the file's `labels`
===========  ===========  ===================================================
floor_hue    10           hues in [0, 1)
wall_hue     10           hues in [0, 1)
object_hue   10           hues in [0, 1)
scale        8            0.75 .. 1.25
shape        4            0, 1, 2, 3 (cube, cylinder, sphere, capsule)
orientation  15           -30 .. 30 (degrees)
===========  ===========  ===================================================

The file is DeepMind's `3dshapes.h5` (HDF5: `images` uint8 (480000, 64, 64, 3), `labels` float64
(480000, 6)). The factor indices come from the reshape order, as in disentanglement_lib (which
read an older npz of the same array); vaelab also checks that each label column is one
increasing value per index, so a file in another order is refused instead of silently mislabelled,
and keeps those values as `factor_values`. Sources: DeepMind's bucket (storage.googleapis.com)
and its storage.cloud.google.com alias, the two URLs disent lists. Checksum: no SHA-256 is
published; the MD5 is disent's (`Shapes3dData`, "full" hash). Licence: Apache 2.0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vaelab.data.base import DataConfig, DataError
from vaelab.data.download import Resource
from vaelab.data.groundtruth import GroundTruthDataset, grid_factors
from vaelab.registry import DATASETS

__all__ = ["SHAPES3D_FILE", "Shapes3D"]

SHAPES3D_FILE = Resource(
    "3dshapes.h5",
    ("https://storage.googleapis.com/3d-shapes/3dshapes.h5",
     "https://storage.cloud.google.com/3d-shapes/3dshapes.h5"),
    sha256="",  # none published
    md5="099a2078d58cec4daad0702c55d06868",  # disent's Shapes3dData "full" hash
)
CHUNK = 8192  # images per read


@DATASETS.register("shapes3d")
class Shapes3D(GroundTruthDataset):
    """Shapes3D, colour 64x64, 6 factors on a full grid; see the module docstring."""

    name = "shapes3d"
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_sizes = (10, 10, 10, 8, 4, 15)
    channels = 3
    homepage = "https://github.com/deepmind/3d-shapes"
    licence = "Apache 2.0"

    @classmethod
    def resources_for(cls, config: DataConfig) -> tuple[Resource, ...]:
        return (SHAPES3D_FILE,)

    @classmethod
    def convert(cls, config: DataConfig, paths: list[Path],
                allocate: Callable[[int], np.ndarray]) -> tuple[np.ndarray, dict]:
        try:
            import h5py
        except ImportError:
            raise DataError("shapes3d reads HDF5: install h5py (pip install 'vaelab[datasets]' "
                            "or pip install h5py)") from None
        path = paths[0]
        n = int(np.prod(cls.factor_sizes))
        where = (f"expected DeepMind's 3dshapes.h5 with images uint8 ({n}, 64, 64, 3) and labels "
                 f"({n}, 6) at {path}")
        try:
            with h5py.File(path, "r") as handle:
                if "images" not in handle or "labels" not in handle:
                    raise DataError(f"{path} has datasets {sorted(handle)}; {where}")
                images, labels = handle["images"], handle["labels"]
                if images.shape != (n, 64, 64, 3) or images.dtype != np.uint8 \
                        or labels.shape != (n, 6):
                    raise DataError(f"{path} holds images {images.dtype} {images.shape} and "
                                    f"labels {labels.shape}; {where}")
                factors = grid_factors(cls.factor_sizes)
                values = _factor_values(np.asarray(labels[:], dtype=np.float64), factors, path)
                out = allocate(n)
                for start in range(0, n, CHUNK):
                    block = images[start:start + CHUNK]  # (B, 64, 64, 3)
                    out[start:start + len(block)] = block.transpose(0, 3, 1, 2)
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"cannot read {path} ({error}); {where}; delete it and run "
                            "`vaelab data shapes3d` again") from None
        return factors, {"factor_values": values}


def _factor_values(labels: np.ndarray, factors: np.ndarray, path: Path) -> list[list[float]]:
    """The value of each index of each factor; raises when a label column is not one increasing
    value per index (the file is not in the reshape order this loader assumes)."""
    result = []
    for k in range(factors.shape[1]):
        size = int(factors[:, k].max()) + 1
        first = np.zeros(size)
        first[factors[:, k]] = labels[:, k]  # the value of each index (any row)
        if not np.allclose(labels[:, k], first[factors[:, k]]) or (np.diff(first) <= 0).any():
            raise DataError(f"{path}: label column {k} does not follow the reshape order "
                            "(factor index -> one increasing value); not the official layout")
        result.append(first.tolist())
    return result
