"""Cars3D with its factor labels (Reed, Zhang, Zhang & Lee, 2015, "Deep Visual Analogy-Making"):
17,568 renders of 183 car CAD models, 128x128x3 resized to 64x64.

Registered as `cars3d_labelled`: the name `cars3d` stays what it was, UG-VAE's unlabelled folder
of car renders (`vaelab.data.cars.Cars3D`), so no existing config changes meaning.

Factors, in disentanglement_lib's order (`data/ground_truth/cars3d.py`; the last varies fastest):
elevation 4, azimuth 24, object 183. Item i has elevation i // (24 * 183), azimuth
(i // 183) % 24 and object i % 183, the order of dlib's `cartesian` index and of disent's
transpose.

The archive is `nips2015-analogy-data.tar.gz`; its `data/cars/car_<id>_mesh.mat` files (MATLAB
v5) each hold `im`, uint8 (128, 128, 3, 24, 4): height, width, colour, azimuth, elevation. The
object index is the rank of the file name in sorted order: dlib numbers the files in directory
listing order, which the file system decides (not reproducible), disent in the order of
`cars/list.txt`. Resize: Pillow's Lanczos filter to 64x64 (dlib's `thumbnail` with
`ANTIALIAS`, the same filter, on these square images).

Sources: scottreed.info over http and https (the same server; no independent mirror is known).
Checksum: no SHA-256 is published; the MD5 is disent's (`Cars3dData`, "full" hash). Licence: none
stated (research use).
"""

from __future__ import annotations

import io
import re
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from vaelab.data.base import DataConfig, DataError
from vaelab.data.download import Resource
from vaelab.data.groundtruth import GroundTruthDataset, grid_factors
from vaelab.registry import DATASETS

__all__ = ["CARS3D_ARCHIVE", "Cars3DLabelled", "read_car_mesh"]

CARS3D_ARCHIVE = Resource(
    "nips2015-analogy-data.tar.gz",
    ("http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
     "https://www.scottreed.info/files/nips2015-analogy-data.tar.gz"),
    sha256="",  # none published
    md5="4e866a7919c1beedf53964e6f7a23686",  # disent's Cars3dData "full" hash
)
_MESH = re.compile(r"(^|/)cars/[^/]+\.mat$")


def read_car_mesh(handle, name: str) -> np.ndarray:
    """The `im` array (128, 128, 3, 24, 4) uint8 of one car's .mat file (a binary file object).

    Raises:
        DataError: not a MATLAB file, or `im` missing or of another shape.
    """
    import scipy.io  # deferred: keeps `import vaelab` light

    try:
        im = scipy.io.loadmat(handle)["im"]
    except (KeyError, ValueError, OSError, TypeError) as error:
        raise DataError(f"{name}: not a Cars3D mesh file with an `im` array ({error})") from None
    if im.dtype != np.uint8 or im.shape != (128, 128, 3, 24, 4):
        raise DataError(f"{name}: im is {im.dtype} {im.shape}, expected uint8 "
                        "(128, 128, 3, 24, 4) (height, width, colour, azimuth, elevation)")
    return im


@DATASETS.register("cars3d_labelled")
class Cars3DLabelled(GroundTruthDataset):
    """Cars3D (Reed et al., 2015), colour 64x64, elevation x azimuth x object on a full grid;
    see the module docstring."""

    name = "cars3d_labelled"
    factor_names = ("elevation", "azimuth", "object")
    factor_sizes = (4, 24, 183)
    channels = 3
    homepage = "http://www.scottreed.info (Deep Visual Analogy-Making data)"
    licence = "none stated (research use)"

    @classmethod
    def resources_for(cls, config: DataConfig) -> tuple[Resource, ...]:
        return (CARS3D_ARCHIVE,)

    @classmethod
    def convert(cls, config: DataConfig, paths: list[Path],
                allocate: Callable[[int], np.ndarray]) -> tuple[np.ndarray, dict]:
        elevations, azimuths, objects = cls.factor_sizes
        size = cls.image_size
        try:
            with tarfile.open(paths[0]) as archive:
                members = sorted((m for m in archive.getmembers()
                                  if m.isfile() and _MESH.search(m.name)), key=lambda m: m.name)
                if len(members) != objects:
                    raise DataError(f"{paths[0]} holds {len(members)} cars/*.mat files, expected "
                                    f"{objects}")
                out = allocate(elevations * azimuths * objects)
                for o, member in enumerate(members):
                    im = read_car_mesh(io.BytesIO(archive.extractfile(member).read()),
                                       member.name)
                    for e in range(elevations):
                        for a in range(azimuths):
                            picture = Image.fromarray(np.ascontiguousarray(im[:, :, :, a, e]))
                            small = picture.resize((size, size), Image.Resampling.LANCZOS)
                            out[(e * azimuths + a) * objects + o] = \
                                np.asarray(small).transpose(2, 0, 1)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            raise DataError(f"cannot read {paths[0]} ({error}): truncated or not the Cars3D "
                            "archive; delete it and run `vaelab data cars3d_labelled` again")
        return grid_factors(cls.factor_sizes), {"objects": [m.name.rsplit("/", 1)[-1] for m in members]}

