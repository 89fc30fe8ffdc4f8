"""`evaluate_run`: every requested metric on a run's model and dataset, into `RUN/metrics.json`.

The codes are computed once per evaluation (a `GroundTruth` cache keyed by item index, encoding
in batches on the run's device) and shared by all metrics; each metric gets a generator seeded
with `seed`, so metrics drawing the same sizes draw the same items. `metrics.json` holds one
float per score plus a "protocol" section (sizes, bins, estimators, seed, library versions, wall
time per metric); it is written atomically after each metric and merged with what is there.
"""

from __future__ import annotations

import inspect
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from vaelab.data.base import FactorDataset
from vaelab.errors import VaelabError
from vaelab.metrics.ground_truth import GroundTruth, as_ground_truth, model_encoder
from vaelab.metrics.properties import HEADLINE, SUPERVISED
from vaelab.registry import METRICS

__all__ = [
    "DEFAULT_METRICS",
    "evaluate",
    "evaluate_run",
    "format_scores",
    "metric_protocol",
    "print_scores",
    "resolve_metric_names",
]

# Run by `vaelab train` at the end of a run on a factor dataset and by `vaelab eval` without
# --metrics: all share one set of 10,000 + 5,000 encoded points, about 15-25 s on 2 CPU cores for
# dSprites. factor_vae_score, beta_vae_score (about a million encodings each), dci (gradient
# boosting, minutes) and mig_chen (whole dataset) are left out. kl_decomposition adds the
# beta-TCVAE decomposition at batch 4,096 (it needs Gaussian posteriors, as every model has).
# Scored on the run's held-out test split when it has one (recorded as "scored_on").
HELD_OUT: tuple[str, ...] = ("kl_decomposition",)

DEFAULT_METRICS: tuple[str, ...] = (
    "mig",
    "aam",
    "sap",
    "modularity_explicitness",
    "irs",
    "dci_fast",
    "gaussian_total_correlation",
    "gaussian_wasserstein_correlation",
    "mutual_info_score",
    "active_units",
    "kl_decomposition",
)


def resolve_metric_names(metrics: str | Sequence[str] | None, has_factors: bool = True) -> list[str]:
    """Metric names with "default" expanded and duplicates dropped; unknown names raise KeyError.

    Without factors, "default" keeps only the unsupervised defaults (asking for a supervised
    metric by name still fails, with a message naming it).
    """
    if metrics is None:
        metrics = ["default"]
    elif isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    names: list[str] = []
    for name in metrics:
        if name == "default":
            expanded = [m for m in DEFAULT_METRICS if has_factors or m not in SUPERVISED]
        elif name == "all":
            expanded = METRICS.names()
        else:
            METRICS.get(name)  # KeyError listing the known metrics
            expanded = [name]
        names += [m for m in expanded if m not in names]
    if not names:
        raise ValueError("no metric requested")
    return names


def metric_protocol(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sizes and estimator settings a metric runs with: its keyword defaults and `options`."""
    func = METRICS.get(name)
    params = inspect.signature(func).parameters
    protocol = {p.name: p.default for p in params.values() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options or {}) - set(protocol))
    if unknown:
        raise ValueError(
            f"metric {name!r} has no option {unknown[0]!r}; its options: {', '.join(protocol)}"
        )
    protocol.update(options or {})
    return protocol


def _versions() -> dict[str, str]:
    import scipy
    import sklearn

    import vaelab

    return {"vaelab": vaelab.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "torch": torch.__version__}


def evaluate(
    truth: GroundTruth,
    metrics: Sequence[str],
    seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
    progress: bool = False,
    on_metric: Any = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Runs metrics on one shared `GroundTruth`.

    Args:
        truth: the dataset and its cached representation (see `as_ground_truth`).
        metrics: registered metric names.
        seed: each metric gets `np.random.default_rng(seed)`.
        options: per-metric keyword overrides, e.g. {"mig": {"num_train": 2000}}; entries of
            metrics not requested are checked but unused.
        progress: print one line per metric on stderr.
        on_metric: called as on_metric(name, scores, protocol) after each metric.

    Returns:
        (scores: {score name: float}, protocol: {metric: settings, seed, seconds, ...}).
    """
    options = options or {}
    for name in options:
        metric_protocol(name, options[name])  # unknown metric or option: a clear error now
    settings = {name: metric_protocol(name, options.get(name)) for name in metrics}
    scores: dict[str, float] = {}
    protocol: dict[str, Any] = {}
    for name in metrics:
        func = METRICS.get(name)
        encoded, encode_time = truth.encoded_images, truth.encode_seconds
        start = time.perf_counter()
        if progress:  # the name first, so a long metric shows what is running
            print(f"  {name:<34s} ", end="", file=sys.stderr, flush=True)
        try:
            result = func(truth, None, np.random.default_rng(seed), **settings[name])
        except BaseException:
            if progress:
                print("failed", file=sys.stderr, flush=True)
            raise
        seconds = time.perf_counter() - start
        result = {key: float(value) for key, value in result.items()}
        entry = {
            **settings[name],
            "seed": seed,
            "seconds": round(seconds, 4),
            "encode_seconds": round(truth.encode_seconds - encode_time, 4),
            "images_encoded": truth.encoded_images - encoded,
        }
        scores.update(result)
        protocol[name] = entry
        if progress:
            headline = HEADLINE.get(name, next(iter(result), ""))
            value = result.get(headline, float("nan"))
            print(f"{headline} = {value:.4f}  ({seconds:.1f} s)", file=sys.stderr)
        if on_metric is not None:
            on_metric(name, result, entry)
    return scores, protocol


def _read_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise VaelabError(
            f"{path} is not valid JSON ({error}); move it away to keep its content, then re-run"
        ) from error
    if not isinstance(content, dict):
        raise VaelabError(f"{path} does not hold a JSON object; move it away, then re-run")
    return content


def evaluate_run(
    run: Any,
    metrics: str | Sequence[str] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    options: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 1024,
    precision: str = "fp32",
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

    Returns:
        The new scores {name: float} (also merged into metrics.json).

    Raises:
        KeyError: an unknown metric name (the message lists the known ones).
        VaelabError: a supervised metric on a dataset without factors, NaN/inf codes, or an
            unreadable metrics.json (left untouched).
        FileNotFoundError: not a run directory.
    """
    import vaelab.metrics  # noqa: F401  (fills METRICS)
    from vaelab.runs import Run, atomic_write_json, load_run

    if not isinstance(run, Run):
        # Checked before load_run, which would fail on a corrupt metrics.json with a bare
        # JSONDecodeError.
        _read_metrics(Path(run) / "metrics.json")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        run = load_run(run, device=str(device))
    elif device is not None and torch.device(device) != run.device:
        run.model.to(device)
        run.device = torch.device(device)
    path = Path(run.dir) / "metrics.json"
    _read_metrics(path)  # fails early on a corrupt file, before any work
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

    def save(name: str, result: dict[str, float], entry: dict[str, Any]) -> None:
        content = _read_metrics(path)
        content.update(result)
        section = content.setdefault("protocol", {})
        section.setdefault("metrics", {})[name] = entry
        section["versions"] = _versions()
        section["seed"] = seed
        section["dataset"] = getattr(dataset, "name", "")
        section["device"] = str(run.device)
        section["encoder_precision"] = precision
        section["checkpoint_step"] = run.step
        atomic_write_json(path, content)

    held_out = [m for m in names if m in HELD_OUT]
    scores, _ = evaluate(truth, [m for m in names if m not in HELD_OUT], seed=seed,
                         options=options, progress=progress, on_metric=save)
    if held_out:
        test, scored_on = _held_out_split(run, dataset)
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
    run.metrics = _read_metrics(path)
    return scores


def _held_out_split(run: Any, train: Any) -> tuple[Any, str]:
    """The run's test split and a label for it; the run's own data where there is none."""
    from vaelab.data.base import DataError

    split = run.config.data.config.split
    if split == "test":
        return train, "the test split (the run trained on it)"
    try:
        test = run.dataset(split="test")
    except (DataError, FileNotFoundError, ValueError):
        return train, f"the {split} split (the test split could not be loaded)"
    probe = np.arange(min(16, len(test), len(train)))
    if len(test) == len(train) and torch.equal(test.batch(probe), train.batch(probe)):
        # datasets without splits (dSprites, toy_squares) return the same items for every split
        name = getattr(train, "name", "") or "the dataset"
        return train, f"the {split} split ({name} has no held-out split)"
    return test, "the test split (held out)"


def _cluster_evaluation(run: Any, fit: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """Clustering scores: mapping fitted on the run's data, scored on its test split if any."""
    from vaelab.metrics.clusters import evaluate_clusters

    start = time.perf_counter()
    split = run.config.data.config.split
    # a dataset without splits (the same items for every split) is named so, not "the test split"
    test, scored_on = _held_out_split(run, fit)
    result = evaluate_clusters(run.model, test, fit=None if test is fit else fit)
    entry = {"mapping_fit_on": f"the {split} split", "scored_on": scored_on,
             "cluster": "argmax of the cluster posterior at the posterior means",
             "protocol": "vaelab's (the GMVAE seed computes no clustering score)",
             "seconds": round(time.perf_counter() - start, 4)}
    return result, entry


def format_scores(scores: dict[str, float], title: str = "",
                  intervals: dict[str, Any] | None = None) -> str:
    """A two-column text table of scores, in the given order; with `intervals` ({score: (low,
    high)}, from `vaelab.metrics.scoring`) a third column with each score's interval."""
    if not scores:
        return "(no scores)"
    width = max(len(k) for k in scores)
    lines = [title] if title else []
    if intervals:
        lines += [f"{'score':<{width}s}  value       95% interval",
                  f"{'-' * width}  {'-' * 10}  {'-' * 19}"]
        for k, v in scores.items():
            low_high = intervals.get(k)
            shown = f"[{low_high[0]:.4f}, {low_high[1]:.4f}]" if low_high is not None else ""
            lines.append(f"{k:<{width}s}  {v:<10.4f}  {shown}".rstrip())
        return "\n".join(lines)
    lines += [f"{'score':<{width}s}  value", f"{'-' * width}  {'-' * 10}"]
    lines += [f"{k:<{width}s}  {v:.4f}" for k, v in scores.items()]
    return "\n".join(lines)


def print_scores(scores: dict[str, float], file: TextIO | None = None, title: str = "",
                 intervals: dict[str, Any] | None = None) -> None:
    """Prints `format_scores(scores, title, intervals)` (stdout by default)."""
    print(format_scores(scores, title, intervals), file=file or sys.stdout)
