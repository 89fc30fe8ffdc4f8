"""UG-VAE's global-code targets over seeds: domain alignment and factor groups on the offline
two-domain dSprites, and the MNIST series on the MNIST test images.

For each seed it trains `ugvae_dsprites` (two-domain dSprites, random mixed batches) and runs
`domain_alignment` (pure domain A vs pure domain B batches, linear SVM from the global code;
target >= 0.95) and `global_structure` with BatchNorm in both modes, for each factor (shape,
scale, orientation, x or y position): the seed's protocol with two values of the factor in place
of Male and Female (value A batches vs value B batches, target >= 0.85 as the seed's 85 %; and
3-class with random batches), and batches sharing any value vs random batches (linear and RBF;
the linear one is bounded, see `vaelab.experiments.ugvae._factor_structure`); then it trains
`ugvae_mnist_series` (`--mnist-preset`) on the 10,000 MNIST *test* images (the
only MNIST available offline, `../shared/data/mnist-test`; the series are evaluation only, as in
the seed) and runs `mnist_series` (4-way series type from the global code; chance 0.25, aim
>= 0.8). Every score is printed beside its best null baseline (the same SVM on the untrained
step-0 model's global code, on the batch's mean image, on the batch's mean local code;
`vaelab.experiments.ugvae._scored`) and its margin over it. Prints one row per seed and the
mean, with wall time and images/s per run.

    python3 benchmarks/ugvae_experiments.py                          # 3 seeds, full length
    python3 benchmarks/ugvae_experiments.py --seeds 1 --dsprites-steps 500 --mnist-steps 300
    python3 benchmarks/ugvae_experiments.py --seeds 1 --dsprites-steps -1 --bn train   # MNIST only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"
# Grouped batches share one value of one of these factors (all hearts, all at the left, ...).
FACTORS = ("shape", "scale", "orientation", "pos_x", "pos_y")
COMMON = ["train.checkpoint_every=0", "train.metrics=", "train.progress=false",
          "train.log_every=100"]


def _train(preset: str, overrides: list[str], name: str, out: Path):
    import vaelab

    if (out / name / "summary.json").is_file():  # finished earlier into the same --out: reuse
        summary = json.loads((out / name / "summary.json").read_text())
        return vaelab.load_run(out / name), summary["wall_time_s"], summary.get("images_per_s")
    start = time.perf_counter()
    run = vaelab.train(preset, overrides=[*COMMON, *overrides], name=name, out=out,
                       verbose=False, pictures=False, evaluate=False)
    elapsed = time.perf_counter() - start
    summary = json.loads((run.dir / "summary.json").read_text())
    return run, elapsed, summary.get("images_per_s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dsprites-steps", type=int, default=0,
                        help="training steps of ugvae_dsprites (0: the preset's; -1: skip "
                        "dSprites)")
    parser.add_argument("--factors", default=",".join(FACTORS),
                        help="global_structure factors, comma-separated (empty: none)")
    parser.add_argument("--bn", default="train,eval", help="BatchNorm modes, comma-separated")
    parser.add_argument("--mnist-root", default=str(SHARED),
                        help="the MNIST test images (a folder holding the mnist files)")
    parser.add_argument("--mnist-steps", type=int, default=0,
                        help="training steps of the MNIST model on the test images (0: the "
                        "preset's; -1: skip MNIST)")
    parser.add_argument("--mnist-preset", default="ugvae_mnist_series",
                        help="the MNIST model (ugvae_mnist: the seed's README model, at 3,000 "
                        "steps with --mnist-steps 3000)")
    parser.add_argument("--batches", type=int, default=100, help="batches per batch type")
    # One thread: on a loaded 2-core machine two OpenMP threads per run collapse.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="", help="keep the runs here (default: a temp dir)")
    args = parser.parse_args(argv)

    from vaelab.experiments import run_experiment
    from vaelab.experiments.ugvae import BASELINES

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ugvae_bench_"))
    threads = f"train.threads={args.threads}"
    factors = [f.strip() for f in args.factors.split(",") if f.strip()]
    modes = [m.strip() for m in args.bn.split(",") if m.strip()]
    mnist = Path(args.mnist_root)
    rows = []

    def put(row: dict, name: str, scores: dict, key: str) -> None:
        """The score, its best baseline ("<name>@base") and the margin ("<name>@margin")."""
        row[name] = scores[key]
        row[f"{name}@base"] = max(scores[f"{key}.baseline.{b}"] for b in BASELINES)
        row[f"{name}@margin"] = scores[f"{key}.margin"]

    for seed in range(1, args.seeds + 1):
        row: dict[str, float] = {"seed": seed}
        steps = [f"train.steps={args.dsprites_steps}"] if args.dsprites_steps > 0 else []
        if args.dsprites_steps >= 0:
            run, elapsed, speed = _train("ugvae_dsprites", [f"seed={seed}", threads, *steps],
                                         f"dsprites-s{seed}", out)
            row.update(dsprites_s=elapsed, dsprites_img_s=speed or float("nan"))
        for bn in modes if args.dsprites_steps >= 0 else ():
            align = run_experiment("domain_alignment", run.dir, batches=args.batches, bn=bn,
                                   seed=seed)
            put(row, f"domains_{bn}", align, "experiment.domain_alignment.pure.linear_svm")
            for factor in factors:
                groups = run_experiment("global_structure", run.dir, batches=args.batches,
                                        bn=bn, seed=seed, reduction="pca", factors=factor)
                key = "experiment.global_structure."
                put(row, f"{factor}_{bn}", groups, key + "pair.linear_svm")
                put(row, f"{factor}3_{bn}", groups, key + "three.linear_svm")
                put(row, f"{factor}GR_{bn}", groups, key + "grouped_vs_random.linear_svm")
                put(row, f"{factor}GRrbf_{bn}", groups, key + "grouped_vs_random.rbf_svm")
        if args.mnist_steps >= 0 and mnist.is_dir():
            home = out / "mnist_home"
            if not (home / "mnist").is_dir():
                shutil.copytree(mnist, home / "mnist")
            steps = (["train.epochs=0", f"train.steps={args.mnist_steps}"]
                     if args.mnist_steps > 0 else [])
            run, elapsed, speed = _train(
                args.mnist_preset, [f"seed={seed}", threads, "data.split=test", *steps,
                                    f"data.root={home}"],
                f"mnist-{args.mnist_preset}-s{seed}", out)
            row.update(mnist_s=elapsed, mnist_img_s=speed or float("nan"))
            for bn in modes:
                series = run_experiment("mnist_series", run.dir, batches=2 * args.batches,
                                        bn=bn, seed=seed, reduction="pca")
                put(row, f"series_{bn}", series, "experiment.mnist_series.series.linear_svm")
                row[f"ess_{bn}"] = series["experiment.mnist_series.experts_ess"]
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()), flush=True)
    if args.mnist_steps >= 0 and not mnist.is_dir():
        print(f"MNIST series skipped: {mnist} is not present (--mnist-root)")
    print(f"\nUG-VAE global code, {len(rows)} seed(s), linear SVM test accuracy "
          f"(5-fold CV), runs in {out}")
    targets = {"domains": ">= 0.95",
               **{f: ">= 0.85 (value A vs value B batches, the seed's Male/Female form)"
                  for f in FACTORS},
               **{f"{f}3": "(3-class with random batches, the seed's 66 % form)"
                  for f in FACTORS},
               **{f"{f}GR": "(grouped vs random, linear: bounded, see global_structure)"
                  for f in FACTORS},
               **{f"{f}GRrbf": "(grouped vs random, RBF)" for f in FACTORS},
               "series": "aim >= 0.8 (chance 0.25)",
               "ess": "(effective number of experts per series batch)"}
    for key, target in targets.items():
        for bn in modes:
            values = [r[f"{key}_{bn}"] for r in rows if f"{key}_{bn}" in r]
            if values:
                line = (f"  {key:14s} bn={bn:5s}  mean {np.mean(values):.3f}  min "
                        f"{np.min(values):.3f}  max {np.max(values):.3f}")
                base = [r[f"{key}_{bn}@base"] for r in rows if f"{key}_{bn}@base" in r]
                if base:
                    margin = [r[f"{key}_{bn}@margin"] for r in rows if f"{key}_{bn}@margin" in r]
                    line += (f"  | best baseline {np.mean(base):.3f}  margin mean "
                             f"{np.mean(margin):+.3f} (min {np.min(margin):+.3f})")
                print(f"{line}   target {target}")
    for key in ("dsprites", "mnist"):
        times = [r[f"{key}_s"] for r in rows if f"{key}_s" in r]
        if times:
            speeds = [r[f"{key}_img_s"] for r in rows]
            print(f"  {key:8s} wall {np.mean(times):.0f} s per run, {np.mean(speeds):.0f} "
                  f"images/s ({args.threads} thread(s); load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
