"""`vaelab experiment NAME RUN [--batches N] [--batch-size B] [--bn train|eval]`: a paper's
experiment on a trained run (UG-VAE: interpolation, domain_alignment, global_structure); figures go to
RUN/plots, scores into RUN/metrics.json."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="run a paper's experiment on a run",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("name", help="interpolation | domain_alignment | global_structure")
    parser.add_argument("run", metavar="RUN", help="run directory")
    parser.add_argument("--batches", type=int, default=100, help="batches per batch type")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="images per batch (default: the run's training batch size)")
    parser.add_argument("--bn", choices=("train", "eval"), default="train",
                        help="BatchNorm with batch statistics (the seed's) or running ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaelab.experiments import run_experiment

    if args.batches < 5:
        from vaelab.errors import VaelabError

        raise VaelabError(f"--batches must be >= 5 (5-fold cross-validation), got {args.batches}")
    scores = run_experiment(args.name, args.run, device=args.device, batches=args.batches,
                            batch_size=args.batch_size, bn=args.bn, seed=args.seed)
    for key, value in scores.items():
        print(f"{key}  {value:.4f}")
    return 0
