"""Scores of the five pretrained disentangling-vae dSprites models with the default protocol.

    python benchmarks/pretrained_scores.py [--metrics default] [--seed 0]

Loads `../shared/data/disvae-pretrained/<loss>_dsprites/model.pt` (a state_dict that loads
strictly into `create_model("burgess", channels=1, image_size=64, latent_dim=10)`), encodes
dSprites through one shared `GroundTruth` per model, and prints one row per model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import vaelab
from vaelab.metrics import as_ground_truth
from vaelab.metrics.evaluate import evaluate, resolve_metric_names
from vaelab.metrics.properties import HEADLINE

LOSSES = ("VAE", "betaH", "betaB", "factor", "btcvae")
ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "disvae-pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", default="default")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from vaelab.perf import tune_allocator

    tune_allocator()  # as the CLI and evaluate_run do: batch-1024 encoding without page faults
    dataset = vaelab.load_dataset("dsprites")
    names = resolve_metric_names(args.metrics)
    keys = [HEADLINE.get(n, n) for n in names]
    print("| model | " + " | ".join(keys) + " | seconds |")
    print("|---" * (len(keys) + 2) + "|")
    for loss in LOSSES:
        model = vaelab.create_model("burgess", channels=1, image_size=64, latent_dim=10)
        state = torch.load(ROOT / f"{loss}_dsprites" / "model.pt", map_location="cpu")
        model.load_state_dict(state, strict=True)
        model.eval().to(memory_format=torch.channels_last)
        start = time.perf_counter()
        scores, _ = evaluate(as_ground_truth(model, dataset), names, seed=args.seed)
        row = " | ".join(f"{scores[k]:.3f}" for k in keys)
        print(f"| {loss} | {row} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
