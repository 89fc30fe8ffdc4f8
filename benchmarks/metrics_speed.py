"""Times every registered metric on 10,000 points (codes precomputed: no encoding), next to a
direct transcription of the textbook per-factor MIG loop (disentanglement_lib's `mig.py` +
`utils.py`) as a speed ratio, and MIG over the full 737,280-image dSprites grid (every image
encoded once, encoding included) through `evaluate_run` and `vaelab eval`, fp32 and bf16.

    python benchmarks/metrics_speed.py [--skip dci,mig_chen] [--no-points] [--no-grid]
        [--grid-modes api-fp32-capped,api-fp32,cli-fp32,api-bf16,cli-bf16,api-bf16-eager]
        [--bf16-tolerance N]
        [--grid-metric mig_chen]
        [--encode-rates N] [--kernel S] [--device cpu]

`--kernel S` times `mig_chen`'s entropy kernel on S samples against 737,280 synthetic components
x 10 latents (one full-grid marginal entropy's shape, no data needed) next to the previous kernel
(transcribed below), in interleaved rounds, and prints their agreement.

The 10,000-point timings use a synthetic representation of the dSprites factor grid (each factor
in its own latent plus noise, 5 noise latents), so they need no data. The full-grid part needs
`vaelab.load_dataset("dsprites")` and the pretrained disentangling-vae β-TCVAE weights
(`../shared/data/disvae-pretrained/btcvae_dsprites`, imported as a run); each mode runs in a
fresh process, and the load average before and after is printed next to it.
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


_GRID_API = """
import json, sys, time
mode, run_dir, precision, device, metric = sys.argv[1:6]
if mode == "capped":  # the allocator tuning before it kept blocks above 32 MiB (glibc's cap)
    from vaelab.perf import tune_allocator
    tune_allocator(mmap_threshold=32 * 1024 * 1024)
if mode == "eager":  # the encoder as before the oneDNN path: eager, channels-last
    from vaelab.models.vae import GaussianVAE
    GaussianVAE.inference_posterior = lambda self, dtype: None
from vaelab.evaluation import evaluate_run
start = time.perf_counter()
scores = evaluate_run(run_dir, metrics=metric, options={"mig": {"num_train": "all"}},
                      precision=precision, device=device, progress=False)
print(time.perf_counter() - start)
"""

GRID_MODES = ("api-fp32-capped", "api-fp32", "cli-fp32", "api-bf16", "cli-bf16")


def _grid_run(root: Path) -> Path | None:
    weights = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" /
               "disvae-pretrained" / "btcvae_dsprites")
    if not (weights / "model.pt").is_file():
        return None
    from vaelab.disvae_import import import_disvae

    return Path(import_disvae(weights, out=root, name="btcvae"))


def time_full_grid(device: str, modes: list[str], metric: str = "mig") -> None:
    """Full-grid MIG (`mig` with num_train="all": every image once), each mode in a fresh process.

    `metric="mig_chen"` times Chen et al.'s estimator instead (it always uses every image).

    api-*: `evaluate_run` from Python; cli-*: `vaelab eval --option mig.num_train=all`;
    *-capped: the allocator tuning capped at 32 MiB as before (large blocks fault);
    api-*-eager: the eager encoder, without the oneDNN path (`vaelab.models.onednn`).
    """
    import json
    import subprocess
    import sys
    import tempfile

    from vaelab.metrics.ground_truth import bf16_supported

    try:
        vaelab.load_dataset("dsprites")
    except (KeyError, vaelab.DataError, OSError) as error:  # not in this build or not downloaded
        print(f"full-grid MIG skipped: cannot load dsprites ({error})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = _grid_run(Path(tmp))
        if run_dir is None:
            print("full-grid MIG skipped: no pretrained btcvae_dsprites weights in ../shared/data")
            return
        print(f"full-grid {metric} of {run_dir.name} (737,280 images, each once; {device}; "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
        print(f"{'mode':<16s} {'metric s':>9s} {'encode s':>9s} {'process s':>10s} "
              f"{'images':>8s} {'mig':>8s}  load before/after")
        for mode in modes:
            path, precision, *rest = mode.split("-")
            if precision == "bf16" and not bf16_supported(device):
                print(f"{mode:<16s} skipped: no native bf16 on {device}")
                continue
            (run_dir / "metrics.json").unlink(missing_ok=True)
            load = os.getloadavg()[0]
            start = time.perf_counter()
            if path == "api":
                command = [sys.executable, "-c", _GRID_API, rest[0] if rest else "tuned",
                           str(run_dir), precision, device, metric]
            else:
                command = [sys.executable, "-m", "vaelab.cli", "eval", str(run_dir), "--metrics",
                           metric, "--precision", precision, "--device", device, "--quiet"]
                if metric == "mig":
                    command += ["--option", "mig.num_train=all"]
            subprocess.run(command, check=True, capture_output=True, text=True)
            process = time.perf_counter() - start
            content = json.loads((run_dir / "metrics.json").read_text())
            entry = content["protocol"]["metrics"][metric]
            print(f"{mode:<16s} {entry['seconds']:9.1f} {entry.get('encode_seconds', 0):9.1f} "
                  f"{process:10.1f} {entry.get('images_encoded', 0):8d} {content[metric]:8.4f}  "
                  f"{load:.1f}/{os.getloadavg()[0]:.1f}", flush=True)


_ENCODE_RATE = """
import os, resource, sys, time
import numpy as np, torch
mode, precision, n, weights = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from vaelab.perf import tune_allocator
if mode == "capped":
    tune_allocator(mmap_threshold=32 * 1024 * 1024)
elif mode == "tuned":
    tune_allocator()
import vaelab
from vaelab.metrics.ground_truth import as_ground_truth, model_encoder
dataset = vaelab.load_dataset("dsprites")
model = vaelab.create_model("burgess", channels=1, image_size=64, latent_dim=10)
model.load_state_dict(torch.load(weights, map_location="cpu"))
packed = len(sys.argv) < 6 or sys.argv[5] != "eager"
truth = as_ground_truth(model_encoder(model.eval(), precision=precision, packed=packed), dataset,
                        batch_size=1024)
truth.codes(np.arange(1024))  # warm-up batch
before, start, load = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), os.getloadavg()[0]
truth.codes(np.arange(1024, 1024 + n))
after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
user, kernel = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
path = "packed" if packed else "eager"
print(f"{mode:<7s} {precision} {path:<6s}: {n / (user + kernel):6.0f} img/CPU-s (user {user:5.1f} s, "
      f"kernel {kernel:4.1f} s), {(after.ru_minflt - before.ru_minflt) / n:6.1f} faults/img, "
      f"wall {n / wall:5.0f} img/s, load {load:.1f}->{os.getloadavg()[0]:.1f}")
"""


def encode_rates(n: int) -> None:
    """Encoding speed per CPU-second and page faults, glibc defaults vs the allocator tunings."""
    import subprocess
    import sys

    from vaelab.metrics.ground_truth import bf16_supported

    weights = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" /
               "disvae-pretrained" / "btcvae_dsprites" / "model.pt")
    if not weights.is_file():
        print("encoding rates skipped: no pretrained btcvae_dsprites weights")
        return
    print(f"encoding {n} dSprites images, batch 1024, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, one fresh process each:")
    runs = [("stock", "fp32", "packed"), ("capped", "fp32", "packed"),
            ("tuned", "fp32", "eager"), ("tuned", "fp32", "packed")]
    if bf16_supported("cpu"):
        runs += [("tuned", "bf16", "eager"), ("tuned", "bf16", "packed")]
    for mode, precision, path in runs:
        out = subprocess.run([sys.executable, "-c", _ENCODE_RATE, mode, precision, str(n),
                              str(weights), path], capture_output=True, text=True, check=True)
        print("  " + out.stdout.strip(), flush=True)


def bf16_tolerance(n: int, device: str) -> None:
    """MIG and codes of n random dSprites images encoded in fp32 and in bf16, per pretrained model."""
    from vaelab.metrics.ground_truth import bf16_supported, model_encoder

    if not bf16_supported(device):
        print(f"bf16 tolerance skipped: no native bf16 on {device}")
        return
    root = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "disvae-pretrained"
    dataset = vaelab.load_dataset("dsprites")
    index = np.sort(np.random.default_rng(0).choice(len(dataset), n, replace=False))
    for loss in ("btcvae", "VAE"):
        if not (root / f"{loss}_dsprites" / "model.pt").is_file():
            print(f"bf16 tolerance: no pretrained {loss}_dsprites weights, skipped")
            continue
        model = vaelab.create_model("burgess", channels=1, image_size=64, latent_dim=10)
        model.load_state_dict(torch.load(root / f"{loss}_dsprites" / "model.pt",
                                         map_location="cpu"))
        model = model.to(device).eval()
        codes = {}
        for precision in ("fp32", "bf16"):
            encode = model_encoder(model, precision=precision)
            codes[precision] = np.concatenate([
                encode(dataset.batch(index[i:i + 1024]))[0].cpu().numpy()
                for i in range(0, n, 1024)])
        mig = {p: METRICS.get("mig")(c, dataset.factors[index], num_train=n)["mig"]
               for p, c in codes.items()}
        error = np.abs(codes["bf16"] - codes["fp32"]) / codes["fp32"].std(axis=0)
        print(f"bf16 vs fp32, {loss}, {n} images: mig {mig['fp32']:.4f} -> {mig['bf16']:.4f}, "
              f"|code difference| / latent sd: max {error.max():.4f}, mean {error.mean():.5f}")


def previous_entropy_kernel(samples: np.ndarray, mu: np.ndarray, logvar: np.ndarray,
                            block: int = 2**18) -> np.ndarray:
    """`estimate_entropies` as it was before the tiled kernel: log-sum-exp over all components."""
    s, d = samples.shape
    m = mu.shape[0]
    mu_t = torch.as_tensor(mu.T, dtype=torch.float32).contiguous()
    half_ivar = torch.as_tensor(0.5 * np.exp(-logvar.T), dtype=torch.float32).contiguous()
    const = torch.as_tensor(-0.5 * (np.log(2 * np.pi) + logvar.T), dtype=torch.float32).contiguous()
    z = torch.as_tensor(samples.T, dtype=torch.float32)
    chunk = max(1, block // max(1, d * m))
    total = torch.zeros(d, dtype=torch.float64)
    with torch.inference_mode():
        for lo in range(0, s, chunk):
            zc = z[:, lo : lo + chunk, None]
            log_q = const[:, None, :] - (zc - mu_t[:, None, :]).square_() * half_ivar[:, None, :]
            total += torch.logsumexp(log_q, dim=2).double().sum(dim=1)
    return -(total.numpy() / s - np.log(m))


def time_entropy_kernel(samples: int, rounds: int = 3) -> None:
    """mig_chen's kernel vs the previous one, S samples x 737,280 components x 10 latents."""
    from vaelab.metrics.mig_chen import estimate_entropies

    rng = np.random.default_rng(0)
    m, d = int(np.prod(SIZES)), 10
    mu = (rng.standard_normal((m, d)) * np.linspace(0.05, 2, d)).astype(np.float32)
    logvar = (rng.uniform(-8, 0, (m, d)) * np.linspace(1, 0, d)).astype(np.float32)
    z = (mu + np.exp(0.5 * logvar) * rng.standard_normal((m, d)))[:samples]
    count = samples * m * d
    print(f"mig_chen entropy kernel: {samples} samples x {m:,} components x {d} latents, "
          f"{torch.get_num_threads()} threads, {rounds} interleaved rounds (M log-densities/s)")
    rates: dict[str, list[float]] = {"previous": [], "tiled": []}
    results = {}
    for _ in range(rounds):
        for name, kernel in (("previous", previous_entropy_kernel), ("tiled", estimate_entropies)):
            start = time.perf_counter()
            results[name] = kernel(z, mu, logvar)
            rates[name].append(count / (time.perf_counter() - start) / 1e6)
    for name, values in rates.items():
        print(f"  {name:<9s} best {max(values):6.0f}  all " + " ".join(f"{v:.0f}" for v in values))
    print(f"  ratio of bests {max(rates['tiled']) / max(rates['previous']):.2f}x; "
          f"max |entropy difference| {np.abs(results['tiled'] - results['previous']).max():.1e}; "
          f"full dSprites mig_chen (4.4e11 log-densities) projected at "
          f"{4.4e11 / max(rates['tiled']) / 1e6 / 60:.1f} min of kernel time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help="comma-separated metrics not to time")
    parser.add_argument("--no-grid", action="store_true", help="skip the full-grid MIG")
    parser.add_argument("--no-points", action="store_true", help="skip the 10,000-point timings")
    parser.add_argument("--grid-modes", default=",".join(GRID_MODES),
                        help="full-grid runs, comma-separated: api|cli - fp32|bf16 [-capped]")
    parser.add_argument("--encode-rates", type=int, default=0, metavar="N",
                        help="encode N images per allocator setting, report CPU rates (0: skip)")
    parser.add_argument("--bf16-tolerance", type=int, default=0, metavar="N",
                        help="compare fp32 and bf16 encodings on N random images (0: skip)")
    parser.add_argument("--kernel", type=int, default=0, metavar="S",
                        help="time mig_chen's entropy kernel on S samples (0: skip)")
    parser.add_argument("--grid-metric", default="mig", choices=("mig", "mig_chen"),
                        help="the full-grid metric timed (mig_chen: Chen et al.'s, ~10-12 min)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if not args.no_points:
        time_metrics({s for s in args.skip.split(",") if s})
    if args.encode_rates:
        encode_rates(args.encode_rates)
    if args.kernel:
        time_entropy_kernel(args.kernel)
    if args.bf16_tolerance:
        bf16_tolerance(args.bf16_tolerance, args.device)
    if not args.no_grid:
        time_full_grid(args.device, [m for m in args.grid_modes.split(",") if m], args.grid_metric)


if __name__ == "__main__":
    main()
