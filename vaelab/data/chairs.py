"""3D Chairs (Aubry et al., 2014): renders of 1,393 chair CAD models, 62 views each (86,366).

From `rendered_chairs.tar` (`rendered_chairs/<model>/renders/*.png`, 600x600 on white), as grey
64x64 images; the label is the chair model's folder index in sorted order. The default keeps the
whole (square) render, which is what the disvae seed effectively did: its intended 400x400 centre
crop was computed and discarded. `crop=400` applies that crop. `test_fraction` holds out a fixed
random share of the renders as "test" (the seeds train on all of them: set 0).

The archive has no published checksum; `prepare` checks that it extracts to PNG renders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaelab.data.download import Resource
from vaelab.data.images import FolderConfig, FolderDataset, labels_by_folder, split_indices
from vaelab.registry import DATASETS

__all__ = ["Chairs"]

CHAIRS_PAGE = "https://www.di.ens.fr/willow/research/seeing3Dchairs/"
CHAIRS_TAR = Resource(
    "rendered_chairs.tar",
    (
        "https://www.di.ens.fr/willow/research/seeing3Dchairs/data/rendered_chairs.tar",
        "http://www.di.ens.fr/willow/research/seeing3Dchairs/data/rendered_chairs.tar",
    ),
    sha256="",  # none published
)


@DATASETS.register("chairs")
class Chairs(FolderDataset):
    """3D Chairs renders, grey 64x64, label = chair model index; see the module docstring."""

    name = "chairs"
    subfolder = "rendered_chairs"
    channels = 1
    resources = (CHAIRS_TAR,)
    homepage = CHAIRS_PAGE

    @classmethod
    def select(
        cls, config: FolderConfig, root: Path, files: list[Path]
    ) -> tuple[list[Path], np.ndarray | None]:
        labels = labels_by_folder(files, root)  # over all files: labels do not depend on split
        index = split_indices(len(files), config.split, config.test_fraction)
        return [files[i] for i in index], labels[index]
