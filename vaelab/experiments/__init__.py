"""Experiments of the papers, run on a trained run: `vaelab experiment NAME RUN`.

Each registered experiment takes a loaded `Run` and options, writes its figures under
`RUN/plots/` and returns scores that are merged into `RUN/metrics.json` (section
`experiment.<name>.*`).
"""

from vaelab.experiments import ugvae  # noqa: F401  (registration)
from vaelab.experiments.ugvae import run_experiment

__all__ = ["run_experiment"]
