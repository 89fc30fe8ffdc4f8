"""`vaelab encode RUN [--images DIR|FILE.npz] [--out FILE] [--split SPLIT] [--limit N]`: the
latents of a run's data, or of new images, as an .npz for other tools: `codes` (N, D, what
metrics score), per Gaussian latent `<name>_mu` and `<name>_logvar`, per categorical latent
`<name>_probs`, and `labels` / `factors` when the data has them (`files` for a folder of
images)."""

from __future__ import annotations

import argparse

EPILOG = """\
output arrays (.npz):
  codes              (N, D) the representation the metrics score (Gaussian: posterior means)
  <name>_mu, _logvar (N, d) each Gaussian latent's posterior mean and log-variance
  <name>_probs       (N, K) each categorical latent's posterior probabilities
  labels, factors    the data's labels / ground-truth factors (with factor_names), if any
  files              --images DIR: each row's image file, relative to DIR

new images (--images):
  DIR        every image file under DIR (PNG, JPEG, ...; recursively, sorted by path),
             centre-cropped to a square and resized to the model's input size, in its
             channels (grey or RGB)
  FILE.npz   an `images` array (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 0..255 or
             floats in [0, 1], already of the model's size

examples:
  vaelab encode results/default                      # RUN/latents.npz of the run's data
  vaelab encode results/default --split test --out test.npz
  vaelab encode results/default --images ~/shapes --out shapes_latents.npz
  vaelab encode results/default --checkpoint results/default/checkpoints/step-0005000.ckpt

Python: vaelab.encode_images(run_or_dir, "DIR" | "FILE.npz" | array) returns the arrays.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode", help="export the latents of a run's data, or of new images, to an .npz file",
        description="Export the latents of a run's data, or of new images you give, to an .npz "
        "file\nfor other tools (its arrays are listed below).", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN", help="run directory")
    parser.add_argument("--images", metavar="DIR|FILE.npz",
                        help="encode these images instead of the run's data (see below)")
    parser.add_argument("--out", metavar="FILE", help="output file (default RUN/latents.npz)")
    parser.add_argument("--split", help="the run's data split to encode: train, valid or test "
                        "(default: the run's)")
    parser.add_argument("--limit", type=int, default=0, metavar="N",
                        help="encode only the first N items (default 0: all)")
    parser.add_argument("--device", default="cpu", help="device of the model (default cpu)")
    parser.add_argument("--batch-size", type=int, default=1024, metavar="B",
                        help="images per encoder call (default 1024)")
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="checkpoint file (default RUN/checkpoints/last.ckpt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaelab.errors import VaelabError
    from vaelab.evaluation import encode_run

    if args.batch_size < 1:
        raise VaelabError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out) if args.out else Path(args.run) / "latents.npz"
    path = encode_run(args.run, out, split=args.split, limit=args.limit, device=args.device,
                      overwrite=args.overwrite, checkpoint=args.checkpoint, images=args.images,
                      batch_size=args.batch_size)
    print(path)
    return 0
