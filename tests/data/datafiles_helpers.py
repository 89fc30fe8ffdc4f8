"""Writers of tiny data files in the real formats, shared by the data tests."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from vaelab.data.download import Resource

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resource_for(path: Path, urls: tuple[str, ...] = ()) -> Resource:
    """A Resource whose checksum and size match the file at `path`."""
    return Resource(path.name, urls, sha256(path), path.stat().st_size)


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x00 0x00 0x08 ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(array)))
    return path


def write_cifar_tarball(path: Path, n_per_batch: int = 3, seed: int = 0) -> dict:
    """A cifar-10-python.tar.gz with 5 train batches and a test batch of n images each."""
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as archive:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, n_per_batch).tolist()
            batches[name] = (data, labels)
            blob = pickle.dumps({b"batch_label": b"x", b"data": data, b"labels": labels}, protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return batches


def write_image(path: Path, array: np.ndarray) -> Path:
    """Saves an (H, W) or (H, W, 3) uint8 array; format from the suffix (JPEG at quality 95)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=95)
    else:
        image.save(path)
    return path


def banded_face(height: int = 218, width: int = 178, colour=(200, 40, 40)) -> np.ndarray:
    """A portrait image: a uniform centre square in `colour`, green bands above and below it."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = (0, 255, 0)
    top = (height - width) // 2
    image[top : top + width] = colour
    return image


# ------------------------------------------------------------------------------------------------
# A local HTTP server and stand-in files of the benchmark datasets (Shapes3D, MPI3D, SmallNORB,
# Cars3D) in their real on-disk formats.


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def http_server(folder: Path):
    """(base URL, list of requested paths) of a 127.0.0.1 server of `folder`, in a thread."""
    requests: list[str] = []
    handler = functools.partial(type("H", (_QuietHandler,), {"requests": requests}),
                                directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def pattern_images(n: int, height: int = 64, width: int = 64, channels: int = 3) -> np.ndarray:
    """uint8 (n, H, W, C) with pixel (i, h, w, c) = (i + 3h + 5w + 11c) % 256: every item, row,
    column and channel differs, so a swapped axis or a wrong item shows."""
    i, h, w, c = np.ogrid[:n, :height, :width, :channels]
    return ((i + 3 * h + 5 * w + 11 * c) % 256).astype(np.uint8)


def write_shapes3d_h5(path: Path, sizes, images: np.ndarray | None = None) -> np.ndarray:
    """A 3dshapes.h5 of the grid `sizes` (images uint8 (N, 64, 64, 3), labels float (N, 6) with
    column k = 0.5 + 0.25 * index_k); returns the images."""
    import h5py

    n = int(np.prod(sizes))
    images = pattern_images(n) if images is None else images
    index = np.stack(np.unravel_index(np.arange(n), sizes), axis=1)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=images)
        handle.create_dataset("labels", data=0.5 + 0.25 * index.astype(np.float64))
    return images


def write_mpi3d_npz(path: Path, n: int, compressed: bool = False) -> np.ndarray:
    images = pattern_images(n)
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    return images
