"""`evaluate`: metrics by name on one shared `GroundTruth`, with the protocol each ran with.

Pure functions of codes and factors: the run-level evaluation (a run's model on its dataset, into
`RUN/metrics.json`) is `vaelab.evaluation.evaluate_run`. The codes are computed once per
evaluation (a `GroundTruth` cache keyed by item index) and shared by all metrics; each metric
gets a generator seeded with `seed`, so metrics drawing the same sizes draw the same items.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from vaelab.metrics.ground_truth import GroundTruth
from vaelab.metrics.properties import HEADLINE, SUPERVISED
from vaelab.registry import METRICS

__all__ = [
    "DEFAULT_METRICS",
    "evaluate",
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
    from vaelab.metrics.options import check_metric_option

    protocol.update({k: check_metric_option(name, func, k, v) for k, v in (options or {}).items()})
    return protocol


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
                print(_stopped_word(), file=sys.stderr, flush=True)
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



def library_versions() -> dict[str, str]:
    """The versions of vaelab and the libraries that computed a score (recorded beside it)."""
    import platform

    import scipy
    import sklearn
    import torch

    from vaelab._version import __version__

    return {"vaelab": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__, "torch": torch.__version__}


def _stopped_word() -> str:
    """What the progress line says when a metric raised: "interrupted" for Ctrl-C (the scores
    of the metrics before it are saved), "failed" for an error."""
    return "interrupted" if isinstance(sys.exc_info()[1], KeyboardInterrupt) else "failed"

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
