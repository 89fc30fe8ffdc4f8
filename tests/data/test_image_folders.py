"""Image-folder datasets: decoding, crop vs squash, caching, splits, labels, imports, mixing."""

from __future__ import annotations

import tarfile
import time

import numpy as np
import pytest
import scipy.io
from datafiles_helpers import banded_face, write_image

from vaelab.data import load_dataset
from vaelab.data.base import DataError
from vaelab.data.celeba import CelebA
from vaelab.data.chairs import Chairs
from vaelab.data.images import ImageSpec, decode_image, decode_images, list_images, split_indices
from vaelab.data.mixed import CarsChairs, CelebAFaces

RED = (200, 40, 40)


def _celeba(root, n=6, partition=None, attributes=None):
    folder = root / "celeba" / "img_align_celeba"
    for i in range(n):
        write_image(folder / f"{i + 1:06d}.jpg", banded_face(colour=(200, 40 + 20 * i, 40)))
    if partition is not None:
        lines = [f"{i + 1:06d}.jpg {p}" for i, p in enumerate(partition)]
        (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    if attributes is not None:
        rows = [f"{i + 1:06d}.jpg  {a:2d} {-a:2d}" for i, a in enumerate(attributes)]
        (root / "celeba" / "list_attr_celeba.txt").write_text(
            f"{n}\nMale Smiling\n" + "\n".join(rows) + "\n")
    return folder


def test_centre_crop_keeps_aspect_and_squash_does_not(tmp_path):
    path = write_image(tmp_path / "face.png", banded_face())
    cropped = decode_image(path, ImageSpec(size=16, channels=3))
    assert cropped.shape == (3, 16, 16)
    np.testing.assert_array_equal(cropped[:, 1:-1, 1:-1].reshape(3, -1).T[0], RED)  # no green
    assert np.abs(cropped.astype(int) - np.asarray(RED)[:, None, None]).max() <= 2
    squashed = decode_image(path, ImageSpec(size=16, channels=3, squash=True))
    assert squashed[1, 0, 8] == 255 and squashed[1, 8, 8] == 40  # green band kept at the top


def test_crop_option_keeps_a_smaller_centre_square(tmp_path):
    image = np.full((100, 100), 255, dtype=np.uint8)
    image[25:75, 25:75] = 0  # black 50x50 centre
    path = write_image(tmp_path / "chair.png", image)
    assert decode_image(path, ImageSpec(size=10, channels=1, crop=50)).max() == 0
    whole = decode_image(path, ImageSpec(size=10, channels=1))
    assert whole[0, 0, 0] == 255 and whole[0, 5, 5] == 0


def test_jpeg_draft_decoding_is_close_to_full_decoding(tmp_path):
    from PIL import Image

    y, x = np.mgrid[0:218, 0:178]
    smooth = np.stack([128 + 100 * np.sin(x / 9), 128 + 100 * np.cos(y / 13),
                       128 + 60 * np.sin((x + y) / 17)], axis=-1).astype(np.uint8)
    path = write_image(tmp_path / "face.jpg", smooth)
    fast = decode_image(path, ImageSpec(size=64)).astype(int)
    with Image.open(path) as image:  # reference: full-size decode, same crop and filter
        image = image.convert("RGB").crop((0, 20, 178, 198))
        reference = np.asarray(image.resize((64, 64), Image.Resampling.BICUBIC)).astype(int)
    difference = np.abs(fast - reference.transpose(2, 0, 1))
    assert difference.mean() < 1.0 and difference.max() <= 6  # measured: 0.43 and 2


def test_parallel_decoding_equals_serial(tmp_path):
    paths = [write_image(tmp_path / f"{i:03d}.png", banded_face(40, 30, (i % 256, 7, 9)))
             for i in range(300)]  # above the in-process threshold
    serial = decode_images(paths, ImageSpec(size=8), workers=1)
    parallel = decode_images(paths, ImageSpec(size=8), workers=2)
    np.testing.assert_array_equal(serial, parallel)


def test_corrupt_and_missing_images(tmp_path):
    folder = _celeba(tmp_path, n=2)
    (folder / "000003.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="cannot decode image .*000003.jpg"):
        load_dataset("celeba", root=str(tmp_path), test_fraction=0.0)
    with pytest.raises(DataError) as info:
        load_dataset("celeba", root=str(tmp_path / "empty"))
    message = str(info.value)
    assert "mmlab.ie.cuhk.edu.hk" in message and "vaelab data celeba --from PATH" in message
    assert "00d2c5bc6d35e252742224ab0c1e8fcb" in message and "udacity" in message


def test_celeba_cache_is_reused_and_keyed_by_files_and_options(tmp_path):
    _celeba(tmp_path, n=4)
    first = load_dataset("celeba", root=str(tmp_path), test_fraction=0.0, image_size=16)
    caches = sorted((tmp_path / "celeba" / "cache").glob("*.npy"))
    assert len(caches) == 1 and first.data.shape == (4, 3, 16, 16)
    second = load_dataset("celeba", root=str(tmp_path), test_fraction=0.0, image_size=16)
    np.testing.assert_array_equal(first.data.numpy(), second.data.numpy())
    load_dataset("celeba", root=str(tmp_path), test_fraction=0.0, image_size=16, squash=True)
    assert len(list((tmp_path / "celeba" / "cache").glob("*.npy"))) == 2  # new options, new key
    write_image(tmp_path / "celeba" / "img_align_celeba" / "000009.jpg", banded_face())
    third = load_dataset("celeba", root=str(tmp_path), test_fraction=0.0, image_size=16)
    assert len(third) == 5  # a new file changes the key: no stale cache


def test_celeba_partition_and_attribute_labels(tmp_path):
    _celeba(tmp_path, n=6, partition=[0, 0, 1, 2, 0, 2], attributes=[1, -1, 1, 1, -1, 1])
    train = load_dataset("celeba", root=str(tmp_path), image_size=8, attribute="Male")
    test = load_dataset("celeba", root=str(tmp_path), image_size=8, split="test")
    assert len(train) == 3 and len(test) == 2 and test.labels is None
    assert train.labels.tolist() == [1, 0, 0]  # images 1, 2, 5
    with pytest.raises(DataError, match="unknown CelebA attribute 'Bald'"):
        load_dataset("celeba", root=str(tmp_path), image_size=8, attribute="Bald")


def test_celeba_prepare_from_zip_and_folder(tmp_path):
    import zipfile

    source = _celeba(tmp_path / "mine", n=3)
    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as archive:
        for path in list_images(source):
            archive.write(path, f"img_align_celeba/{path.name}")
    config = CelebA.config_class(root=str(tmp_path / "a"), image_size=8, test_fraction=0.0)
    report = CelebA.prepare(config, from_path=str(tmp_path / "faces.zip"))
    assert report["items"] == 3 and report["path"].endswith("celeba/img_align_celeba")
    assert report["bytes"] == sum(p.stat().st_size for p in list_images(source))
    config = CelebA.config_class(root=str(tmp_path / "b"), image_size=8, test_fraction=0.0)
    assert CelebA.prepare(config, from_path=str(source))["items"] == 3
    assert len(CelebA.load(config)) == 3
    # An archive under an official name must be the official file.
    (tmp_path / "faces.zip").rename(tmp_path / "img_align_celeba.zip")
    with pytest.raises(DataError, match="does not match the official file: size 8,"):
        CelebA.prepare(config, from_path=str(tmp_path / "img_align_celeba.zip"))


def test_split_indices_are_disjoint_and_deterministic():
    train, test = split_indices(100, "train", 0.1), split_indices(100, "test", 0.1)
    assert len(test) == 10 and len(train) == 90 and not set(train) & set(test)
    np.testing.assert_array_equal(test, split_indices(100, "test", 0.1))
    with pytest.raises(DataError, match="no test split"):
        split_indices(100, "test", 0.0)


def _chairs_tar(path, chairs=3, views=4):
    staging = path.parent / "staging"
    for c in range(chairs):
        for v in range(views):
            image = np.full((60, 60, 3), 255, dtype=np.uint8)
            image[20:40, 10 + 5 * v : 30 + 5 * v] = 30 * c
            write_image(staging / "rendered_chairs" / f"chair_{c:02d}" / "renders" /
                        f"image_{v:03d}_p020_t000_r096.png", image)
    with tarfile.open(path, "w") as archive:
        archive.add(staging / "rendered_chairs", arcname="rendered_chairs")
    return path


def test_chairs_from_tar_grey_with_chair_labels(tmp_path):
    archive = _chairs_tar(tmp_path / "rendered_chairs.tar")
    config = Chairs.config_class(root=str(tmp_path / "data"), image_size=16, test_fraction=0.0)
    report = Chairs.prepare(config, from_path=str(archive))
    assert report["items"] == 12
    chairs = Chairs.load(config)
    assert chairs.data.shape == (12, 1, 16, 16)
    assert chairs.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    test = Chairs.load(Chairs.config_class(root=str(tmp_path / "data"), image_size=16,
                                           test_fraction=0.25, split="test"))
    assert len(test) == 3


def test_broken_archive_is_a_data_error(tmp_path):
    (tmp_path / "rendered_chairs.tar").write_bytes(b"nope" * 100)
    with pytest.raises(DataError, match="cannot extract"):
        Chairs.prepare(Chairs.config_class(root=str(tmp_path)),
                       from_path=str(tmp_path / "rendered_chairs.tar"))


def test_stanford_cars_official_split_and_annotation_labels(tmp_path):
    folder = tmp_path / "cars"
    for i in range(3):
        write_image(folder / "cars_train" / f"{i + 1:05d}.jpg", banded_face(30, 50))
    write_image(folder / "cars_test" / "00001.jpg", banded_face(30, 50))
    annotations = np.zeros(3, dtype=[("fname", "O"), ("class", "O")])
    for i, label in enumerate([5, 196, 1]):
        annotations[i] = (f"{i + 1:05d}.jpg", label)
    (folder / "devkit").mkdir()
    scipy.io.savemat(folder / "devkit" / "cars_train_annos.mat", {"annotations": annotations})
    train = load_dataset("cars", root=str(tmp_path), image_size=8)
    test = load_dataset("cars", root=str(tmp_path), image_size=8, split="test")
    assert train.labels.tolist() == [4, 195, 0] and train.data.shape == (3, 3, 8, 8)
    assert len(test) == 1 and test.labels is None


def _cars3d(root, models=2, views=3):
    for m in range(models):
        for v in range(views):
            write_image(root / "cars3d" / "images" / f"car_{m}" / f"{v}.png",
                        np.full((20, 20, 3), 60 * m + v, dtype=np.uint8))


def test_mixed_cars_chairs_domains_and_common_shape(tmp_path):
    _cars3d(tmp_path)
    (tmp_path / "data").mkdir()
    Chairs.prepare(Chairs.config_class(root=str(tmp_path), image_size=16),
                   from_path=str(_chairs_tar(tmp_path / "data" / "rendered_chairs.tar")))
    mixed = load_dataset("cars_chairs", root=str(tmp_path), image_size=16, test_fraction=0.0)
    assert mixed.data.shape == (6 + 12, 3, 16, 16)
    assert mixed.domains.tolist() == [0] * 6 + [1] * 12 == mixed.labels.tolist()
    assert mixed.domain_names == ("cars3d", "chairs")
    grey = mixed.data[6:]
    assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()
    limited = load_dataset("cars_chairs", root=str(tmp_path), image_size=16, limit=2)
    assert limited.domains.tolist() == [0, 0, 1, 1]  # limit is per domain


def test_mixed_sampler_pure_and_random(tmp_path):
    domains = np.asarray([0] * 30 + [1] * 10)
    import torch

    mixed = CelebAFaces(torch.zeros((40, 3, 4, 4), dtype=torch.uint8), domains, name="celeba_faces")
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = mixed.sample_batch_indices(16, rng, mode="pure")
        assert len(set(domains[batch])) == 1
    # 200 batches x 64 items = 12,800 draws of Bernoulli(0.8): sd of the mean 0.0035; allow 5 sd.
    draws = np.concatenate([mixed.sample_batch_indices(64, rng, proportion=0.8) for _ in range(200)])
    assert abs((domains[draws] == 0).mean() - 0.8) < 0.018
    assert (domains[mixed.sample_batch_indices(8, rng, proportion=1.0)] == 0).all()
    with pytest.raises(ValueError, match="mode"):
        mixed.sample_batch_indices(8, rng, mode="mixed")


def test_mixed_prepare_refuses_from_path(tmp_path):
    with pytest.raises(ValueError, match="import each"):
        CarsChairs.prepare(CarsChairs.config_class(root=str(tmp_path)), from_path="x")


def test_faces_missing_message_points_to_the_source(tmp_path):
    with pytest.raises(DataError, match="faces.dmi.unibas.ch"):
        load_dataset("faces", root=str(tmp_path))


def test_offline_prepare_without_files_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        Chairs.prepare(Chairs.config_class(root=str(tmp_path)))
    message = str(info.value)
    assert "rendered_chairs.tar" in message and str(tmp_path / "chairs") in message


def test_folder_config_validation():
    with pytest.raises(ValueError, match="test_fraction"):
        Chairs.config_class(test_fraction=1.0)
    with pytest.raises(ValueError, match="image_size"):
        CelebA.config_class(image_size=2)


def test_second_load_uses_the_cache(tmp_path):
    """Benchmark-ish: 400 JPEGs; the cached load is much faster than the first and identical."""
    _celeba(tmp_path, n=1)
    source = tmp_path / "celeba" / "img_align_celeba" / "000001.jpg"
    for i in range(2, 401):
        (source.parent / f"{i:06d}.jpg").write_bytes(source.read_bytes())
    start = time.perf_counter()
    first = load_dataset("celeba", root=str(tmp_path), test_fraction=0.0, workers=2)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = load_dataset("celeba", root=str(tmp_path), test_fraction=0.0, workers=2)
    warm = time.perf_counter() - start
    assert first.data.shape == (400, 3, 64, 64)
    np.testing.assert_array_equal(first.data.numpy(), second.data.numpy())
    assert warm < 0.5 and warm < cold


@pytest.mark.slow
def test_benchmark_10000_jpegs(tmp_path):
    """10,000 178x218 JPEGs: first load (parallel decode) vs cached load; prints timings."""
    _celeba(tmp_path, n=1)
    source = tmp_path / "celeba" / "img_align_celeba" / "000001.jpg"
    blob = source.read_bytes()
    for i in range(2, 10_001):
        (source.parent / f"{i:06d}.jpg").write_bytes(blob)
    start = time.perf_counter()
    first = load_dataset("celeba", root=str(tmp_path), test_fraction=0.0)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = load_dataset("celeba", root=str(tmp_path), test_fraction=0.0)
    warm = time.perf_counter() - start
    touch = time.perf_counter()
    checksum = int(second.data.sum())  # pages everything in
    touch = time.perf_counter() - touch
    assert second.data.shape == (10_000, 3, 64, 64) and checksum == int(first.data.sum())
    print(f"cold {cold:.2f} s, cached {warm:.3f} s, page-in of all pixels {touch:.2f} s")
    assert warm < 1.0


def test_mixed_set_with_one_domain_missing_names_it_and_how_to_fetch_it(tmp_path):
    _cars3d(tmp_path)  # cars present, chairs missing
    with pytest.raises(DataError) as caught:
        load_dataset("cars_chairs", root=str(tmp_path), image_size=16, test_fraction=0.0)
    message = str(caught.value)
    assert "cars_chairs mixes cars3d and chairs; cannot load chairs:" in message
    assert "[chairs]" in message and "vaelab data chairs --from PATH" in message
    assert "cars3d," not in message.split("cannot load")[1]  # the present domain is not blamed
    with pytest.raises(DataError, match="cannot load celeba, faces:"):
        load_dataset("celeba_faces", root=str(tmp_path / "empty"))
