"""`vaelab eval RUN [--metrics a,b,...] [--seed S] [--device D]`: score a run, merge metrics.json."""

from __future__ import annotations

import argparse


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="compute disentanglement metrics of a run into RUN/metrics.json",
        description="Computes metrics of a run's model on its dataset, merges them into "
        "RUN/metrics.json (with the protocol used) and prints a table.",
    )
    parser.add_argument("run", help="run directory")
    parser.add_argument(
        "--metrics", default="default",
        help="comma-separated metric names; 'default' (the end-of-training suite) or 'all' "
        "(`vaelab list metrics` shows the names)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the metrics' sampling")
    parser.add_argument("--device", default=None, help="encoding device (default: cuda if available)")
    parser.add_argument("--batch-size", type=_positive, default=1024,
                        help="images per encoder call")
    parser.add_argument("--quiet", action="store_true", help="no per-metric progress lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaelab.metrics.evaluate import evaluate_run, print_scores

    scores = evaluate_run(args.run, metrics=args.metrics, seed=args.seed, device=args.device,
                          progress=not args.quiet, batch_size=args.batch_size)
    print_scores(scores, title=f"metrics of {args.run} (seed {args.seed})")
    return 0
