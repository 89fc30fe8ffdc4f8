"""Training and encoding speed on a busy machine: idle and beside competing CPU-bound processes.

For each OpenMP wait policy ("auto": vaelab's default, see `vaelab.perf.set_wait_policy`: passive
when another thread is runnable at the start, else the runtime's; "runtime": GNU OpenMP's own
default, idle threads spin ~300,000 times before they sleep; "passive": they sleep at once;
"spin<N>": GOMP_SPINCOUNT=N), each
thread count (`--threads`, default 1 and 2) and each number of competing processes (`--competing`,
default 0, 1 and 2; each is a Python busy loop, started and stopped by this script and bounded by
its own deadline), a fresh subprocess measures

* **train**: images/s of `vaelab.train` on the main job's preset (`default`: beta-TCVAE, the
  Burgess model, dSprites, batch 32), timed by a callback from the end of `--warmup` steps for
  `--seconds` seconds; and
* **encode**: images/s of a full-grid-style encoding pass: the Burgess encoder's posterior means
  under `torch.inference_mode` through its inference path (oneDNN, as the metrics' encoder runs
  it), batches of 1,024 dSprites images.

Each figure is printed with its ratio to the fair share: the best idle images/s of that workload
in this run x cores / (cores + competing processes). One busy loop per core means a fair share of
half the idle speed. `uptime`'s load and the CPU model are printed with the table; compare only
figures of one run.

    python benchmarks/contention.py                       # the full table (~10 minutes)
    python benchmarks/contention.py --quick               # a smoke run (~1-2 minutes)
    python benchmarks/contention.py --policies passive --threads 2 --competing 0,2
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
from pathlib import Path

BUSY_LOOP = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


class _Enough(Exception):
    """Raised by the timing callback once the measurement window is over."""


def _worker_train(threads: int, seconds: float, warmup: int) -> float:
    import vaelab
    from vaelab.callbacks import Callback

    class Clock(Callback):
        def __init__(self) -> None:
            self.start: tuple[float, int] | None = None
            self.rate = float("nan")

        def on_step_end(self, ctx, step: int) -> None:
            now = time.perf_counter()
            if step == warmup:
                self.start = (now, step)
            elif self.start is not None and now - self.start[0] >= seconds:
                batch = ctx.config.train.batch_size
                self.rate = (step - self.start[1]) * batch / (now - self.start[0])
                raise _Enough

    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        try:
            vaelab.train("default", overrides=[f"train.threads={threads}", "train.progress=false",
                                               "train.gif_every=0", "train.checkpoint_every=0"],
                         out=out, evaluate=False, pictures=False, callbacks=[clock],
                         verbose=False)
        except _Enough:
            pass
    return clock.rate


def _worker_encode(threads: int, seconds: float, warmup: int) -> float:
    import torch

    import vaelab
    from vaelab.perf import configure_threads

    configure_threads(threads)
    dataset = vaelab.load_dataset("dsprites")
    model = vaelab.create_model("burgess", latent_dim=10).eval()
    posterior = model.inference_posterior(torch.float32) or model.posterior
    batch, n, start = 1024, 0, None
    with torch.inference_mode():
        for i in range(10**9):
            lo = (i * batch) % (len(dataset) - batch)
            model.representation(posterior(dataset.batch(torch.arange(lo, lo + batch))))
            if i == warmup:
                start = time.perf_counter()
            elif start is not None:
                n += batch
                if time.perf_counter() - start >= seconds:
                    return n / (time.perf_counter() - start)
    return float("nan")


def measure(workload: str, policy: str, threads: int, competing: int, seconds: float,
            warmup: int) -> float:
    """images/s of one workload in a fresh process, beside `competing` busy loops."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    if policy.startswith("spin"):  # "spin<N>": GNU OpenMP spins N times, then sleeps
        env["VAELAB_WAIT_POLICY"], env["GOMP_SPINCOUNT"] = "runtime", policy[4:]
    else:
        env["VAELAB_WAIT_POLICY"] = policy
    deadline = seconds * 6 + 120  # busy loops end by themselves even if this script dies
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(deadline)])
             for _ in range(competing)]
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", workload, "--threads", str(threads),
             "--seconds", str(seconds), "--warmup", str(warmup)],
            env=env, capture_output=True, text=True, timeout=deadline)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    if out.returncode != 0:
        raise RuntimeError(f"worker {workload} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="train,encode")
    parser.add_argument("--policies", default="auto,runtime,passive")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--competing", default="0,1,2")
    parser.add_argument("--seconds", type=float, default=12.0, help="measurement window")
    parser.add_argument("--warmup", type=int, default=10, help="steps (batches) not timed")
    parser.add_argument("--quick", action="store_true", help="3-second windows, 2 threads, 0/2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = {"train": _worker_train, "encode": _worker_encode}[args.worker]
        rate = work(int(args.threads), args.seconds, args.warmup)
        print(json.dumps({"images_per_s": rate}))
        return
    if args.quick:
        args.seconds, args.warmup, args.threads, args.competing = 3.0, 3, "2", "0,2"
    cores = len(os.sched_getaffinity(0))
    workloads = args.workloads.split(",")
    policies = args.policies.split(",")
    thread_counts = [int(t) for t in args.threads.split(",")]
    loads = [int(c) for c in args.competing.split(",")]
    print(f"# contention benchmark: {cpu_model()}, {cores} cores available, torch threads "
          f"{thread_counts}, {args.seconds:g} s windows, load before: {os.getloadavg()[0]:.2f}")
    # Warm the dSprites cache first so that no worker builds it.
    subprocess.run([sys.executable, "-c", "import vaelab; vaelab.load_dataset('dsprites')"],
                   check=True, capture_output=True)
    results: dict[tuple[str, str, int, int], float] = {}
    for workload in workloads:
        for competing in loads:  # idle first: the fair share needs the idle speed
            for policy in policies:
                for threads in thread_counts:
                    key = (workload, policy, threads, competing)
                    results[key] = measure(workload, policy, threads, competing, args.seconds,
                                           args.warmup)
                    print(f"  {workload:6s} policy={policy:7s} threads={threads} "
                          f"competing={competing}: {results[key]:8.1f} images/s", flush=True)
    print()
    print("| workload | policy | threads | competing | images/s | fair share | ratio |")
    print("|---|---|---|---|---|---|---|")
    for workload in workloads:
        idle = max((v for (w, _, _, c), v in results.items() if w == workload and c == 0),
                   default=float("nan"))
        for (w, policy, threads, competing), value in results.items():
            if w != workload:
                continue
            fair = idle * cores / (cores + competing)
            print(f"| {w} | {policy} | {threads} | {competing} | {value:.0f} | {fair:.0f} | "
                  f"{value / fair:.2f}x |")
    for workload in workloads:
        for threads in thread_counts:
            before = results.get((workload, "runtime", threads, 0))
            after = results.get((workload, "passive", threads, 0))
            if before and after:
                print(f"idle {workload}, {threads} threads: passive / runtime = "
                      f"{after / before:.3f}")
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
