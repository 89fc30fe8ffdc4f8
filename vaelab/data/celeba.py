"""Face image folders: CelebA (Liu et al., 2015) and the 3D FACES renders used by UG-VAE.

`celeba`: the 202,599 aligned 178x218 JPEGs of `img_align_celeba/`, as colour 64x64 images with
an aspect-preserving centre crop (the seeds squash the faces instead: `squash=True` for parity).
With `list_eval_partition.txt` beside the images, "train" is partition 0 and "test" partition 2
(the UG-VAE seed's use); without it, `test_fraction` holds out a fixed random share. With
`attribute` set (e.g. "Male") and `list_attr_celeba.txt` present, labels are 1 where the attribute
is +1 and 0 where it is -1; otherwise there are no labels.

`faces`: a folder of face renders (UG-VAE's second face domain, rendered from the Basel Face
Model; not publicly downloadable), colour 64x64, no labels.

Decoding and caching are shared with every image-folder dataset (`vaelab.data.images`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.data.base import DataError
from vaelab.data.download import Resource
from vaelab.data.images import FolderConfig, FolderDataset, split_indices
from vaelab.registry import DATASETS

__all__ = ["CelebA", "CelebAConfig", "Faces", "read_attributes", "read_partition"]

CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
# The official files sit on Google Drive and Baidu, which scripts cannot fetch. The disvae seed
# downloads this Udacity copy; its MD5 equals that of the official img_align_celeba.zip.
CELEBA_ZIP = Resource(
    "celeba.zip",
    ("https://s3-us-west-1.amazonaws.com/udacity-dlnfd/datasets/celeba.zip",),
    sha256="",
    size=1_443_490_838,
    md5="00d2c5bc6d35e252742224ab0c1e8fcb",
)
CELEBA_OFFICIAL_ZIP = Resource(
    "img_align_celeba.zip", (), sha256="", size=1_443_490_838,
    md5="00d2c5bc6d35e252742224ab0c1e8fcb",
)
PARTITION_FILE = "list_eval_partition.txt"
ATTRIBUTE_FILE = "list_attr_celeba.txt"


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / "Eval" / name, folder / "Anno" / name):
        if candidate.is_file():
            return candidate
    return None


def read_partition(path: Path) -> dict[str, int]:
    """{image file name: 0 train | 1 val | 2 test} from `list_eval_partition.txt`."""
    partition = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}:{number}: expected '<file> <0|1|2>', got {line!r}")
        partition[parts[0]] = int(parts[1])
    return partition


def read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(attribute names, {file name: (40,) array of +1/-1}) from `list_attr_celeba.txt`.

    The file starts with the image count, then a line of attribute names, then one line per image.
    """
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and an attribute-name line")
    names = lines[1].split()
    table = {}
    for number, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(f"{path}:{number}: expected {len(names) + 1} fields, got {len(parts)}")
        table[parts[0]] = np.asarray(parts[1:], dtype=np.int64)
    return names, table


@dataclass(frozen=True, kw_only=True)
class CelebAConfig(FolderConfig):
    """Options of `celeba`."""

    attribute: str = ""  # CelebA attribute used as the 0/1 label (e.g. "Male"); "": no labels


@DATASETS.register("celeba")
class CelebA(FolderDataset):
    """CelebA aligned faces, colour 64x64 centre crops; see the module docstring."""

    config_class = CelebAConfig
    name = "celeba"
    subfolder = "img_align_celeba"
    channels = 3
    resources = (CELEBA_ZIP,)
    known_archives = (CELEBA_OFFICIAL_ZIP,)
    homepage = f"{CELEBA_PAGE} (Google Drive: img_align_celeba.zip)"

    @classmethod
    def select(
        cls, config: CelebAConfig, root: Path, files: list[Path]
    ) -> tuple[list[Path], np.ndarray | None]:
        folder = cls.dataset_folder(config)
        partition_path = _find(folder, PARTITION_FILE)
        if partition_path is not None:
            partition = read_partition(partition_path)
            wanted = {"train": 0, "valid": 1, "test": 2}[config.split]  # the official partition
            unknown = [f.name for f in files if f.name not in partition]
            if unknown:
                raise DataError(f"{partition_path} does not list {unknown[0]} (and maybe others)")
            files = [f for f in files if partition[f.name] == wanted]
        else:
            files = [files[i] for i in split_indices(len(files), config.split, config.test_fraction)]
        if not config.attribute:
            return files, None
        attribute_path = _find(folder, ATTRIBUTE_FILE)
        if attribute_path is None:
            raise DataError(f"attribute={config.attribute!r} needs {ATTRIBUTE_FILE} in {folder}")
        names, table = read_attributes(attribute_path)
        if config.attribute not in names:
            raise DataError(f"unknown CelebA attribute {config.attribute!r}; known: {names}")
        column = names.index(config.attribute)
        missing = [f.name for f in files if f.name not in table]
        if missing:
            raise DataError(f"{attribute_path} does not list {missing[0]} (and maybe others)")
        return files, np.asarray([table[f.name][column] > 0 for f in files], dtype=np.int64)


@DATASETS.register("faces")
class Faces(FolderDataset):
    """Face renders (UG-VAE's "3D FACES" domain), colour 64x64, no labels."""

    name = "faces"
    subfolder = "images"
    channels = 3
    homepage = (
        "the Basel Face Model page https://faces.dmi.unibas.ch/bfm/ (render the faces yourself;"
        " the UG-VAE authors' renders are not public)"
    )
