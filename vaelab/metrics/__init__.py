"""Disentanglement, unsupervised and clustering metrics, registered by name in `METRICS`.

Every metric is a plain function `(represent, data, rng, **sizes) -> dict[str, float]`: a
representation function (or model, or precomputed codes), a dataset (or factor array), an
`np.random.Generator`, and keyword sizes whose defaults are disentanglement_lib's published
protocol. `evaluate` shares one set of codes between metrics; scoring a trained run is
`vaelab.evaluation.evaluate_run`.

The import list below is the table of contents (each module registers its metrics).
"""

from vaelab.metrics import (  # noqa: F401  (registration order)
    _info,
    beta_vae_score,
    clustering,
    dci,
    decomposition,
    evaluate,
    factor_vae_score,
    ground_truth,
    irs,
    mig,
    mig_chen,
    modularity,
    properties,
    sap,
    unsupervised,
)
from vaelab.metrics.evaluate import DEFAULT_METRICS, format_scores
from vaelab.metrics.ground_truth import GroundTruth, as_ground_truth

__all__ = ["DEFAULT_METRICS", "GroundTruth", "as_ground_truth", "format_scores"]
