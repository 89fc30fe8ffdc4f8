"""`vaelab eval RUN [--metrics a,b,...] [--seed S] [--device D] [--bootstrap B]`: score a run,
merge metrics.json (with percentile intervals under "intervals" when --bootstrap)."""

from __future__ import annotations

import argparse
from typing import Any


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, 2**32), got {value}")
    return value


def parse_options(texts: list[str]) -> dict[str, dict[str, Any]]:
    """["mig.num_train=all", ...] -> {"mig": {"num_train": "all"}} (values read as by --set)."""
    from vaelab.config import ConfigError, parse_override

    options: dict[str, dict[str, Any]] = {}
    for text in texts:
        try:
            key, value = parse_override(text)
        except ConfigError as error:
            raise ConfigError(str(error).replace("--set", "--option")) from None
        if len(key) != 2:
            raise ConfigError(
                f"--option expects METRIC.KEY=VALUE (for example mig.num_train=all), got {text!r}"
            )
        options.setdefault(key[0], {})[key[1]] = value
    import vaelab.metrics  # noqa: F401  (fills METRICS)
    from vaelab.metrics.evaluate import metric_protocol

    for name, given in options.items():
        try:
            metric_protocol(name, given)  # an unknown metric: KeyError naming the known ones
        except ValueError as error:
            raise ConfigError(f"--option: {error}") from None
    return options


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
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the metrics' sampling")
    parser.add_argument("--device", default=None, help="encoding device (default: cuda if available)")
    parser.add_argument("--batch-size", type=_positive, default=1024,
                        help="images per encoder call")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="encoding precision: fp32 (default) or bf16 autocast (faster on "
                        "CPUs with AVX-512 BF16; codes to bf16 precision)")
    parser.add_argument("--option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                        help="a metric's protocol option, e.g. mig.num_train=all (every item "
                        "once) or dci.num_train=2000; repeatable")
    parser.add_argument("--bootstrap", type=_positive, default=0, metavar="B",
                        help="add 95%% percentile intervals from B re-draws of each metric's "
                        "points (B >= 2), written under 'intervals' in metrics.json")
    parser.add_argument("--quiet", action="store_true", help="no per-metric progress lines")
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="checkpoint file (default RUN/checkpoints/last.ckpt)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaelab.evaluation import evaluate_run
    from vaelab.metrics.evaluate import print_scores

    if args.bootstrap == 1:  # before any work
        from vaelab.errors import VaelabError

        raise VaelabError("--bootstrap needs at least 2 resamples, got 1")
    scores = evaluate_run(args.run, metrics=args.metrics, seed=args.seed, device=args.device,
                          progress=not args.quiet, batch_size=args.batch_size,
                          precision=args.precision, options=parse_options(args.option),
                          checkpoint=args.checkpoint)
    intervals = _intervals(args, scores) if args.bootstrap else None
    print_scores(scores, title=f"metrics of {args.run} (seed {args.seed})", intervals=intervals)
    return 0


def _intervals(args: argparse.Namespace, scores: dict[str, float]) -> dict[str, Any]:
    """`--bootstrap B`: the intervals of the scores just computed, merged into metrics.json."""
    from vaelab.evaluation import run_intervals

    names = [m for m in args.metrics.split(",") if m.strip() and m.strip() != "clusters"]
    return run_intervals(args.run, names or "default", seed=args.seed, resamples=args.bootstrap,
                         device=args.device, options=parse_options(args.option),
                         batch_size=args.batch_size, precision=args.precision,
                         progress=not args.quiet, checkpoint=args.checkpoint)
