"""Shapes3D, MPI3D, SmallNORB and the labelled Cars3D: tiny stand-in files in the real formats
(HDF5, npz, NORB binary, MATLAB .mat in a tar.gz), fetched from a 127.0.0.1 server or imported
with --from; layouts, factor orders and checksum checks pinned."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.datafiles_helpers import (
    http_server,
    pattern_images,
    resource_for,
    write_mpi3d_npz,
    write_shapes3d_h5,
)
from vaelab.data import cars3d, mpi3d, shapes3d, smallnorb
from vaelab.data.base import DataError
from vaelab.data.download import Resource
from vaelab.data.groundtruth import GroundTruthConfig, grid_factors, open_images
from vaelab.registry import DATASETS


@pytest.fixture
def env(tmp_path, monkeypatch):
    """(data folder, served folder); no proxies, online, VAELAB_DATA pointing at tmp."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("VAELAB_OFFLINE", raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("VAELAB_DATA", str(data))
    served = tmp_path / "served"
    (served / "good").mkdir(parents=True)
    return data, served


def _cache_files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _chw(images_hwc: np.ndarray) -> np.ndarray:
    return images_hwc.transpose(0, 3, 1, 2)


# -- the published layouts ------------------------------------------------------------------------


def test_factor_names_and_sizes_are_the_published_ones():
    assert shapes3d.Shapes3D.factor_names == (
        "floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert shapes3d.Shapes3D.factor_sizes == (10, 10, 10, 8, 4, 15)
    assert mpi3d.MPI3D.factor_names == (
        "object_color", "object_shape", "object_size", "camera_height", "background_color",
        "horizontal_axis", "vertical_axis")
    assert mpi3d.MPI3D.factor_sizes == (6, 6, 2, 3, 3, 40, 40)
    assert int(np.prod(mpi3d.MPI3D.factor_sizes)) == 1_036_800
    assert smallnorb.SmallNORB.factor_names == ("category", "elevation", "azimuth", "lighting")
    assert smallnorb.SmallNORB.factor_sizes == (5, 9, 18, 6)
    assert cars3d.Cars3DLabelled.factor_names == ("elevation", "azimuth", "object")
    assert cars3d.Cars3DLabelled.factor_sizes == (4, 24, 183)
    assert int(np.prod(cars3d.Cars3DLabelled.factor_sizes)) == 17_568


def test_grid_factors_is_the_reshape_order():
    grid = grid_factors((2, 3, 4))
    assert grid.shape == (24, 3)
    assert grid[23].tolist() == [1, 2, 3] and grid[5].tolist() == [0, 1, 1]  # 5 = 0*12 + 1*4 + 1
    assert grid[13].tolist() == [1, 0, 1]


def test_every_source_file_has_two_urls_and_a_checksum():
    resources = [shapes3d.SHAPES3D_FILE, cars3d.CARS3D_ARCHIVE, *mpi3d.MPI3D_FILES.values(),
                 *smallnorb.SMALLNORB_FILES.values()]
    assert len(resources) == 11
    for resource in resources:
        assert len(resource.urls) >= 2 and len(set(resource.urls)) == len(resource.urls)
        assert resource.checksum[0] in ("sha256", "md5"), resource.filename
    assert mpi3d.MPI3D_FILES["toy"].urls[0].startswith(
        "https://storage.googleapis.com/mpi3d_disentanglement_dataset/")  # the current bucket


# -- Shapes3D (HDF5) ------------------------------------------------------------------------------

SMALL_SHAPES = (2, 1, 2, 2, 1, 3)  # 24 items


def _shapes3d_served(served, monkeypatch, name="good"):
    pytest.importorskip("h5py", reason="shapes3d reads HDF5: pip install 'vaelab[datasets]'")
    monkeypatch.setattr(shapes3d.Shapes3D, "factor_sizes", SMALL_SHAPES)
    path = served / name / "3dshapes.h5"
    path.parent.mkdir(exist_ok=True)
    images = write_shapes3d_h5(path, SMALL_SHAPES)
    return path, images


def test_shapes3d_download_from_the_mirror_layout_and_cache(env, monkeypatch):
    data, served = env
    path, images = _shapes3d_served(served, monkeypatch)
    with http_server(served) as (base, requests):
        monkeypatch.setattr(shapes3d, "SHAPES3D_FILE", resource_for(
            path, (f"{base}/gone/3dshapes.h5", f"{base}/good/3dshapes.h5")))
        dataset = shapes3d.Shapes3D.load()
        assert requests == ["/gone/3dshapes.h5", "/good/3dshapes.h5"]
        monkeypatch.setenv("VAELAB_OFFLINE", "1")
        again = shapes3d.Shapes3D.load()  # from the cache, no network
        assert len(requests) == 2
    assert len(dataset) == 24 and dataset.image_shape == (3, 64, 64)
    assert torch.equal(dataset.data, torch.from_numpy(_chw(images)))
    assert torch.equal(again.data, dataset.data)
    assert dataset.factors[20].tolist() == [1, 0, 1, 0, 0, 2]  # 20 = 12 + 6 + 2
    assert dataset.is_grid
    assert dataset.factor_values[5].tolist() == [0.5, 0.75, 1.0]
    rows = np.array([[1, 0, 1, 0, 0, 2], [0, 0, 0, 1, 0, 1]])
    x = dataset.sample_observations_from_factors(rows, np.random.default_rng(0))
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(_chw(images[[20, 4]])))


def test_shapes3d_corrupt_and_truncated_downloads_leave_nothing(env, monkeypatch):
    data, served = env
    path, _ = _shapes3d_served(served, monkeypatch)
    good = resource_for(path)
    blob = path.read_bytes()
    (served / "bad").mkdir()
    (served / "bad" / "3dshapes.h5").write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    (served / "short").mkdir()
    (served / "short" / "3dshapes.h5").write_bytes(blob[: len(blob) // 2])
    with http_server(served) as (base, _):
        for folder in ("bad", "short"):
            resource = Resource("3dshapes.h5", (f"{base}/{folder}/3dshapes.h5",), good.sha256)
            monkeypatch.setattr(shapes3d, "SHAPES3D_FILE", resource)
            with pytest.raises(DataError) as error:
                shapes3d.Shapes3D.load()
            message = str(error.value)
            assert f"expected {good.sha256}" in message and "--from PATH" in message
            assert "3dshapes.h5" in message
            assert _cache_files(data) == []  # nothing half-written
    # a truncated copy imported with --from: refused before anything is written
    short = data.parent / "mine" / "3dshapes.h5"
    short.parent.mkdir()
    short.write_bytes(blob[: len(blob) // 2])
    monkeypatch.setattr(shapes3d, "SHAPES3D_FILE", good)
    with pytest.raises(DataError, match="does not match"):
        shapes3d.Shapes3D.prepare(from_path=str(short))
    assert not list(data.rglob("*.npy"))


def test_shapes3d_refuses_labels_out_of_the_reshape_order(env, monkeypatch):
    data, served = env
    path, _ = _shapes3d_served(served, monkeypatch)
    import h5py

    with h5py.File(path, "r+") as handle:
        labels = handle["labels"][:]
        handle["labels"][:] = labels[::-1]  # the same values in reverse item order
    monkeypatch.setattr(shapes3d, "SHAPES3D_FILE", resource_for(path))
    with pytest.raises(DataError, match="reshape order"):
        shapes3d.Shapes3D.prepare(from_path=str(path))
    assert not list(data.rglob("*.npy")) and not list(data.rglob("*.part"))


# -- MPI3D (npz) ----------------------------------------------------------------------------------

SMALL_MPI = (1, 2, 1, 1, 1, 2, 3)  # 12 items


def test_mpi3d_variant_from_a_file_through_the_cli(env, monkeypatch, capsys):
    from vaelab.cli import main

    data, served = env
    monkeypatch.setattr(mpi3d.MPI3D, "factor_sizes", SMALL_MPI)
    path = served / "mpi3d_realistic.npz"
    images = write_mpi3d_npz(path, 12, compressed=True)
    monkeypatch.setitem(mpi3d.MPI3D_FILES, "realistic", resource_for(path))
    assert main(["data", "mpi3d", "--variant", "realistic", "--from", str(path)]) == 0
    assert "mpi3d: 12 items" in capsys.readouterr().out
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    for memmap_mb in (0, -1):
        dataset = mpi3d.MPI3D.load(mpi3d.MPI3DConfig(variant="realistic", memmap_mb=memmap_mb))
        assert torch.equal(dataset.data, torch.from_numpy(_chw(images)))
        assert dataset.factors[11].tolist() == [0, 1, 0, 0, 0, 1, 2]
        assert dataset.factors[7].tolist() == [0, 1, 0, 0, 0, 0, 1]  # 7 = 6 + 1
        assert dataset.mapped == (memmap_mb == 0)
    # A mapped dataset stays mapped on the host when moved: batches go to the device instead
    # (the "meta" device stands in for an accelerator here).
    mapped = mpi3d.MPI3D.load(mpi3d.MPI3DConfig(variant="realistic", memmap_mb=0))
    pointer = mapped.data.data_ptr()
    mapped.to("meta")
    assert mapped.data.device.type == "cpu" and mapped.data.data_ptr() == pointer
    assert mapped.device.type == "meta" and mapped.batch(torch.tensor([0, 3])).device.type == "meta"
    assert mapped.batch_of(torch.tensor([1])).labels is None
    mapped.to("cpu")
    assert torch.equal(mapped.uint8([2]), torch.from_numpy(_chw(images[[2]])))
    in_memory = mpi3d.MPI3D.load(mpi3d.MPI3DConfig(variant="realistic", memmap_mb=-1))
    assert in_memory.to("meta").data.device.type == "meta"
    with pytest.raises(DataError, match="mpi3d_toy.npz"):  # another variant: not there
        mpi3d.MPI3D.load(mpi3d.MPI3DConfig(variant="toy"))


def test_open_images_maps_above_the_threshold(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((4, 1, 8, 8), dtype=np.uint8))
    assert isinstance(open_images(path, 0), np.memmap)
    assert not isinstance(open_images(path, -1), np.memmap)
    assert not isinstance(open_images(path, 1), np.memmap)  # 256 bytes < 1 MiB
    from vaelab.data.groundtruth import _advise_random

    assert _advise_random(open_images(path, 0)) == hasattr(__import__("mmap"), "MADV_RANDOM")
    tensor = torch.from_numpy(open_images(path, 0))
    assert tensor.index_select(0, torch.tensor([1, 3])).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError):
        GroundTruthConfig(memmap_mb=-2)


def test_mpi3d_truncated_or_wrong_npz_is_a_clear_error(env, monkeypatch):
    data, served = env
    monkeypatch.setattr(mpi3d.MPI3D, "factor_sizes", SMALL_MPI)
    full = served / "full.npz"
    write_mpi3d_npz(full, 12)
    short = served / "short" / "mpi3d_toy.npz"
    short.parent.mkdir()
    short.write_bytes(full.read_bytes()[:-20000])
    monkeypatch.setitem(mpi3d.MPI3D_FILES, "toy", resource_for(short))  # checksum of the bad file
    with pytest.raises(DataError, match="mpi3d_toy.npz") as error:
        mpi3d.MPI3D.prepare(from_path=str(short))
    assert "--from" in str(error.value)
    assert not list(data.rglob("*.npy")) and not list(data.rglob("*.part"))
    wrong = served / "wrong" / "mpi3d_toy.npz"
    wrong.parent.mkdir()
    np.savez(wrong, images=pattern_images(11))  # one image short of the grid
    monkeypatch.setitem(mpi3d.MPI3D_FILES, "toy", resource_for(wrong))
    with pytest.raises(DataError, match=r"expected uint8 \(12, 64, 64, 3\)"):
        mpi3d.MPI3D.prepare(from_path=str(wrong))
    assert not list(data.rglob("*.npy"))


# -- SmallNORB (NORB binary matrices) -------------------------------------------------------------


def test_norb_reader_round_trip_and_errors(tmp_path):
    array = (np.arange(2 * 2 * 3 * 4) * 11 % 256).astype(np.uint8).reshape(2, 2, 3, 4)
    path = tmp_path / "m.mat"
    path.write_bytes(smallnorb.norb_bytes(array))
    raw = path.read_bytes()
    assert raw[:4] == bytes.fromhex("554c3d1e") and raw[4:8] == bytes([4, 0, 0, 0])
    read = smallnorb.read_norb_matrix(path)
    assert read.dtype == np.uint8 and np.array_equal(read, array)  # values above 127 stay
    vector = np.array([3, 1, 4], dtype=np.int32)
    (tmp_path / "v.mat.gz").write_bytes(gzip.compress(smallnorb.norb_bytes(vector)))
    assert len(raw) == 8 + 4 * 4 + array.size
    assert smallnorb.read_norb_matrix(tmp_path / "v.mat.gz").tolist() == [3, 1, 4]
    # 1-D: three sizes stored (4 + 4 + 12 header bytes)
    assert len(smallnorb.norb_bytes(vector)) == 20 + 12
    (tmp_path / "short.mat").write_bytes(raw[:-1])
    with pytest.raises(DataError, match="truncated or corrupt"):
        smallnorb.read_norb_matrix(tmp_path / "short.mat")
    (tmp_path / "magic.mat").write_bytes(b"\x00" * 4 + raw[4:])
    with pytest.raises(DataError, match="magic number"):
        smallnorb.read_norb_matrix(tmp_path / "magic.mat")
    (tmp_path / "gz.mat.gz").write_bytes(gzip.compress(raw)[:-8])
    with pytest.raises(DataError):
        smallnorb.read_norb_matrix(tmp_path / "gz.mat.gz")


def _write_norb_split(folder, split, rows):
    """The three .mat.gz files of one split with `rows` (n, 5) of (category, instance,
    elevation, azimuth index, lighting); returns the left-camera images (n, 96, 96)."""
    n = len(rows)
    rng = np.random.default_rng(len(split))
    dat = rng.integers(0, 256, (n, 2, 96, 96), dtype=np.uint8)
    info = np.stack([rows[:, 1], rows[:, 2], 2 * rows[:, 3], rows[:, 4]], axis=1).astype(np.int32)
    parts = {"dat": dat, "cat": rows[:, 0].astype(np.int32), "info": info}
    resources = {}
    for part, array in parts.items():
        name = smallnorb.SMALLNORB_FILES[(split, part)].filename
        (folder / name).write_bytes(gzip.compress(smallnorb.norb_bytes(array)))
        resources[(split, part)] = folder / name
    return dat[:, 0], resources


def test_smallnorb_splits_factors_and_resize_over_http(env, monkeypatch):
    data, served = env
    train_rows = np.array([[0, 4, 0, 0, 0], [4, 9, 8, 17, 5], [2, 6, 3, 5, 1]])
    test_rows = np.array([[1, 0, 2, 7, 3], [3, 5, 4, 1, 2]])
    left_train, files = _write_norb_split(served / "good", "train", train_rows)
    left_test, more = _write_norb_split(served / "good", "test", test_rows)
    with http_server(served) as (base, _):
        for key, path in {**files, **more}.items():
            monkeypatch.setitem(smallnorb.SMALLNORB_FILES, key, resource_for(
                path, (f"{base}/gone/{path.name}", f"{base}/good/{path.name}")))
        train = smallnorb.SmallNORB.load()
        test = smallnorb.SmallNORB.load(smallnorb.SmallNORBConfig(split="test"))
        both = smallnorb.SmallNORB.load(smallnorb.SmallNORBConfig(combine_splits=True))
    assert train.factors.tolist() == [[0, 0, 0, 0], [4, 8, 17, 5], [2, 3, 5, 1]]
    assert train.instances.tolist() == [4, 9, 6] and test.instances.tolist() == [0, 5]
    assert test.factors.tolist() == [[1, 2, 7, 3], [3, 4, 1, 2]]
    assert len(both) == 5 and both.factors[3:].tolist() == test.factors.tolist()
    assert train.image_shape == (1, 64, 64) and not train.is_grid
    expected = np.asarray(Image.fromarray(left_train[1]).resize((64, 64), Image.LANCZOS))
    assert np.array_equal(train.data[1, 0].numpy(), expected)
    assert np.array_equal(test.data[0, 0].numpy(), np.asarray(
        Image.fromarray(left_test[0]).resize((64, 64), Image.LANCZOS)))
    x = train.sample_observations_from_factors(np.array([[4, 8, 17, 5]]), np.random.default_rng(0))
    assert torch.equal(x, train.batch([1]))
    with pytest.raises(DataError, match="validation split"):
        smallnorb.SmallNORB.load(smallnorb.SmallNORBConfig(split="valid"))


def test_smallnorb_test_split_from_a_folder_through_the_cli(env, monkeypatch, capsys):
    from vaelab.cli import main

    data, served = env
    mine = served / "mine"
    mine.mkdir()
    _, files = _write_norb_split(mine, "test", np.array([[1, 0, 2, 7, 3], [3, 5, 4, 1, 2]]))
    for key, path in files.items():
        monkeypatch.setitem(smallnorb.SMALLNORB_FILES, key, resource_for(path))
    assert main(["data", "smallnorb", "--split", "test", "--from", str(mine)]) == 0
    assert "smallnorb: 2 items" in capsys.readouterr().out
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    assert smallnorb.SmallNORB.load(smallnorb.SmallNORBConfig(split="test")).factors.tolist() == \
        [[1, 2, 7, 3], [3, 4, 1, 2]]
    assert main(["data", "smallnorb"]) == 2  # the training files were never fetched
    assert "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz" in capsys.readouterr().err


# -- Cars3D (MATLAB files in a tar.gz) ------------------------------------------------------------


def _cars_archive(path, objects=2, corrupt_shape=False):
    import scipy.io

    with tarfile.open(path, "w:gz") as archive:
        for o in range(objects):
            a = np.arange(24)[None, None, None, :, None]
            e = np.arange(4)[None, None, None, None, :]
            # every pixel of view (a, e) of car o is 5a + e + 1 + 100o (channel 0)
            im = np.broadcast_to(5 * a + e + 1 + 100 * (o % 2),
                                 (128, 128, 3, 24, 4)).astype(np.uint8).copy()
            im[:, :, 1] = 250 - o  # channel 1 names the object
            if corrupt_shape:
                im = im[:, :, :, :, :3]
            blob = io.BytesIO()
            scipy.io.savemat(blob, {"im": im})
            info = tarfile.TarInfo(f"data/cars/car_{o:03d}_mesh.mat")
            info.size = len(blob.getvalue())
            archive.addfile(info, io.BytesIO(blob.getvalue()))


def test_cars3d_labelled_order_and_resize(env, monkeypatch):
    data, served = env
    monkeypatch.setattr(cars3d.Cars3DLabelled, "factor_sizes", (4, 24, 2))
    path = served / "good" / "nips2015-analogy-data.tar.gz"
    _cars_archive(path)
    with http_server(served) as (base, _):
        monkeypatch.setattr(cars3d, "CARS3D_ARCHIVE", resource_for(
            path, (f"{base}/gone/{path.name}", f"{base}/good/{path.name}")))
        dataset = DATASETS.get("cars3d_labelled").load()
    assert len(dataset) == 192 and dataset.image_shape == (3, 64, 64)
    for e, a, o in [(0, 0, 0), (3, 23, 1), (2, 5, 0), (1, 17, 1)]:
        i = (e * 24 + a) * 2 + o
        assert dataset.factors[i].tolist() == [e, a, o]
        image = dataset.data[i].numpy()
        assert (image[0] == 5 * a + e + 1 + 100 * o).all()
        assert (image[1] == 250 - o).all()


def test_cars3d_labelled_wrong_mat_layout_leaves_nothing(env, monkeypatch):
    data, served = env
    monkeypatch.setattr(cars3d.Cars3DLabelled, "factor_sizes", (4, 24, 2))
    path = served / "nips2015-analogy-data.tar.gz"
    _cars_archive(path, corrupt_shape=True)
    monkeypatch.setattr(cars3d, "CARS3D_ARCHIVE", resource_for(path))
    with pytest.raises(DataError, match=r"expected uint8 \(128, 128, 3, 24, 4\)"):
        cars3d.Cars3DLabelled.prepare(from_path=str(path))
    assert not list(data.rglob("*.npy")) and not list(data.rglob("*.part"))
    path.write_bytes(path.read_bytes()[:-300])
    monkeypatch.setattr(cars3d, "CARS3D_ARCHIVE", resource_for(path))
    with pytest.raises(DataError, match="truncated or not the Cars3D archive"):
        cars3d.Cars3DLabelled.prepare(from_path=str(path))
    assert not list(data.rglob("*.npy"))


def test_offline_without_files_says_what_to_fetch(env, monkeypatch):
    data, _ = env
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        mpi3d.MPI3D.load(mpi3d.MPI3DConfig(variant="real"))
    message = str(error.value)
    assert "mpi3d_real.npz" in message and "md5 0f33f609918fb5c97996692f91129802" in message
    assert "vaelab data mpi3d --from PATH" in message and "offline" in message
    assert not data.exists() or not list(data.rglob("*.npy"))


# -- a short run of each new dataset: train, `vaelab eval`, traversal row labels ------------------


def _small_dataset_on_disk(name, data, served, monkeypatch):
    """Writes and imports a tiny copy of `name` (factor grids shrunk); returns data options."""
    if name == "shapes3d":
        path, _ = _shapes3d_served(served, monkeypatch)
        monkeypatch.setattr(shapes3d, "SHAPES3D_FILE", resource_for(path))
        shapes3d.Shapes3D.prepare(from_path=str(path))
        return {}
    if name == "mpi3d":
        monkeypatch.setattr(mpi3d.MPI3D, "factor_sizes", SMALL_MPI)
        path = served / "mpi3d_toy.npz"
        write_mpi3d_npz(path, 12)
        monkeypatch.setitem(mpi3d.MPI3D_FILES, "toy", resource_for(path))
        mpi3d.MPI3D.prepare(from_path=str(path))
        return {"variant": "toy"}
    if name == "smallnorb":
        rows = np.array([[c, 4 + c, c % 9, (3 * c) % 18, c % 6] for c in range(5)] * 4)
        rows[5:, 2] = np.arange(15) % 9
        _, files = _write_norb_split(served / "good", "train", rows)
        for key, path in files.items():
            monkeypatch.setitem(smallnorb.SMALLNORB_FILES, key, resource_for(path))
        smallnorb.SmallNORB.prepare(from_path=str(served / "good"))
        return {}
    if name == "cars3d_labelled":
        monkeypatch.setattr(cars3d.Cars3DLabelled, "factor_sizes", (4, 24, 2))
        path = served / "nips2015-analogy-data.tar.gz"
        _cars_archive(path)
        monkeypatch.setattr(cars3d, "CARS3D_ARCHIVE", resource_for(path))
        cars3d.Cars3DLabelled.prepare(from_path=str(path))
        return {}
    assert name == "dsprites"
    return {"variant": "color", "limit": 1024}


# each dataset's reader and factors are tested above; the CLI path once
# in the default run (SmallNORB: its own binary format and a nuisance factor), every dataset in
# the heavy run
@pytest.mark.parametrize("name", ["smallnorb"] + [
    pytest.param(n, marks=pytest.mark.heavy)
    for n in ("shapes3d", "mpi3d", "cars3d_labelled", "dsprites")])
def test_short_run_eval_writes_default_metrics_per_factor(env, monkeypatch, name, capsys):
    from vaelab.cli import main
    from vaelab.metrics import DEFAULT_METRICS
    from vaelab.metrics.evaluate import metric_protocol
    from vaelab.runs import load_run
    from vaelab.viz.plots import _row_labels

    data, served = env
    options = _small_dataset_on_disk(name, data, served, monkeypatch)
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    config = data.parent / "config.json"
    config.write_text(json.dumps({
        "name": "short", "seed": 0, "model": {"name": "burgess", "latent_dim": 4},
        "objective": {"name": "beta_tcvae", "beta": 2.0}, "data": {"name": name, **options},
        "train": {"steps": 3, "batch_size": 4, "log_every": 1, "checkpoint_every": 0,
                  "gif_every": 0}}))
    out = data.parent / "runs"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-eval",
                 "--no-progress"]) == 0
    run_dir = out / "short"
    small = [f"{metric}.{key}={min(value, 100)}" for metric in DEFAULT_METRICS
             for key, value in metric_protocol(metric).items()
             if key.startswith("num_") and isinstance(value, int)]
    assert main(["eval", str(run_dir), "--quiet", "--device", "cpu",
                 *[arg for option in small for arg in ("--option", option)]]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = load_run(run_dir)
    dataset = run.dataset()
    assert metrics["protocol"]["dataset"] == dataset.name
    assert metrics["protocol"]["factors"] == dict(zip(dataset.factor_names,
                                                      dataset.factor_sizes))
    assert set(DEFAULT_METRICS) <= set(metrics["protocol"]["metrics"])
    assert {"mig", "dci_fast.disentanglement", "active_units"} <= set(metrics)
    varying = [n for n, s in zip(dataset.factor_names, dataset.factor_sizes) if s > 1]
    assert {f"mig.{n}" for n in varying} <= set(metrics)
    labels = _row_labels(run, np.arange(4))
    named = [label.split()[-2] for label in labels if len(label.split()) >= 4]
    assert all(n in dataset.factor_names for n in named)


def test_a_failed_rebuild_keeps_the_old_cache(env, monkeypatch):
    data, served = env
    monkeypatch.setattr(mpi3d.MPI3D, "factor_sizes", SMALL_MPI)
    good = served / "good" / "mpi3d_toy.npz"
    images = write_mpi3d_npz(good, 12)
    monkeypatch.setitem(mpi3d.MPI3D_FILES, "toy", resource_for(good))
    mpi3d.MPI3D.prepare(from_path=str(good))
    short = served / "short" / "mpi3d_toy.npz"
    short.parent.mkdir()
    short.write_bytes(good.read_bytes()[:-5000])
    monkeypatch.setitem(mpi3d.MPI3D_FILES, "toy", resource_for(short))
    with pytest.raises(DataError, match="as an npz"):  # a zip without its directory
        mpi3d.MPI3D.prepare(from_path=str(short))
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    assert torch.equal(mpi3d.MPI3D.load().data, torch.from_numpy(_chw(images)))
