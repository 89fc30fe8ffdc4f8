"""`vaelab encode RUN [--out FILE] [--split SPLIT] [--limit N]`: the latents of a run's data as
an .npz for other tools: `codes` (N, D, what metrics score), per Gaussian latent `<name>_mu` and
`<name>_logvar`, per categorical latent `<name>_probs`, and `labels` / `factors` when the data
has them."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("encode", help="export a run's latents to an .npz file",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("run", metavar="RUN", help="run directory")
    parser.add_argument("--out", help="output file (default RUN/latents.npz)")
    parser.add_argument("--split", help="the data split to encode (default: the run's)")
    parser.add_argument("--limit", type=int, default=0, help="encode only the first N items")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="checkpoint file (default RUN/checkpoints/last.ckpt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaelab.runs import encode_run

    out = Path(args.out) if args.out else Path(args.run) / "latents.npz"
    path = encode_run(args.run, out, split=args.split, limit=args.limit, device=args.device,
                      overwrite=args.overwrite, checkpoint=args.checkpoint)
    print(path)
    return 0
