"""`vaelab report RUN [RUN...]`: one self-contained report.html (config, scores, pictures)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of one or more runs",
        description="Write report.html with each run's config, summary, metrics, loss curves and "
        "pictures (inlined; the page needs no network). Several runs get a comparison table.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    parser.add_argument(
        "--out", help="output file (default RUN/report.html, or ./report.html for several runs)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="one run only: judge its pictures against this checkpoint instead "
                        "of RUN/checkpoints/last.ckpt (the report names it)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaelab.sweep.report import is_sweep_dir, write_sweep_report
    from vaelab.viz.report import write_report

    if len(args.runs) == 1 and is_sweep_dir(args.runs[0]):  # a `vaelab sweep` folder
        print(write_sweep_report(args.runs[0], out=args.out, overwrite=args.overwrite))
        return 0

    print(write_report(args.runs, out=args.out, overwrite=args.overwrite,
                       checkpoint=args.checkpoint))
    return 0
