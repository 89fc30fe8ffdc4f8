"""Ada-GVAE against beta-VAE on dSprites at the same training budget: MIG and DCI per seed.

The headline of Locatello et al., "Weakly-Supervised Disentanglement Without Compromises" (ICML
2020): pairs of images that differ in k = 1 factor make the Gaussian VAE's latents line up with
the factors. Each method trains the same Burgess VAE (10 latents) for the same number of steps on
the same number of images per step: Ada-GVAE on `--pairs` pairs (2 x pairs images), beta-VAE on
2 x pairs single images. Both are scored on single images with MIG and DCI (the same protocol and
metric seed), beside an untrained model (the same architecture at its initialisation, per seed):
the score of a representation that learned nothing.

Every (method, seed) is one subprocess (`vaelab train`, then `vaelab eval`); `--jobs` runs that
many at once, each with cpu_count / jobs torch threads. docs/weak.md has the table and the
command.

    python3 benchmarks/weak_vs_beta.py --quick                  # proves it runs (tiny budget)
    python3 benchmarks/weak_vs_beta.py --steps 20000 --jobs 6 --device cuda
    python3 benchmarks/weak_vs_beta.py --seeds 1,2,3 --steps 5000 --jobs 2   # bf16 where native
    python3 benchmarks/weak_vs_beta.py --data toy_squares --steps 600 --pairs 16 --lr 1e-3 \
        --latent-dim 5 --sampler exact --dci dci_fast --num-train 2000 --num-test 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("ada_gvae", "beta_vae", "untrained")
DCI_KEY = "{dci}.disentanglement"


def _host() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"


def _overrides(method: str, args, seed: int, threads: int) -> list[str]:
    """The `--set` values of one trial."""
    common = [f"seed={seed}", f"train.steps={args.steps}", f"train.lr={args.lr}",
              "train.checkpoint_every=0", "train.gif_every=0", "train.metrics=",
              f"train.log_every={max(1, args.steps // 20)}", "train.tb_images=false",
              f"train.threads={threads}", f"model.latent_dim={args.latent_dim}",
              f"train.precision={args.precision}"]
    if args.device == "cuda":
        common.append("train.accelerator=cuda")
    else:
        common.append("train.accelerator=cpu")
    if args.data != "dsprites":  # first: a new data.name starts from that dataset's defaults
        common.insert(0, f"data.name={args.data}")
    if args.limit:
        common.append(f"data.limit={args.limit}")
    if method == "ada_gvae":
        return [*common, f"train.batch_size={args.pairs}", f"objective.beta={args.weak_beta}",
                "data.batches=pairs", f"data.pair_k={args.k}",
                f"data.pair_sampler={args.sampler}"]
    # beta-VAE: single images, as many per step as Ada-GVAE's pairs hold
    return [*common, "objective.name=beta_vae", f"objective.beta={args.beta}",
            "data.batches=shuffle", f"train.batch_size={2 * args.pairs}"]


def _run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                           f"{result.stderr[-3000:]}")


def _untrained_run(run_dir: Path, args, seed: int) -> None:
    """A run directory holding the model at its initialisation (seeded), nothing trained."""
    import torch

    import vaelab
    from vaelab.runs import save_checkpoint
    from vaelab.workflow import build_run_config

    overrides = [o for o in _overrides("beta_vae", args, seed, 1)]
    size = 64 if args.data == "dsprites" else 32
    overrides += ["model.channels=1", f"model.image_size={size}"]
    config = build_run_config("ada_gvae_dsprites", overrides)
    torch.manual_seed(seed)
    model = vaelab.create_model("burgess", latent_dim=args.latent_dim, channels=1,
                                image_size=size)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.to_json())
    save_checkpoint(run_dir / "checkpoints" / "last.ckpt",
                    {"model": model.state_dict(), "objective": {}, "step": 0})


def _trial(method: str, seed: int, args, out: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    name = f"{method}-s{seed}"
    run_dir = out / name
    start = time.perf_counter()
    if method == "untrained":
        _untrained_run(run_dir, args, seed)
    else:
        sets = [x for o in _overrides(method, args, seed, threads) for x in ("--set", o)]
        _run([sys.executable, "-m", "vaelab.cli", "train", "ada_gvae_dsprites", "--out",
              str(out), "--name", name, *sets, "--no-progress", "--no-eval"], env)
    trained = time.perf_counter() - start
    options = [f"mig.num_train={args.num_train}", f"{args.dci}.num_train={args.num_train}",
               f"{args.dci}.num_test={args.num_test}"]
    _run([sys.executable, "-m", "vaelab.cli", "eval", str(run_dir), "--metrics",
          f"mig,{args.dci}", "--seed", "0", "--device", args.device, "--quiet",
          *[x for o in options for x in ("--option", o)]], env)
    scores = json.loads((run_dir / "metrics.json").read_text())
    summary = run_dir / "summary.json"
    images = json.loads(summary.read_text()).get("images_per_s") if summary.is_file() else None
    return {"method": method, "seed": seed, "mig": scores["mig"],
            "dci": scores[DCI_KEY.format(dci=args.dci)], "seconds": trained,
            "images_per_s": images}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="optimiser steps per run")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once (subprocesses)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny budget on 4,096 images, to prove the script runs")
    parser.add_argument("--pairs", type=int, default=64,
                        help="pairs per Ada-GVAE step (beta-VAE: twice as many images)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--precision", default="auto",
                        help="train.precision of both methods: auto (bf16 where native), "
                             "32-true, bf16-mixed")
    parser.add_argument("--k", type=int, default=1, help="factors that differ (0: random)")
    parser.add_argument("--sampler", default="paper", help="data.pair_sampler")
    parser.add_argument("--beta", type=float, default=4.0, help="beta-VAE's beta")
    parser.add_argument("--weak-beta", type=float, default=1.0, help="Ada-GVAE's beta")
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--dci", choices=("dci", "dci_fast"), default="dci")
    parser.add_argument("--num-train", type=int, default=10000, help="metric training points")
    parser.add_argument("--num-test", type=int, default=5000, help="DCI test points")
    parser.add_argument("--limit", type=int, default=0, help="data.limit (0: all of dSprites)")
    parser.add_argument("--data", choices=("dsprites", "toy_squares"), default="dsprites",
                        help="toy_squares: 192 32x32 squares, 3 factors (a CPU-sized check)")
    parser.add_argument("--keep", default="", help="keep the runs in this folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.pairs, args.limit = 20, 8, args.limit or 4096
        args.num_train, args.num_test, args.dci = 300, 100, "dci_fast"
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is visible")
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="weak-bench-"))
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    print(f"host: {_host()}; device {args.device}; {args.jobs} job(s) at a time, {threads} "
          f"thread(s) each; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.data}{f' (first {args.limit} items)' if args.limit else ''}, pairs differ in "
          f"k = {args.k or 'random'} factor(s) ({args.sampler} sampler); {args.steps} steps of "
          f"{2 * args.pairs} images each (Ada-GVAE: {args.pairs} pairs, beta {args.weak_beta}; "
          f"beta-VAE: beta {args.beta}); lr {args.lr}; precision {args.precision}; MIG and "
          f"{args.dci} on {args.num_train} points; runs in {out}", flush=True)
    trials = [(m, s) for s in seeds for m in METHODS]
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(_trial, m, s, args, out, threads) for m, s in trials]
        for future in futures:
            row = future.result()
            rows.append(row)
            print(f"  {row['method']:<10} seed {row['seed']}: MIG {row['mig']:.4f}  "
                  f"DCI {row['dci']:.4f}  ({row['seconds']:.0f} s)", flush=True)
    print(f"\n| method | {' | '.join(f'seed {s} MIG / DCI' for s in seeds)} | mean MIG | "
          "mean DCI |")
    print(f"|---|{'---|' * len(seeds)}---|---|")
    for method in METHODS:
        mine = {r["seed"]: r for r in rows if r["method"] == method}
        cells = [f"{mine[s]['mig']:.3f} / {mine[s]['dci']:.3f}" for s in seeds]
        label = {"untrained": "untrained (baseline)", "ada_gvae": "Ada-GVAE",
                 "beta_vae": "beta-VAE"}[method]
        print(f"| {label} | {' | '.join(cells)} | "
              f"{np.mean([mine[s]['mig'] for s in seeds]):.3f} | "
              f"{np.mean([mine[s]['dci'] for s in seeds]):.3f} |")
    wins = sum(
        next(r for r in rows if r["method"] == "ada_gvae" and r["seed"] == s)["mig"]
        > next(r for r in rows if r["method"] == "beta_vae" and r["seed"] == s)["mig"]
        and next(r for r in rows if r["method"] == "ada_gvae" and r["seed"] == s)["dci"]
        > next(r for r in rows if r["method"] == "beta_vae" and r["seed"] == s)["dci"]
        for s in seeds)
    print(f"\nAda-GVAE above beta-VAE on both MIG and DCI: {wins} of {len(seeds)} seeds"
          f"{' (--quick: a tiny budget, not a measurement)' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
