"""`vaelab experiment NAME RUN [--batches N] [--batch-size B] [--bn train|eval]`: a paper's
experiment on a trained run (UG-VAE: interpolation, domain_alignment, global_structure,
mnist_series); figures go to RUN/plots, scores into RUN/metrics.json."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="run a paper's experiment on a run",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("name", help="interpolation | domain_alignment | global_structure | "
                        "mnist_series")
    parser.add_argument("run", metavar="RUN", help="run directory")
    parser.add_argument("--batches", type=int, default=0,
                        help="batches per batch type (default: the experiment's, the seed's "
                        "100; 200 series batches for mnist_series)")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="images per batch (default: the run's training batch size)")
    parser.add_argument("--bn", choices=("train", "eval"), default="train",
                        help="BatchNorm with batch statistics (the seed's) or running ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attribute", default="",
                        help="global_structure on CelebA: the attribute whose batches are "
                        "compared (the seed's: Male)")
    parser.add_argument("--factors", default="",
                        help="global_structure on factor data: the factor(s) the grouped batches "
                        "share, comma-separated (default: the run's data.group_factors, else "
                        "shape)")
    parser.add_argument("--values", default="",
                        help="global_structure on factor data: the two value indices A,B of the "
                        "first factor compared in the seed's protocol (default: its first and "
                        "last; orientation: 0 and 45 degrees)")
    parser.add_argument("--reduction", choices=("tsne", "pca"), default="tsne",
                        help="global_structure / mnist_series maps: t-SNE or PCA")
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaelab.errors import VaelabError
    from vaelab.experiments import run_experiment

    if args.batches and args.batches < 5:
        raise VaelabError(f"--batches must be >= 5 (5-fold cross-validation), got {args.batches}")
    options = {"batch_size": args.batch_size, "bn": args.bn, "seed": args.seed}
    if args.batches:
        options["batches"] = args.batches
    if args.name in ("global_structure", "mnist_series"):
        options["reduction"] = args.reduction
    for flag in ("attribute", "factors", "values"):
        if getattr(args, flag):
            if args.name != "global_structure":
                raise VaelabError(f"--{flag} belongs to global_structure, not {args.name}")
            options[flag] = getattr(args, flag)
    scores = run_experiment(args.name, args.run, device=args.device, **options)
    for key, value in scores.items():
        print(f"{key}  {value:.4f}")
    return 0
