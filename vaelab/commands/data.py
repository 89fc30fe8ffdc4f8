"""`vaelab data NAME [--root DIR] [--from PATH]`: download or import a dataset, verify, cache."""

from __future__ import annotations

import argparse

from vaelab.errors import VaelabError

__all__ = ["add_parser", "format_size", "prepare_dataset", "run"]


def format_size(size: int) -> str:
    """Bytes as a short human-readable string: 1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def prepare_dataset(name: str, root: str = "", from_path: str | None = None,
                    split: str | None = None, variant: str | None = None) -> dict:
    """Calls the registered dataset's `prepare`; returns its {"path", "items", "bytes"} report.

    Raises:
        KeyError: unknown dataset name (the message lists the known ones).
        VaelabError: the dataset has nothing to prepare (it is generated on the fly).
        DataError: files missing, corrupt or not fetchable (the message says what to do).
    """
    import vaelab.data  # noqa: F401  (registers every dataset)
    from vaelab.registry import DATASETS

    cls = DATASETS.get(name)
    if not hasattr(cls, "prepare"):
        raise VaelabError(f"dataset {name!r} is generated on the fly; there is nothing to prepare")
    options: dict = {"root": root}
    if variant is not None:
        import dataclasses

        if "variant" not in {f.name for f in dataclasses.fields(cls.config_class)}:
            raise VaelabError(f"--variant applies to datasets with variants (mpi3d, dsprites); "
                              f"{name} has none")
        options["variant"] = variant
    if split is None:
        return cls.prepare(cls.config_class(**options), from_path=from_path)
    import inspect

    if "split" not in inspect.signature(cls.prepare).parameters:
        raise VaelabError(f"--split applies to datasets kept as per-split files (mnist, "
                          f"fashion_mnist, smallnorb); {name} is prepared whole")
    return cls.prepare(cls.config_class(**options), from_path=from_path, split=split)


def run(args: argparse.Namespace) -> int:
    try:
        report = prepare_dataset(args.name, root=args.root or "", from_path=args.from_path,
                                 split=args.split, variant=args.variant)
    except ValueError as error:  # bad option combination reported by a dataset
        raise VaelabError(str(error)) from error
    print(f"{args.name}: {report['items']:,} items, {format_size(report['bytes'])} in {report['path']}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="download or import a dataset, verify its checksums and build its cache",
        description=(
            "Gets dataset NAME ready: downloads it (official source, then mirrors) or imports "
            "files you already have with --from, verifies checksums, and decodes image folders "
            "into a cache. Data goes to --root, else $VAELAB_DATA, else ~/.cache/vaelab. "
            "Set VAELAB_OFFLINE=1 to never use the network."
        ),
    )
    parser.add_argument("name", help="registered dataset name (see `vaelab list datasets`)")
    parser.add_argument("--root", default="", help="data folder (default: VAELAB_DATA or cache)")
    parser.add_argument(
        "--from", dest="from_path", default=None, metavar="PATH",
        help="import from a downloaded file (archive) or a folder holding the files",
    )
    parser.add_argument(
        "--split", choices=("train", "test"), default=None,
        help="only the files of this split (mnist, fashion_mnist, smallnorb), e.g. a folder "
        "holding only the test files, for runs with data.split=test",
    )
    parser.add_argument(
        "--variant", default=None,
        help="the dataset's data.variant: toy, realistic or real for mpi3d",
    )
    parser.set_defaults(func=run)
