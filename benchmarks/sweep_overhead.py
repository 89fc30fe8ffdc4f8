"""What a sweep costs: Ray's overhead per trial, and a projection of a shipped study's wall time.

    # Ray against one by one: the same N tiny toy_squares trials, through `run_sweep` (embedded
    # Ray, one trial at a time) and through `run_trial` in this process, side by side
    OMP_NUM_THREADS=1 python benchmarks/sweep_overhead.py overhead --trials 6

    # one trial of a study at one thread (wall and CPU time), projected to the whole study on
    # C cores (trials / C in parallel, one thread each)
    OMP_NUM_THREADS=1 python benchmarks/sweep_overhead.py study dsprites_beta_study --cores 2

On a shared machine, wall times are inflated by the other processes; the CPU time of a
one-thread trial is what it takes on one idle core, and the projection uses the larger of the
two per-trial figures (CPU time plus the measured Ray overhead, or the wall time).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

TINY = {
    "seeds": [1],
    "set": {"data.name": "toy_squares", "model.latent_dim": 4, "train.steps": 20,
            "train.batch_size": 16, "train.log_every": 10, "train.checkpoint_every": 0,
            "train.metrics": [], "train.tb_images": False, "train.gif_every": 0},
}


def overhead(trials: int) -> dict:
    import torch

    from vaelab.sweep import parse_sweep, run_sweep
    from vaelab.sweep.runner import import_ray, plan_trials
    from vaelab.sweep.trial import run_trial

    torch.set_num_threads(1)
    data = {**TINY, "seeds": list(range(1, trials + 1))}
    spec = parse_sweep(data, name="overhead")
    with tempfile.TemporaryDirectory() as folder:
        out_plain = Path(folder) / "plain"
        t0 = time.perf_counter()
        for trial in plan_trials(spec, out_plain):
            run_trial(trial, threads=1)
        plain = time.perf_counter() - t0

        ray = import_ray()
        t0 = time.perf_counter()
        ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1",
                 object_store_memory=100 * 1024**2, logging_level="ERROR", log_to_driver=False)
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_sweep(spec, Path(folder) / "ray", max_concurrent=1, progress=False)
        swept = time.perf_counter() - t0
        ray.shutdown()
    return {"trials": trials, "one_by_one_s": round(plain, 2), "ray_start_s": round(start, 2),
            "ray_sweep_s": round(swept, 2),
            "overhead_per_trial_s": round((swept - plain) / trials, 2),
            "one_by_one_per_trial_s": round(plain / trials, 2)}


def study(name: str, cores: int, overhead_s: float) -> dict:
    import torch

    from vaelab.sweep import load_sweep
    from vaelab.sweep.runner import plan_trials
    from vaelab.sweep.trial import run_trial

    torch.set_num_threads(1)
    spec = load_sweep(name)
    with tempfile.TemporaryDirectory() as folder:
        trial = plan_trials(spec, Path(folder))[0]
        t0, c0 = time.perf_counter(), time.process_time()
        record = run_trial(trial, threads=1)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if record["status"] != "done":
        raise SystemExit(f"the trial failed: {record['error']}")
    per_trial = max(wall, cpu + overhead_s)
    rounds = math.ceil(len(spec.trials) / cores)
    return {"sweep": name, "trial": trial["name"], "trials": len(spec.trials),
            "trial_wall_s": round(wall, 1), "trial_cpu_s": round(cpu, 1),
            "ray_overhead_s": overhead_s, "cores": cores,
            "projected_min": round(rounds * per_trial / 60, 1),
            "projected_min_from_cpu": round(rounds * (cpu + overhead_s) / 60, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--trials", type=int, default=6)
    s = sub.add_parser("study")
    s.add_argument("sweep")
    s.add_argument("--cores", type=int, default=2)
    s.add_argument("--overhead", type=float, default=0.0,
                   help="Ray's per-trial overhead in seconds (from the overhead benchmark)")
    args = parser.parse_args()
    if args.what == "overhead":
        print(json.dumps(overhead(args.trials)))
    else:
        print(json.dumps(study(args.sweep, args.cores, args.overhead)))


if __name__ == "__main__":
    main()
