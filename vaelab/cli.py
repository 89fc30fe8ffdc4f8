"""The `vaelab` command: thin argument parsing over library functions (one module per command)."""

from __future__ import annotations

import argparse
import importlib
import sys

# (sub-command module, in help order). Each module defines add_parser(subparsers), which
# registers its sub-command and sets `func(args) -> int` as the parser's default.
COMMANDS = [
    "vaelab.commands.train",
    "vaelab.commands.eval",
    "vaelab.commands.plot",
    "vaelab.commands.report",
    "vaelab.commands.data",
    "vaelab.commands.listing",
    "vaelab.commands.show",
    "vaelab.commands.encode",
    "vaelab.commands.score",
    "vaelab.commands.experiment",
    "vaelab.commands.sweep",
    "vaelab.commands.import_disvae",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaelab",
        description="Train, evaluate and visualize disentangled and structured VAEs.",
    )
    from vaelab import __version__

    parser.add_argument("--version", action="version", version=f"vaelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:  # command not installed in this build
                continue
            raise
        module.add_parser(sub)
    for command in sub.choices.values():  # every command takes --threads (vaelab.perf)
        command.add_argument(
            "--threads", type=_threads, default=0, metavar="N",
            help="CPU threads for torch (default: torch's, capped at the CPUs this process may "
                 "use: its affinity and cgroup quota); wins over train.threads")
    return parser


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 thread, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from vaelab.errors import run_cli_command
    from vaelab.perf import configure_threads, tune_allocator

    tune_allocator()  # the CLI owns its process: keep freed tensor memory (see vaelab.perf)
    configure_threads(args.threads)
    return run_cli_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
