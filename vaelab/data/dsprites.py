"""dSprites (Matthey, Higgins, Hassabis & Lerchner, 2017): 737,280 binary 64x64 sprites.

Factors, in the official npz order (the constant colour factor dropped), pos_y varying fastest:

==============  ===========  ==========================================================
factor          cardinality  physical values (`factor_values`, as in `latents_values`)
==============  ===========  ==========================================================
shape           3            1, 2, 3 (square, ellipse, heart)
scale           6            linspace(0.5, 1, 6)
orientation     40           linspace(0, 2*pi, 40) radians (0 and 2*pi both present)
pos_x           32           linspace(0, 1, 32)
pos_y           32           linspace(0, 1, 32)
==============  ===========  ==========================================================

Two sources share one API. `source="procedural"` (the default) renders the grid here: no
download, fully deterministic (pure float64 NumPy geometry, no randomness), generated once and
cached bit-packed under `data_home(root)/dsprites`. `source="npz"` reads the official
`dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`.

How the renderer matches the official images. The dataset's author drew vector shapes with
Love2D on a canvas of normalised size and rasterised them at 64x64 without anti-aliasing
(github.com/deepmind/dsprites-dataset issues 2 and 3). A pixel is on when its centre lies inside
the shape. The geometry below was recovered from 100 real images (`benchmarks/
dsprites_calibration.py` reports the best-match IoU of each); in pixels at scale 1:

* position: the sprite's reference point lies at 16 + 32 * pos (x to the right, y down, pixel
  edges at integers), so one position step is 32/31 px and positions 0 and 1 span [16, 48];
* square: side 19.2 (0.6 canvas units) centred on the reference point;
* ellipse: a 30-gon inscribed in an ellipse with semi-axes 12.8 (along x at orientation 0) and
  7.25, centred;
* heart: a 26-gon on the classic heart curve x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t -
  cos 4t, scaled to half-width 9.8 and height 10.6/16 per curve unit, pointing up at orientation
  0 and rotating about a point 2.375 curve units below the curve's origin;
* sizes scale linearly with `scale`; orientation rotates clockwise on screen (Love2D's sense);
* rasterisation: vertex rows are snapped to 1/256 px (a GPU's sub-pixel grid) and a pixel centre
  exactly on an edge belongs to the side below it (OpenGL's y-up top-left rule); with this every
  calibration square is pixel-exact.

The unlabelled calibration images cannot tell the rotation sense, nor whether pos_y = 0 is the
top or the bottom row (every shape is mirror-symmetric and the grids are symmetric), so those two
follow Love2D's conventions (y down, clockwise angles). Everything else is pinned by the data:
sizes, centring, the position lattice, and the pose at orientation 0 (39 steps per turn is odd,
so a heart pointing down or an ellipse standing upright at 0 would give different images; both
fit far worse). Calibration: every real image has a twin with IoU >= 0.975, mean 0.9965, 71 of
100 pixel-exact (all 41 squares, 19 of 26 ellipses, 11 of 33 hearts).

Storage: images stay bit-packed in memory, a uint8 tensor (N, 512) (one row of 64 pixels = 8
bytes, `np.packbits` bit order); `batch` unpacks on the storage device with bit operations.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaelab.data.base import DataConfig, DataError, FactorDataset, data_home, no_valid_split
from vaelab.data.download import file_digest
from vaelab.data.dsprites_variants import fetch_scream, load_scream, make_sampler
from vaelab.io import atomic_file, atomic_write_json
from vaelab.registry import DATASETS

__all__ = [
    "DSprites",
    "DSpritesConfig",
    "DSpritesScream",
    "DSpritesScreamConfig",
    "FACTOR_NAMES",
    "FACTOR_SIZES",
    "FACTOR_VALUES",
    "grid_factors",
    "pack_images",
    "render_dsprites",
    "unpack_images",
    "unpack_on_device",
]

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
FACTOR_VALUES = (
    np.array([1.0, 2.0, 3.0]),
    np.linspace(0.5, 1.0, 6),
    np.linspace(0.0, 2.0 * np.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
)
NUM_ITEMS = 737_280
IMAGE_SIZE = 64
PACKED_BYTES = IMAGE_SIZE * IMAGE_SIZE // 8  # 512

NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
NPZ_URL = (
    "https://github.com/deepmind/dsprites-dataset/raw/master/"
    "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
)
# Bump when the rendered pixels change, so old caches are regenerated.
RENDER_VERSION = 1
CACHE_FORMAT = 1

# Geometry in pixels at scale 1 (see the module docstring).
POSITION_ORIGIN_PX = 16.0
POSITION_RANGE_PX = 32.0
SQUARE_HALF_SIDE_PX = 9.6
ELLIPSE_RADII_PX = (12.8, 7.25)
ELLIPSE_SEGMENTS = 30
HEART_SEGMENTS = 26
HEART_HALF_WIDTH_PX = 9.8
HEART_HEIGHT_PX_PER_UNIT = 10.6 / 16.0
HEART_PIVOT_Y = -2.375  # curve units; the point the heart rotates about and is placed at
SUBPIXELS = 256  # vertex rows are snapped to 1/SUBPIXELS px, as a GPU rasteriser does


# ------------------------------------------------------------------------------------------------
# Geometry: every shape is a simple polygon in local pixel units (x right, y down), scanned
# row by row like a rasteriser: the edges crossing a row's centre line, sorted, pair up into spans.


def _regular_polygon(radius_x: float, radius_y: float, segments: int) -> np.ndarray:
    phi = 2.0 * np.pi * np.arange(segments) / segments
    return np.stack([radius_x * np.cos(phi), radius_y * np.sin(phi)], axis=1)  # (V, 2)


def _heart_polygon() -> np.ndarray:
    t = 2.0 * np.pi * np.arange(HEART_SEGMENTS) / HEART_SEGMENTS  # t = 0: the notch; pi: the tip
    x = 16.0 * np.sin(t) ** 3
    y = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
    x = x * (HEART_HALF_WIDTH_PX / 16.0)
    y = -(y - HEART_PIVOT_Y) * HEART_HEIGHT_PX_PER_UNIT  # y down, the pivot at the origin
    return np.stack([x, y], axis=1)  # (V, 2)


def shape_polygons() -> list[np.ndarray]:
    """The outline (V, 2) of each shape at scale 1 and orientation 0, in pixels (y down)."""
    h = SQUARE_HALF_SIDE_PX
    square = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    ellipse = _regular_polygon(*ELLIPSE_RADII_PX, ELLIPSE_SEGMENTS)
    return [square, ellipse, _heart_polygon()]


def geometry_fingerprint() -> str:
    """16 hex digits of the sha256 of the rendering geometry; caches of other geometry are stale."""
    parts = [np.round(p, 12).tobytes() for p in shape_polygons()]
    parts.append(repr((POSITION_ORIGIN_PX, POSITION_RANGE_PX, SUBPIXELS)).encode())
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


MAX_SPANS = 2  # spans per row: 1 for the convex square and ellipse, 2 for the heart's lobes


def _row_spans(
    shape: int, scale: np.ndarray, angle: np.ndarray, centre_y: np.ndarray
) -> np.ndarray:
    """Inside spans [x_left, x_right] of every pixel row, relative to the sprite's centre.

    Args:
        shape: shape index 0..2.
        scale, angle, centre_y: (M,) scale factor, clockwise angle (radians), centre row (px).

    Returns:
        (M, 64, MAX_SPANS, 2) spans; missing spans are (inf, inf).
    """
    polygon = shape_polygons()[shape]
    px, py = polygon[:, 0], polygon[:, 1]  # (V,)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    # Scale, then rotate clockwise on screen (the standard rotation in y-down coordinates).
    vx = scale[:, None] * (cos * px - sin * py)  # (M, V)
    vy = scale[:, None] * (sin * px + cos * py)
    # Snap vertex rows to the GPU's 1/256 px sub-pixel grid (this makes every calibration square
    # pixel-exact; columns are not snapped, to keep the spans shared across pos_x).
    vy = np.round((vy + centre_y[:, None]) * SUBPIXELS) / SUBPIXELS - centre_y[:, None]
    x0, y0 = vx[:, None, :], vy[:, None, :]  # (M, 1, V) edge starts
    x1, y1 = np.roll(x0, -1, axis=2), np.roll(y0, -1, axis=2)  # edge ends
    y = (np.arange(IMAGE_SIZE) + 0.5 - centre_y[:, None])[:, :, None]  # (M, 64, 1) row centres
    # Half-open rule, so a row through a vertex counts its two edges once in all; a row centre
    # exactly on an edge belongs to the edge's lower side (OpenGL's y-up top-left rule).
    crosses = (y0 < y) != (y1 < y)  # (M, 64, V)
    dy = np.where(y0 != y1, y1 - y0, 1.0)
    x = np.where(crosses, x0 + (y - y0) * (x1 - x0) / dy, np.inf)
    x = np.sort(x, axis=2)[:, :, : 2 * MAX_SPANS]  # (M, 64, 2 * MAX_SPANS); pairs enter/leave
    assert not np.isfinite(
        np.sort(np.where(crosses, 0.0, np.inf), axis=2)[:, :, 2 * MAX_SPANS :]
    ).any()
    return x.reshape(len(scale), IMAGE_SIZE, MAX_SPANS, 2)


# Column c of a row is bit 63 - c of a big-endian uint64 (np.packbits order); _TAIL[c] has
# columns c..63 set, _TAIL[64] none.
_TAIL = np.array([(1 << (64 - c)) - 1 for c in range(IMAGE_SIZE + 1)], dtype=np.uint64)


def _validate_factors(factors: np.ndarray) -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors must be (n, {len(FACTOR_SIZES)}), got {factors.shape}")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integer indices, got {factors.dtype}")
    if factors.size and ((factors < 0).any() or (factors >= np.asarray(FACTOR_SIZES)).any()):
        raise ValueError(f"factor indices out of range of {FACTOR_SIZES}")
    return factors.astype(np.int64)


def _render_packed(factors: np.ndarray, chunk: int = 32_768) -> np.ndarray:
    """Bit-packed images (n, 512) uint8 for factor rows (n, 5) (validated)."""
    n = len(factors)
    out = np.empty((n, PACKED_BYTES), dtype=np.uint8)
    if n == 0:
        return out
    scale_v, angle_v, pos_v = FACTOR_VALUES[1], FACTOR_VALUES[2], FACTOR_VALUES[4]
    # The row spans depend on (shape, scale, orientation, pos_y) only: compute them once per
    # combination, then place them at each pos_x. The grid has 23,040 such combinations.
    key = ((factors[:, 0] * 6 + factors[:, 1]) * 40 + factors[:, 2]) * 32 + factors[:, 4]
    combos, inverse = np.unique(key, return_inverse=True)
    c_shape, rest = np.divmod(combos, 6 * 40 * 32)
    c_scale, rest = np.divmod(rest, 40 * 32)
    c_orient, c_pos_y = np.divmod(rest, 32)
    spans = np.empty((len(combos), IMAGE_SIZE, MAX_SPANS, 2))  # (K, 64, spans, [left, right])
    for shape in range(3):
        sel = np.flatnonzero(c_shape == shape)
        if len(sel):
            centre_y = POSITION_ORIGIN_PX + POSITION_RANGE_PX * pos_v[c_pos_y[sel]]
            spans[sel] = _row_spans(shape, scale_v[c_scale[sel]], angle_v[c_orient[sel]], centre_y)
    centre_x = POSITION_ORIGIN_PX + POSITION_RANGE_PX * FACTOR_VALUES[3]  # (32,)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        s = spans[inverse[start:stop]] + centre_x[factors[start:stop, 3]][:, None, None, None]
        # Pixel c (centre c + 0.5) is on iff left <= c + 0.5 <= right.
        first = np.clip(np.ceil(s[..., 0] - 0.5), 0, IMAGE_SIZE).astype(np.int64)
        stop_col = np.clip(np.floor(s[..., 1] - 0.5) + 1, 0, IMAGE_SIZE).astype(np.int64)
        stop_col = np.maximum(stop_col, first)  # empty spans give no bits
        bits = _TAIL[first] & ~_TAIL[stop_col]  # (B, 64, spans) uint64
        rows = np.bitwise_or.reduce(bits, axis=2)  # (B, 64)
        out[start:stop] = rows.astype(">u8").view(np.uint8).reshape(stop - start, PACKED_BYTES)
    return out


def render_dsprites(factors: np.ndarray) -> np.ndarray:
    """Renders dSprites images for any factor rows; deterministic.

    Args:
        factors: integer factor indices (n, 5) in the order of `FACTOR_NAMES`.

    Returns:
        uint8 images (n, 64, 64) with values 0 and 1.

    Raises:
        ValueError: factors of the wrong shape, type or range.
    """
    packed = _render_packed(_validate_factors(factors))
    return unpack_images(packed)


def grid_factors() -> np.ndarray:
    """The factor rows (737280, 5) of the full grid in official order (pos_y fastest)."""
    columns = []
    for k, size in enumerate(FACTOR_SIZES):
        inner = int(np.prod(FACTOR_SIZES[k + 1 :]))  # items per step of factor k
        outer = NUM_ITEMS // (inner * size)
        columns.append(np.tile(np.repeat(np.arange(size, dtype=np.int64), inner), outer))
    return np.stack(columns, axis=1)


def pack_images(images: np.ndarray) -> np.ndarray:
    """Binary images (n, 64, 64) (any nonzero is on) -> bit-packed (n, 512) uint8."""
    images = np.asarray(images)
    return np.packbits(images.reshape(len(images), -1) != 0, axis=1)


def unpack_images(packed: np.ndarray) -> np.ndarray:
    """Bit-packed (n, 512) uint8 -> uint8 images (n, 64, 64) in {0, 1}."""
    return np.unpackbits(packed, axis=1).reshape(len(packed), IMAGE_SIZE, IMAGE_SIZE)


# ------------------------------------------------------------------------------------------------
# The official npz, read in chunks (its `imgs` member is 2.9 GB once decompressed).


def _npz_member(archive: zipfile.ZipFile, key: str):
    try:
        return archive.open(f"{key}.npy")
    except KeyError:
        raise DataError(f"missing array {key!r}") from None


def _read_npz(path: Path, limit: int = 0, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """(packed images (n, 512), factor indices (n, 5)) from an official-layout dSprites npz.

    Raises:
        DataError: the file is missing, not an npz, or not in the official layout.
    """
    where = (
        f"expected the official dSprites file {NPZ_NAME} (keys imgs (N, 64, 64) uint8, "
        f"latents_classes (N, 6), latents_values (N, 6)) at {path}; get it from {NPZ_URL}"
    )
    if not path.is_file():
        raise DataError(f"dSprites npz not found: {where}")
    try:
        with zipfile.ZipFile(path) as archive:
            with _npz_member(archive, "latents_classes") as handle:
                classes = np.lib.format.read_array(handle)
            with _npz_member(archive, "latents_values") as handle:
                values = np.lib.format.read_array(handle)
            n = len(classes) if not limit else min(limit, len(classes))
            if classes.ndim != 2 or classes.shape[1] != 6 or values.shape != classes.shape:
                raise DataError(f"latents have shapes {classes.shape} and {values.shape}")
            classes = classes[:n].astype(np.int64)
            with _npz_member(archive, "imgs") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(handle)
                if fortran or dtype != np.uint8 or tuple(shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
                    raise DataError(f"imgs is {dtype} {shape} (fortran={fortran})")
                if shape[0] != len(values):
                    raise DataError(f"{shape[0]} images but {len(values)} latent rows")
                packed = np.empty((n, PACKED_BYTES), dtype=np.uint8)
                for start in range(0, n, chunk):
                    stop = min(start + chunk, n)
                    raw = handle.read((stop - start) * IMAGE_SIZE * IMAGE_SIZE)
                    if len(raw) != (stop - start) * IMAGE_SIZE * IMAGE_SIZE:
                        raise DataError("imgs is truncated")
                    block = np.frombuffer(raw, dtype=np.uint8).reshape(stop - start, -1)
                    packed[start:stop] = np.packbits(block != 0, axis=1)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise DataError(f"cannot read dSprites npz ({error}): {where}") from None
    except DataError as error:
        raise DataError(f"corrupt dSprites npz ({error}): {where}") from None
    factors = classes[:, 1:]
    if factors.size and ((factors < 0).any() or (factors >= np.asarray(FACTOR_SIZES)).any()):
        raise DataError(f"corrupt dSprites npz (latents_classes out of range): {where}")
    expected = np.stack([FACTOR_VALUES[k][factors[:, k]] for k in range(5)], axis=1)
    if not np.allclose(values[:n, 1:], expected, atol=1e-6):
        raise DataError(f"corrupt dSprites npz (latents_values disagree with the classes): {where}")
    return packed, factors


# ------------------------------------------------------------------------------------------------
# The bit-packed cache: <stem>.npy (N, 512) uint8 and <stem>.json (version, size, sha256, ...).


def _write_cache(path: Path, packed: np.ndarray, meta: dict) -> None:
    """Writes `packed` to `path` (.npy) and its sidecar JSON, each atomically (tmp + replace)."""
    with atomic_file(path) as handle:
        np.save(handle, packed)
    stat = path.stat()
    sidecar = dict(
        meta,
        format=CACHE_FORMAT,
        items=int(len(packed)),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=file_digest(path),
    )
    atomic_write_json(path.with_suffix(".json"), sidecar)


def _read_cache(path: Path, meta: dict) -> np.ndarray | None:
    """The cached array, or None (with a message on stderr) when absent, stale or corrupt.

    The sidecar's size and mtime are checked on every load; the full sha256 only when the file
    was touched since it was written, so a clean load costs one `np.load`.
    """
    sidecar = path.with_suffix(".json")
    if not path.exists() and not sidecar.exists():
        return None
    problem = ""
    try:
        info = json.loads(sidecar.read_text())
        stat = path.stat()
        if info.get("format") != CACHE_FORMAT or any(info.get(k) != v for k, v in meta.items()):
            problem = "was written by another version"
        elif stat.st_size != info["size"]:
            problem = f"has {stat.st_size} bytes, expected {info['size']} (truncated?)"
        elif stat.st_mtime_ns != info["mtime_ns"] and file_digest(path) != info["sha256"]:
            problem = "fails its sha256 check (corrupt)"
        else:
            packed = np.load(path, mmap_mode="c")  # copy-on-write map: pages load on use
            if packed.dtype == np.uint8 and packed.shape == (info["items"], PACKED_BYTES):
                return packed
            problem = f"holds {packed.dtype} {packed.shape}"
    except (OSError, ValueError, KeyError, TypeError) as error:
        problem = f"cannot be read ({type(error).__name__}: {error})"
    print(f"vaelab: the dSprites cache {path} {problem}; rebuilding it", file=sys.stderr)
    return None


def _cached(path: Path, meta: dict, build: Callable[[], np.ndarray],
            what: str = "the dSprites images") -> np.ndarray:
    packed = _read_cache(path, meta)
    if packed is None:
        import time

        print(f"vaelab: building {what} once into {path} (about a minute on 2 cores; later "
              "runs load the cache)...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        packed = build()
        _write_cache(path, packed, meta)
        print(f"vaelab: {what} ready ({len(packed):,} items, "
              f"{time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return packed


# ------------------------------------------------------------------------------------------------
# The dataset.


@dataclass(frozen=True, kw_only=True)
class DSpritesConfig(DataConfig):
    """Options of `dsprites`. dSprites has no test split: `split` is accepted and ignored (the
    disvae seed also evaluates on the training images)."""

    source: str = "procedural"  # "procedural" (rendered here, cached) | "npz" (the official file)
    npz_path: str = ""  # the official npz; "" means data_home(root)/dsprites/<official name>
    variant: str = ""  # "" (binary) | "color" | "noisy" | "scream": disentanglement_lib's colour
    #                    variants, 3 channels, fresh randomness per draw (data/dsprites_variants)
    variant_seed: int = 0  # seed of the variants' randomness

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source not in ("procedural", "npz"):
            raise ValueError(f"source must be 'procedural' or 'npz', got {self.source!r}")
        if self.variant not in ("", "color", "noisy", "scream"):
            raise ValueError(f"variant must be '', 'color', 'noisy' or 'scream', got "
                             f"{self.variant!r}")


def _folder(config: DSpritesConfig) -> Path:
    return data_home(config.root or None) / "dsprites"


def _npz_path(config: DSpritesConfig) -> Path:
    return Path(config.npz_path).expanduser() if config.npz_path else _folder(config) / NPZ_NAME


def _procedural_cache(config: DSpritesConfig) -> Path:
    return _folder(config) / "dsprites_procedural.npy"


def _npz_cache(config: DSpritesConfig) -> Path:
    return _folder(config) / "dsprites_npz.npy"


def _npz_meta(npz: Path) -> dict:
    stat = npz.stat()
    return {
        "source": str(npz.resolve()),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
    }


def _load_packed(config: DSpritesConfig) -> tuple[np.ndarray, np.ndarray, Path | None]:
    """(packed (n, 512), factors (n, 5), cache path or None) for `config` (honours `limit`)."""
    if config.source == "procedural":
        path = _procedural_cache(config)
        meta = {"render_version": RENDER_VERSION, "geometry": geometry_fingerprint()}
        if config.limit and not path.exists():
            # A quick subset: render just the first `limit` grid items, no cache written.
            factors = grid_factors()[: config.limit]
            return _render_packed(factors), factors, None
        packed = _cached(path, meta, lambda: _render_packed(grid_factors()),
                         "the procedural dSprites (737,280 images)")
        factors = grid_factors()
        if config.limit:
            packed, factors = packed[: config.limit], factors[: config.limit]
        return packed, factors, path
    npz = _npz_path(config)
    if not npz.is_file():
        _read_npz(npz)  # raises the DataError that says what is expected and where to get it
    if config.limit:
        packed, factors = _read_npz(npz, limit=config.limit)
        return packed, factors, None
    path = _npz_cache(config)
    holder: dict = {}

    def build() -> np.ndarray:
        holder["packed"], holder["factors"] = _read_npz(npz)
        return holder["packed"]

    packed = _cached(path, _npz_meta(npz), build)
    factors = holder.get("factors")
    if factors is None:
        factors = _read_npz_factors(npz)
    return packed, factors, path


def _read_npz_factors(npz: Path) -> np.ndarray:
    with zipfile.ZipFile(npz) as archive, _npz_member(archive, "latents_classes") as handle:
        return np.lib.format.read_array(handle)[:, 1:].astype(np.int64)


_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits order: first pixel = bit 7
_SHIFTS_ON: dict[torch.device, Tensor] = {}


def _shifts(device: torch.device) -> Tensor:
    """The bit shifts on `device`, copied there once (not once per batch: no per-step copy)."""
    shifts = _SHIFTS_ON.get(device)
    if shifts is None:
        shifts = _SHIFTS_ON[device] = _SHIFTS.to(device)
    return shifts


def unpack_on_device(packed: Tensor) -> Tensor:
    """Bit-packed rows (B, 512) uint8 -> images (B, 1, 64, 64) uint8 in {0, 1}, on `packed`'s
    device with bit operations (`np.unpackbits` order); the host path is `unpack_images`."""
    bits = (packed.unsqueeze(-1) >> _shifts(packed.device)) & 1  # (B, 512, 8)
    return bits.view(len(packed), 1, IMAGE_SIZE, IMAGE_SIZE)


@DATASETS.register("dsprites")
class DSprites(FactorDataset):
    """dSprites, 64x64 binary sprites (Matthey et al., 2017); see the module docstring.

    Factors, in order: shape (3), scale (6), orientation (40, over [0, 2 pi]), pos_x (32),
    pos_y (32); 737,280 items in the official order, pos_y varying fastest. The procedural
    rendering is deterministic. Images are held bit-packed, `data` a uint8 tensor (N, 512).

    Args:
        packed: bit-packed images, uint8 tensor (N, 512).
        factors: factor indices (N, 5).
        name: registry name, for messages.
    """

    config_class = DSpritesConfig
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    shape_names = ("square", "ellipse", "heart")  # the shape factor's values, for legends

    def __init__(self, packed: Tensor, factors: np.ndarray, name: str = "dsprites") -> None:
        if packed.dtype != torch.uint8 or packed.dim() != 2 or packed.shape[1] != PACKED_BYTES:
            raise ValueError(
                f"packed must be a uint8 tensor (N, {PACKED_BYTES}), got "
                f"{packed.dtype} {tuple(packed.shape)}"
            )
        if len(factors) != len(packed):
            raise ValueError(f"{len(factors)} factor rows for {len(packed)} images")
        # ImageDataset.__init__ wants (N, C, H, W); the packed storage replaces it.
        self.data = packed
        self.name = name
        self._init_factors(factors, FACTOR_NAMES, FACTOR_SIZES, FACTOR_VALUES)
        self.labels = self.factors[:, 0]  # shape, for colouring plots
        self.variant = None  # a dsprites_variants.VariantSampler for the colour variants

    @classmethod
    def splits(cls, config: DataConfig) -> tuple[str, ...]:
        return ("train",)  # every split is the whole set: nothing is held out

    @classmethod
    def expected_shape(cls, config: DSpritesConfig) -> tuple[int, int, int]:
        return (3 if getattr(config, "variant", "") else 1, 64, 64)

    @classmethod
    def load(cls, config: DSpritesConfig = DSpritesConfig()) -> DSprites:
        """Loads (and on first use renders or converts, then caches) the dataset.

        Raises:
            DataError: the npz source is missing or corrupt (the message names the official URL).
        """
        if config.split == "valid":
            raise no_valid_split("dsprites")
        sampler = make_sampler(config)  # before rendering: a missing painting fails fast
        packed, factors, _ = _load_packed(config)
        dataset = cls(torch.from_numpy(np.ascontiguousarray(packed)), factors)
        dataset.variant = sampler
        return dataset

    @classmethod
    def prepare(
        cls, config: DSpritesConfig = DSpritesConfig(), from_path: str | None = None
    ) -> dict:
        """Renders (procedural) or imports and verifies (npz) the data, and caches it.

        Args:
            config: which source, and where (`root`, `npz_path`).
            from_path: a copy of the official npz (or a folder holding it): it is verified,
                copied into `data_home(root)/dsprites` and converted, whatever `config.source`
                says (load it later with `source="npz"`).

        Returns:
            {"path": cache file, "items": number of images, "bytes": size of the cache file}.
        """
        if config.limit:
            config = DSpritesConfig(
                root=config.root, split=config.split, source=config.source, npz_path=config.npz_path
            )  # prepare always caches all items
        if from_path is not None:
            source = Path(from_path).expanduser()
            if source.is_dir():
                source = source / NPZ_NAME
            _read_npz(source, limit=1)  # verifies the layout before copying
            target = _folder(config) / NPZ_NAME
            if source.resolve() != target.resolve():
                with open(source, "rb") as src, atomic_file(target) as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
            config = DSpritesConfig(root=config.root, source="npz", npz_path=str(target))
        packed, _, path = _load_packed(config)
        assert path is not None
        return {"path": str(path), "items": int(len(packed)), "bytes": int(path.stat().st_size)}

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W): (1, 64, 64), or (3, 64, 64) for the colour variants."""
        return (1 if getattr(self, "variant", None) is None else 3, IMAGE_SIZE, IMAGE_SIZE)

    def to(self, device: torch.device | str) -> DSprites:
        """Moves the packed storage (in place) to `device`, so batches are unpacked there."""
        self.data = self.data.to(device)
        return self

    def _unpack(self, index: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return unpack_on_device(self.data.index_select(0, index))  # from (B, 512) packed

    def batch(self, index: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        """Float images in {0, 1}, shape (B, 1, 64, 64), on the storage device; a colour variant
        gives (B, 3, 64, 64) in [0, 1], freshly drawn."""
        x = self._unpack(index).float()
        variant = getattr(self, "variant", None)
        return x if variant is None else variant(x)

    def uint8(self, index: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        """uint8 images in {0, 255}, shape (B, 1, 64, 64), on the storage device (a colour
        variant: (B, 3, 64, 64), rounded from `batch`)."""
        if getattr(self, "variant", None) is not None:
            return self.batch(index).mul(255).round_().to(torch.uint8)
        return self._unpack(index) * 255


@dataclass(frozen=True, kw_only=True)
class DSpritesScreamConfig(DSpritesConfig):
    """Options of `dsprites_scream`: those of `dsprites`, variant "scream" by default."""

    variant: str = "scream"


@DATASETS.register("dsprites_scream")
class DSpritesScream(DSprites):
    """dSprites on crops of The Scream (`dsprites` with variant "scream"); `vaelab data
    dsprites_scream [--from FILE]` gets the painting. See the module docstring."""

    config_class = DSpritesScreamConfig

    @classmethod
    def prepare(cls, config: DSpritesConfig = DSpritesScreamConfig(),
                from_path: str | None = None) -> dict:
        """Downloads (or imports `from_path`, an image file) and checks the painting; the
        sprites are rendered on first load as for `dsprites`."""
        path = fetch_scream(config.root, from_path)
        load_scream(path)
        return {"path": str(path), "items": 1, "bytes": int(path.stat().st_size)}
