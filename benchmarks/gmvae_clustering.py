"""GMVAE clustering on MNIST: accuracy, NMI and utilised clusters of the Dilokthanakul-style
GMVAE and of the seed's variant (fixed), against k-means on pixels and on a plain VAE's codes.

Only the 10,000 MNIST *test* images are available offline (`../shared/data/mnist-test`), so
every model here is trained and evaluated on those same images (unsupervised: the labels are
used only for the scores; the many-to-one map is fitted and scored on the same images). Prints
one row per model and seed, then the mean and best, wall time and images/s per run.

    python3 benchmarks/gmvae_clustering.py                      # 3 seeds, every model
    python3 benchmarks/gmvae_clustering.py --seeds 1 --steps 2000 --models gmvae_k30
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"

# The trained models: name -> (preset, overrides). Steps are set by --steps.
MODELS = {
    "gmvae_k30": ("gmvae_dilokthanakul_k30", []),
    "gmvae_k16": ("gmvae_dilokthanakul_k16", []),
    "gmvae_k10": ("gmvae_dilokthanakul_k10", []),
    # the same with the seed's learned cluster posterior and one-sample conditional prior
    "gmvae_k30_net": ("gmvae_dilokthanakul_k30", ["model.cluster_posterior=network",
                                                  "objective.cp_estimator=sample"]),
    "gmvae_seed": ("gmvae_mnist", []),  # the seed's README configuration, fixed
}
VAE_BASELINE = ("seedvae_mnist", [])


def _train(key: str, seed: int, steps: int, out: Path, threads: int):
    import vaelab

    preset, extra = MODELS[key] if key in MODELS else VAE_BASELINE
    overrides = [*extra, f"seed={seed}", "data.split=test", "data.valid_size=0", f"train.steps={steps}",
                 "train.epochs=0", "train.valid_every=0", "train.early_stopping=0", "train.keep_best=false",
                 "train.checkpoint_every=0", "train.metrics=", "train.progress=false",
                 f"train.threads={threads}", "train.log_every=500"]
    start = time.perf_counter()
    run = vaelab.train(preset, overrides=overrides, name=f"{key}-s{seed}", out=out,
                       verbose=False, pictures=False, evaluate=False)
    return run, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    # One thread: on a loaded 2-core machine two OpenMP threads per run collapse (30x slower seen)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", default="", help="keep the runs in this folder")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} (the MNIST test images) is not present", file=sys.stderr)
        return 0
    data_home = Path(tempfile.mkdtemp(prefix="vaelab-mnist-"))
    (data_home / "mnist").mkdir()
    for name in os.listdir(SHARED):
        shutil.copy(SHARED / name, data_home / "mnist" / name)
    os.environ["VAELAB_DATA"] = str(data_home)
    import torch

    import vaelab
    from vaelab.metrics.clusters import evaluate_clusters, kmeans_scores
    from vaelab.viz.latents import encode_means

    torch.set_num_threads(args.threads)
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gmvae-bench-"))
    test = vaelab.load_dataset("mnist", split="test", image_size=28)
    labels = np.asarray(test.labels)
    print("data: the 10,000 MNIST test images (the only MNIST available offline); models are "
          "trained and scored on them")
    rows = []
    for model in args.models:
        for seed in range(1, args.seeds + 1):
            run, seconds = _train(model, seed, args.steps, out, args.threads)
            scores = evaluate_clusters(run.model, test)
            ips = run.summary["images_per_s"]
            rows.append((model, seed, scores, seconds, ips, run.model.num_clusters))
            print(f"{model:<11} seed {seed}: accuracy {scores['clusters.accuracy']:.4f}  "
                  f"nmi {scores['clusters.nmi']:.4f}  used {scores['clusters.used']:.0f}/"
                  f"{run.model.num_clusters}  {seconds:.0f} s  {ips} img/s", flush=True)
    # Baselines with the same K as each GMVAE: k-means on pixels and on a plain VAE's codes.
    ks = sorted({r[5] for r in rows})
    pixels = test.data.float().div(255).flatten(1).numpy()
    vae, vae_seconds = _train("plain_vae", 1, args.steps, out, args.threads)
    codes = encode_means(vae.model, test)
    print(f"plain VAE ({VAE_BASELINE[0]}, seed 1): {vae_seconds:.0f} s")
    for k in ks:
        for name, features in (("k-means on pixels", pixels), ("k-means on VAE codes", codes)):
            scores = [kmeans_scores(features, labels, k, seed=s, prefix="") for s in (1, 2, 3)]
            acc = [s["accuracy"] for s in scores]
            print(f"{name:<21} K={k:<3} accuracy mean {np.mean(acc):.4f} best {max(acc):.4f}  "
                  f"nmi {np.mean([s['nmi'] for s in scores]):.4f}")
    print("\nmodel        K  accuracy mean  best    nmi mean  used  s/run  img/s")
    for model in args.models:
        mine = [r for r in rows if r[0] == model]
        if not mine:
            continue
        acc = [r[2]["clusters.accuracy"] for r in mine]
        print(f"{model:<11} {mine[0][5]:>3}  {np.mean(acc):.4f}         {max(acc):.4f}  "
              f"{np.mean([r[2]['clusters.nmi'] for r in mine]):.4f}    "
              f"{np.mean([r[2]['clusters.used'] for r in mine]):.1f}  "
              f"{np.mean([r[3] for r in mine]):.0f}  {np.mean([r[4] for r in mine]):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
