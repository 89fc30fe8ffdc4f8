"""`vaelab list presets|models|objectives|datasets|metrics|plots`."""

from __future__ import annotations

import argparse

KINDS = ["presets", "models", "objectives", "datasets", "metrics", "plots"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="list registered presets, models, objectives, ...")
    parser.add_argument("kind", choices=KINDS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import vaelab

    names = vaelab.list_names(args.kind)
    if args.kind == "presets":
        from vaelab.presets import describe_preset

        width = max(map(len, names), default=0)
        for name in names:
            print(f"{name:<{width}}  {describe_preset(name)}")
        return 0
    for name in names:
        print(name)
    return 0
