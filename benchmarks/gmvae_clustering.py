"""GMVAE clustering on MNIST: accuracy, NMI and utilised clusters of the Dilokthanakul-style
GMVAE and of the seed's variant (fixed), against k-means on pixels and on a plain VAE's codes.

Only the 10,000 MNIST *test* images are available offline (`../shared/data/mnist-test`), so
every model here is trained and evaluated on those same images (unsupervised: the labels are
used only for the scores; the many-to-one map is fitted and scored on the same images). Prints
one row per model and seed, then the mean and best, wall time and images/s per run.

    python3 benchmarks/gmvae_clustering.py                      # 3 seeds, the README's models
    python3 benchmarks/gmvae_clustering.py --seeds 1 --steps 2000 --models gmvae_k30
    python3 benchmarks/gmvae_clustering.py --jobs 2             # two runs at a time, 1 thread each
    python3 benchmarks/gmvae_clustering.py --models gmvae_k30_balanced --set model.dropout=0.1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"

# The trained models: name -> (preset, overrides). Steps are set by --steps.
MODELS = {
    "gmvae_k30": ("gmvae_dilokthanakul_k30", []),
    "gmvae_k16": ("gmvae_dilokthanakul_k16", []),
    "gmvae_k10": ("gmvae_dilokthanakul_k10", []),
    # the gradient and latent sizes of Dilokthanakul et al.'s code (issue 35; not measured yet)
    "gmvae_k30_code": ("gmvae_dilokthanakul_code_k30", []),
    # the same with the seed's learned cluster posterior and one-sample conditional prior
    "gmvae_k30_net": ("gmvae_dilokthanakul_k30", ["model.cluster_posterior=network",
                                                  "objective.cp_estimator=sample"]),
    "gmvae_seed": ("gmvae_mnist", []),  # the seed's README configuration, fixed
    # the information threshold on I(x; y) only and the cluster balance paid at weight 5
    "gmvae_k30_balanced": ("gmvae_balanced_k30", []),
    # the same with the fully connected networks of Dilokthanakul et al.'s code (shared BN trunk)
    "gmvae_k30_paper": ("gmvae_paper_k30", []),
    # the same on dynamically binarised images (a fresh Bernoulli draw of every pixel per step)
    "gmvae_k30_balanced_bin": ("gmvae_balanced_k30", ["train.binarize=dynamic"]),
    # the same with the learning rate on a cosine to zero
    "gmvae_k30_balanced_cos": ("gmvae_balanced_k30", ["train.lr_schedule=cosine"]),
    "gmvae_seed_balanced": ("gmvae_mnist", ["objective.min_information_on=information",
                                            "objective.min_information=2.0794",
                                            "objective.balance=5"]),
}
VAE_BASELINE = ("seedvae_mnist", [])
#: The README's table (`--jobs 2`: about 30 minutes on 2 idle cores)
README_MODELS = ("gmvae_k30_paper", "gmvae_k30_balanced", "gmvae_k30", "gmvae_seed_balanced", "gmvae_seed")


def _train(key: str, seed: int, steps: int, out: Path, threads: int, extra_set=()):
    import torch

    import vaelab

    torch.set_num_threads(threads)
    preset, extra = MODELS[key] if key in MODELS else VAE_BASELINE
    extra = [*extra, *(extra_set if key in MODELS else ())]
    overrides = [*extra, f"seed={seed}", "data.split=test", "data.valid_size=0", f"train.steps={steps}",
                 "train.epochs=0", "train.valid_every=0", "train.early_stopping=0", "train.keep_best=false",
                 "train.checkpoint_every=0", "train.metrics=", "train.progress=false",
                 f"train.threads={threads}", "train.log_every=500"]
    start = time.perf_counter()
    run = vaelab.train(preset, overrides=overrides, name=f"{key}-s{seed}", out=out,
                       verbose=False, pictures=False, evaluate=False)
    return run, time.perf_counter() - start


def _job(key: str, seed: int, steps: int, out: Path, threads: int, extra_set=()) -> dict:
    """Trains one model and returns its scores (a GMVAE's clusters, a plain VAE's codes)."""
    import vaelab
    from vaelab.metrics.clusters import evaluate_clusters
    from vaelab.viz.latents import encode_means

    run, seconds = _train(key, seed, steps, out, threads, extra_set)
    test = vaelab.load_dataset("mnist", split="test", image_size=28)
    result = {"model": key, "seed": seed, "seconds": seconds,
              "images_per_s": run.summary["images_per_s"]}
    if key in MODELS:
        result.update(scores=evaluate_clusters(run.model, test), K=run.model.num_clusters)
    else:
        result["codes"] = encode_means(run.model, test)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1, help="seeds first-seed .. +seeds-1")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--models", nargs="*", default=list(README_MODELS),
                        help=f"any of {', '.join(MODELS)}")
    # One thread: on a loaded 2-core machine two OpenMP threads per run collapse (30x slower seen)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the k-means baselines and the plain VAE (for quick ablations)")
    parser.add_argument("--keep", default="", help="keep the runs in this folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every GMVAE trained (for ablations), repeatable")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; expected some of {', '.join(MODELS)}")
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} (the MNIST test images) is not present", file=sys.stderr)
        return 0
    data_home = Path(tempfile.mkdtemp(prefix="vaelab-mnist-"))
    (data_home / "mnist").mkdir()
    for name in os.listdir(SHARED):
        shutil.copy(SHARED / name, data_home / "mnist" / name)
    os.environ["VAELAB_DATA"] = str(data_home)
    import vaelab
    from vaelab.metrics.clusters import kmeans_scores

    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gmvae-bench-"))
    test = vaelab.load_dataset("mnist", split="test", image_size=28)
    labels = np.asarray(test.labels)
    print("data: the 10,000 MNIST test images (the only MNIST available offline); models are "
          f"trained and scored on them; {args.jobs} run(s) at a time, {args.threads} thread(s) each, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.set:
        print("every GMVAE with: " + " ".join(args.set))
    jobs = [(m, s) for m in args.models
            for s in range(args.first_seed, args.first_seed + args.seeds)]
    jobs += [] if args.no_baselines else [("plain_vae", 1)]
    rows, vae = [], None
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [pool.submit(_job, m, s, args.steps, out, args.threads, args.set)
                   for m, s in jobs]
        for future in as_completed(futures):
            r = future.result()
            if "codes" in r:
                vae = r
                print(f"plain VAE ({VAE_BASELINE[0]}, seed 1): {r['seconds']:.0f} s", flush=True)
                continue
            rows.append(r)
            sc = r["scores"]
            print(f"{r['model']:<19} seed {r['seed']}: accuracy {sc['clusters.accuracy']:.4f}  "
                  f"nmi {sc['clusters.nmi']:.4f}  used {sc['clusters.used']:.0f}/{r['K']}  "
                  f"{r['seconds']:.0f} s  {r['images_per_s']} img/s", flush=True)
    # Baselines with the same K as each GMVAE: k-means on pixels and on a plain VAE's codes.
    pixels = test.data.float().div(255).flatten(1).numpy()
    for k in [] if args.no_baselines else sorted({r["K"] for r in rows}):
        for name, features in (("k-means on pixels", pixels), ("k-means on VAE codes", vae["codes"])):
            scores = [kmeans_scores(features, labels, k, seed=s, prefix="") for s in (1, 2, 3)]
            acc = [s["accuracy"] for s in scores]
            print(f"{name:<21} K={k:<3} accuracy mean {np.mean(acc):.4f} best {max(acc):.4f}  "
                  f"nmi {np.mean([s['nmi'] for s in scores]):.4f}")
    print(f"\n{'model':<19}  K  accuracy mean  best    nmi mean  used  s/run  img/s")
    for model in args.models:
        mine = [r for r in rows if r["model"] == model]
        acc = [r["scores"]["clusters.accuracy"] for r in mine]
        print(f"{model:<19} {mine[0]['K']:>3}  {np.mean(acc):.4f}         {max(acc):.4f}  "
              f"{np.mean([r['scores']['clusters.nmi'] for r in mine]):.4f}    "
              f"{np.mean([r['scores']['clusters.used'] for r in mine]):.1f}  "
              f"{np.mean([r['seconds'] for r in mine]):.0f}  "
              f"{np.mean([r['images_per_s'] for r in mine]):.0f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
