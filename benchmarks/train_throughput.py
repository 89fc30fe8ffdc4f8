"""Training throughput: `vaelab train` against a bare loop (engine cost) and against the peers.

Two tables, every number a ratio measured side by side in this one run:

* **engine** (always): for every objective, `vaelab.engine.fit` (what `vaelab train` runs)
  against a bare PyTorch loop with the same model, objective, optimiser, data (in memory),
  batch size, precision and speed settings (allocator tuning, channels-last), in interleaved
  rounds in one process; the engine cost is 1 - fit / bare (target < 5 %). The fit's clock runs
  from the end of its warm-up steps to its last step, so it includes the logging, checks and
  checkpoint-free bookkeeping of every step, not the setup.
* **peers** (when installed): pythae (from PyPI, in its own virtual environment named by
  `--pythae-python`, default `/tmp/pythae-venv/bin/python`) and disentangling-vae (a local
  checkout named by the `DISVAE_DIR` environment variable), each on the Burgess model and
  dSprites in memory, batch 64, every objective they share with vaelab, run as their users run
  them (stock glibc malloc) and with glibc's three malloc environment variables
  (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`, "tuned"), interleaved
  with vaelab in rounds, each in a fresh subprocess. A peer that is not installed is skipped with
  a message saying how to install it.

The machine limit is measured here, not assumed: the best of large fp32 (and bf16) matrix
multiplications and a 512-channel 1x1 convolution gives GFLOP/s, and the FLOPs of one training step of the Burgess VAE are
counted with `torch.utils.flop_counter`; images/s at the limit = GFLOP/s / FLOP per image.
`uptime`'s load is printed with the figures: on a shared machine 2 threads can collapse under
load, where `--threads 1` keeps its speed.

    python benchmarks/train_throughput.py                      # engine table, every objective
    python benchmarks/train_throughput.py --peers              # + pythae / disentangling-vae
    python benchmarks/train_throughput.py --precision bf16-mixed --objectives vae,beta_tcvae
    python benchmarks/train_throughput.py --no-engine --peers --also-kernels fast  # + conv_kernels
    python benchmarks/train_throughput.py --no-engine --peers --also-fused  # + train.fused_adam
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OBJECTIVES = ("vae", "beta_vae", "annealed_vae", "factor_vae", "beta_tcvae", "nonsyn", "gmvae",
              "ugvae")
#: The objectives outside the Burgess family train their own preset's model and data.
PRESET_OF = {"nonsyn": "nonsyn_dsprites", "gmvae": "gmvae_mnist", "ugvae": "ugvae_dsprites"}
#: Overrides of those presets: MNIST's test split is the part every install can have offline.
PRESET_OVERRIDES = {"gmvae": ["data.split=test", "train.valid_every=0", "train.early_stopping=0",
                              "train.keep_best=false", "data.valid_size=0"]}
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
              "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024),
              "MALLOC_TOP_PAD_": str(256 * 1024 * 1024)}


def run_config(objective: str, batch_size: int, steps: int, precision: str,
               compile: bool = False, conv_kernels: str = "auto", fused_adam: bool = False):
    """The RunConfig the engine trains and the bare loop copies."""
    from vaelab.factory import run_config_from_dict
    from vaelab.workflow import build_run_config

    train = {"steps": steps, "batch_size": batch_size, "metrics": [], "progress": False,
             "checkpoint_every": 0, "tb_images": False, "precision": precision,
             "accelerator": "cpu", "compile": compile, "conv_kernels": conv_kernels,
             "fused_adam": fused_adam}
    if objective in PRESET_OF:
        overrides = [f"train.{k}={json.dumps(v) if isinstance(v, list) else v}"
                     for k, v in train.items()]
        overrides = [o.replace("=[]", "=") for o in overrides]
        return build_run_config(PRESET_OF[objective],
                                overrides + PRESET_OVERRIDES.get(objective, []))
    return run_config_from_dict({"name": "bench", "seed": 0, "model": {"name": "burgess"},
                                 "objective": {"name": objective},
                                 "data": {"name": "dsprites"}, "train": train})


class _Clock:
    """Marks the time at two steps of a fit (a `Callback`)."""

    def __init__(self, first: int, last: int) -> None:
        from vaelab.callbacks import Callback

        marks: dict[int, float] = {}
        self.marks = marks

        class Clock(Callback):
            def on_step_end(self, ctx, step):
                if step in (first, last):
                    marks[step] = time.perf_counter()

        self.callback = Clock()


def time_fit(config, dataset, warmup: int, steps: int) -> float:
    """images/s of `vaelab.engine.fit` over its steps after `warmup`."""
    from vaelab.engine import fit

    clock = _Clock(warmup, warmup + steps)
    with tempfile.TemporaryDirectory() as folder:
        fit(config, f"{folder}/run", callbacks=[clock.callback], dataset=dataset)
    return steps * config.train.batch_size / (clock.marks[warmup + steps] - clock.marks[warmup])


def time_bare(config, dataset, warmup: int, steps: int, scope: str = "forward") -> float:
    """images/s of a bare loop: the same model, objective, optimiser, data and precision
    (`scope`: what bf16 autocast wraps, "forward" as the engine, or the whole "update")."""
    import torch

    from vaelab.factory import build_objective, resolve_run_config
    from vaelab.optim import Updater, build_optimizers
    from vaelab.perf import tune_allocator

    tune_allocator()
    train = config.train
    torch.manual_seed(config.seed)
    config, model = resolve_run_config(config, dataset.image_shape, with_model=True)
    objective = build_objective(config.objective)
    if objective.needs_dataset_size:
        objective.set_dataset_size(len(dataset))
    model = model.to(memory_format=torch.channels_last)
    optimizer, own = build_optimizers(model, objective, train)  # as the engine
    updater = Updater(model, optimizer, objective, own_optimizer=own)
    sources = dataset.batch_source(config.data.config, train.batch_size,
                                   torch.Generator().manual_seed(0))
    bf16 = train.precision.startswith("bf16")
    # As the engine (and PyTorch's advice): autocast around the model's forward only, its outputs
    # back in fp32, the terms and the backward outside autocast. scope="update" autocasts the
    # whole update, as a quick bare loop often does: the objective's terms and the backward's
    # matmuls then run in bf16 too (faster, but not the same computation).
    forward = model
    if bf16 and scope == "forward":
        from vaelab.precision import _AutocastForward

        forward = _AutocastForward(model, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        updater = Updater(forward, optimizer, objective, own_optimizer=own)
    step = torch.zeros(())
    model.train()
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        batch = dataset.batch_of(sources.next())
        batch.x = batch.x.contiguous(memory_format=torch.channels_last)
        step += 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and scope == "update"):
            objective.update(updater, forward, batch, step)
    return steps * train.batch_size / (time.perf_counter() - start)


def engine_table(args) -> None:
    import torch

    from vaelab.data.loading import load_dataset_component

    torch.set_num_threads(args.threads)
    datasets: dict[str, object] = {}
    print(f"engine cost at {args.threads} thread(s), {args.precision}, batch {args.batch_size}, "
          f"best of {args.rounds} interleaved rounds of {args.steps} steps")
    print(f"{'objective':<14}{'bare img/s':>11}{'vaelab img/s':>13}{'engine cost':>12}")
    for objective in args.objectives:
        config = run_config(objective, args.batch_size, args.warmup + args.steps, args.precision,
                            conv_kernels=args.conv_kernels, fused_adam=args.fused_adam)
        name = config.data.name
        if name not in datasets:
            datasets[name] = load_dataset_component(config.data)
        dataset = datasets[name]
        best = {"bare": 0.0, "fit": 0.0}
        for _ in range(args.rounds):
            best["bare"] = max(best["bare"], time_bare(config, dataset, args.warmup, args.steps,
                                                       args.bare_autocast))
            best["fit"] = max(best["fit"], time_fit(config, dataset, args.warmup, args.steps))
        cost = 1 - best["fit"] / best["bare"]
        print(f"{objective:<14}{best['bare']:>11.0f}{best['fit']:>13.0f}{cost:>11.1%}", flush=True)


# ----------------------------------------------------------------------------------------------
# The machine limit, measured


def peak_gflops(threads: int, dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """The machine limit at `threads`: the best GFLOP/s of two dense kernels, `size` x `size`
    matrix products (torch.mm) and a 1x1 convolution with 512 channels (oneDNN).

    Both are taken because neither alone is the ceiling on every CPU: on the 2-core AMD EPYC
    where this was written, torch.mm reached ~205 GFLOP/s fp32 while oneDNN's convolution
    reached ~320 (bf16: ~870 and ~900)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    kind = getattr(torch, dtype)
    a = torch.randn(size, size).to(kind)
    b = torch.randn(size, size).to(kind)
    x = torch.randn(16, 512, 32, 32).to(kind).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 1, 1).to(kind).contiguous(memory_format=torch.channels_last)
    kernels = [(lambda: torch.mm(a, b), 2 * size ** 3),
               (lambda: F.conv2d(x, w), 2 * 16 * 32 * 32 * 512 * 512)]
    best_rate = 0.0
    for kernel, flops in kernels:
        kernel()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            kernel()
            best = min(best, time.perf_counter() - start)
        best_rate = max(best_rate, flops / best / 1e9)
    return best_rate


def flops_per_image(objective: str = "vae") -> float:
    """FLOPs of one training step (forward + backward) of the Burgess VAE, per image, counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vaelab.data.base import Batch
    from vaelab.factory import build_objective, resolve_run_config
    from vaelab.optim import Updater

    config = run_config(objective, 64, 1, "32-true")
    import vaelab

    dataset = vaelab.load_dataset("dsprites", limit=256)
    config, model = resolve_run_config(config, dataset.image_shape, with_model=True)
    objective_module = build_objective(config.objective)
    objective_module.set_dataset_size(len(dataset))
    updater = Updater(model, torch.optim.SGD(model.parameters(), lr=0.0), objective_module)
    x = dataset.batch(torch.arange(64))
    with FlopCounterMode(display=False) as counter:
        objective_module.update(updater, model, Batch(x), torch.ones(()))
    return counter.get_total_flops() / 64


# ----------------------------------------------------------------------------------------------
# Peers


PYTHAE_OBJECTIVES = ("vae", "beta_vae", "annealed_vae", "factor_vae", "beta_tcvae")
HERE = Path(__file__).resolve().parent


def _worker_vaelab(objective: str, steps: int, warmup: int, threads: int,
                   precision: str, compile: bool = False, conv_kernels: str = "auto",
                   fused_adam: bool = False) -> float:
    import torch

    import vaelab

    torch.set_num_threads(threads)
    config = run_config(objective, 64, warmup + steps, precision, compile, conv_kernels,
                        fused_adam)
    return time_fit(config, vaelab.load_dataset("dsprites"), warmup, steps)


def _images_file(folder: str, count: int) -> str:
    """`count` dSprites images (uint8 in {0, 1}, (N, 1, 64, 64)) for the peers to hold in memory."""
    import numpy as np
    import torch

    import vaelab

    dataset = vaelab.load_dataset("dsprites")
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:count]
    path = f"{folder}/images.npy"
    np.save(path, dataset.batch(index).to(torch.uint8).numpy())
    return path


def _run(command: list[str], env: dict[str, str]) -> float:
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{result.stderr[-2000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1]))


def peers_table(args) -> None:
    stock = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    stock["OMP_NUM_THREADS"] = str(args.threads)
    tuned = {**stock, **MALLOC_ENV}
    python = args.pythae_python
    have_pythae = Path(python).is_file() and subprocess.run(
        [python, "-c", "import pythae"], capture_output=True).returncode == 0
    if not have_pythae:
        print(f"pythae: not installed at {python}; skipped. Install it in its own environment: "
              "python3 -m venv /tmp/pythae-venv && /tmp/pythae-venv/bin/pip install "
              "torch==2.13.0 pythae (the CPU wheel of torch), or pass --pythae-python")
    if os.environ.get("DISVAE_DIR"):
        print(f"disentangling-vae: DISVAE_DIR={os.environ['DISVAE_DIR']} is set, but this script "
              "has no disentangling-vae worker yet; skipped")
    else:
        print("disentangling-vae: DISVAE_DIR (a checkout of YannDubs/disentangling-vae) not set; "
              "skipped")
    if not have_pythae:
        return
    gflops = peak_gflops(args.threads, "float32")
    gflops_bf16 = peak_gflops(args.threads, "bfloat16")
    per_image = flops_per_image()
    limit = (gflops_bf16 if args.precision.startswith("bf16") else gflops) * 1e9 / per_image
    print(f"machine limit at {args.threads} thread(s), measured: {gflops:.0f} GFLOP/s fp32 "
          f"({gflops_bf16:.0f} bf16) / {per_image / 1e6:.1f} MFLOP per image (forward+backward, "
          f"counted) = {gflops * 1e9 / per_image:.0f} images/s fp32, "
          f"{gflops_bf16 * 1e9 / per_image:.0f} bf16 ('of limit' is in {args.precision})")
    print(f"vaelab ({args.precision}) against pythae, batch 64, best of {args.rounds} interleaved "
          f"rounds of {args.steps} steps, fresh processes")
    header = (f"{'objective':<14}{'vaelab':>8}{'pythae':>8}{'tuned':>8}{'vs stock':>10}"
              f"{'vs tuned':>10}{'of limit':>10}")
    if args.also_compile:
        header += f"{'compiled':>10}{'vs stock':>10}{'vs tuned':>10}"
    if args.also_kernels:
        header += f"{args.also_kernels:>10}{'vs stock':>10}{'vs tuned':>10}"
    if args.also_fused:
        header += f"{'fused':>10}{'vs stock':>10}{'vs tuned':>10}"
    print(header)
    with tempfile.TemporaryDirectory() as folder:
        images = _images_file(folder, 64 * max(args.steps, args.warmup))
        for objective in [o for o in args.objectives if o in PYTHAE_OBJECTIVES]:
            best = {"vaelab": 0.0, "compiled": 0.0, "kernels": 0.0, "fused": 0.0, "stock": 0.0,
                    "tuned": 0.0}
            fa = args.fused_adam
            variants = ([("vaelab", args.compile, args.conv_kernels, fa)]
                        + ([("compiled", True, args.conv_kernels, fa)] if args.also_compile else [])
                        + ([("kernels", args.compile, args.also_kernels, fa)]
                           if args.also_kernels else [])
                        + ([("fused", args.compile, args.also_kernels or args.conv_kernels, True)]
                           if args.also_fused else []))
            for _ in range(args.rounds):
                for name, compiled, kernels, fused_adam in variants:
                    best[name] = max(best[name], _run(
                        [sys.executable, __file__, "--worker", objective, "--steps",
                         str(args.steps), "--warmup", str(args.warmup), "--threads",
                         str(args.threads), "--precision", args.precision,
                         "--conv-kernels", kernels]
                        + (["--compile"] if compiled else [])
                        + (["--fused-adam"] if fused_adam else []), stock))
                for kind, env in (("stock", stock), ("tuned", tuned)):
                    best[kind] = max(best[kind], _run(
                        [python, str(HERE / "peers" / "pythae_worker.py"), objective, images,
                         str(args.steps), str(args.warmup), str(args.threads)], env))
            v = best["vaelab"]
            print(f"{objective:<14}{v:>8.0f}{best['stock']:>8.0f}{best['tuned']:>8.0f}"
                  f"{v / best['stock']:>9.2f}x{v / best['tuned']:>9.2f}x{v / limit:>10.1%}"
                  + (f"{best['compiled']:>10.0f}{best['compiled'] / best['stock']:>9.2f}x"
                     f"{best['compiled'] / best['tuned']:>9.2f}x" if args.also_compile else "")
                  + (f"{best['kernels']:>10.0f}{best['kernels'] / best['stock']:>9.2f}x"
                     f"{best['kernels'] / best['tuned']:>9.2f}x" if args.also_kernels else "")
                  + (f"{best['fused']:>10.0f}{best['fused'] / best['stock']:>9.2f}x"
                     f"{best['fused'] / best['tuned']:>9.2f}x" if args.also_fused else ""),
                  flush=True)
    print("images/s; pythae as its users run it (its trainer, glibc's malloc defaults) and "
          f"tuned ({' '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats (best kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--peers", action="store_true", help="also the pythae table")
    parser.add_argument("--compile", action="store_true",
                        help="vaelab's side of the peers table with train.compile=true (compiled "
                             "during the warm-up steps, which are not timed)")
    parser.add_argument("--bare-autocast", choices=("forward", "update"), default="forward",
                        help="bf16: the bare loop autocasts the forward (as the engine) or the "
                             "whole update (terms and backward in bf16 too: not the same math)")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine table")
    parser.add_argument("--also-compile", action="store_true",
                        help="the peers table also times vaelab with train.compile=true, in the "
                        "same interleaved rounds (compilation falls in the warm-up steps)")
    parser.add_argument("--conv-kernels", choices=("auto", "fast", "stock"), default="auto",
                        help="vaelab's train.conv_kernels (vaelab.models.fastconv)")
    parser.add_argument("--also-kernels", choices=("auto", "fast", "stock"),
                        help="the peers table also times vaelab with this train.conv_kernels, "
                             "in the same interleaved rounds")
    parser.add_argument("--fused-adam", action="store_true",
                        help="vaelab (and the bare loop) with train.fused_adam=true")
    parser.add_argument("--also-fused", action="store_true",
                        help="the peers table also times vaelab with train.fused_adam=true (and "
                             "--also-kernels' kernels if given), in the same interleaved rounds")
    parser.add_argument("--pythae-python", default="/tmp/pythae-venv/bin/python")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # one timed vaelab run in a fresh process (the peers table)
        print(json.dumps(_worker_vaelab(args.worker, args.steps, args.warmup, args.threads,
                                        args.precision, args.compile, args.conv_kernels,
                                        args.fused_adam)))
        return
    args.objectives = [o for o in args.objectives.split(",") if o]
    unknown = sorted(set(args.objectives) - set(OBJECTIVES))
    if unknown:
        parser.error(f"unknown objectives {unknown}; choose from {','.join(OBJECTIVES)}")
    print("load:", Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists()
          else "n/a")
    if not args.no_engine:
        engine_table(args)
    if args.peers:
        peers_table(args)


if __name__ == "__main__":
    main()
