"""`vaelab train [PRESET] [--name NAME] [--out DIR] [--set key=value ...] [--resume RUN]`."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a model (default: beta-TCVAE on the built-in dSprites)",
        description=(
            "Train a run from a preset (see `vaelab list presets`) or a config file. Explicit "
            "--set values always win over the preset. Results go to OUT/NAME."
        ),
    )
    parser.add_argument("preset", nargs="?", default=None, help="preset name (default: default)")
    parser.add_argument("--name", help="run name (default: the preset's)")
    parser.add_argument("--out", default="results", help="parent folder of runs (default: results)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. objective.beta=4")
    parser.add_argument("--config", help="a config file: .json/.toml run config or seed .ini/.cfg")
    parser.add_argument("--variation", choices=["VAE", "B-VAE"],
                        help="with an .ini/.cfg config: train the plain VAE or the beta-VAE")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in directory RUN")
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="with --resume: continue from this checkpoint (default "
                        "RUN/checkpoints/last.ckpt); the later checkpoints and the logs are "
                        "kept in RUN/checkpoints/before-resume-from-NAME/")
    parser.add_argument("--no-eval", action="store_true", help="skip the metrics at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaelab.errors import VaelabError
    from vaelab.workflow import train

    if args.resume and (args.preset or args.config):
        raise VaelabError("--resume continues a run with its stored config; drop the preset/--config")
    if args.preset and args.config:
        raise VaelabError("give either a preset or --config, not both")
    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append("train.progress=false")
    if args.threads:  # vaelab's global --threads wins over the preset's train.threads
        overrides.append(f"train.threads={args.threads}")
    train(
        args.preset or "default",
        overrides=overrides,
        config=args.config,
        name=args.name,
        out=args.out,
        resume=args.resume,
        checkpoint=args.checkpoint,
        variation=args.variation,
        evaluate=not args.no_eval,
    )
    return 0
