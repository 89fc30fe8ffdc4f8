"""`vaelab show PRESET [--set key=value ...]`: the resolved run config of a preset, as TOML-like
JSON (what `vaelab train PRESET` would train, after the overrides), and its length and data."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("show", help="print the resolved config of a preset",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="preset name (vaelab list presets) or a config file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="dotted override, as for vaelab train")
    parser.set_defaults(func=run)


def describe_length(config) -> str:
    """'6000 steps' or '20 epochs' of a run config."""
    train = config.train
    if train.steps:
        return f"{train.steps} steps of batch {train.batch_size}"
    return f"{train.epochs:g} epochs of batch {train.batch_size}"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaelab.workflow import build_run_config

    path = Path(args.preset)
    if path.suffix in (".toml", ".json", ".ini", ".cfg") and path.is_file():
        config = build_run_config(None, args.overrides, config=path)
    else:
        config = build_run_config(args.preset, args.overrides)
    print(config.to_json())
    print(f"# {describe_length(config)} on {config.data.name}", flush=True)
    return 0
