"""GPU training throughput of `vaelab train`: images/s and the fraction of the GPU's peak.

The Burgess model on dSprites, held on the GPU bit-packed as uint8 (512 bytes per image) and
unpacked there per batch; the step loop reads nothing back but the running sums every
`train.log_every` steps. For batch 64, 256 and 1024, in fp32 and bf16-mixed (and with
`torch.compile` when `--compile MODE` is given, e.g. `reduce-overhead` for CUDA graphs), it times
the fit between its warm-up and its last step (synchronising the GPU at both marks only) and
divides the FLOPs done by the GPU's peak, measured here with large matrix products in the same
precision (fp32 without TF32, bf16). FLOPs per image are counted with `torch.utils.flop_counter`.

    python benchmarks/gpu_throughput.py [--steps 200] [--warmup 30] [--compile reduce-overhead]

Without CUDA it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def peak_tflops(dtype, size: int = 8192, repeats: int = 10) -> float:
    import torch

    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    torch.mm(a, b)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        torch.mm(a, b)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * size ** 3 / best / 1e12


def time_gpu_fit(objective: str, batch: int, precision: str, steps: int, warmup: int,
                 compile_mode: str | None, dataset) -> float:
    import torch
    from train_throughput import run_config

    from vaelab.callbacks import Callback
    from vaelab.engine import fit

    config = run_config(objective, batch, warmup + steps, precision)
    import dataclasses

    train = dataclasses.replace(config.train, accelerator="cuda", log_every=50,
                                compile=compile_mode is not None,
                                compile_mode=compile_mode or "default")
    config = dataclasses.replace(config, train=train)
    marks: dict[int, float] = {}

    class Clock(Callback):
        def on_step_end(self, ctx, step):
            if step in (warmup, warmup + steps):
                torch.cuda.synchronize()  # only at the two marks
                marks[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as folder:
        fit(config, f"{folder}/run", callbacks=[Clock()], dataset=dataset)
    return steps * batch / (marks[warmup + steps] - marks[warmup])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="beta_vae")
    parser.add_argument("--batches", default="64,256,1024")
    parser.add_argument("--precisions", default="32-true,bf16-mixed")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--compile", default=None, metavar="MODE",
                        help="also torch.compile the model in this mode (default, "
                             "reduce-overhead = CUDA graphs, max-autotune)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_throughput: no CUDA device is visible to PyTorch "
              f"(torch {torch.__version__}); nothing to measure. Run it on a machine with an "
              "NVIDIA GPU and a CUDA build of PyTorch.", file=sys.stderr)
        return 2
    from train_throughput import flops_per_image

    import vaelab

    name = torch.cuda.get_device_name()
    torch.backends.cuda.matmul.allow_tf32 = False
    peaks = {"32-true": peak_tflops(torch.float32), "bf16-mixed": peak_tflops(torch.bfloat16)}
    per_image = flops_per_image(args.objective)
    print(f"{name}: measured peak {peaks['32-true']:.1f} TFLOP/s fp32, "
          f"{peaks['bf16-mixed']:.1f} TFLOP/s bf16; {per_image / 1e6:.1f} MFLOP per image "
          f"(forward+backward, counted); {args.objective}, {args.steps} timed steps")
    dataset = vaelab.load_dataset("dsprites").to("cuda")  # bit-packed uint8 on the GPU
    modes = [None] + ([args.compile] if args.compile else [])
    print(f"{'batch':>6}{'precision':>12}{'compile':>17}{'images/s':>11}{'of peak':>9}")
    for batch in [int(b) for b in args.batches.split(",")]:
        for precision in args.precisions.split(","):
            for mode in modes:
                speed = time_gpu_fit(args.objective, batch, precision, args.steps, args.warmup,
                                     mode, dataset)
                fraction = speed * per_image / (peaks.get(precision, peaks["32-true"]) * 1e12)
                print(f"{batch:>6}{precision:>12}{mode or '-':>17}{speed:>11.0f}"
                      f"{fraction:>9.1%}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
