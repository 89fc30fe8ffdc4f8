"""`TrainingMetrics`: the run's metrics scored every `train.metrics_every` steps while it trains.

The Non-Synergistic VAE seed's `--metric Test_gt --gt-interval 5000`, for every metric: at each
N-th step the model (in eval mode, then back) encodes a fresh `GroundTruth` of the run's factor
dataset and `train.metrics` run with a small protocol (`CHEAP_SIZES`: 2,000 training and 1,000
test points instead of 10,000 and 5,000; the same seed at every evaluation, so the series follows
the model and not the sample). Rows go to `metrics_log.csv` (step, then one column per score) and
to TensorBoard under `metrics/`; the report plots each metric against the step. On resume the
rows after the checkpoint's step are dropped and the series continues. Only the global-zero
process scores; the training's random streams are not touched (NumPy generators of their own,
no torch sampling).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from vaelab.callbacks import Callback
from vaelab.errors import VaelabError

__all__ = ["CHEAP_SIZES", "LOG_NAME", "TrainingMetrics", "cheap_options"]

LOG_NAME = "metrics_log.csv"
# Protocol sizes during training (each metric keeps its own value when it is smaller).
CHEAP_SIZES = {"num_train": 2000, "num_test": 1000, "num_eval": 1000,
               "num_variance_estimate": 2000, "n_samples": 2000}
CHEAP_BATCH = {"kl_decomposition": 1024}


def cheap_options(names: list[str]) -> dict[str, dict[str, Any]]:
    """Per-metric protocol overrides for scoring during training (`CHEAP_SIZES`)."""
    from vaelab.metrics.evaluate import metric_protocol

    options: dict[str, dict[str, Any]] = {}
    for name in names:
        protocol = metric_protocol(name)
        sizes = {k: min(v, protocol[k]) for k, v in CHEAP_SIZES.items() if k in protocol}
        if name in CHEAP_BATCH:
            sizes["batch_size"] = min(CHEAP_BATCH[name], protocol["batch_size"])
        options[name] = sizes
    return options


class TrainingMetrics(Callback):
    """Scores `metrics` every `every` steps into `metrics_log.csv` and TensorBoard.

    Args:
        every: steps between evaluations (>= 1).
        metrics: metric names as in `train.metrics` ("default" expands to the default suite).
        seed: seeds every evaluation (the same points each time).
        verbose: print one line per evaluation on stderr.
    """

    def __init__(self, every: int, metrics: tuple[str, ...] | list[str], seed: int = 0,
                 verbose: bool = False) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every, self.seed, self.verbose = int(every), int(seed), verbose
        self.requested = list(metrics)
        self.names: list[str] = []
        self.options: dict[str, dict[str, Any]] = {}
        self.log: Any = None
        self.rows: list[dict[str, float]] = []

    def on_train_start(self, ctx: Any) -> None:
        from vaelab.data.base import FactorDataset
        from vaelab.io import CsvLog
        from vaelab.metrics.evaluate import resolve_metric_names

        if not isinstance(ctx.dataset, FactorDataset):
            raise VaelabError(
                f"train.metrics_every needs ground-truth factors, and dataset "
                f"{ctx.config.data.name!r} has none; set train.metrics_every=0 or use a factor "
                "dataset such as dsprites"
            )
        if not self.requested:
            raise VaelabError("train.metrics_every needs metrics: set train.metrics "
                              "(e.g. train.metrics=mig,sap)")
        self.names = resolve_metric_names(self.requested, has_factors=True)
        self.options = cheap_options(self.names)
        if ctx.is_global_zero:
            self.log = CsvLog(ctx.run_dir / LOG_NAME, ctx.step if ctx.step else None)

    def on_step_end(self, ctx: Any, step: int) -> None:
        if step % self.every == 0 and ctx.is_global_zero:
            self.score(ctx, step)

    def score(self, ctx: Any, step: int) -> dict[str, float]:
        """Scores the model now; writes and returns the row."""
        from vaelab.metrics.evaluate import evaluate
        from vaelab.metrics.ground_truth import as_ground_truth

        model = ctx.model
        was_training = model.training
        model.eval()
        start = time.perf_counter()
        if self.verbose:
            print(f"step {step}: scoring {', '.join(self.names)} (train.metrics_every)...",
                  file=sys.stderr, flush=True)
        try:
            truth = as_ground_truth(model, ctx.dataset)
            scores, _ = evaluate(truth, self.names, seed=self.seed, options=self.options)
        finally:
            model.train(was_training)
        row = {"step": float(step), **scores}
        self.rows.append(row)
        self.log.write(row)
        writer = getattr(ctx, "writer", None)
        if writer is not None:
            for key, value in scores.items():
                writer.add_scalar(f"metrics/{key}", value, step)
        if self.verbose:
            print(f"step {step}: scored in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        return row
