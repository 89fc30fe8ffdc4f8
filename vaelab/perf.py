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

Threads on a shared machine (`set_wait_policy`, `available_cpus`, `configure_threads`). PyTorch's
CPU wheels run intra-op work on GNU OpenMP, whose idle threads spin for about 300,000 iterations
(a few ms) before they sleep. When other processes compete for the cores, a spinning thread burns
the time slice that the thread it waits for needs, and training collapses far below its fair
share of the machine; on an idle machine, spinning is what makes two threads fast. Measured with
`benchmarks/contention.py` (2 cores, the main job, 2 threads; the performance docs): idle,
`OMP_WAIT_POLICY=PASSIVE` trains at 0.70x the spinning default; beside two busy loops, the
spinning default gets 0.36x its fair share and `PASSIVE` 0.78x. `set_wait_policy()` (called by
vaelab's `__init__` before torch loads) therefore chooses at the start: `PASSIVE` when another
thread is runnable, the runtime's spinning when the machine is idle. A user's `OMP_WAIT_POLICY` or
`GOMP_SPINCOUNT` wins, and `VAELAB_WAIT_POLICY=passive|runtime` forces one. Threads are capped at
the CPUs this process may really use: its affinity mask and its cgroup CPU quota
(`os.cpu_count()` sees neither; a container limited to 2 CPUs on a 64-core host would otherwise
run 64 threads).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
from pathlib import Path

__all__ = ["available_cpus", "busy_hint", "configure_threads", "others_running",
           "set_wait_policy", "tune_allocator", "wait_policy_reason"]

#: The cgroup v2 and v1 files that hold a container's CPU quota.
_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


#: How `set_wait_policy` decided, for the record (`wait_policy_reason()`).
_REASON = "not chosen yet"
_OTHERS: int | None = None  # runnable threads besides vaelab's when the policy was chosen
_PROC_STAT = Path("/proc/stat")


def others_running(stat: Path = _PROC_STAT, samples: int = 5) -> int | None:
    """Runnable threads on this machine besides the caller: the fewest of `samples` reads of
    `/proc/stat`'s `procs_running` (taken 2 ms apart, so a daemon that wakes for a moment is not
    counted), minus the caller itself. None where `/proc/stat` cannot be read (not Linux)."""
    import time

    counts = []
    for i in range(samples):
        try:
            for line in stat.read_text().splitlines():
                if line.startswith("procs_running "):
                    counts.append(int(line.split()[1]))
                    break
        except (OSError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(0.002)
    return max(0, min(counts) - 1) if counts else None


def set_wait_policy(environ: dict[str, str] | None = None, others: int | None = -1
                    ) -> str | None:
    """Chooses how idle OpenMP threads wait, once, before the OpenMP runtime starts.

    GNU OpenMP's idle threads spin before they sleep. On an idle machine that is the fastest
    (measured: training at 2 threads 0.70x as fast with `PASSIVE`, which sleeps at once); when
    other processes compete for the cores, a spinning thread burns the slice the thread it waits
    for needs, and training collapses (0.36x its fair share with `runtime`, 0.78x with
    `PASSIVE`). The default, `VAELAB_WAIT_POLICY=auto`, looks at the machine when vaelab is
    imported: `PASSIVE` if another thread is runnable (`others_running`), else the runtime's own
    spinning. The thread count is not changed, so results do not depend on the load (the number
    of threads changes float rounding; the wait policy does not). A machine that becomes busy
    after the start keeps the policy chosen at the start.

    Must run before the OpenMP runtime starts (before `import torch`): the runtime reads its
    environment once, when it is loaded. A user's `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` wins;
    `VAELAB_WAIT_POLICY=passive` or `runtime` forces one; nothing is set once torch is imported.

    Args:
        environ: the environment to change (default: `os.environ`).
        others: runnable threads besides this one (default: `others_running()`; None: unknown,
            treated as idle).

    Returns:
        The policy now in force ("PASSIVE", the user's value), or None for the runtime's default.
    """
    global _REASON
    env = os.environ if environ is None else environ
    choice = env.get("VAELAB_WAIT_POLICY", "auto").strip().lower()
    if choice not in ("auto", "passive", "runtime"):
        raise ValueError("VAELAB_WAIT_POLICY must be 'auto', 'passive' or 'runtime', got "
                         f"{env['VAELAB_WAIT_POLICY']!r}")
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        _REASON = "the user's OMP_WAIT_POLICY / GOMP_SPINCOUNT"
        return env.get("OMP_WAIT_POLICY")
    if environ is None and "torch" in sys.modules:
        _REASON = "torch was imported before vaelab: the runtime's default"
        return None
    if choice == "auto":
        if others == -1:
            others = others_running()
        global _OTHERS
        _OTHERS = others
        if not others:
            _REASON = ("auto: the machine looked idle at the start (no other runnable thread), "
                       "so idle threads spin (the runtime's default)")
            return None
        _REASON = (f"auto: {others} other runnable thread(s) at the start, so idle threads "
                   "sleep at once (OMP_WAIT_POLICY=PASSIVE)")
    elif choice == "runtime":
        _REASON = "VAELAB_WAIT_POLICY=runtime"
        return None
    else:
        _REASON = "VAELAB_WAIT_POLICY=passive"
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"


def busy_hint(threads: int, accelerator: str) -> str | None:
    """One line for a CPU run with the default thread count on a machine that was busy when
    vaelab started (`set_wait_policy` saw other runnable threads): one thread is often faster
    there, but it is not chosen for the user, since the thread count changes float rounding.

    Args:
        threads: `train.threads` (0: the default, every available CPU).
        accelerator: `train.accelerator`.
    """
    import torch

    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if threads != 0 or not on_cpu or not _OTHERS or torch.get_num_threads() < 2:
        return None
    return (f"note: {_OTHERS} other runnable thread(s) shared this machine's CPUs when vaelab "
            "started, so idle threads sleep (OMP_WAIT_POLICY=PASSIVE); --set train.threads=1 is "
            "often faster on a busy machine (measured beside one busy process on 2 cores: "
            "0.90-1.05x of the fair share against 0.73-0.78x); results then differ from a multi-thread run "
            "in float rounding (see the performance docs)")


def wait_policy_reason() -> str:
    """Why the OpenMP wait policy in force was chosen (`set_wait_policy`)."""
    return _REASON


def _cgroup_quota(v2: Path = _CGROUP_V2, v1: tuple[Path, Path] = _CGROUP_V1) -> float | None:
    """The cgroup's CPU quota in CPUs (e.g. 1.5), or None when unlimited or unknown."""
    try:
        quota, period = v2.read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us, period_us = (int(p.read_text()) for p in v1)
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(v2: Path = _CGROUP_V2, v1: tuple[Path, Path] = _CGROUP_V1) -> int:
    """CPUs this process may really use: its affinity mask, capped by its cgroup's CPU quota.

    A quota of 1.5 CPUs gives 2 (rounded up: the half CPU is still worth a thread); never below 1.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(v2, v1)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def configure_threads(threads: int = 0) -> int:
    """Sets torch's intra-op threads for this process and returns the number in force.

    Args:
        threads: the user's choice (`train.threads`, `--threads`); it always wins. 0 keeps
            torch's setting but caps it at `available_cpus()`: never more threads than CPUs,
            and never more than the caller (a test, `OMP_NUM_THREADS`) already chose.
    """
    import torch

    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if threads == 0:
        threads = min(torch.get_num_threads(), available_cpus())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads

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
