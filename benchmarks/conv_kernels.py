"""The Burgess decoder's transposed convolutions, PyTorch's kernels against vaelab's
(`vaelab.models.fastconv`), one layer at a time: forward and backward, fp32 and bf16.

Each row times the same layer on the same tensors (batch 64, channels-last, the allocator
tuning on), best of `--repeats` runs of `--calls` calls, interleaved, and checks the results
agree ("identical" or the largest relative difference).

    python3 benchmarks/conv_kernels.py                 # 2 threads
    python3 benchmarks/conv_kernels.py --threads 1 --batch 256
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from vaelab.models import fastconv
from vaelab.perf import tune_allocator

CL = torch.channels_last
# (in channels, out channels, input size): the decoder's layers on 64x64 images
LAYERS = [(32, 32, 4), (32, 32, 8), (32, 32, 16), (32, 1, 32)]


def _best(fn, calls: int, repeats: int) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def _agreement(a, b) -> str:
    if all(torch.equal(x, y) for x, y in zip(a, b)):
        return "identical"
    worst = max(((x.float() - y.float()).abs().max() / x.float().abs().max()).item()
                for x, y in zip(a, b))
    return f"rel. diff {worst:.1e}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()
    print(f"batch {args.batch}, {args.threads} thread(s), ms per call (best of {args.repeats})")
    print(f"{'dtype':<6}{'layer':<18}{'part':<10}{'PyTorch':>9}{'vaelab':>9}{'ratio':>8}  agreement")
    for dtype in (torch.float32, torch.bfloat16):
        name = "fp32" if dtype == torch.float32 else "bf16"
        for cin, cout, size in LAYERS:
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(args.batch, cin, size, size, generator=gen, dtype=dtype)
            x = x.contiguous(memory_format=CL)
            w = torch.randn(cin, cout, 4, 4, generator=gen, dtype=dtype).contiguous(memory_format=CL)
            b = torch.randn(cout, generator=gen, dtype=dtype)
            g = torch.randn(args.batch, cout, 2 * size, 2 * size, generator=gen, dtype=dtype)
            g = g.contiguous(memory_format=CL)
            if cout == 1:  # the strides a 1-channel channels-last output carries
                g = g.as_strided(g.shape, (4 * size * size, 1, 2 * size, 1))
            layer = f"{cin}->{cout} {size}->{2 * size}"

            def stock_bwd():
                return torch.ops.aten.convolution_backward(
                    g, x, w, [cout], [2, 2], [1, 1], [1, 1], True, [0, 0], 1, [True, True, True])

            def ours_bwd():
                return fastconv.adjoint_backward(g, x, w, (2, 2), (1, 1), (1, 1), 1,
                                                 (True, True, True))

            rows = [("backward", stock_bwd, ours_bwd)]
            if cout <= fastconv.MAX_THIN_CHANNELS:
                rows.insert(0, ("forward", lambda: (F.conv_transpose2d(x, w, b, 2, 1),),
                                lambda: (fastconv.conv_transpose_phases(x, w, b),)))
            for part, stock, ours in rows:
                t_stock, t_ours = _best(stock, args.calls, args.repeats), _best(
                    ours, args.calls, args.repeats)
                print(f"{name:<6}{layer:<18}{part:<10}{t_stock:>9.3f}{t_ours:>9.3f}"
                      f"{t_stock / t_ours:>7.2f}x  {_agreement(stock(), ours())}", flush=True)


if __name__ == "__main__":
    main()
