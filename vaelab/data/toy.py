"""Tiny procedural datasets with ground-truth factors, for tests, examples and quick runs.

`toy_squares`: a filled square on a black background. Factors, in order: size (3 values: 3, 5 and
7 pixels at 32x32, doubled at 64x64), pos_x (8), pos_y (8) — 192 images, a full factorial grid,
pos_y varying fastest. Rendering is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vaelab.data.base import DataConfig, FactorDataset, no_valid_split
from vaelab.registry import DATASETS

__all__ = ["ToySquares", "ToySquaresConfig", "render_toy_squares"]

SIZES = (3, 5, 7)
POSITIONS = 8


def render_toy_squares(factors: np.ndarray, image_size: int = 32, channels: int = 1) -> np.ndarray:
    """uint8 images (n, C, S, S) of squares with factor rows (n, 3) = (size, pos_x, pos_y)."""
    factors = np.asarray(factors, dtype=np.int64)
    scale = image_size // 32
    side = np.asarray(SIZES)[factors[:, 0]] * scale  # (n,)
    # Centres spread evenly so the largest square stays inside the image.
    margin = (max(SIZES) * scale) // 2 + 1
    centres = np.linspace(margin, image_size - 1 - margin, POSITIONS).round().astype(np.int64)
    cx, cy = centres[factors[:, 1]], centres[factors[:, 2]]  # (n,)
    grid = np.arange(image_size)
    inside_x = np.abs(grid[None, :] - cx[:, None]) <= side[:, None] // 2  # (n, S) columns
    inside_y = np.abs(grid[None, :] - cy[:, None]) <= side[:, None] // 2  # (n, S) rows
    images = (inside_y[:, :, None] & inside_x[:, None, :]).astype(np.uint8) * 255  # (n, S, S)
    return np.repeat(images[:, None], channels, axis=1)


@dataclass(frozen=True, kw_only=True)
class ToySquaresConfig(DataConfig):
    """Options of `toy_squares`."""

    image_size: int = 32  # 32 or 64
    channels: int = 1
    repeat: int = 1  # copies of the grid (a larger epoch for training tests)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size not in (32, 64):
            raise ValueError(f"image_size must be 32 or 64, got {self.image_size}")
        if self.channels not in (1, 3) or self.repeat < 1:
            raise ValueError("channels must be 1 or 3 and repeat >= 1")


@DATASETS.register("toy_squares")
class ToySquares(FactorDataset):
    """192 squares: size (3), pos_x (8), pos_y (8); see the module docstring."""

    config_class = ToySquaresConfig
    factor_names = ("size", "pos_x", "pos_y")
    factor_sizes = (len(SIZES), POSITIONS, POSITIONS)

    @classmethod
    def splits(cls, config: DataConfig) -> tuple[str, ...]:
        return ("train",)  # every split is the whole set: nothing is held out

    @classmethod
    def expected_shape(cls, config: ToySquaresConfig) -> tuple[int, int, int]:
        return (config.channels, config.image_size, config.image_size)

    @classmethod
    def load(cls, config: ToySquaresConfig = ToySquaresConfig()) -> ToySquares:
        if config.split == "valid":
            raise no_valid_split("toy_squares")
        sizes = cls.factor_sizes
        factors = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)
        factors = np.tile(factors, (config.repeat, 1))
        if config.limit:
            factors = factors[: config.limit]
        images = torch.from_numpy(render_toy_squares(factors, config.image_size, config.channels))
        return cls(images, factors, cls.factor_names, sizes, name="toy_squares")
