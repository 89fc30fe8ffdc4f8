"""MPI3D (Gondal et al., 2019): 1,036,800 images 64x64x3 of a robot arm moving an object.

Three variants share one layout (`data.variant`): `toy` (simplistic renders), `realistic`
(realistic renders) and `real` (camera photographs). Factors, in the array's order (the last
varies fastest; rr-learning/disentanglement_dataset's README: `reshape([6, 6, 2, 3, 3, 40, 40,
64, 64, 3])`):

================  ===========
factor            cardinality
================  ===========
object_color      6
object_shape      6
object_size       2
camera_height     3
background_color  3
horizontal_axis   40
vertical_axis     40
================  ===========

The files are `mpi3d_<variant>.npz`, key `images` (1036800, 64, 64, 3) uint8; there are no
labels, the factors come from the reshape order. disentanglement_lib's `mpi3d.py` declares
object colour and shape with 4 values each (460,800 images: the early competition subset); the
released files have 6 and 6, which vaelab follows. The names of the last two factors are the
README's ("first/second degree of freedom" in dlib and disent).

Sources: the current bucket (`mpi3d_disentanglement_dataset/data/`, given by the authors in
rr-learning/disentanglement_dataset issue #4 after the original bucket's billing closed in 2023),
then the original `disentanglement_dataset/Final_Dataset/` location. Checksums: no SHA-256 is
published; the MD5s are disent's (`Mpi3dData`, "full" hashes). Licence: the dataset's README
states none (it asks users to cite Gondal et al., 2019); vaelab could not check one offline.

At 12.7 GB of pixels the converted array is read through a memory map (see `vaelab.data.
groundtruth`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.data.base import DataConfig, DataError
from vaelab.data.download import Resource
from vaelab.data.groundtruth import GroundTruthConfig, GroundTruthDataset, grid_factors
from vaelab.registry import DATASETS

__all__ = ["MPI3D", "MPI3D_FILES", "MPI3DConfig", "VARIANTS", "read_npz_images"]

VARIANTS = ("toy", "realistic", "real")
_MD5 = {  # disent's Mpi3dData "full" hashes
    "toy": "55889cb7c7dfc655d6e0277beee88868",
    "realistic": "59a6225b88b635365f70c91b3e52f70f",
    "real": "0f33f609918fb5c97996692f91129802",
}
MPI3D_FILES = {
    variant: Resource(
        f"mpi3d_{variant}.npz",
        (f"https://storage.googleapis.com/mpi3d_disentanglement_dataset/data/mpi3d_{variant}.npz",
         f"https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/"
         f"mpi3d_{variant}.npz"),
        sha256="",  # none published
        md5=_MD5[variant],
    )
    for variant in VARIANTS
}
CHUNK = 4096  # images per read (48 MiB)


@dataclass(frozen=True, kw_only=True)
class MPI3DConfig(GroundTruthConfig):
    """Options of `mpi3d`."""

    variant: str = "toy"  # "toy" | "realistic" | "real"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")


def read_npz_images(path: Path, key: str, shape: tuple[int, ...], out_of: Callable,
                    chunk: int = CHUNK) -> None:
    """Streams the uint8 array `key` of shape `shape` (N, H, W, C) from an npz (stored or
    deflated) into `out_of(n)` (N, C, H, W), chunk by chunk, never holding it whole.

    Raises:
        DataError: not an npz, no such key, another shape or dtype, or truncated.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                handle = archive.open(f"{key}.npy")
            except KeyError:
                raise DataError(f"{path} has no array {key!r} (it holds "
                                f"{', '.join(archive.namelist())})") from None
            with handle:
                version = np.lib.format.read_magic(handle)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                found, fortran, dtype = header(handle)
                if tuple(found) != tuple(shape) or dtype != np.uint8 or fortran:
                    raise DataError(f"{path}: {key} is {dtype} {tuple(found)}"
                                    f"{' (Fortran order)' if fortran else ''}, expected uint8 "
                                    f"{tuple(shape)}")
                n, per_item = shape[0], int(np.prod(shape[1:]))
                out = out_of(n)
                for start in range(0, n, chunk):
                    stop = min(start + chunk, n)
                    raw = handle.read((stop - start) * per_item)
                    if len(raw) != (stop - start) * per_item:
                        raise DataError(f"{path}: {key} is truncated after {start:,} items")
                    block = np.frombuffer(raw, dtype=np.uint8).reshape(stop - start, *shape[1:])
                    out[start:stop] = block.transpose(0, 3, 1, 2)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zipfile.LargeZipFile) as error:
        raise DataError(f"cannot read {path} as an npz ({error})") from None


@DATASETS.register("mpi3d")
class MPI3D(GroundTruthDataset):
    """MPI3D toy / realistic / real, colour 64x64, 7 factors on a full grid; see the module
    docstring."""

    config_class = MPI3DConfig
    name = "mpi3d"
    factor_names = ("object_color", "object_shape", "object_size", "camera_height",
                    "background_color", "horizontal_axis", "vertical_axis")
    factor_sizes = (6, 6, 2, 3, 3, 40, 40)
    channels = 3
    homepage = "https://github.com/rr-learning/disentanglement_dataset"
    licence = "none stated in the README (cite Gondal et al., 2019)"

    @classmethod
    def resources_for(cls, config: DataConfig) -> tuple[Resource, ...]:
        return (MPI3D_FILES[getattr(config, "variant", "toy")],)

    @classmethod
    def cache_stem(cls, config: DataConfig) -> str:
        return f"mpi3d_{getattr(config, 'variant', 'toy')}"

    @classmethod
    def convert(cls, config: DataConfig, paths: list[Path],
                allocate: Callable[[int], np.ndarray]) -> tuple[np.ndarray, dict]:
        n = int(np.prod(cls.factor_sizes))
        try:
            read_npz_images(paths[0], "images", (n, 64, 64, 3), allocate)
        except DataError as error:
            variant = getattr(config, "variant", "toy")
            raise DataError(f"{error}; expected the MPI3D file {paths[0].name} (key images, "
                            f"uint8 ({n}, 64, 64, 3)); delete it and run `vaelab data mpi3d "
                            f"--variant {variant}` again, or import a good copy with "
                            "--from PATH") from None
        return grid_factors(cls.factor_sizes), {}
