"""Exact pixel grids of images (torchvision `make_grid` layout, without torchvision).

A grid of R rows and K columns of H x W images with padding p is (R(H+p)+p) x (K(W+p)+p) pixels:
every image is surrounded by p-pixel lines of `pad_value` (as torchvision's `make_grid`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = [
    "image_grid",
    "pad_value_for",
    "to_pil",
    "to_uint8",
    "upsample",
]


def to_uint8(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (float) or 0..255 (uint8), any leading shape, as a uint8 NumPy array.

    Floats are rounded as `save_image` does: x * 255 + 0.5, clamped to 0..255.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().to("cpu")
        images = images.numpy() if images.dtype == torch.uint8 else images.float().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(images * 255.0 + 0.5, 0, 255).astype(np.uint8)


def upsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of (..., H, W) images by an integer `factor` >= 1."""
    if factor < 1:
        raise ValueError(f"upsample factor must be >= 1, got {factor}")
    if factor == 1:
        return images
    return images.repeat(factor, axis=-2).repeat(factor, axis=-1)


def image_grid(
    images: np.ndarray | torch.Tensor,
    rows: int,
    cols: int,
    pad: int = 2,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Places `rows * cols` images row by row on a grid with `pad`-pixel lines between them.

    Args:
        images: (N, C, H, W) with C = 1 or 3, floats in [0, 1] or uint8; N must be rows * cols.
        rows: grid rows R.
        cols: images per row K.
        pad: line width in pixels (torchvision's default 2).
        pad_value: line intensity in [0, 1] (1: white lines, for black-background data).

    Returns:
        uint8 array (R(H+pad)+pad, K(W+pad)+pad) for grey images, with a trailing axis of 3 for RGB.

    Raises:
        ValueError: the number of images is not rows * cols, or C is not 1 or 3.
    """
    images = to_uint8(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {images.shape}")
    n, channels, height, width = images.shape
    if rows < 1 or cols < 1 or n != rows * cols:
        raise ValueError(f"wrong size: {n} images for a grid of {rows} rows x {cols} columns")
    fill = int(np.clip(round(pad_value * 255.0), 0, 255))
    grid = np.full(
        (channels, rows * (height + pad) + pad, cols * (width + pad) + pad), fill, dtype=np.uint8
    )
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[:, top : top + height, left : left + width] = images[k]
    return grid[0] if channels == 1 else grid.transpose(1, 2, 0)  # (H', W') or (H', W', 3)


def to_pil(grid: np.ndarray) -> Image.Image:
    """A uint8 (H, W) or (H, W, 3) array as a PIL image ("L" or "RGB")."""
    return Image.fromarray(np.ascontiguousarray(grid), mode=None)


def pad_value_for(
    images: np.ndarray | torch.Tensor | None = None, background: float | None = None
) -> float:
    """Grid line value 1 - background: white lines on dark data, black lines on light data.

    disvae stores the background per dataset (black for dSprites/MNIST, white for CelebA/Chairs).
    `background` wins when given (a dataset may define a `background` attribute); otherwise it is
    estimated as the median border pixel of `images` (N, C, H, W), rounded to 0 or 1.
    """
    if background is None:
        if images is None:
            return 1.0
        data = to_uint8(images).astype(np.float64) / 255.0
        border = np.concatenate(
            [
                data[..., 0, :].ravel(),
                data[..., -1, :].ravel(),
                data[..., :, 0].ravel(),
                data[..., :, -1].ravel(),
            ]
        )
        background = float(np.median(border) >= 0.5)
    return 1.0 - float(background)


def stack_rows(grids: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenates grids of equal width vertically (as disvae's reconstruct-traverse)."""
    widths = {g.shape[1] for g in grids}
    if len(widths) != 1:
        raise ValueError(f"grids must have equal widths to stack, got {sorted(widths)}")
    return np.concatenate(list(grids), axis=0)
