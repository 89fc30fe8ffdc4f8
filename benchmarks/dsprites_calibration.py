"""Calibration of the procedural dSprites renderer against 100 real dSprites images.

The real images (`../shared/data/dsprites-real/images_100.npz`, indices unknown) should each have
a near pixel-exact twin in the rendered grid. For each real image this finds its best match by
intersection over union (IoU) without scanning all 737,280 images: every (shape, scale,
orientation) sprite whose pixel area is within 25% of the real one is placed at the 3x3 grid
positions around the one its centroid points to, and the best IoU wins.

Usage:
    python benchmarks/dsprites_calibration.py [--images PATH] [--worst N]

Prints the timing of the full-grid render, the worst and mean best-match IoU, the number of
exact twins, and the worst images with their best factor rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vaelab.data.dsprites import (
    FACTOR_SIZES,
    IMAGE_SIZE,
    POSITION_RANGE_PX,
    _render_packed,
    grid_factors,
    pack_images,
)

DEFAULT_IMAGES = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "dsprites-real"
    / "images_100.npz"
)
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)
_BASES = np.array([6 * 40 * 32 * 32, 40 * 32 * 32, 32 * 32, 32, 1], dtype=np.int64)


def _popcount(packed: np.ndarray) -> np.ndarray:
    return _POPCOUNT[packed].sum(axis=-1)


def best_matches(
    real: np.ndarray, grid: np.ndarray, area_tolerance: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Best-match IoU (n,) and grid index (n,) of each real image (n, 64, 64) in `grid` (N, 512)."""
    centre = 15  # sprites are measured at pos_x = pos_y = 15
    types = np.stack(np.unravel_index(np.arange(3 * 6 * 40), FACTOR_SIZES[:3]), axis=1)  # (720, 3)
    probe = np.concatenate([types, np.full((len(types), 2), centre)], axis=1) @ _BASES
    sprites = np.unpackbits(grid[probe], axis=1).reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(float)
    area = sprites.sum(axis=(1, 2))
    coords = np.arange(IMAGE_SIZE) + 0.5
    sprite_cx = (sprites.sum(axis=1) * coords).sum(axis=1) / area
    sprite_cy = (sprites.sum(axis=2) * coords).sum(axis=1) / area
    step = POSITION_RANGE_PX / 31.0
    real_packed = pack_images(real)
    scores, indices = np.zeros(len(real)), np.zeros(len(real), dtype=np.int64)
    offsets = np.array([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)])
    for i, image in enumerate(real.astype(float)):
        real_area = image.sum()
        cx = (image.sum(axis=0) * coords).sum() / real_area
        cy = (image.sum(axis=1) * coords).sum() / real_area
        keep = np.flatnonzero(np.abs(area / real_area - 1.0) <= area_tolerance)
        kx = np.round(centre + (cx - sprite_cx[keep]) / step).astype(np.int64)
        ky = np.round(centre + (cy - sprite_cy[keep]) / step).astype(np.int64)
        pos_x = np.clip(kx[:, None] + offsets[None, :, 0], 0, 31)  # (K, 9)
        pos_y = np.clip(ky[:, None] + offsets[None, :, 1], 0, 31)
        index = (types[keep] @ _BASES[:3])[:, None] + pos_x * 32 + pos_y  # (K, 9)
        candidates = grid[index.ravel()]  # (K * 9, 512)
        inter = _popcount(candidates & real_packed[i])
        union = _popcount(candidates | real_packed[i])
        iou = inter / np.maximum(union, 1)
        best = int(np.argmax(iou))
        scores[i], indices[i] = iou[best], index.ravel()[best]
    return scores, indices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--worst", type=int, default=5, help="list this many worst images")
    args = parser.parse_args(argv)
    if not args.images.exists():
        print(f"real images not found at {args.images}", file=sys.stderr)
        return 1
    real = np.load(args.images)["images"]

    start = time.perf_counter()
    factors = grid_factors()
    grid = _render_packed(factors)
    render_s = time.perf_counter() - start
    start = time.perf_counter()
    scores, indices = best_matches(real, grid)
    match_s = time.perf_counter() - start

    print(f"rendered the full grid ({len(grid):,} images) in {render_s:.2f} s")
    print(f"matched {len(real)} real images in {match_s:.2f} s")
    print(
        f"best-match IoU: worst {scores.min():.4f}, mean {scores.mean():.4f}, "
        f"median {np.median(scores):.4f}; exact twins {int((scores == 1).sum())}/{len(real)}"
    )
    names = ("square", "ellipse", "heart")
    for shape in range(3):
        mine = scores[factors[indices, 0] == shape]
        if len(mine):
            print(
                f"  {names[shape]:8s} n={len(mine):3d} worst {mine.min():.4f}"
                f" mean {mine.mean():.4f} exact {int((mine == 1).sum())}"
            )
    for i in np.argsort(scores)[: args.worst]:
        print(f"  image {i:3d}: IoU {scores[i]:.4f} at factors {factors[indices[i]].tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
