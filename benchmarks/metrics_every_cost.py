"""The cost of one `train.metrics_every` scoring: the cheap protocol against the full one.

    python benchmarks/metrics_every_cost.py RUN [--metrics default]

Loads the trained run RUN (a factor dataset such as dSprites), scores `--metrics` once with the
sizes `TrainingMetrics` uses during training and once with the default protocol, on one thread,
and prints the seconds and the headline scores of each.
"""

from __future__ import annotations

import argparse
import time

import torch

from vaelab.metrics.during_training import cheap_options
from vaelab.metrics.evaluate import evaluate, resolve_metric_names
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.runs import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--metrics", default="default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run)
    names = resolve_metric_names(args.metrics)
    for label, options in (("cheap", cheap_options(names)), ("full", None)):
        start = time.perf_counter()
        truth = as_ground_truth(run.model.eval(), run.dataset())
        scores, _ = evaluate(truth, names, seed=0, options=options)
        headline = {k: round(v, 3) for k, v in scores.items() if "." not in k}
        print(f"{label}: {time.perf_counter() - start:.1f} s  {headline}")


if __name__ == "__main__":
    main()
