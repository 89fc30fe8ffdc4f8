"""`vaelab sweep SPEC [--out DIR] [--address ADDR] [--max-concurrent N] [--threads-per-trial T]
[--dry-run [--show N]]`."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep",
        help="run a study: a grid of runs x seeds on Ray (resumable), then sweep.csv",
        description=(
            "Run every trial of a sweep file (or a shipped sweep, see `vaelab list sweeps`) on "
            "Ray Tune, each an ordinary run directory OUT/<trial>. Re-running the same command "
            "skips finished trials and resumes interrupted ones. Needs pip install "
            "'vaelab[sweep]'. Then: vaelab report OUT."
        ),
    )
    parser.add_argument("spec", metavar="SPEC", help="a sweep .toml file or a shipped sweep name")
    parser.add_argument("--out", help="the sweep folder (default: sweeps/<sweep name>)")
    parser.add_argument("--address", help="attach to a running Ray cluster (e.g. auto or "
                        "ray://head:10001); default: start Ray embedded on 127.0.0.1")
    parser.add_argument("--max-concurrent", type=int, metavar="N",
                        help="trials at once (default: as many as the CPUs allow)")
    parser.add_argument("--threads-per-trial", type=int, default=1, metavar="T",
                        help="CPUs (and torch threads) per trial (default: 1)")
    parser.add_argument("--num-cpus", type=int, metavar="C",
                        help="CPUs of the embedded Ray (default: all of this machine's)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run failed trials again (from their last checkpoint)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the sweep and list its trials; train nothing")
    parser.add_argument("--show", type=int, default=20, metavar="N",
                        help="with --dry-run: list the first N trials (default 20; 0: all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    parser.set_defaults(func=run)


def print_dry_run(spec, show: int = 20) -> None:
    """The trial count, the swept keys, and the first `show` trials (0: every trial)."""
    total = len(spec.trials)
    print(f"{spec.name}: {total} trials; swept: {', '.join(spec.varying) or '(nothing)'}")
    listed = spec.trials if show <= 0 else spec.trials[:show]
    for trial in listed:
        print(f"{trial.name}  {' '.join(trial.overrides)}")
    if len(listed) < total:
        print(f"... and {total - len(listed)} more (--show 0 lists every trial)")
    print(f"{total} trials")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaelab.sweep import load_sweep
    from vaelab.sweep.runner import failed_trials, import_ray, run_sweep

    spec = load_sweep(args.spec)
    if args.dry_run:
        print_dry_run(spec, args.show)
        return 0
    import_ray()  # before anything is written: say what to install
    out = Path(args.out) if args.out else Path("sweeps") / spec.name
    result = run_sweep(spec, out, address=args.address, max_concurrent=args.max_concurrent,
                       threads_per_trial=args.threads_per_trial, num_cpus=args.num_cpus,
                       retry_failed=args.retry_failed, progress=not args.no_progress)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items()))
    print(f"sweep {spec.name}: {counts}; table: {result.csv}")
    for name, error in failed_trials(result.out, [t.name for t in spec.trials]):
        print(f"failed: {name}: {error}")
    if result.interrupted:
        resume = f"vaelab sweep {args.spec} --out {args.out or out}"
        raise KeyboardInterrupt(f"finished runs are kept; resume with `{resume}`")
    print(f"compare: vaelab report {result.out}")
    return 1 if result.counts.get("failed") else 0
