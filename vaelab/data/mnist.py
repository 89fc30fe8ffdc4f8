"""MNIST (LeCun, Cortes & Burges, 1998) and Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017).

Both come as four gzip-compressed IDX files (train/test images and labels), parsed with NumPy.
Images are uint8 (N, 1, S, S) with S = `image_size`: 28 keeps the originals; 32 (the default, which
the Burgess architecture needs) upsamples 28 -> 32 bilinearly, pixel-exact with the torchvision
`Resize(32)` on PIL images that the disvae seed used (see `resize_images`). Labels are
the class indices 0..9. Nothing is random.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.data.base import DataConfig, DataError, ImageDataset, data_home
from vaelab.data.download import Resource, fetch_all, import_resources
from vaelab.registry import DATASETS

__all__ = ["MNIST", "FashionMNIST", "MNISTConfig", "read_idx", "resize_images"]

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_MNIST_MIRRORS = (
    "https://yann.lecun.com/exdb/mnist/",  # official
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # official
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)


def _resources(mirrors: tuple[str, ...], files: dict[str, tuple[str, int]]) -> dict[str, Resource]:
    return {
        name: Resource(name, tuple(base + name for base in mirrors), sha256, size)
        for name, (sha256, size) in files.items()
    }


MNIST_FILES = _resources(
    _MNIST_MIRRORS,
    {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9_912_422),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28_881),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1_648_877),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4_542),
    },
)
FASHION_MNIST_FILES = _resources(
    _FASHION_MIRRORS,
    {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26_421_880),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29_515),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4_422_102),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5_148),
    },
)


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) into a NumPy array.

    Format: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32
    sizes and the data in C order.

    Raises:
        DataError: bad magic number, unexpected number of dimensions, or a size that does not
            match the header (a truncated or corrupt file).
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a readable IDX/gzip file ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty)'}")
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{path}: expected an IDX file with {expected_ndim} dimensions, got {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header says shape {shape} ({expected:,} bytes of data), "
            f"file holds {len(raw) - header:,} bytes"
        )
    # bytearray: a writable copy, so torch can wrap the result without a warning
    return np.frombuffer(bytearray(raw), dtype=dtype, offset=header).reshape(shape)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes uint8 images (N, H, W) to (N, size, size) with bilinear interpolation.

    Uses torch's uint8 `interpolate(mode="bilinear", antialias=True)` on the whole batch, which is
    pixel-exact with Pillow's `Image.resize(BILINEAR)` (what torchvision's `Resize(32)` did in the
    disvae seed; tested) and about 15 times faster than resizing image by image.
    """
    if images.shape[1:] == (size, size):
        return images
    batch = torch.from_numpy(np.ascontiguousarray(images))[:, None]  # (N, 1, H, W) uint8
    resized = torch.nn.functional.interpolate(
        batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[:, 0].numpy()


@dataclass(frozen=True, kw_only=True)
class MNISTConfig(DataConfig):
    """Options of `mnist` and `fashion_mnist`."""

    image_size: int = 32  # 28: original; 32: bilinear upsampling, as the disvae seed (Burgess)
    valid_size: int = 0  # training images held out as split="valid" (the GMVAE seed: 11000);
    #                      0: no validation split, "train" is all 60,000

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 8 <= self.image_size <= 256:
            raise ValueError(f"image_size must be in [8, 256], got {self.image_size}")
        if not 0 <= self.valid_size < 60000:
            raise ValueError(f"valid_size must be in [0, 60000), got {self.valid_size}")


@DATASETS.register("mnist")
class MNIST(ImageDataset):
    """Handwritten digits: 60,000 train / 10,000 test grey 28x28 images, labels 0..9."""

    config_class = MNISTConfig
    name = "mnist"
    files = MNIST_FILES

    @classmethod
    def _split_files(cls, split: str) -> tuple[Resource, Resource]:
        prefix = "train" if split == "train" else "t10k"
        return cls.files[f"{prefix}-images-idx3-ubyte.gz"], cls.files[f"{prefix}-labels-idx1-ubyte.gz"]

    @classmethod
    def expected_shape(cls, config: MNISTConfig) -> tuple[int, int, int]:
        return (1, config.image_size, config.image_size)

    @classmethod
    def load(cls, config: MNISTConfig | None = None) -> MNIST:
        config = config or MNISTConfig()
        if config.split == "valid" and not config.valid_size:
            raise DataError(f"{cls.name} has no validation split unless data.valid_size > 0 "
                            "holds some training images out (the GMVAE seed: 11000), or use "
                            "train.valid_holdout")
        folder = data_home(config.root or None) / cls.name
        file_split = "test" if config.split == "test" else "train"
        image_path, label_path = fetch_all(cls._split_files(file_split), folder, dataset=cls.name)
        images = read_idx(image_path, expected_ndim=3)
        labels = read_idx(label_path, expected_ndim=1)
        if len(images) != len(labels):
            raise DataError(f"{cls.name}: {len(images)} images but {len(labels)} labels")
        if file_split == "train" and config.valid_size:
            # A fixed permutation (seed 0): its first valid_size images are "valid" (the seed
            # shuffles its 55,000 and takes the first 11,000).
            order = np.random.default_rng(0).permutation(len(images))
            keep = order[:config.valid_size] if config.split == "valid" else order[config.valid_size:]
            keep = np.sort(keep)
            images, labels = images[keep], labels[keep]
        if config.limit:
            images, labels = images[: config.limit], labels[: config.limit]
        images = resize_images(images, config.image_size)
        tensor = torch.from_numpy(np.ascontiguousarray(images)[:, None])  # (N, 1, S, S)
        return cls(tensor, labels=labels.astype(np.int64), name=cls.name)

    @classmethod
    def prepare(cls, config: MNISTConfig | None = None, from_path: str | None = None,
                split: str | None = None) -> dict:
        """Downloads (or imports from `from_path`) and verifies the files: all four, or only the
        two of `split` ("train" or "test"; `vaelab data mnist --split test`), so a folder with
        only the test files can be imported for test-split runs."""
        config = config or MNISTConfig()
        folder = data_home(config.root or None) / cls.name
        resources = list(cls.files.values())
        if split is not None:
            if split not in ("train", "test"):
                raise DataError(f"{cls.name}: --split must be train or test, got {split!r} "
                                "(the validation split is held out of the training files)")
            resources = list(cls._split_files(split))
        if from_path is not None:
            paths = import_resources(resources, from_path, folder, dataset=cls.name)
        else:
            paths = fetch_all(resources, folder, dataset=cls.name)
        items = 0
        for path in paths:
            if "images" in path.name:
                items += len(read_idx(path, expected_ndim=3))
        return {"path": str(folder), "items": items, "bytes": sum(p.stat().st_size for p in paths)}


@DATASETS.register("fashion_mnist")
class FashionMNIST(MNIST):
    """Zalando article images: 60,000 train / 10,000 test grey 28x28 images, 10 classes."""

    name = "fashion_mnist"
    files = FASHION_MNIST_FILES

