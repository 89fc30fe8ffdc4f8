"""`vaelab plot RUN KIND...`: seed plots, losses and latent maps of a run, into RUN/plots/."""

from __future__ import annotations

import argparse

from vaelab.errors import VaelabError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw plots of a trained run into RUN/plots/",
        description="Draw plots of a trained run. Kinds: data-samples, samples, reconstruct, "
        "traversals, reconstruct-traverse, gif-traversals, losses, mean-activations, "
        "latent-projection, or all. Existing files are kept unless --overwrite.",
    )
    parser.add_argument("run", help="run directory")
    parser.add_argument("kinds", nargs="+", metavar="KIND", help="plot kinds, or 'all'")
    parser.add_argument(
        "-r", "--rows", type=int, help="grid rows (default 6; traversals: all latents)"
    )
    parser.add_argument(
        "-c", "--cols", type=int, help="grid columns / traversal points (default 7)"
    )
    parser.add_argument(
        "-t",
        "--max-traversal",
        type=float,
        help=">= 0.5: traverse -T..T; < 0.5: the central 2T mass (default 2)",
    )
    parser.add_argument(
        "--disvae-traversal",
        action="store_true",
        help="reproduce disvae's quantile ranges (centred on 0, sign bug kept)",
    )
    parser.add_argument(
        "--posterior",
        action="store_true",
        help="traverse around the first image's posterior mean, not the prior",
    )
    parser.add_argument(
        "-i",
        "--indices",
        type=int,
        nargs="+",
        default=None,
        help="dataset items shown first (the rest are random)",
    )
    parser.add_argument("-u", "--upsample", type=int, help="nearest-neighbour upsampling factor")
    parser.add_argument("-s", "--seed", type=int, help="seed of the random items and samples")
    parser.add_argument(
        "--factor", help="latent-projection colouring: a factor name, label, cluster"
    )
    parser.add_argument(
        "--show-kl", action="store_true", help="reconstruct-traverse: label each row with its KL"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="the seed's bare pixel grids: no row labels (latent, KL, factor) or captions",
    )
    parser.add_argument("--frames", type=int, help="gif-traversals: frames (default 15)")
    parser.add_argument("--points", type=int, help="latent-projection: images (default 1000)")
    parser.add_argument("--checkpoint", help="checkpoint file (default checkpoints/last.ckpt)")
    parser.add_argument("--device", default="cpu", help="device of the model (default cpu)")
    parser.add_argument("--out-dir", help="output folder (default RUN/plots)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaelab.plotting import make_plots
    from vaelab.viz.plots import options_from_kwargs

    for flag in ("rows", "cols", "upsample", "frames", "points"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise VaelabError(f"--{flag} must be >= 1, got {value}")
    try:
        options = options_from_kwargs(
            rows=args.rows,
            cols=args.cols,
            max_traversal=args.max_traversal,
            traversal_mode="disvae" if args.disvae_traversal else None,
            posterior=args.posterior or None,
            indices=tuple(args.indices) if args.indices else None,
            upsample=args.upsample,
            seed=args.seed,
            factor=args.factor,
            show_kl=args.show_kl or None,
            plain=args.plain or None,
            frames=args.frames,
            points=args.points,
        )
    except ValueError as error:
        raise VaelabError(f"bad plot option: {error}") from None
    written = make_plots(
        args.run,
        args.kinds,
        options,
        overwrite=args.overwrite,
        out_dir=args.out_dir,
        checkpoint=args.checkpoint,
        device=args.device,
    )
    for path in written:
        print(path)
    return 0
