"""Synthetic ground truth for the metric tests: a (2, 3, 4) factor grid, tiled, and codes of it."""

from __future__ import annotations

import numpy as np

SIZES = (2, 3, 4)
TILES = 20  # 24 grid cells x 20 = 480 points


def grid_factors(sizes=SIZES, tiles=TILES) -> np.ndarray:
    grid = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)
    return np.tile(grid, (tiles, 1))


def identity_codes(factors: np.ndarray, seed: int = 0, jitter: float = 0.2) -> np.ndarray:
    """Each factor in its own latent, plus jitter smaller than the gap between values."""
    rng = np.random.default_rng(seed)
    return factors + rng.uniform(-jitter, jitter, size=factors.shape)


