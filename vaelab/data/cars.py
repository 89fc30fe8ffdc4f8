"""Car image folders: Stanford Cars (Krause et al., 2013) and 3D car CAD renders (UG-VAE's `3dcars`).

`cars`: Stanford Cars photos, 8,144 train (`cars_train/`) and 8,041 test (`cars_test/`) JPEGs of
varying size, as colour 64x64 centre crops (`squash=True`: the UG-VAE seed's whole-image resize).
Labels are the 196 classes (0-based) when the devkit annotations are present
(`devkit/cars_train_annos.mat`; for test `cars_test_annos_withlabels.mat` beside `cars_test/`),
otherwise there are none. The official host (ai.stanford.edu/~jkrause/cars) no longer serves the
files; only their MD5s are published.

`cars3d`: a folder of car CAD renders (UG-VAE's `data/3dcars/`), colour 64x64; one top-level
folder per car model gives the label (no labels when the images sit directly in the folder).
`test_fraction` holds out a fixed random share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaelab.data.base import DataConfig, DataError
from vaelab.data.download import Resource
from vaelab.data.images import FolderConfig, FolderDataset, labels_by_folder, split_indices
from vaelab.registry import DATASETS

__all__ = ["Cars3D", "StanfordCars", "read_car_annotations"]

CARS_PAGE = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html"
CARS_ARCHIVES = (
    Resource(
        "cars_train.tgz", ("https://ai.stanford.edu/~jkrause/car196/cars_train.tgz",),
        sha256="", md5="065e5b463ae28d29e77c1b4b166cfe61",
    ),
    Resource(
        "cars_test.tgz", ("https://ai.stanford.edu/~jkrause/car196/cars_test.tgz",),
        sha256="", md5="4ce7ebf6a94d07f1952d94dd34c4d501",
    ),
    Resource(
        "car_devkit.tgz", ("https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",),
        sha256="", md5="c3b158d763b6e2245038c8ad08e45376",
    ),
)
TRAIN_ANNOTATIONS = ("devkit/cars_train_annos.mat", "cars_train_annos.mat")
TEST_ANNOTATIONS = ("cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat")


def read_car_annotations(path: Path) -> dict[str, int]:
    """{image file name: class 0..195} from a Stanford Cars annotation .mat file."""
    import scipy.io  # deferred: keeps `import vaelab` (and every CLI start) light

    try:
        records = scipy.io.loadmat(str(path), squeeze_me=True)["annotations"]
        names = [str(name) for name in np.atleast_1d(records["fname"])]
        classes = np.atleast_1d(records["class"]).astype(np.int64)
    except (KeyError, ValueError, OSError, TypeError, IndexError) as error:
        raise DataError(f"{path}: not a Stanford Cars annotation file ({error})") from error
    return {name: int(label) - 1 for name, label in zip(names, classes)}


@DATASETS.register("cars")
class StanfordCars(FolderDataset):
    """Stanford Cars, colour 64x64 centre crops, official split; see the module docstring."""

    name = "cars"
    subfolder = "cars_train"
    channels = 3
    resources = CARS_ARCHIVES
    homepage = CARS_PAGE

    @classmethod
    def images_root(cls, config: DataConfig) -> Path:
        return cls.dataset_folder(config) / ("cars_train" if config.split == "train" else "cars_test")

    @classmethod
    def select(
        cls, config: FolderConfig, root: Path, files: list[Path]
    ) -> tuple[list[Path], np.ndarray | None]:
        folder = cls.dataset_folder(config)
        candidates = TRAIN_ANNOTATIONS if config.split == "train" else TEST_ANNOTATIONS
        found = [folder / name for name in candidates if (folder / name).is_file()]
        if not found:
            return files, None
        table = read_car_annotations(found[0])
        missing = [f.name for f in files if f.name not in table]
        if missing:
            raise DataError(f"{found[0]} does not list {missing[0]} (and maybe others)")
        return files, np.asarray([table[f.name] for f in files], dtype=np.int64)


@DATASETS.register("cars3d")
class Cars3D(FolderDataset):
    """3D car CAD renders (UG-VAE's `3dcars`), colour 64x64; see the module docstring."""

    name = "cars3d"
    subfolder = "images"
    channels = 3
    homepage = "the UG-VAE README's 3D cars link (renders of car CAD models; no fixed release)"

    @classmethod
    def select(
        cls, config: FolderConfig, root: Path, files: list[Path]
    ) -> tuple[list[Path], np.ndarray | None]:
        labels = labels_by_folder(files, root)
        index = split_indices(len(files), config.split, config.test_fraction)
        return [files[i] for i in index], labels[index] if labels.max(initial=0) > 0 else None
