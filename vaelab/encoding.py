"""Latents of images: the run's own data (`vaelab encode RUN`) or images you give
(`vaelab encode RUN --images DIR|FILE.npz`, `vaelab.encode_images`).

Given images are read with the `image_folder` and `npz` datasets' rules
(`vaelab.data.custom`): a folder's images (searched recursively, sorted by path) are
centre-cropped to a square and resized to the model's input size, in its channels (grey or
RGB); an `.npz` file's `images` array must already have the model's shape.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.base import DataError

__all__ = ["encode_dataset", "encode_images", "given_images"]


def encode_dataset(run: Any, dataset: Any, device: str | torch.device = "cpu",
                   batch_size: int = 1024) -> dict[str, np.ndarray]:
    """{"codes": (N, D), "<name>_mu"/"<name>_logvar" per Gaussian latent, "<name>_probs" per
    categorical latent, and "labels" / "factors" / "factor_names" when the data has them}."""
    from vaelab.distributions import Categorical, DiagonalGaussian

    parts: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            x = dataset.batch(np.arange(start, min(start + batch_size, len(dataset))))
            posterior = run.model.posterior(x.to(device))
            parts.setdefault("codes", []).append(run.model.representation(posterior)[0])
            for name, part in posterior.items():
                if isinstance(part, DiagonalGaussian):
                    parts.setdefault(f"{name}_mu", []).append(part.mu)
                    parts.setdefault(f"{name}_logvar", []).append(part.logvar)
                elif isinstance(part, Categorical):
                    parts.setdefault(f"{name}_probs", []).append(part.probs)
    arrays = {k: torch.cat(v).float().cpu().numpy() for k, v in parts.items()}
    if dataset.labels is not None:
        arrays["labels"] = np.asarray(dataset.labels)
    if getattr(dataset, "factors", None) is not None:
        arrays["factors"] = np.asarray(dataset.factors)
        arrays["factor_names"] = np.asarray(dataset.factor_names)
    return arrays


def given_images(path: str | os.PathLike, image_shape: tuple[int, int, int], limit: int = 0
                 ) -> tuple[Any, list[str] | None]:
    """The images at `path` (a folder of image files, or an `.npz` file) as a dataset of
    `image_shape` (C, H, W), and the folder's file names in row order (None for an .npz).

    Raises:
        DataError: no such folder or file, no images, or an .npz of another shape (the message
            names the model's shape).
    """
    from vaelab.data.custom import ImageFolder, ImageFolderConfig, NpzConfig, NpzImages
    from vaelab.data.images import list_images

    path = Path(path).expanduser()
    channels, height, width = image_shape
    if path.is_dir():
        if height != width:
            raise DataError(f"--images: the model takes {height}x{width} images; a folder's "
                            "images are made square, so give an .npz of that shape instead")
        config = ImageFolderConfig(path=str(path), image_size=height, channels=channels,
                                   test_fraction=0.0, limit=limit)
        dataset = ImageFolder.load(config)
        files = [str(p.relative_to(path)) for p in list_images(path)]
        return dataset, files[: len(dataset)]
    if path.suffix.lower() == ".npz":
        dataset = NpzImages.load(NpzConfig(path=str(path), limit=limit))
        if tuple(dataset.image_shape) != tuple(image_shape):
            raise DataError(f"--images: {path} holds images of shape "
                            f"{tuple(dataset.image_shape)} (C, H, W), and the run's model takes "
                            f"{tuple(image_shape)}; resize them, or give a folder of image "
                            "files (resized for you)")
        return dataset, None
    if path.exists():
        raise DataError(f"--images: {path} is neither a folder of images nor an .npz file")
    raise DataError(f"--images: no folder or .npz file at {path}")


def encode_images(run: Any, images: Any, batch_size: int = 1024, limit: int = 0
                  ) -> dict[str, np.ndarray]:
    """The latents of new images under a trained run's model (see `encode_dataset` for the
    arrays; a folder's images also get `files`, their paths in row order).

    Args:
        run: a `vaelab.Run` or a run directory.
        images: a folder of image files, an `.npz` file, or an array (N, H, W), (N, H, W, C) or
            (N, C, H, W) of uint8 or floats in [0, 1], in the model's shape.
        batch_size: images per encoder call.
        limit: encode only the first `limit` images (0: all).
    """
    from vaelab.data.base import ImageDataset
    from vaelab.data.custom import images_from_array
    from vaelab.runs import Run, load_run

    if not isinstance(run, Run):
        run = load_run(run)
    shape = tuple(run.model.image_shape)
    files = None
    if isinstance(images, (str, os.PathLike)):
        dataset, files = given_images(images, shape, limit)
    else:
        array = images_from_array(np.asarray(images))
        if limit:
            array = array[:limit]
        if tuple(array.shape[1:]) != shape:
            raise DataError(f"images of shape {tuple(array.shape[1:])} (C, H, W); the run's "
                            f"model takes {shape}")
        dataset = ImageDataset(torch.from_numpy(array), name="given")
    arrays = encode_dataset(run, dataset, run.device, batch_size)
    if files is not None:
        arrays["files"] = np.asarray(files)
    return arrays
