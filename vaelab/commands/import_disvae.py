"""`vaelab import-disvae DIR [--out OUT] [--name NAME]`."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "import-disvae",
        help="import a disentangling-vae result folder (model.pt + specs.json) as a run",
    )
    parser.add_argument("source", help="folder with model.pt, specs.json, train_losses.log")
    parser.add_argument("--out", default="results", help="parent folder of runs")
    parser.add_argument("--name", help="run name (default: disvae_<folder name>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaelab.disvae_import import import_disvae

    run_dir = import_disvae(args.source, out=args.out, name=args.name)
    print(f"imported {args.source} -> {run_dir}")
    return 0
