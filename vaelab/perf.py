"""Process-level speed settings for CPU training and evaluation.

glibc returns freed memory above `M_TRIM_THRESHOLD` to the kernel and serves blocks above
`M_MMAP_THRESHOLD` with fresh `mmap`s, which page-fault on first touch and are unmapped on free.
A conv VAE frees and re-allocates the same multi-MB activation buffers every step, so with glibc's
defaults each step page-faults thousands of times (measured on disentangling-vae and pythae:
25-35% of CPU time in page faults). `tune_allocator()` raises the thresholds with `mallopt` at run
time — the effect of exporting `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` and
`MALLOC_TOP_PAD_` before start, but from inside an already running Python process. No library
offers this, hence ctypes.

The mmap threshold is raised to 1 GiB, far above glibc's *dynamic* ceiling of 32 MiB: batch-1024
encoder activations (128 MiB for the Burgess model's first layer) and large training batches
would otherwise be mmapped afresh on every call (32,768 page faults per 128 MiB block). A glibc
that refuses a threshold that high gets `M_MMAP_MAX = 0` instead (no mmapped blocks at all), which
has the same effect. Blocks stay in the heap and are reused; memory is returned to the kernel when
more than `trim_threshold` lies free at the top of the heap. Numbers are unaffected (only where
memory comes from changes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

_done = False


def tune_allocator(
    mmap_threshold: int = 1024 * 1024 * 1024,
    trim_threshold: int = 1024 * 1024 * 1024,
    top_pad: int = 256 * 1024 * 1024,
) -> bool:
    """Keeps freed tensor memory, large blocks included, in the process for reuse.

    Args:
        mmap_threshold: blocks at least this large are mmapped (and page-fault when touched);
            smaller ones come from the heap.
        trim_threshold: free memory at the top of the heap beyond which it goes back to the
            kernel.
        top_pad: extra memory requested from the kernel each time the heap grows.

    Returns:
        True when the settings were applied (glibc on Linux), False elsewhere (no-op).
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # An older glibc caps M_MMAP_THRESHOLD at 32 MiB (mallopt returns 0); then no block is
    # mmapped at all, which keeps large blocks in the heap just the same.
    large = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 or mallopt(_M_MMAP_MAX, 0) == 1
    ok = large and all(
        mallopt(param, value) == 1
        for param, value in ((_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad))
    )
    _done = ok
    return ok
