"""A reduced version of the study of Locatello et al. (2019), measured on this machine.

Six methods x two values of each one's hyper-parameter x three seeds on dSprites, with the
study's protocol (the `study_<method>_dsprites` presets: dlib_conv model, Bernoulli likelihood,
Adam 1e-4, batch 64) at a CPU budget of `--steps` per run (default 6,000, bf16 where the CPU
computes it natively: `train.precision=auto`), every run scored with vaelab's default metrics and
each setting's seeds with UDR. The report reproduces the study's two central figures:

* the rank correlation (Spearman) between the metrics over all runs (Locatello et al., Fig. 2);
* the spread of each metric per method, hyper-parameters and seeds together, against the spread
  across seeds of one setting (Fig. 7), with the variance split into method, hyper-parameter
  (within a method) and seed (within a setting) parts;

and prints each metric beside its baseline, the scores of untrained models (the same
architecture at initialisation, three seeds) on the same data.

    python benchmarks/reduced_study.py --out results/reduced_study --jobs 2       # the study
    python benchmarks/reduced_study.py --out /tmp/rs --quick                      # a smoke test
    python benchmarks/reduced_study.py --out results/reduced_study --report-only  # figures

Resumable: a run with its metrics is skipped, an interrupted one resumes from its checkpoint, so
the study can be run in parts (`--methods beta_vae,factor_vae`). `--jobs N` trains N runs at
once, each with `--threads` torch threads; `--device cuda` trains on a GPU. The run folders are
an ordinary sweep folder as well (`sweep.csv`, `.sweep/sweep.json`): `vaelab report OUT` draws
the box plots per setting, the rank correlations and UDR.

`--quick` proves the script works in about a minute: two methods, 20 steps, two seeds, on the
64x64 toy_squares data with five metrics; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: method -> (the swept key, the two values: low and high ends of the study's grid)
GRID = {
    "beta_vae": ("objective.beta", [1.0, 8.0]),
    "annealed_vae": ("objective.c_final", [5.0, 50.0]),
    "factor_vae": ("objective.gamma", [10.0, 50.0]),
    "dip_vae_i": ("objective.lambda_od", [1.0, 20.0]),
    "dip_vae_ii": ("objective.lambda_od", [1.0, 20.0]),
    "beta_tcvae": ("objective.beta", [1.0, 8.0]),
}
QUICK_METHODS = ("beta_vae", "dip_vae_i")
QUICK_METRICS = ["mig", "sap", "irs", "gaussian_total_correlation", "active_units"]
#: the scores compared (a metric's headline score; UDR added per setting)
SCORES = ["mig", "sap", "modularity", "irs", "dci_fast.disentanglement",
          "gaussian_total_correlation", "gaussian_wasserstein_correlation", "mutual_info_score",
          "active_units", "kl_decomposition.tc", "udr_lasso", "udr_spearman"]


def host() -> str:
    """The CPU model and core count, for the printed numbers."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical cores"


def plan(args: argparse.Namespace) -> list[dict]:
    """Every run: its name, preset, method, value, seed and `--set` overrides."""
    methods = args.methods or (QUICK_METHODS if args.quick else tuple(GRID))
    unknown = sorted(set(methods) - set(GRID))
    if unknown:
        raise SystemExit(f"unknown method {unknown[0]!r}; known: {', '.join(GRID)}")
    common = [f"train.steps={args.steps}", f"train.precision={args.precision}",
              f"train.accelerator={args.device}", f"train.threads={args.threads}",
              f"train.checkpoint_every={max(args.steps // 4, 1)}", "train.gif_every=0",
              "train.tb_images=false"]
    if args.quick:
        common += ["data.name=toy_squares", "data.image_size=64", "train.batch_size=16",
                   "train.metrics=" + json.dumps(QUICK_METRICS)]
    jobs = []
    for method in methods:
        key, values = GRID[method]
        for value in values:
            for seed in range(args.seeds):
                name = f"{method}-{key.split('.')[-1]}={value:g}-seed={seed}"
                overrides = [*common, f"{key}={value}", f"seed={seed}"]
                if method == "factor_vae" and args.quick:
                    overrides.append("train.batch_size=32")
                jobs.append({"name": name, "preset": f"study_{method}_dsprites",
                             "method": method, "value": value, "seed": seed,
                             "overrides": overrides})
    return jobs


def finished(run_dir: Path, steps: int) -> bool:
    summary, metrics = run_dir / "summary.json", run_dir / "metrics.json"
    if not (summary.is_file() and metrics.is_file()):
        return False
    try:
        return json.loads(summary.read_text()).get("steps") == steps
    except json.JSONDecodeError:
        return False


def run_job(job: dict, args: argparse.Namespace) -> tuple[str, str, float]:
    """Trains (or resumes) one run in a subprocess; (name, status, seconds)."""
    out = Path(args.out)
    run_dir = out / job["name"]
    if finished(run_dir, args.steps):
        return job["name"], "skipped (finished)", 0.0
    command = [sys.executable, "-m", "vaelab.cli", "train"]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        command += ["--resume", str(run_dir)]
        command += [f"--set={o}" for o in job["overrides"] if o.startswith("train.")]
    else:
        command += [job["preset"], "--name", job["name"], "--out", str(out)]
        command += [f"--set={o}" for o in job["overrides"]]
    command.append("--no-progress")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    (out / "logs").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out / "logs" / f"{job['name']}.log", "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    return job["name"], "done" if code == 0 else f"failed (exit {code}, see logs/)", seconds


def baseline(args: argparse.Namespace) -> dict[str, float]:
    """Mean scores of three untrained dlib_conv models (their UDR across the three)."""
    import numpy as np
    import torch

    from vaelab.data import load_dataset
    from vaelab.factory import create_model
    from vaelab.metrics.evaluate import DEFAULT_METRICS, evaluate
    from vaelab.metrics.ground_truth import as_ground_truth, model_encoder
    from vaelab.metrics.udr import mean_kl_per_latent, udr

    cache = Path(args.out) / "baseline.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    torch.set_num_threads(args.threads)
    dataset = (load_dataset("toy_squares", image_size=64) if args.quick
               else load_dataset("dsprites"))
    names = QUICK_METRICS if args.quick else list(DEFAULT_METRICS)
    rows, codes, kls = [], [], []
    index = np.sort(np.random.default_rng(0).choice(len(dataset), min(1000, len(dataset)),
                                                    replace=False))
    for seed in range(3):
        torch.manual_seed(seed)
        model = create_model("dlib_conv", channels=dataset.image_shape[0]).eval()
        encode = model_encoder(model)
        scores, _ = evaluate(as_ground_truth(encode, dataset), names, seed=0)
        rows.append(scores)
        mu, logvar = encode(dataset.batch(index))
        codes.append(mu.numpy())
        kls.append(mean_kl_per_latent(mu.numpy(), logvar.numpy()))
    result = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    for variant in ("lasso", "spearman"):
        result[f"udr_{variant}"] = float(np.mean(udr(codes, kls, correlation=variant).scores))
    cache.write_text(json.dumps(result, indent=1))
    return result


def collect(jobs: list[dict], args: argparse.Namespace) -> list[dict]:
    """One row per finished run: method, value, seed and every score, UDR included; writes
    sweep.csv and .sweep/sweep.json so that `vaelab report OUT` works on the folder."""
    from vaelab.sweep.udr import setting_udr

    out = Path(args.out)
    rows = []
    for job in jobs:
        run_dir = out / job["name"]
        status = "done" if finished(run_dir, args.steps) else "pending"
        row = {"trial": job["name"], "status": status, "method": job["method"],
               "value": job["value"], "seed": job["seed"]}
        if status == "done":
            metrics = json.loads((run_dir / "metrics.json").read_text())
            row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        rows.append(row)
    udr_rows = [{**r, "value": str(r["value"])} for r in rows]
    results, notes = setting_udr(out, udr_rows, ["method", "value"],
                                 device="cuda" if args.device == "cuda" else "cpu")
    for note in notes:
        print(f"UDR left out {note}", file=sys.stderr)
    for row in rows:
        row.update(results.get(row["trial"], {}))
    columns = ["trial", "status", "method", "value", "seed",
               *[s for s in SCORES if any(s in r for r in rows)]]
    with open(out / "sweep.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
    (out / ".sweep").mkdir(exist_ok=True)
    (out / ".sweep" / "sweep.json").write_text(json.dumps({
        "name": "reduced_study", "varying": ["method", "value", "seed"],
        "description": f"reduced study: {len(jobs)} runs of {args.steps} steps"}))
    return rows


def variance_split(rows: list[dict], score: str) -> dict[str, float] | None:
    """The variance of a score split into method, hyper-parameter (within method) and seed
    (within setting) parts (a nested one-way decomposition over equal group sizes), and the
    standard deviations the figure shows."""
    import numpy as np

    done = [r for r in rows if r["status"] == "done" and np.isfinite(r.get(score, np.nan))]
    if len(done) < 4:
        return None
    values = np.array([r[score] for r in done])
    methods = sorted({r["method"] for r in done})
    method_means, setting_means, seed_vars, hyper_vars = [], [], [], []
    for method in methods:
        in_method = [r for r in done if r["method"] == method]
        method_means.append(np.mean([r[score] for r in in_method]))
        settings = sorted({r["value"] for r in in_method})
        means = []
        for value in settings:
            seeds = [r[score] for r in in_method if r["value"] == value]
            means.append(np.mean(seeds))
            if len(seeds) > 1:
                seed_vars.append(np.var(seeds))
        setting_means += means
        hyper_vars.append(np.var(means))
    total = float(np.var(values))
    parts = {"method": float(np.var(method_means)), "hyper": float(np.mean(hyper_vars)),
             "seed": float(np.mean(seed_vars)) if seed_vars else 0.0}
    scale = sum(parts.values()) or 1.0
    return {"total_std": total ** 0.5, "method_std": parts["method"] ** 0.5,
            "hyper_std": parts["hyper"] ** 0.5, "seed_std": parts["seed"] ** 0.5,
            **{f"{k}_share": v / scale for k, v in parts.items()}}


def figures(rows: list[dict], scores: list[str], out: Path) -> list[Path]:
    """rank_correlation.png and spread.png (the study's two central figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from vaelab.sweep.report import rank_correlations

    done = [r for r in rows if r["status"] == "done"]
    table = {s: [float(r.get(s, np.nan)) for r in done] for s in scores}
    rho = rank_correlations(table)
    matrix = np.array([[rho[a, b] for b in scores] for a in scores])
    figure, axis = plt.subplots(figsize=(1.0 + 0.6 * len(scores), 0.8 + 0.55 * len(scores)))
    image = axis.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
    for i in range(len(scores)):
        for j in range(len(scores)):
            if np.isfinite(matrix[i, j]):
                axis.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
    axis.set_xticks(range(len(scores)), scores, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(scores)), scores, fontsize=8)
    axis.set_title(f"Spearman rank correlation between scores ({len(done)} runs)", fontsize=10)
    figure.colorbar(image, ax=axis, shrink=0.8)
    figure.savefig(out / "rank_correlation.png", dpi=100, bbox_inches="tight")
    plt.close(figure)

    methods = sorted({r["method"] for r in done})
    columns = 3
    lines = -(-len(scores) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.0 * lines),
                                squeeze=False)
    colours = ["tab:blue", "tab:orange", "tab:green"]
    for axis, score in zip(axes.flat, scores):
        for position, method in enumerate(methods):
            in_method = [r for r in done if r["method"] == method and score in r]
            values = sorted({r["value"] for r in in_method})
            axis.boxplot([[r[score] for r in in_method]] or [[]], positions=[position],
                         widths=0.6, showfliers=False)
            for k, value in enumerate(values):
                ys = [r[score] for r in in_method if r["value"] == value]
                xs = position - 0.15 + 0.3 * k + np.zeros(len(ys))
                axis.scatter(xs, ys, s=12, color=colours[k % 3], zorder=3,
                             label="low value" if k == 0 and position == 0 else
                             ("high value" if k == 1 and position == 0 else None))
        axis.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=7)
        axis.set_title(score, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    for axis in list(axes.flat)[len(scores):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7, title="hyper-parameter", title_fontsize=7)
    figure.suptitle("each metric per method (box: both values x seeds; dots: seeds of one "
                    "setting)", fontsize=10)
    figure.tight_layout()
    figure.savefig(out / "spread.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return [out / "rank_correlation.png", out / "spread.png"]


def report(jobs: list[dict], args: argparse.Namespace) -> dict:
    import numpy as np

    out = Path(args.out)
    rows = collect(jobs, args)
    done = [r for r in rows if r["status"] == "done"]
    base = baseline(args)
    scores = [s for s in SCORES if sum(s in r for r in done) >= 3]
    print(f"\nreduced study: {len(done)}/{len(rows)} runs finished, {args.steps} steps each, "
          f"precision {args.precision}, on {host()}")
    header = (f"{'score':<34s} {'untrained':>9s} {'mean':>8s} {'total sd':>8s} {'method sd':>9s} "
              f"{'hyper sd':>8s} {'seed sd':>8s}  shares method/hyper/seed")
    print(header)
    print("-" * len(header))
    summary = {}
    for score in scores:
        split = variance_split(rows, score)
        mean = float(np.nanmean([r.get(score, np.nan) for r in done]))
        untrained = base.get(score, float("nan"))
        summary[score] = {"mean": mean, "untrained": untrained, **(split or {})}
        if split is None:
            print(f"{score:<34s} {untrained:>9.4f} {mean:>8.4f}  (too few runs)")
            continue
        print(f"{score:<34s} {untrained:>9.4f} {mean:>8.4f} {split['total_std']:>8.4f} "
              f"{split['method_std']:>9.4f} {split['hyper_std']:>8.4f} {split['seed_std']:>8.4f}"
              f"  {split['method_share']:.2f}/{split['hyper_share']:.2f}/"
              f"{split['seed_share']:.2f}")
    if len(done) >= 3 and len(scores) >= 2:
        paths = figures(rows, scores, out)
        print("figures: " + ", ".join(str(p) for p in paths))
    method_larger = [s for s, v in summary.items() if "method_share" in v
                     and v["method_share"] > v["hyper_share"] + v["seed_share"]]
    print(f"scores where the method explains more variance than hyper-parameters and seeds "
          f"together: {', '.join(method_larger) or 'none'} (of {len(summary)})")
    result = {"host": host(), "steps": args.steps, "precision": args.precision,
              "runs": len(rows), "finished": len(done), "scores": summary,
              "method_dominates": method_larger}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print(f"table: {out / 'sweep.csv'}; all pictures: vaelab report {out}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/reduced_study", help="the study folder")
    parser.add_argument("--steps", type=int, default=6000, help="optimiser steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (0..N-1)")
    parser.add_argument("--methods", type=lambda t: tuple(t.split(",")),
                        help=f"comma-separated subset of {', '.join(GRID)}")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", default="auto",
                        help="train.precision: auto (bf16 where native), 32-true, bf16-mixed")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 2 methods, 20 steps, 2 seeds, toy data")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 20)
        args.seeds = min(args.seeds, 2)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = plan(args)
    print(f"{len(jobs)} runs x {args.steps} steps on {args.device} ({host()}), "
          f"{args.jobs} at once x {args.threads} threads", flush=True)
    if not args.report_only:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
            for name, status, seconds in pool.map(lambda j: run_job(j, args), jobs):
                print(f"  {name}: {status} ({seconds:.0f} s)", flush=True)
        print(f"training wall time {time.perf_counter() - start:.0f} s", flush=True)
    report(jobs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
