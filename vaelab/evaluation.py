"""Run-level evaluation: a trained run's model on its data, scored into `RUN/metrics.json`, or
encoded into an `.npz` file (`vaelab eval`, `vaelab encode`, the end of `vaelab train`).

This sits beside the workflow, above the run directory (`vaelab.runs`) and the pure metrics
(`vaelab.metrics`: functions of codes and factors). The codes are computed once per evaluation
(a `GroundTruth` cache keyed by item index, encoding in batches on the run's device) and shared
by all metrics. `metrics.json` holds one float per score plus a "protocol" section (sizes, bins,
estimators, seed, library versions, wall time per metric); it is written atomically after each
metric and merged with what is there (`vaelab.runs.merge_metrics`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.base import FactorDataset
from vaelab.errors import VaelabError
from vaelab.io import atomic_file
from vaelab.metrics.evaluate import HELD_OUT, evaluate, library_versions, resolve_metric_names
from vaelab.metrics.ground_truth import as_ground_truth, model_encoder
from vaelab.registry import DATASETS
from vaelab.rundir import check_writable
from vaelab.runs import Run, load_run, merge_metrics, read_metrics

__all__ = ["encode_run", "evaluate_run", "held_out_split", "run_intervals"]




def evaluate_run(
    run: Any,
    metrics: str | Sequence[str] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    options: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 1024,
    precision: str = "fp32",
    checkpoint: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Scores a run's model on its dataset and merges them into `RUN/metrics.json`.

    Args:
        run: a `vaelab.runs.Run` or a run directory.
        metrics: names (a list or "a,b,c"); None or "default" means `DEFAULT_METRICS`, "all"
            every registered metric. "clusters" asks for the clustering scores of a mixture
            model (`vaelab.metrics.clusters`), which "default" adds when the model has clusters
            and the data labels.
        seed: seeds every metric's generator (and the posterior samples of `mig_chen`).
        device: where to encode; None: the run's device (for a path: CUDA when available).
        progress: print one line per metric on stderr.
        options: per-metric keyword overrides of the protocol sizes.
        batch_size: images per encoder call.
        precision: encoding precision, "fp32" (default) or "bf16" (autocast; faster on CPUs
            with AVX-512 BF16, codes to bf16 precision: see `model_encoder`). Recorded in the
            protocol section as `encoder_precision`.
        checkpoint: for a run directory, a checkpoint file instead of last.ckpt (its step is
            recorded as `checkpoint_step`).

    Returns:
        The new scores {name: float} (also merged into metrics.json).

    Raises:
        KeyError: an unknown metric name (the message lists the known ones).
        VaelabError: a supervised metric on a dataset without factors, NaN/inf codes, or an
            unreadable metrics.json (left untouched).
        FileNotFoundError: not a run directory.
    """
    if not isinstance(run, Run):
        read_metrics(run)  # a corrupt metrics.json fails before the run is loaded
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        run = load_run(run, checkpoint=checkpoint, device=str(device))
    elif device is not None and torch.device(device) != run.device:
        run.model.to(device)
        run.device = torch.device(device)
    read_metrics(run.dir)  # fails early on a corrupt file, before any work
    check_writable(Path(run.dir) / "metrics.json", f"make {run.dir} writable, or copy the run "
                   "(cp -r) to a writable folder and evaluate the copy")
    if run.device.type == "cpu":  # the Python API gets the CLI's allocator setting too
        from vaelab.perf import tune_allocator

        tune_allocator()
    dataset = run.dataset()
    requested = ([m.strip() for m in metrics.split(",") if m.strip()]
                 if isinstance(metrics, str) else list(metrics or ["default"]))
    clusters = "clusters" in requested or (
        "default" in requested and run.model.num_clusters > 0 and dataset.labels is not None)
    requested = [m for m in requested if m != "clusters"]
    names = (resolve_metric_names(requested, has_factors=isinstance(dataset, FactorDataset))
             if requested else [])
    truth = as_ground_truth(model_encoder(run.model, precision=precision), dataset,
                            batch_size=batch_size)
    if progress:
        print(f"evaluating {run.dir} on {getattr(dataset, 'name', '')} "
              f"({len(dataset)} items, device {run.device}): {', '.join(names)}", file=sys.stderr)

    about = {"dataset": getattr(dataset, "name", "")}
    if isinstance(dataset, FactorDataset):  # the factors the scores are about
        about["factors"] = dict(zip(dataset.factor_names, (int(s) for s in dataset.factor_sizes)))

    def save(name: str, result: dict[str, float], entry: dict[str, Any]) -> None:
        merge_metrics(run.dir, result, section="metrics", name=name, entry=entry, protocol={
            "versions": library_versions(), "seed": seed, **about,
            "device": str(run.device), "encoder_precision": precision,
            "checkpoint_step": run.step})

    held_out = [m for m in names if m in HELD_OUT]
    scores, _ = evaluate(truth, [m for m in names if m not in HELD_OUT], seed=seed,
                         options=options, progress=progress, on_metric=save)
    if held_out:
        test, scored_on = held_out_split(run, dataset)
        test_truth = truth if test is dataset else as_ground_truth(
            model_encoder(run.model, precision=precision), test, batch_size=batch_size)

        def save_split(name: str, result: dict[str, float], entry: dict[str, Any]) -> None:
            entry["scored_on"] = scored_on
            save(name, result, entry)

        if progress:
            print(f"  (on {scored_on})", file=sys.stderr)
        more, _ = evaluate(test_truth, held_out, seed=seed, options=options, progress=progress,
                           on_metric=save_split)
        scores.update(more)
    if clusters:
        result, entry = _cluster_evaluation(run, dataset)
        save("clusters", result, entry)
        scores.update(result)
        if progress:
            print(f"  {'clusters':<34s} clusters.accuracy = {result['clusters.accuracy']:.4f}"
                  f"  ({entry['seconds']:.1f} s)", file=sys.stderr)
    run.metrics = read_metrics(run.dir)
    return scores


def held_out_split(run: Any, train: Any) -> tuple[Any, str]:
    """The run's test split and a label for it; the run's own data where there is none."""
    from vaelab.data.base import DataError

    split = run.config.data.config.split
    if split == "test":
        return train, "the test split (the run trained on it)"
    if "test" not in DATASETS.get(run.config.data.name).splits(run.config.data.config):
        name = getattr(train, "name", "") or "the dataset"
        return train, f"the {split} split ({name} has no held-out split)"
    try:
        test = run.dataset(split="test")
    except (DataError, FileNotFoundError, ValueError):
        return train, f"the {split} split (the test split could not be loaded)"
    return test, "the test split (held out)"


def _cluster_evaluation(run: Any, fit: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """Clustering scores: mapping fitted on the run's data, scored on its test split if any."""
    from vaelab.metrics.clusters import evaluate_clusters

    start = time.perf_counter()
    split = run.config.data.config.split
    # a dataset without a held-out split (`splits`) is named so, not "the test split"
    test, scored_on = held_out_split(run, fit)
    result = evaluate_clusters(run.model, test, fit=None if test is fit else fit)
    entry = {"mapping_fit_on": f"the {split} split", "scored_on": scored_on,
             "cluster": "argmax of the cluster posterior at the posterior means",
             "protocol": "vaelab's (the GMVAE seed computes no clustering score)",
             "seconds": round(time.perf_counter() - start, 4)}
    return result, entry




def encode_run(run_dir: str | os.PathLike, out: str | os.PathLike, split: str | None = None,
               limit: int = 0, device: str = "cpu", overwrite: bool = False,
               batch_size: int = 1024, checkpoint: str | os.PathLike | None = None,
               images: str | os.PathLike | None = None) -> Path:
    """Writes the latents of a run's data (or `split` of it), or of `images` (a folder of image
    files or an .npz file, `vaelab.encoding.encode_images`), to `out` (.npz); see
    `vaelab encode`. Refuses to replace an existing file unless `overwrite`; `checkpoint`: a
    checkpoint file instead of last.ckpt."""
    from vaelab.encoding import encode_dataset, encode_images

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if limit < 0:
        raise VaelabError(f"--limit must be >= 0, got {limit}")
    check_writable(out, "choose another --out")
    if images is not None and split:
        raise VaelabError("--split chooses among the run's own data; drop it with --images")
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    if images is not None:
        arrays = encode_images(run, images, batch_size=batch_size, limit=limit)
    else:
        options = {k: v for k, v in (("split", split), ("limit", limit)) if v}
        dataset = run.dataset(**options) if options else run.dataset()
        arrays = encode_dataset(run, dataset, device, batch_size)
    with atomic_file(out) as handle:
        np.savez(handle, **arrays)
    return out


def run_intervals(run: Any, metrics: str | Sequence[str] | None = "default", seed: int = 0,
                  resamples: int = 100, *, device: str | None = None,
                  options: dict[str, dict[str, Any]] | None = None, batch_size: int = 1024,
                  precision: str = "fp32", level: float = 0.95, progress: bool = False,
                  checkpoint: str | Path | None = None) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of a run's metrics, merged into `RUN/metrics.json` ("intervals" and
    protocol "bootstrap"); the scores themselves are `vaelab eval`'s and stay as they are.

    The metrics scored on the held-out split by `vaelab eval` (`evaluate.HELD_OUT`) are
    resampled on that split here too; clustering scores get no interval. `checkpoint`: score
    that checkpoint instead of the run's last (as `vaelab eval` scored it).
    """
    from vaelab.metrics.scoring import bootstrap_intervals

    if not isinstance(run, Run):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        run = load_run(run, checkpoint=checkpoint, device=str(device))
    read_metrics(run.dir)  # a corrupt file fails before any work
    dataset = run.dataset()
    requested = ([m.strip() for m in metrics.split(",") if m.strip()]
                 if isinstance(metrics, str) else list(metrics or ["default"]))
    requested = [m for m in requested if m != "clusters"]
    names = resolve_metric_names(requested, has_factors=isinstance(dataset, FactorDataset)) \
        if requested else []
    encoder = model_encoder(run.model, precision=precision)
    truth = as_ground_truth(encoder, dataset, batch_size=batch_size)
    intervals, entry = bootstrap_intervals(truth, [m for m in names if m not in HELD_OUT], seed,
                                           resamples, options, level, progress)
    held_out = [m for m in names if m in HELD_OUT]
    if held_out:
        test, _ = held_out_split(run, dataset)
        test_truth = truth if test is dataset else as_ground_truth(encoder, test,
                                                                   batch_size=batch_size)
        more, _ = bootstrap_intervals(test_truth, held_out, seed, resamples, options, level,
                                      progress)
        intervals.update(more)
    merged = {**read_metrics(run.dir).get("intervals", {}),
              **{k: [float(lo), float(hi)] for k, (lo, hi) in intervals.items()}}
    merge_metrics(run.dir, {"intervals": merged}, protocol={"bootstrap": entry})
    return intervals
