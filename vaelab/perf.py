"""Process-level speed settings for CPU training.

glibc returns freed memory above `M_TRIM_THRESHOLD` to the kernel and serves blocks above
`M_MMAP_THRESHOLD` with fresh `mmap`s. A conv VAE frees and re-allocates the same multi-MB
activation buffers every step, so with glibc's defaults each step page-faults thousands of times
(measured on disentangling-vae and pythae: 25-35% of CPU time in page faults). `tune_allocator()`
raises the thresholds with `mallopt` at run time — the same effect as exporting
`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` and `MALLOC_TOP_PAD_` before start, but it works
from inside an already running Python process. No library offers this, hence ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_done = False


def tune_allocator(
    mmap_threshold: int = 32 * 1024 * 1024,  # glibc's maximum on 64-bit
    trim_threshold: int = 1024 * 1024 * 1024,
    top_pad: int = 256 * 1024 * 1024,
) -> bool:
    """Keeps freed tensor memory in the process instead of returning it to the kernel.

    Returns True when the settings were applied (glibc on Linux), False elsewhere (no-op).
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
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, mmap_threshold),
            (_M_TRIM_THRESHOLD, trim_threshold),
            (_M_TOP_PAD, top_pad),
        )
    )
    _done = ok
    return ok
