"""`vaelab score CODES.npz [--dataset NAME | --factors FILE] [--metrics ...] [--bootstrap B]`:
metrics of any representation, without a run directory."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from vaelab.commands.eval import _positive

    parser = subparsers.add_parser(
        "score",
        help="compute metrics of precomputed codes (an .npz as `vaelab encode` writes)",
        description=(
            "Scores codes (N, D), one row per item of a dataset, with the metrics and seeded "
            "sampling of `vaelab eval`: on the codes of a run's data it gives eval's numbers "
            "exactly. The .npz holds `codes` and optionally <latent>_logvar and `factors` "
            "(the layout of `vaelab encode`). Writes the scores (and intervals) as JSON."
        ),
    )
    parser.add_argument("codes", metavar="CODES", help=".npz file with a `codes` array (N, D)")
    parser.add_argument("--dataset", help="the dataset whose items the rows are (its factors "
                        "and sampling are used, as by `vaelab eval`)")
    parser.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a config option of --dataset, e.g. image_size=64; repeatable")
    parser.add_argument("--factors", help="instead of --dataset: factors (N, F) in an .npy, or "
                        "an .npz holding `factors` (default: those stored in CODES, if any)")
    parser.add_argument("--metrics", default="default",
                        help="comma-separated metric names, 'default' or 'all'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the metrics' sampling")
    parser.add_argument("--option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                        help="a metric's protocol option (as `vaelab eval --option`)")
    parser.add_argument("--bootstrap", type=_positive, default=0, metavar="B",
                        help="add 95%% percentile intervals from B re-draws of each metric's "
                        "points (B >= 2; e.g. 100)")
    parser.add_argument("--out", help="JSON file for the scores (default: CODES with "
                        "suffix .metrics.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--quiet", action="store_true", help="no per-metric progress lines")
    parser.set_defaults(func=run)


def _data_options(texts: list[str]) -> dict:
    from vaelab.config import ConfigError, parse_override

    options = {}
    for text in texts:
        try:
            key, value = parse_override(text)
        except ConfigError as error:
            raise ConfigError(str(error).replace("--set", "--data-option")) from None
        if len(key) != 1:
            raise ConfigError(f"--data-option expects KEY=VALUE (e.g. image_size=64), got {text!r}")
        options[key[0]] = value
    return options


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaelab.commands.eval import parse_options
    from vaelab.errors import VaelabError
    from vaelab.metrics.evaluate import print_scores
    from vaelab.metrics.scoring import score, write_score_file

    if args.dataset and args.factors:
        raise VaelabError("give either --dataset or --factors, not both")
    if args.data_option and not args.dataset:
        raise VaelabError("--data-option configures --dataset; give --dataset NAME too")
    if args.bootstrap == 1:
        raise VaelabError("--bootstrap needs at least 2 resamples, got 1")
    codes = Path(args.codes)
    out = Path(args.out) if args.out else codes.with_suffix(".metrics.json")
    if out.exists() and not args.overwrite:  # before any work
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it or --out")
    try:
        result = score(codes, dataset=args.dataset, factors=args.factors, metrics=args.metrics,
                       seed=args.seed, options=parse_options(args.option),
                       bootstrap=args.bootstrap, progress=not args.quiet,
                       data_options=_data_options(args.data_option))
    except ValueError as error:  # mismatched lengths, bad shapes: one clear line
        raise VaelabError(f"{error} (scoring {codes})") from None
    write_score_file(out, result, overwrite=args.overwrite)
    print_scores(result.scores, title=f"metrics of {codes} (seed {args.seed})",
                 intervals=result.intervals)
    print(out)
    return 0
