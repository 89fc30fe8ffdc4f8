"""Larger than memory: training on a full-size MPI3D stand-in read through a memory map.

Builds MPI3D's converted cache (images (1,036,800, 3, 64, 64) uint8, 12.7 GB) as a *sparse*
file in a temporary VAELAB_DATA (no disk space used, every pixel 0), with the real factor grid
and sidecar, and loads it through `MPI3D.load` (the product's path: the array is above
`data.memmap_mb`, so it is memory-mapped, and batches gather their rows with `index_select`).
Then it trains the same model with the same config on it and on an in-memory dataset of the
same image shape (fewer items), in interleaved rounds, and prints

* the process's anonymous memory (RssAnon from /proc/self/status) after training on the map
  (target <= 2 GiB; file-backed pages of the map are RssFile, reclaimable page cache);
* images/s of both and their ratio (target: the map reaches >= 90 % of in-memory).

The sparse file reads as zeros from the page cache, so this measures vaelab's gathering and
the page-table cost, not a disk: on a real disk the first epoch also waits for reads (an SSD
serves a 12 KiB random read in well under the ~5 ms a training step takes on CPU).

    python benchmarks/memmap_throughput.py           # 3 rounds of 200 steps each
    python benchmarks/memmap_throughput.py --quick   # 2 rounds of 20 steps (proves it runs)

Both datasets are timed in interleaved rounds in one process (the best round of each counts),
so load from other processes on a shared host hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1 << 30


def host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def write_sparse_cache(root: Path) -> Path:
    """MPI3D's cache (toy variant) as a sparse .npy + factors + sidecar under `root`."""
    from vaelab.data.groundtruth import grid_factors
    from vaelab.data.mpi3d import MPI3D, MPI3DConfig

    config = MPI3DConfig(root=str(root))
    images_path, factors_path, sidecar = MPI3D.cache_paths(config)
    images_path.parent.mkdir(parents=True, exist_ok=True)
    n = int(np.prod(MPI3D.factor_sizes))
    array = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8,
                                      shape=(n, 3, 64, 64))  # sparse: only the header is written
    del array
    np.save(factors_path, grid_factors(MPI3D.factor_sizes))
    record = dict(MPI3D._meta(config), items=n, bytes=images_path.stat().st_size)
    sidecar.write_text(json.dumps(record))
    return images_path


def train(dataset, steps: int, batch: int, seed: int = 0) -> tuple[float, float]:
    """(images/s of training, images/s of gathering batches alone) over `steps` steps after 3
    warm-up steps: Burgess model, beta-TCVAE, Adam, batches from the dataset's own shuffled
    batch source (what `vaelab train` draws), the same seed for every call."""
    from vaelab.data.base import DataConfig
    from vaelab.factory import create_model, create_objective

    torch.manual_seed(seed)
    model = create_model("burgess", latent_dim=10, channels=3, image_size=64)
    objective = create_objective("beta_tcvae", beta=6.0)
    objective.set_dataset_size(len(dataset))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    source = dataset.batch_source(DataConfig(), batch, torch.Generator().manual_seed(seed))
    step = torch.zeros((), dtype=torch.long)

    def one() -> None:
        terms = objective.compute(model, dataset.batch_of(source.next()), step)
        optimiser.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimiser.step()

    for _ in range(3):
        one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    train_rate = steps * batch / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(steps):
        dataset.batch(source.next())
    return train_rate, steps * batch / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 20 steps")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--in-memory-items", type=int, default=20_000)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 20, 2
    from vaelab.data.base import FactorDataset
    from vaelab.data.mpi3d import MPI3D, MPI3DConfig

    print(f"host: {host_cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="vaelab-memmap-") as tmp:
        root = Path(tmp)
        path = write_sparse_cache(root)
        on_disk = os.stat(path).st_blocks * 512
        print(f"stand-in: {path.stat().st_size / GIB:.1f} GiB sparse file ({on_disk / 2**20:.1f} "
              "MiB on disk)")
        anon_before = memory_kib("RssAnon")
        mapped = MPI3D.load(MPI3DConfig(root=str(root)))
        assert isinstance(mapped.data.numpy(), np.ndarray)
        print(f"mapped dataset: {len(mapped):,} images {mapped.image_shape}; RssAnon after load "
              f"{memory_kib('RssAnon') / 2**20:.2f} GiB (before {anon_before / 2**20:.2f} GiB)")
        rng = np.random.default_rng(0)
        n = args.in_memory_items
        images = torch.from_numpy(rng.integers(0, 256, (n, 3, 64, 64), dtype=np.uint8))
        factors = np.stack([rng.integers(0, s, n) for s in MPI3D.factor_sizes], axis=1)
        in_memory = FactorDataset(images, factors, MPI3D.factor_names, MPI3D.factor_sizes,
                                  name="mpi3d")
        rates: dict[str, list[float]] = {"memmap": [], "in_memory": []}
        gather: dict[str, list[float]] = {"memmap": [], "in_memory": []}
        peak_anon = 0
        for r in range(args.rounds):
            for label, dataset in (("memmap", mapped), ("in_memory", in_memory)):
                rate, gathered = train(dataset, args.steps, args.batch_size)
                rates[label].append(rate)
                gather[label].append(gathered)
                if label == "memmap":
                    peak_anon = max(peak_anon, memory_kib("RssAnon"))
            print(f"round {r + 1}: training memmap {rates['memmap'][-1]:.0f} images/s, in memory "
                  f"{rates['in_memory'][-1]:.0f} images/s; gathering alone memmap "
                  f"{gather['memmap'][-1]:,.0f}, in memory {gather['in_memory'][-1]:,.0f} "
                  "images/s", flush=True)
        best_map, best_mem = max(rates["memmap"]), max(rates["in_memory"])
        anon_gib = peak_anon / 2**20
        print(f"anonymous memory after training on the map (RssAnon, peak of the rounds): "
              f"{anon_gib:.2f} GiB (target <= 2 GiB: {'PASS' if anon_gib <= 2 else 'FAIL'}); "
              f"RssFile {memory_kib('RssFile') / 2**20:.2f} GiB; VmPeak "
              f"{memory_kib('VmPeak') / 2**20:.1f} GiB (address space, includes the map)")
        ratio = best_map / best_mem
        print(f"images/s (best round): memmap {best_map:.0f}, in memory {best_mem:.0f} "
              f"({n:,} items, same shape): ratio {ratio:.1%} (target >= 90 %: "
              f"{'PASS' if ratio >= 0.9 else 'FAIL'})")
        print(f"baseline: a process that imported vaelab and loaded nothing had RssAnon "
              f"{anon_before / 2**20:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
