"""Shared machinery for image-folder datasets (CelebA, 3D faces, chairs, cars).

* `list_images` finds the image files under a folder, sorted.
* `decode_images` turns them into one uint8 array (N, C, S, S): each image is centre-cropped to a
  square (aspect ratio kept; `crop` picks a smaller centred square) or squashed (`squash=True`,
  the disvae / UG-VAE behaviour), then resized with Pillow's antialiased bicubic filter. JPEGs are
  opened in Pillow `draft` mode, which lets libjpeg decode directly at 1/2, 1/4 or 1/8 scale while
  staying at least S pixels on each side: several times faster on CelebA, at a small cost in
  sharpness before the final resize. Decoding runs in a process pool.
* `cached_images` stores the decoded array once as a `.npy` file keyed by the file list (relative
  paths and sizes) and the options, and later opens it memory-mapped (copy-on-write), so a second
  load costs a directory listing plus a page-in.
* `FolderDataset` is the registered-dataset base class: `load(config)` and `prepare(config,
  from_path)` for a dataset kept as a folder of images under `data_home()/<name>/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vaelab.data.base import DataConfig, DataError, ImageDataset, data_home
from vaelab.data.download import Resource, fetch_all, is_offline, missing_message, verify

__all__ = [
    "IMAGE_SUFFIXES",
    "FolderConfig",
    "FolderDataset",
    "ImageSpec",
    "cached_images",
    "decode_image",
    "decode_images",
    "extract_archive",
    "labels_by_folder",
    "list_images",
    "split_indices",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")
CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused
_SERIAL_BELOW = 256  # decode fewer images than this in-process: a pool costs more than it saves
_CHUNK = 128  # images per pool task


@dataclass(frozen=True)
class ImageSpec:
    """How a source image becomes an array: (channels, size, size) uint8."""

    size: int = 64
    channels: int = 3  # 1: grey ("L"), 3: RGB
    squash: bool = False  # resize the whole image to a square, ignoring its aspect ratio
    crop: int = 0  # side (source pixels) of the centred square kept; 0: the largest one


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted by relative path; hidden ones skipped.

    Uses `os.walk` and string operations: pathlib costs ~100 us per file, too much at 200,000.
    """
    folder = Path(folder)
    found: list[tuple[str, str]] = []  # (relative posix path, absolute path)
    base = str(folder)
    for directory, subdirectories, names in os.walk(base):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        relative = os.path.relpath(directory, base)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append((prefix + name, os.path.join(directory, name)))
    found.sort()
    return [Path(path) for _, path in found]


def decode_image(path: Path | str, spec: ImageSpec) -> np.ndarray:
    """One image as uint8 (C, S, S); see the module docstring for the crop and resize."""
    size = spec.size
    mode = "L" if spec.channels == 1 else "RGB"
    try:
        with Image.open(path) as image:
            original_min = min(image.size)
            # libjpeg DCT scaling: decode at the smallest 1/2^k scale that keeps the kept square
            # at least `size` pixels wide. A no-op for PNG and other formats.
            need = size
            if spec.crop and not spec.squash:
                need = int(np.ceil(size * original_min / min(spec.crop, original_min)))
            image.draft(mode, (need, need))
            image = image.convert(mode)
            width, height = image.size
            if not spec.squash:
                side = min(width, height)
                if spec.crop:
                    side = max(1, min(side, round(spec.crop * side / original_min)))
                left, top = (width - side) // 2, (height - side) // 2
                image = image.crop((left, top, left + side, top + side))
            image = image.resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot decode image {path}: {error}") from error
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _decode_chunk(paths: Sequence[str], spec: ImageSpec) -> np.ndarray:
    return np.stack([decode_image(path, spec) for path in paths])


def decode_images(
    paths: Sequence[Path], spec: ImageSpec, workers: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    """All images as uint8 (N, C, S, S), decoded in a process pool of `workers` (0: all cores).

    Args:
        paths: image files.
        spec: size, channels and crop.
        workers: processes; 0 means `os.cpu_count()`, 1 decodes in this process.
        out: optional preallocated (N, C, S, S) array (a memmap) to fill in place.
    """
    shape = (len(paths), spec.channels, spec.size, spec.size)
    out = np.empty(shape, dtype=np.uint8) if out is None else out
    workers = workers or os.cpu_count() or 1
    names = [str(path) for path in paths]
    if workers == 1 or len(names) < _SERIAL_BELOW:
        for i, name in enumerate(names):
            out[i] = decode_image(name, spec)
        return out
    starts = range(0, len(names), _CHUNK)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        chunks = pool.map(_decode_chunk, [names[s : s + _CHUNK] for s in starts], [spec] * len(starts))
        for start, chunk in zip(starts, chunks):
            out[start : start + len(chunk)] = chunk
    return out


def cached_images(
    paths: Sequence[Path], root: Path, spec: ImageSpec, cache_dir: Path, workers: int = 0
) -> np.ndarray:
    """Decoded images (N, C, S, S) uint8, from the cache when the files and options match.

    The cache key hashes the relative paths (to `root`), file sizes, `spec` and CACHE_VERSION.
    The array comes back memory-mapped copy-on-write: pages load on first touch and writes stay
    private.
    """
    base = len(str(root)) + 1  # relative names by slicing: pathlib is slow at 200,000 files
    records = [(str(path)[base:], os.stat(path).st_size) for path in paths]
    key_source = json.dumps({"v": CACHE_VERSION, "spec": asdict(spec), "files": records})
    key = hashlib.sha256(key_source.encode()).hexdigest()[:20]
    target = cache_dir / f"images-{spec.size}px-{spec.channels}ch-{key}.npy"
    if target.is_file():
        try:
            cached = np.load(target, mmap_mode="c")
            if cached.shape == (len(paths), spec.channels, spec.size, spec.size):
                return cached
        except (OSError, ValueError):
            pass  # unreadable cache: rebuild it below
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    shape = (len(paths), spec.channels, spec.size, spec.size)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        decode_images(paths, spec, workers, out=array)
        array.flush()
        del array
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(target, mmap_mode="c")


def split_indices(n: int, split: str, test_fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a deterministic train/test split for datasets without an official one.

    A fixed permutation (seed 0) sends round(test_fraction * n) items to "test", the rest to
    "train". test_fraction = 0 puts everything in "train" and asks for "test" raise `DataError`.
    """
    if split == "valid":
        raise DataError("this dataset has no official validation split; hold out part of the "
                        "training set with train.valid_holdout (for example 0.1)")
    n_test = round(test_fraction * n)
    if split == "test" and n_test == 0:
        raise DataError("this dataset has no test split; set test_fraction > 0 to hold some out")
    order = np.random.default_rng(seed).permutation(n)
    chosen = order[:n_test] if split == "test" else order[n_test:]
    return np.sort(chosen)


def labels_by_folder(files: Sequence[Path], root: Path) -> np.ndarray:
    """Label of each file: the index of its top-level folder under `root`, in sorted order."""
    base = len(str(root)) + 1
    tops = [str(path)[base:].partition(os.sep)[0] if os.sep in str(path)[base:] else ""
            for path in files]
    names = {name: i for i, name in enumerate(sorted(set(tops)))}
    return np.asarray([names[top] for top in tops], dtype=np.int64)


def _is_archive(path: Path) -> bool:
    return any(path.name.lower().endswith(suffix) for suffix in ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, destination: Path) -> None:
    """Extracts a zip or tar archive into `destination`, refusing paths that escape it."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as handle:
                root = destination.resolve()
                for member in handle.namelist():
                    if not (destination / member).resolve().is_relative_to(root):
                        raise DataError(f"{archive}: member {member!r} would escape {destination}")
                handle.extractall(destination)
        else:
            with tarfile.open(archive) as handle:
                handle.extractall(destination, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise DataError(f"cannot extract {archive}: {error}") from error


@dataclass(frozen=True, kw_only=True)
class FolderConfig(DataConfig):
    """Options of the image-folder datasets."""

    image_size: int = 64  # side S of the square output images
    squash: bool = False  # True: resize without cropping (the seeds' aspect-ratio-breaking way)
    crop: int = 0  # side, in source pixels, of the centred square kept; 0: the largest square
    workers: int = 0  # decoding processes for the first load (0: all cores)
    test_fraction: float = 0.1  # held-out share where the dataset has no official split

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in [8, 1024], got {self.image_size}")
        if self.crop < 0 or self.workers < 0:
            raise ValueError("crop and workers must be >= 0")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")


class FolderDataset(ImageDataset):
    """Base class of datasets stored as image files under `data_home(root)/<name>/<subfolder>`.

    Subclasses set `name`, `subfolder`, `channels`, `resources` (archives to download, may be
    empty), `homepage`, and may override `images_root(config)` and `select(config, root, files)`
    for official splits and labels. The default split is `split_indices` with
    `config.test_fraction`, without labels; `labels_by_folder` gives each top-level folder under
    the images root its own label (sorted order).
    """

    config_class = FolderConfig
    name = ""
    subfolder = ""  # images live here, under the dataset folder
    channels = 3
    resources: tuple[Resource, ...] = ()
    homepage = ""  # where to get the data by hand
    known_archives: tuple[Resource, ...] = ()  # other official archive names, checked on import

    @classmethod
    def dataset_folder(cls, config: DataConfig) -> Path:
        return data_home(config.root or None) / cls.name

    @classmethod
    def images_root(cls, config: DataConfig) -> Path:
        """The folder whose images (recursively) make up the dataset."""
        return cls.dataset_folder(config) / cls.subfolder

    @classmethod
    def select(
        cls, config: FolderConfig, root: Path, files: list[Path]
    ) -> tuple[list[Path], np.ndarray | None]:
        """The files of `config.split` and their labels (or None); `root` is `images_root`."""
        index = split_indices(len(files), config.split, config.test_fraction)
        return [files[i] for i in index], None

    @classmethod
    def _missing(cls, config: DataConfig) -> DataError:
        folder = cls.dataset_folder(config)
        how = f" Get them from {cls.homepage}." if cls.homepage else ""
        text = (
            f"{cls.name}: no images found under {cls.images_root(config)}.{how}\n"
            f"Put the images (or the archive) there, or run `vaelab data {cls.name} --from PATH`"
            " with PATH an archive or a folder holding them."
        )
        if cls.resources:
            text += "\n" + missing_message(cls.name, folder, cls.resources)
        return DataError(text)

    @classmethod
    def expected_shape(cls, config: FolderConfig) -> tuple[int, int, int]:
        return (cls.channels, config.image_size, config.image_size)

    @classmethod
    def load(cls, config: FolderConfig | None = None) -> FolderDataset:
        config = config or cls.config_class()
        root = cls.images_root(config)
        files = list_images(root) if root.is_dir() else []
        if not files:
            raise cls._missing(config)
        files, labels = cls.select(config, root, files)
        if config.limit:
            files = files[: config.limit]
            labels = None if labels is None else labels[: config.limit]
        spec = ImageSpec(config.image_size, cls.channels, config.squash, config.crop)
        cache = cls.dataset_folder(config) / "cache"
        array = cached_images(files, root, spec, cache, config.workers)
        return cls(torch.from_numpy(array), labels=labels, name=cls.name)

    @classmethod
    def prepare(cls, config: FolderConfig | None = None, from_path: str | None = None) -> dict:
        """Imports (from `from_path`: an archive or a folder) or downloads, then builds the cache.

        Returns:
            {"path": images folder, "items": number of images there, "bytes": their total size}.
        """
        config = config or cls.config_class()
        folder = cls.dataset_folder(config)
        root = cls.images_root(config)
        if from_path is not None:
            cls._import(Path(from_path).expanduser(), folder)
        elif not (root.is_dir() and list_images(root)):
            if not any(r.urls for r in cls.resources) or is_offline():
                raise cls._missing(config)
            for archive in fetch_all(cls.resources, folder, dataset=cls.name):
                if _is_archive(archive):
                    extract_archive(archive, folder)
        cls.load(config)  # decodes and caches the configured split; raises if nothing is there
        files = list_images(root)
        return {"path": str(root), "items": len(files), "bytes": sum(f.stat().st_size for f in files)}

    @classmethod
    def _import(cls, source: Path, folder: Path) -> None:
        """Copies or extracts what the user has into the dataset folder.

        An archive is verified when its name is one of `known_archives` and extracted into the
        dataset folder. A folder of archives is imported archive by archive. Any other folder is
        copied: into the dataset folder if it holds `subfolder`, else into `subfolder`.
        """
        if not source.exists():
            raise FileNotFoundError(f"--from {source}: no such file or folder")
        folder.mkdir(parents=True, exist_ok=True)
        if source.is_file():
            if not _is_archive(source):
                raise DataError(f"{source} is neither a folder nor a zip/tar archive")
            known = {r.filename: r for r in cls.resources + cls.known_archives}
            if source.name in known and (problem := verify(known[source.name], source, stamp=False)):
                raise DataError(f"{source} does not match the official file: {problem}")
            extract_archive(source, folder)
            return
        archives = [p for p in sorted(source.iterdir()) if p.is_file() and _is_archive(p)]
        if archives and not list_images(source):
            for archive in archives:
                cls._import(archive, folder)
            return
        target = folder / cls.subfolder
        if source.name == cls.subfolder or not (source / cls.subfolder).is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copytree(source, folder, dirs_exist_ok=True)
