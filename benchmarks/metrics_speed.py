"""Times every registered metric on 10,000 points (codes precomputed: no encoding) and MIG over
the full 737,280-image dSprites grid (encoding included), next to a direct transcription of the
textbook per-factor loop (disentanglement_lib's `mig.py` + `utils.py`) as a speed ratio.

    python benchmarks/metrics_speed.py [--skip dci,mig_chen] [--no-grid] [--device cpu]

The 10,000-point timings use a synthetic representation of the dSprites factor grid (each factor
in its own latent plus noise, 5 noise latents), so they need no data. The full-grid part needs
`vaelab.load_dataset("dsprites")` and the pretrained disentangling-vae weights, or a random
Burgess encoder when those are absent (the speed is the same).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import mutual_info_score

import vaelab
import vaelab.metrics
from vaelab.metrics import as_ground_truth
from vaelab.metrics.evaluate import metric_protocol
from vaelab.registry import METRICS

SIZES = (1, 3, 6, 40, 32, 32)  # dSprites, npz order: colour, shape, scale, orientation, x, y


def textbook_mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> float:
    """disentanglement_lib's MIG, transcribed: per-latent histogram, per-(latent, factor) MI."""
    mus, ys = codes.T, factors.T  # disentanglement_lib stores (D, N) and (F, N)
    discretized = np.zeros_like(mus)
    for i in range(mus.shape[0]):
        discretized[i, :] = np.digitize(mus[i, :], np.histogram(mus[i, :], num_bins)[1][:-1])
    m = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            m[i, j] = mutual_info_score(ys[j, :], discretized[i, :])
    h = np.zeros(ys.shape[0])
    for j in range(ys.shape[0]):
        h[j] = mutual_info_score(ys[j, :], ys[j, :])
    sorted_m = np.sort(m, axis=0)[::-1]
    return float(np.mean(np.divide(sorted_m[0, :] - sorted_m[1, :], h[:])))


def synthetic_grid(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), axis=1)
    signal = grid[:, 1:] / np.array(SIZES[1:]) + 0.02 * rng.standard_normal((len(grid), 5))
    codes = np.concatenate([signal, 0.1 * rng.standard_normal((len(grid), 5))], axis=1)
    logvar = np.full(codes.shape, -6.0)
    return grid, codes, logvar


def time_metrics(skip: set[str]) -> None:
    rng = np.random.default_rng(0)
    grid, codes, logvar = synthetic_grid(rng)
    truth = as_ground_truth((codes, logvar), grid)
    print(f"{'metric':<34s} {'seconds':>8s}   (10,000 points; published sizes otherwise)")
    for name in METRICS.names():
        if name in skip:
            print(f"{name:<34s} {'skipped':>8s}")
            continue
        options = {k: 10000 for k in ("num_train",) if k in metric_protocol(name)}
        start = time.perf_counter()
        METRICS.get(name)(truth, None, np.random.default_rng(0), **options)
        print(f"{name:<34s} {time.perf_counter() - start:8.2f}", flush=True)
    # MIG next to the textbook loop, on the same 10,000 points and on the whole grid.
    index = truth.sample_index(10000, np.random.default_rng(0))
    for label, rows in (("10,000 points", index), ("full grid", np.arange(len(grid)))):
        c, f = codes[rows], grid[rows][:, 1:]
        start = time.perf_counter()
        ours = METRICS.get("mig")(c, f, np.random.default_rng(0), num_train=len(rows))["mig"]
        fast = time.perf_counter() - start
        start = time.perf_counter()
        reference = textbook_mig(c, f)
        slow = time.perf_counter() - start
        print(f"mig on {label}: vaelab {fast:.3f} s, textbook loop {slow:.3f} s, "
              f"ratio {slow / fast:.1f}x, |difference| {abs(ours - reference):.2e}")


def time_full_grid(device: str) -> None:
    try:
        dataset = vaelab.load_dataset("dsprites")
    except (KeyError, vaelab.DataError, OSError) as error:  # not in this build or not downloaded
        print(f"full-grid MIG skipped: cannot load dsprites ({error})")
        return
    model = vaelab.create_model("burgess", channels=1, image_size=64, latent_dim=10)
    weights = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" /
               "disvae-pretrained" / "btcvae_dsprites" / "model.pt")
    if weights.is_file():
        model.load_state_dict(torch.load(weights, map_location="cpu"), strict=True)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    start = time.perf_counter()
    truth = as_ground_truth(model, dataset, batch_size=1024)
    # Every image exactly once: encode the whole grid, then score those codes (the array path
    # draws num_train = N rows without replacement). Drawing N factor rows with replacement, as
    # `mig(truth, num_train=N)` does, would see only ~63% of the images (1 - 1/e).
    codes = truth.codes(np.arange(len(dataset))).astype(np.float32)  # exact: float32 encodings
    scores = METRICS.get("mig")(codes, dataset, np.random.default_rng(0), num_train=len(dataset))
    total = time.perf_counter() - start
    print(f"full-grid MIG ({len(dataset)} images, {device}, {torch.get_num_threads()} threads): "
          f"{total:.1f} s, of which encoding {truth.encode_seconds:.1f} s; mig = {scores['mig']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help="comma-separated metrics not to time")
    parser.add_argument("--no-grid", action="store_true", help="skip the full-grid MIG")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"cpu cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    time_metrics({s for s in args.skip.split(",") if s})
    if not args.no_grid:
        time_full_grid(args.device)


if __name__ == "__main__":
    main()
