"""Training throughput of `vaelab train` against a plain PyTorch loop, per objective.

The Burgess model on dSprites, batch 64, 2 threads (as asked in the foundation issue). For each
objective three loops run, each in a fresh subprocess so allocator settings cannot leak:

- `stock`: a plain PyTorch loop as peers write it (glibc defaults, NCHW).
- `plain`: the same plain loop with vaelab's speed settings (allocator tuning, channels_last).
- `vaelab`: `vaelab.engine.fit` with the run's defaults (Fabric, logging, per-term sums).

It prints images/s, the engine's cost against the tuned plain loop (target: under 5%), the
speed-up over the stock loop, and the fraction of the machine limit (forward+backward is 73.7
MFLOP per image; ~427 GFLOP/s for the best conv on the 2-core reference CPU, so ~5,800 img/s).

    python benchmarks/train_throughput.py [--steps 300] [--rounds 3] [--objectives beta_tcvae,vae]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

LIMIT_IMAGES_PER_S = 427e9 / 73.7e6


def _worker(kind: str, objective: str, steps: int, warmup: int) -> float:
    import torch

    torch.set_num_threads(2)
    import vaelab
    from vaelab.factory import run_config_from_dict

    config = {"name": "bench", "seed": 0, "model": {"name": "burgess"},
              "objective": {"name": objective}, "data": {"name": "dsprites"},
              "train": {"steps": warmup + steps, "batch_size": 128 if objective == "factor_vae"
                        else 64, "metrics": [], "progress": False, "checkpoint_every": 0,
                        "channels_last": kind != "stock"}}
    dataset = vaelab.load_dataset("dsprites")
    if kind == "vaelab":
        import tempfile

        from vaelab.engine import Callback, fit

        marks: dict[int, float] = {}

        class Clock(Callback):
            def on_step_end(self, ctx, step):
                if step in (warmup, warmup + steps):
                    marks[step] = time.perf_counter()

        with tempfile.TemporaryDirectory() as folder:
            fit(run_config_from_dict(config), f"{folder}/run", callbacks=[Clock()],
                dataset=dataset)
        batch = config["train"]["batch_size"]
        return steps * batch / (marks[warmup + steps] - marks[warmup])

    if kind == "plain":
        from vaelab.perf import tune_allocator

        tune_allocator()
    from lightning.fabric import Fabric

    run = run_config_from_dict(config)
    from vaelab.factory import build_model, build_objective, resolve_model_component

    model = build_model(resolve_model_component(run.model, dataset.image_shape))
    objective = build_objective(run.objective)
    objective.set_dataset_size(len(dataset))
    if kind == "plain":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    aux = objective.configure_optimizer()
    fabric = Fabric(accelerator="cpu", devices=1)  # only for the objectives' backward calls
    batch = run.train.batch_size
    generator = torch.Generator().manual_seed(0)
    step = torch.zeros(())
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        index = torch.randint(0, len(dataset), (batch,), generator=generator)
        x = dataset.batch(index)
        if kind == "plain":
            x = x.contiguous(memory_format=torch.channels_last)
        step += 1
        objective.training_step(fabric, model, x, step, optimizer, aux)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats (best kept)")
    parser.add_argument("--objectives", default="vae,beta_vae,annealed_vae,factor_vae,beta_tcvae")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "OBJECTIVE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.steps, args.warmup)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
        env.pop(key, None)
    print(f"{'objective':<14}{'stock':>9}{'plain':>9}{'vaelab':>9}  {'engine cost':>11}"
          f"  {'vs stock':>8}  {'of limit':>8}")
    for objective in args.objectives.split(","):
        # Rounds interleave the three loops and keep each one's best, so a burst of load on
        # this shared machine does not decide the ratio.
        speeds = {"stock": 0.0, "plain": 0.0, "vaelab": 0.0}
        for _ in range(args.rounds):
            for kind in ("stock", "plain", "vaelab"):
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", kind, objective, "--steps",
                     str(args.steps), "--warmup", str(args.warmup)],
                    capture_output=True, text=True, env=env, check=True,
                ).stdout
                speeds[kind] = max(speeds[kind], json.loads(out.strip().splitlines()[-1]))
        cost = 1 - speeds["vaelab"] / speeds["plain"]
        print(f"{objective:<14}{speeds['stock']:>9.0f}{speeds['plain']:>9.0f}"
              f"{speeds['vaelab']:>9.0f}  {cost:>10.1%}  {speeds['vaelab'] / speeds['stock']:>7.2f}x"
              f"  {speeds['vaelab'] / LIMIT_IMAGES_PER_S:>7.1%}")
    print("images/s; engine cost = 1 - vaelab/plain (target < 5%); limit "
          f"{LIMIT_IMAGES_PER_S:.0f} img/s")


if __name__ == "__main__":
    main()
