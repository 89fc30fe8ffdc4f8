"""Metrics of any representation without a run directory, and bootstrap intervals of scores.

`score(codes, dataset=...)` scores precomputed codes, one row per item of a dataset (the layout
`vaelab encode` writes: `codes`, `<latent>_mu`, `<latent>_logvar`, `factors`), with the metrics and
the seeded sampling `vaelab eval` uses, so codes of a run's own data score exactly what
`vaelab eval` gives for that run. With `factors` (an array (N, F)) instead of a dataset the
metrics draw from the rows of that array.

Bootstrap intervals (`resamples` = B > 0): every metric is run again B times, each on a fresh
draw of its points (with replacement, as each metric's protocol draws them) from the dataset,
which is the empirical distribution the point estimate samples from; the generators are
spawned from `seed` (`numpy.random.SeedSequence(seed).spawn(B)`), so the intervals are
reproducible. The interval of each score is the percentile interval of its B values (2.5 and
97.5 percentiles for `level` 0.95; Efron & Tibshirani, "An Introduction to the Bootstrap",
1993, §13.3). The point estimate is the one of `seed`, unchanged. The intervals say how far a
score moves when the metric draws other points: they do not cover the spread over training
seeds (the sweep report shows that).

In `metrics.json` the intervals sit under "intervals": {score: [low, high]} and the settings under
"protocol" / "bootstrap".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.errors import VaelabError
from vaelab.metrics.ground_truth import GroundTruth

__all__ = ["ScoreResult", "bootstrap_intervals", "read_codes", "score",
           "write_score_file"]

#: metrics that need posterior log-variances, left out of "default" when the codes have none
NEEDS_LOGVAR = ("kl_decomposition", "mig_chen")


@dataclass
class ScoreResult:
    """Scores {name: float}, intervals {name: (low, high)} (empty without bootstrap), and the
    protocol section of `metrics.json`."""

    scores: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The `metrics.json` layout: scores, "intervals" (when computed) and "protocol"."""
        content: dict[str, Any] = dict(self.scores)
        if self.intervals:
            content["intervals"] = {k: [float(lo), float(hi)] for k, (lo, hi)
                                    in self.intervals.items()}
        content["protocol"] = self.protocol
        return content


def read_codes(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz written by `vaelab encode` (or by hand): "codes" (N, D) and, when
    present, "logvar" (the log-variances of the codes: those of the one Gaussian latent whose
    means are the codes), "factors" (N, F) and "factor_names".

    Raises:
        FileNotFoundError: no such file. VaelabError: not an .npz, or no `codes` array.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no codes file at {path}; write one with `vaelab encode RUN "
                                "--out FILE.npz` or np.savez(FILE, codes=...)")
    try:
        with np.load(path, allow_pickle=False) as content:
            arrays = {k: content[k] for k in content.files}
    except (ValueError, OSError) as error:
        raise VaelabError(f"{path} is not a readable .npz file ({error}); expected the layout "
                          "of `vaelab encode`: codes (N, D), optional <latent>_logvar, factors"
                          ) from None
    if "codes" not in arrays:
        raise VaelabError(f"{path} has no 'codes' array (it holds {', '.join(arrays) or 'none'})"
                          "; expected codes (N, D) as `vaelab encode` writes")
    out = {"codes": arrays["codes"]}
    for key, value in arrays.items():
        if key.endswith("_mu") and f"{key[:-3]}_logvar" in arrays \
                and value.shape == arrays["codes"].shape and np.array_equal(value, out["codes"]):
            out["logvar"] = arrays[f"{key[:-3]}_logvar"]
    for key in ("factors", "factor_names"):
        if key in arrays:
            out[key] = arrays[key]
    return out


def _factors_file(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no factors file at {path}; give an .npy (N, F) or an .npz "
                                "holding 'factors'")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise VaelabError(f"{path} is not a readable .npy/.npz file ({error})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        if "factors" not in loaded.files:
            raise VaelabError(f"{path} has no 'factors' array (it holds "
                              f"{', '.join(loaded.files)})")
        return loaded["factors"]


class _DatasetCodes(GroundTruth):
    """Precomputed codes of every item of a dataset, drawn from as a model's codes are.

    `GroundTruth` splits precomputed arrays without replacement (`split_index`); codes aligned
    with a dataset's items are instead sampled with the dataset's protocol (factor rows, then
    matching items), as `vaelab eval` samples them, so the same seed gives the same scores.
    Nothing is encoded: every item's code is already cached.
    """

    def __init__(self, truth: GroundTruth) -> None:
        self.__dict__.update(truth.__dict__)

    @property
    def is_precomputed(self) -> bool:
        return False


def _metric_names(metrics: str | Sequence[str] | None, has_factors: bool,
                  has_logvar: bool) -> list[str]:
    from vaelab.metrics.evaluate import resolve_metric_names

    requested = ([m.strip() for m in metrics.split(",") if m.strip()]
                 if isinstance(metrics, str) else list(metrics or ["default"]))
    names = resolve_metric_names(requested, has_factors=has_factors)
    if not has_logvar:
        explicit = [m for m in names if m in NEEDS_LOGVAR and m in requested]
        if explicit:
            raise VaelabError(f"metric {explicit[0]!r} needs posterior log-variances, but the "
                              "codes come without them; give the .npz of `vaelab encode` (it "
                              "holds <latent>_logvar) or leave the metric out")
        names = [m for m in names if m not in NEEDS_LOGVAR]
    return names


def bootstrap_intervals(truth: Any, metrics: Sequence[str], seed: int, resamples: int,
                        options: dict[str, dict[str, Any]] | None = None,
                        level: float = 0.95, progress: bool = False
                        ) -> tuple[dict[str, tuple[float, float]], dict[str, Any]]:
    """Percentile intervals of every score of `metrics` on `truth` (module docstring).

    Returns:
        ({score: (low, high)}, the "bootstrap" protocol entry).
    """
    from vaelab.metrics.evaluate import evaluate

    if resamples < 2:
        raise ValueError(f"bootstrap needs at least 2 resamples, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    start = time.perf_counter()
    values: dict[str, list[float]] = {}
    children = np.random.SeedSequence(seed).spawn(resamples)
    for index, child in enumerate(children):
        child_seed = int(child.generate_state(1)[0])
        if progress:
            print(f"  bootstrap {index + 1}/{resamples}", file=sys.stderr, flush=True)
        scores, _ = evaluate(truth, list(metrics), seed=child_seed, options=options)
        for key, value in scores.items():
            values.setdefault(key, []).append(value)
    tail = 100 * (1 - level) / 2
    intervals = {}
    for key, column in values.items():
        finite = np.asarray([v for v in column if np.isfinite(v)])
        if len(finite):
            low, high = np.percentile(finite, [tail, 100 - tail])
            intervals[key] = (float(low), float(high))
    entry = {"resamples": resamples, "level": level, "seed": seed,
             "method": "percentile interval over re-draws of each metric's points, generators "
                       "spawned from the seed (numpy SeedSequence)",
             "seconds": round(time.perf_counter() - start, 3)}
    return intervals, entry


def score(codes: Any, dataset: Any = None, factors: Any = None, *,
          metrics: str | Sequence[str] | None = "default", seed: int = 0,
          options: dict[str, dict[str, Any]] | None = None, bootstrap: int = 0,
          level: float = 0.95, logvar: Any = None, progress: bool = False,
          data_options: dict[str, Any] | None = None) -> ScoreResult:
    """Scores precomputed codes (module docstring).

    Args:
        codes: codes (N, D) (an array), or the path of an .npz in `vaelab encode`'s layout.
        dataset: the items the rows of the codes are: a dataset name (loaded with
            `data_options`) or an `ImageDataset`/`FactorDataset`. Its factors and its sampling
            are used, as `vaelab eval` uses them.
        factors: instead of a dataset, the factors (N, F): an array or an .npy/.npz path. With
            neither, the factors stored in the .npz are used, else only unsupervised metrics run.
        metrics: names, "default" (`vaelab eval`'s suite; the metrics needing log-variances
            only when the codes have them) or "all".
        seed: seeds every metric's generator, as `vaelab eval --seed`.
        options: per-metric protocol options, e.g. {"mig": {"num_train": 2000}}.
        bootstrap: B > 1 adds percentile intervals from B re-draws; 0: none.
        level: the intervals' coverage.
        logvar: posterior log-variances (N, D) of the codes (read from the .npz when a path).
        progress: per-metric lines on stderr.
        data_options: config options of a dataset given by name (e.g. {"image_size": 64}).

    Raises:
        KeyError: unknown metric or dataset. ValueError: mismatched lengths, bad values.
        VaelabError / FileNotFoundError: unreadable files, NaN codes.
    """
    import vaelab.metrics  # noqa: F401  (fills METRICS)
    from vaelab.data.base import FactorDataset, ImageDataset
    from vaelab.metrics.evaluate import evaluate, library_versions
    from vaelab.metrics.ground_truth import as_ground_truth

    source = ""
    stored: dict[str, np.ndarray] = {}
    if isinstance(codes, (str, Path)):
        source = str(codes)
        stored = read_codes(codes)
        codes = stored["codes"]
        if logvar is None:
            logvar = stored.get("logvar")
    if bootstrap and bootstrap < 2:
        raise ValueError(f"bootstrap needs at least 2 resamples, got {bootstrap}")
    if dataset is not None and factors is not None:
        raise ValueError("give either a dataset or factors, not both")
    described = ""
    if isinstance(dataset, str):
        from vaelab.data import load_dataset

        described = dataset
        dataset = load_dataset(dataset, **(data_options or {}))
    elif dataset is not None and not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a name or an ImageDataset, got {type(dataset).__name__}")
    if isinstance(factors, (str, Path)):
        described = f"factors of {factors}"
        factors = _factors_file(factors)
    if dataset is None and factors is None and "factors" in stored:
        factors = stored["factors"]
        described = f"factors stored in {source}"
    data = dataset if dataset is not None else factors
    if dataset is not None:
        described = described or getattr(dataset, "name", type(dataset).__name__)
    represent = codes if logvar is None else (codes, logvar)
    truth = as_ground_truth(represent, data)
    if dataset is not None:  # rows are the dataset's items: draw them as `vaelab eval` does
        truth = _DatasetCodes(truth)
    names = _metric_names(metrics, isinstance(truth.dataset, FactorDataset), logvar is not None)
    scores, protocol = evaluate(truth, names, seed=seed, options=options, progress=progress)
    section: dict[str, Any] = {"metrics": protocol, "seed": seed, "versions": library_versions(),
                               "codes": source or "array", "scored_on": described or "codes only",
                               "items": len(truth)}
    intervals: dict[str, tuple[float, float]] = {}
    if bootstrap:
        intervals, section["bootstrap"] = bootstrap_intervals(truth, names, seed, bootstrap,
                                                              options, level, progress)
    return ScoreResult(scores=scores, intervals=intervals, protocol=section)


def write_score_file(path: str | Path, result: ScoreResult, overwrite: bool = False) -> Path:
    """Writes `result.as_json()` atomically to `path` (refusing to replace a file unless
    `overwrite`)."""
    from vaelab.io import atomic_write_json

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    atomic_write_json(path, result.as_json())
    return path

