"""Tests of the procedural dSprites renderer, its bit-packed cache, and the official-npz path."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab.data.dsprites as dsprites_module
from vaelab.data.base import DataError
from vaelab.data.dsprites import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    FACTOR_VALUES,
    NPZ_URL,
    DSprites,
    DSpritesConfig,
    grid_factors,
    pack_images,
    render_dsprites,
    unpack_images,
)
from vaelab.data.loading import load_dataset
from vaelab.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
REAL_IMAGES = REPO / ".." / "shared" / "data" / "dsprites-real" / "images_100.npz"
N = 737_280


def official_index(row) -> int:
    """Index in the official npz of a factor row (shape, scale, orientation, pos_x, pos_y)."""
    shape, scale, orientation, x, y = (int(v) for v in row)
    return (((shape * 6 + scale) * 40 + orientation) * 32 + x) * 32 + y


def random_rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, size=n) for s in FACTOR_SIZES], axis=1)


@pytest.fixture(scope="module")
def full_grid() -> np.ndarray:
    """The whole grid, bit-packed (737280, 512); rendered once for this module (~5-10 s)."""
    return dsprites_module._render_packed(grid_factors())


# ----------------------------------------------------------------------------------- factors


def test_factor_metadata_matches_the_official_npz():
    assert FACTOR_NAMES == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert FACTOR_SIZES == (3, 6, 40, 32, 32) and int(np.prod(FACTOR_SIZES)) == N
    np.testing.assert_allclose(FACTOR_VALUES[0], [1, 2, 3])
    np.testing.assert_allclose(FACTOR_VALUES[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert FACTOR_VALUES[2][0] == 0 and FACTOR_VALUES[2][-1] == pytest.approx(2 * np.pi)
    assert FACTOR_VALUES[2][1] == pytest.approx(0.16110731556870733)  # 2 pi / 39
    assert FACTOR_VALUES[3][1] == pytest.approx(1 / 31) and FACTOR_VALUES[4][-1] == 1.0


def test_grid_factors_are_in_official_order():
    factors = grid_factors()
    assert factors.shape == (N, 5) and factors.dtype == np.int64
    np.testing.assert_array_equal(factors[:3], [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 2]])
    np.testing.assert_array_equal(factors[32], [0, 0, 0, 1, 0])  # pos_y fastest, then pos_x
    np.testing.assert_array_equal(factors[-1], [2, 5, 39, 31, 31])
    for i in np.random.default_rng(1).integers(0, N, size=50):
        assert official_index(factors[i]) == i


def test_index_of_factors_is_the_official_index_arithmetic():
    # A zero-stride view stands in for the 377 MB of images: only the factor logic is under test.
    packed = torch.zeros(1, 512, dtype=torch.uint8).expand(N, 512)
    data = DSprites(packed, grid_factors())
    assert data.is_grid and len(data) == N and data.num_factors == 5
    rows = random_rows(100, seed=2)
    expected = [official_index(r) for r in rows]
    np.testing.assert_array_equal(data.index_of_factors(rows, np.random.default_rng(0)), expected)
    fixed = data.resample_with_fixed_factor(2, np.full(20, 7), np.random.default_rng(0))
    assert (fixed[:, 2] == 7).all()


# ---------------------------------------------------------------------------------- renderer


def test_render_shapes_dtype_binary_and_nonempty():
    images = render_dsprites(random_rows(64))
    assert images.shape == (64, 64, 64) and images.dtype == np.uint8
    assert set(np.unique(images)) <= {0, 1}
    assert (images.sum(axis=(1, 2)) >= 40).all()  # the smallest sprite has ~55 pixels


def test_render_is_deterministic_and_independent_of_the_batch():
    rows = random_rows(40, seed=3)
    together = render_dsprites(rows)
    np.testing.assert_array_equal(together, render_dsprites(rows))
    alone = np.concatenate([render_dsprites(rows[i : i + 1]) for i in range(len(rows))])
    np.testing.assert_array_equal(together, alone)


def test_axis_aligned_square_known_pixels():
    # Scale 1: side 19.2 px centred at 16 + 32 * pos, so pixel centres 6.5 .. 25.5 are inside.
    image = render_dsprites(np.array([[0, 5, 0, 0, 0]]))[0]
    expected = np.zeros((64, 64), np.uint8)
    expected[6:26, 6:26] = 1
    np.testing.assert_array_equal(image, expected)
    # pos_x = 1: centre 48, columns 38..57; orientation 2 pi draws the same square as 0.
    image = render_dsprites(np.array([[0, 5, 39, 31, 0]]))[0]
    expected = np.zeros((64, 64), np.uint8)
    expected[6:26, 38:58] = 1
    np.testing.assert_array_equal(image, expected)


def test_sizes_scale_with_scale_squared():
    # Averaged over 64 positions the pixel count approaches the exact area (19.2 s)^2.
    xy = np.stack(np.meshgrid(np.arange(0, 32, 4), np.arange(0, 32, 4)), -1).reshape(-1, 2)
    areas = []
    for s in range(6):
        rows = np.concatenate([np.tile([[0, s, 0]], (len(xy), 1)), xy], axis=1)
        areas.append(render_dsprites(rows).sum(axis=(1, 2)).mean())
    expected = [(19.2 * v) ** 2 for v in FACTOR_VALUES[1]]
    np.testing.assert_allclose(areas, expected, rtol=0.03)
    assert np.all(np.diff(areas) > 0)


def test_ellipse_is_wide_and_heart_points_down_at_orientation_zero():
    ellipse = render_dsprites(np.array([[1, 5, 0, 15, 15]]))[0]
    rows, cols = np.nonzero(ellipse)
    assert np.ptp(cols) > 1.6 * np.ptp(rows)
    heart = render_dsprites(np.array([[2, 5, 0, 15, 15]]))[0]
    widths = heart.sum(axis=1)[heart.sum(axis=1) > 0]
    assert widths[-1] <= 2 and widths[:5].mean() > 4 * widths[-1]  # lobes on top, tip at bottom


def test_rotation_is_clockwise_on_screen_and_mirror_symmetric():
    # Clockwise on screen turns the heart's tip (the bottom) towards the left.
    heart = render_dsprites(np.array([[2, 5, 4, 15, 15]]))[0].astype(float)
    rows, cols = np.nonzero(heart)
    low = rows >= np.quantile(rows, 0.9)
    assert cols[low].mean() < cols.mean() - 1
    # Orientations k and 39 - k are mirror images (theta and 2 pi - theta).
    a = render_dsprites(np.array([[2, 4, 6, 10, 12]]))[0]
    b = render_dsprites(np.array([[2, 4, 33, 21, 12]]))[0][:, ::-1]
    assert (a & b).sum() / (a | b).sum() > 0.9


def test_render_rejects_bad_factors():
    with pytest.raises(ValueError, match="factors must be"):
        render_dsprites(np.zeros((3, 4), dtype=int))
    with pytest.raises(ValueError, match="out of range"):
        render_dsprites(np.array([[3, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="integer"):
        render_dsprites(np.zeros((1, 5)))


def test_bit_pack_round_trip():
    images = render_dsprites(random_rows(16, seed=4))
    packed = pack_images(images)
    assert packed.shape == (16, 512) and packed.dtype == np.uint8
    np.testing.assert_array_equal(unpack_images(packed), images)
    np.testing.assert_array_equal(dsprites_module._render_packed(random_rows(16, seed=4)), packed)


# ----------------------------------------------------------------------------------- dataset


def test_batch_uint8_and_len_on_cpu():
    data = DSprites.load(DSpritesConfig(limit=100))  # renders just the first 100 items
    assert len(data) == 100 and data.image_shape == (1, 64, 64) and not data.is_grid
    assert data.data.shape == (100, 512) and data.data.dtype == torch.uint8
    assert data.to("cpu") is data and data.device == torch.device("cpu")
    index = [0, 5, 99]
    batch = data.batch(index)
    assert batch.shape == (3, 1, 64, 64) and batch.dtype == torch.float32
    assert set(batch.unique().tolist()) == {0.0, 1.0}
    expected = render_dsprites(grid_factors()[index])
    np.testing.assert_array_equal(batch[:, 0].numpy(), expected)
    np.testing.assert_array_equal(data.uint8(torch.tensor(index))[:, 0].numpy(), expected * 255)
    np.testing.assert_array_equal(data.factors, grid_factors()[:100])
    obs = data.sample_observations_from_factors(data.factors[[7, 8]], np.random.default_rng(0))
    np.testing.assert_array_equal(obs.numpy(), data.batch([7, 8]).numpy())


def test_registered_and_loadable_by_name():
    assert DATASETS.get("dsprites") is DSprites and DSprites.config_class is DSpritesConfig
    data = load_dataset("dsprites", limit=8)
    assert len(data) == 8
    with pytest.raises(ValueError, match="source"):
        DSpritesConfig(source="web")


@pytest.mark.heavy  # renders the 737,280-image grid (~8 s)
@pytest.mark.xdist_group("full_grid")  # one worker renders the grid once
def test_full_grid_cache_reuse_and_load(full_grid, tmp_path, monkeypatch):
    monkeypatch.setattr(dsprites_module, "_render_packed", lambda factors: full_grid)
    info = DSprites.prepare(DSpritesConfig(root=str(tmp_path)))
    path = Path(info["path"])
    assert (
        info["items"] == N
        and info["bytes"] == path.stat().st_size
        and path.parent.name == "dsprites"
    )
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["items"] == N and len(sidecar["sha256"]) == 64
    assert not list(path.parent.glob("*.tmp"))  # atomic writes leave no temporaries

    def no_render(factors):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(dsprites_module, "_render_packed", no_render)
    data = DSprites.load(DSpritesConfig(root=str(tmp_path)))
    assert len(data) == N and data.is_grid
    rows = random_rows(30, seed=5)
    index = data.index_of_factors(rows, np.random.default_rng(0))
    np.testing.assert_array_equal(index, [official_index(r) for r in rows])
    np.testing.assert_array_equal(data.batch(index)[:, 0].numpy(), unpack_images(full_grid[index]))
    limited = DSprites.load(DSpritesConfig(root=str(tmp_path), limit=1000))  # slices the cache
    assert len(limited) == 1000


def _fake_renderer(calls):
    def render(factors):
        calls.append(len(factors))
        return np.full((len(factors), 512), len(calls), dtype=np.uint8)

    return render


@pytest.mark.parametrize("damage", ["truncate", "flip", "version", "sidecar"])
def test_corrupt_cache_is_detected_and_regenerated(damage, tmp_path, monkeypatch, capsys):
    # A 2,000-item stand-in for the grid keeps the cache small; the machinery is the same.
    small = grid_factors()[:2000]
    monkeypatch.setattr(dsprites_module, "grid_factors", lambda: small)
    calls: list[int] = []
    monkeypatch.setattr(dsprites_module, "_render_packed", _fake_renderer(calls))
    config = DSpritesConfig(root=str(tmp_path))
    path = Path(DSprites.prepare(config)["path"])
    assert calls == [2000]
    err = capsys.readouterr().err  # the first build says so, before and after
    assert "building the procedural dSprites" in err and "ready (2,000 items" in err
    DSprites.load(config)
    assert calls == [2000]  # reused
    assert capsys.readouterr().err == ""  # silently
    sidecar = path.with_suffix(".json")
    if damage == "truncate":
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size - 512)
    elif damage == "flip":
        with open(path, "r+b") as handle:
            handle.seek(path.stat().st_size // 2)
            handle.write(b"\x00\x01\x02")
    elif damage == "version":
        info = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps(dict(info, render_version=-1)))
    else:
        sidecar.write_text("{not json")
    data = DSprites.load(config)
    assert calls == [2000, 2000] and len(data) == 2000
    assert "rebuilding" in capsys.readouterr().err
    assert int(data.data[0, 0]) == 2  # the regenerated content


# ------------------------------------------------------------------------------- official npz


def write_fake_npz(path: Path, rows: np.ndarray, images: np.ndarray | None = None) -> Path:
    """An npz in the official layout (colour column first) for the given factor rows."""
    classes = np.concatenate([np.zeros((len(rows), 1), np.int64), rows], axis=1)
    values = np.concatenate(
        [np.ones((len(rows), 1))] + [FACTOR_VALUES[k][rows[:, k]][:, None] for k in range(5)],
        axis=1,
    )
    imgs = render_dsprites(rows) if images is None else images
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=values)
    return path


def test_npz_source_loads_through_the_same_api(tmp_path):
    rows = grid_factors()[::5000]
    npz = write_fake_npz(tmp_path / "fake.npz", rows)
    data = DSprites.load(DSpritesConfig(source="npz", npz_path=str(npz), root=str(tmp_path)))
    assert len(data) == len(rows) and not data.is_grid
    np.testing.assert_array_equal(data.factors, rows)
    np.testing.assert_array_equal(
        data.batch(np.arange(len(rows)))[:, 0].numpy(), render_dsprites(rows)
    )
    limited = DSprites.load(DSpritesConfig(source="npz", npz_path=str(npz), limit=10))
    np.testing.assert_array_equal(limited.factors, rows[:10])


def test_npz_prepare_imports_into_the_data_folder(tmp_path):
    rows = grid_factors()[::20000]
    (tmp_path / "download").mkdir()
    npz = write_fake_npz(tmp_path / "download" / dsprites_module.NPZ_NAME, rows)
    home = tmp_path / "home"
    info = DSprites.prepare(DSpritesConfig(source="npz", root=str(home)), from_path=str(npz))
    assert info["items"] == len(rows)
    assert (home / "dsprites" / dsprites_module.NPZ_NAME).is_file()
    data = DSprites.load(DSpritesConfig(source="npz", root=str(home)))  # the default npz path
    np.testing.assert_array_equal(data.factors, rows)
    # `vaelab data dsprites --from PATH` passes a default (procedural) config: still an import.
    again = DSprites.prepare(DSpritesConfig(root=str(home)), from_path=str(npz.parent))
    assert again == info
    with pytest.raises(DataError, match="not found"):
        DSprites.prepare(DSpritesConfig(root=str(home)), from_path=str(tmp_path / "nowhere"))


def test_missing_npz_says_what_and_where(tmp_path):
    with pytest.raises(DataError) as error:
        DSprites.load(DSpritesConfig(source="npz", root=str(tmp_path)))
    message = str(error.value)
    assert NPZ_URL in message and "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz" in message
    assert str(tmp_path) in message


def test_corrupt_npz_raises_data_error(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="cannot read"):
        DSprites.load(DSpritesConfig(source="npz", npz_path=str(garbage)))
    wrong_keys = tmp_path / "keys.npz"
    np.savez(wrong_keys, images=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(DataError, match="latents_classes"):
        DSprites.load(DSpritesConfig(source="npz", npz_path=str(wrong_keys)))
    rows = grid_factors()[:4]
    bad_size = write_fake_npz(tmp_path / "size.npz", rows, images=np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(DataError, match="imgs"):
        DSprites.load(DSpritesConfig(source="npz", npz_path=str(bad_size)))
    truncated = tmp_path / "truncated.npz"
    raw = write_fake_npz(tmp_path / "whole.npz", rows).read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError):
        DSprites.load(DSpritesConfig(source="npz", npz_path=str(truncated)))
    assert zipfile.is_zipfile(tmp_path / "whole.npz")


# ------------------------------------------------------------------------------- calibration


@pytest.mark.heavy
@pytest.mark.xdist_group("full_grid")
def test_every_real_image_has_a_twin_in_the_grid(full_grid):
    if not REAL_IMAGES.exists():
        pytest.skip("../shared/data/dsprites-real is not present beside the checkout")
    spec = importlib.util.spec_from_file_location(
        "dsprites_calibration", REPO / "benchmarks" / "dsprites_calibration.py"
    )
    calibration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibration)
    real = np.load(REAL_IMAGES)["images"]
    scores, indices = calibration.best_matches(real, full_grid)
    assert scores.min() >= 0.95, f"worst best-match IoU {scores.min():.4f}"
    assert scores.mean() >= 0.99, f"mean best-match IoU {scores.mean():.4f}"
    assert (scores == 1).sum() >= 60  # most are pixel-exact twins
    # Every calibration square (about 40 of the 100) is reproduced exactly.
    squares = grid_factors()[indices, 0] == 0
    assert squares.sum() >= 30 and (scores[squares] == 1).all()


def test_device_unpacking_is_bit_identical_to_the_host_path():
    """The GPU path keeps dSprites bit-packed (uint8, 512 bytes per image) on the device and
    unpacks there (`unpack_on_device`); it must give exactly `np.unpackbits`'s images, for every
    byte value and on real rows, and copy its shift table to a device only once."""
    every_byte = np.repeat(np.arange(256, dtype=np.uint8), 2).reshape(1, 512)
    rows = np.concatenate([every_byte, pack_images(render_dsprites(random_rows(7, seed=9)))])
    got = dsprites_module.unpack_on_device(torch.from_numpy(rows))
    assert got.dtype == torch.uint8 and got.shape == (8, 1, 64, 64)
    np.testing.assert_array_equal(got[:, 0].numpy(), unpack_images(rows))
    data = DSprites(torch.from_numpy(rows), random_rows(8, seed=9))
    assert data.data.dtype == torch.uint8 and data.data.shape == (8, 512)  # resident packed
    np.testing.assert_array_equal(data.batch([3, 0])[:, 0].numpy(), unpack_images(rows[[3, 0]]))
    cpu = torch.device("cpu")
    assert dsprites_module._shifts(cpu) is dsprites_module._shifts(cpu)
