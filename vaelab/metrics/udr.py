"""UDR: unsupervised model selection by the agreement between models of one setting.

Duan et al., "Unsupervised Model Selection for Variational Disentangled Representation Learning"
(ICLR 2020). Models trained with the same hyper-parameters but different seeds tend to agree on
a disentangled representation (up to permutation and sign of the latents) and to disagree on
entangled ones. For a pair of models (a, b) encoding the same points:

1. the informative latents of each: mean KL(q(z_j|x) || N(0, 1)) over the points above
   `kl_threshold` (0.01);
2. a similarity matrix R (d_a, d_b) between the informative latents, on codes standardised to
   zero mean and unit variance: `spearman`, |Spearman rank correlation|, or `lasso`, the absolute
   coefficients of a Lasso regression (alpha 0.1) of model b's latents on model a's;
3. the pair's score from R: with r_b = max_a R(a, b) and r_a = max_b R(a, b),

       UDR_ab = 1/2 [mean_b r_b^2 / sum_a R(a, b) + mean_a r_a^2 / sum_b R(a, b)]

   (`average="dlib"`) or, as the paper writes it, both sums divided by d_a + d_b
   (`average="paper"`); the two agree when d_a = d_b. A column or row of zeros scores 0.
4. a model's score: the median of UDR_ab over the other models b of its setting.

As disentanglement_lib's `evaluation/udr/metrics/udr.py` (`compute_udr_sklearn`,
`relative_strength_disentanglement`, `lasso_correlation_matrix`, `spearman_correlation_conv`):
codes standardised with the biased standard deviation (scikit-learn's StandardScaler), Lasso
alpha 0.1 fitted per target latent, the median over the column of the pair matrix (the pairs
where the model is the regression target). Its default average is "dlib" (the mean of the two
directions), which vaelab keeps as the default so scores compare with published UDR values.
Because of the L1 shrinkage a perfect Lasso match scores 1 - alpha (0.9 on standardised,
uncorrelated latents), not 1; the Spearman variant scores 1. A model without informative latents
scores 0 with every partner (it represents nothing to agree on; disentanglement_lib fails there).

Everything here is a pure function of arrays: codes (N, D) and per-latent KL (D,) of each model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CORRELATIONS",
    "UDRResult",
    "mean_kl_per_latent",
    "relative_strength",
    "similarity_matrix",
    "udr",
    "udr_pair",
]

CORRELATIONS = ("lasso", "spearman")
AVERAGES = ("dlib", "paper")


def mean_kl_per_latent(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean KL(N(mu, exp(logvar)) || N(0, 1)) per latent over the points, (D,) from (N, D)."""
    mu, logvar = np.asarray(mu, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
    return 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1.0).mean(axis=0)


def _standardise(codes: np.ndarray) -> np.ndarray:
    centred = codes - codes.mean(axis=0)
    std = codes.std(axis=0)  # biased, as StandardScaler
    return centred / np.where(std > 0, std, 1.0)


def similarity_matrix(codes_a: np.ndarray, codes_b: np.ndarray, correlation: str = "lasso",
                      alpha: float = 0.1, random_state: int = 0) -> np.ndarray:
    """R (D_a, D_b) between the latents of two standardised code arrays (N, D_a), (N, D_b).

    `lasso`: |coefficient of latent a in the Lasso regression of latent b on every latent of
    model a|; `spearman`: |Spearman correlation of latents a and b| (0 where one is constant).
    """
    if correlation == "lasso":
        from sklearn.linear_model import Lasso

        model = Lasso(alpha=alpha, random_state=random_state)
        model.fit(codes_a, codes_b)
        coef = np.asarray(model.coef_).reshape(codes_b.shape[1], codes_a.shape[1])  # (D_b, D_a)
        return np.abs(coef).T
    if correlation == "spearman":
        from scipy.stats import rankdata

        ranks_a = _standardise(rankdata(codes_a, axis=0))  # Spearman = Pearson of the ranks
        ranks_b = _standardise(rankdata(codes_b, axis=0))
        return np.abs(ranks_a.T @ ranks_b / len(codes_a))
    raise ValueError(f"correlation must be one of {', '.join(CORRELATIONS)}, got {correlation!r}")


def relative_strength(matrix: np.ndarray, average: str = "dlib") -> float:
    """The pair score of a similarity matrix R (d_a, d_b) (module docstring, step 3)."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.size == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = np.nan_to_num(matrix.max(axis=0) ** 2 / matrix.sum(axis=0))  # (d_b,)
        rows = np.nan_to_num(matrix.max(axis=1) ** 2 / matrix.sum(axis=1))  # (d_a,)
    if average == "dlib":
        return float((columns.mean() + rows.mean()) / 2)
    return float((columns.sum() + rows.sum()) / (len(columns) + len(rows)))


def udr_pair(codes_a: np.ndarray, codes_b: np.ndarray, active_a: np.ndarray | None = None,
             active_b: np.ndarray | None = None, correlation: str = "lasso",
             average: str = "dlib", alpha: float = 0.1, random_state: int = 0) -> float:
    """UDR of one ordered pair: codes (N, D_a), (N, D_b) of the same points, and boolean masks
    (D,) of the informative latents (None: every latent that varies)."""
    masks = []
    for codes, active in ((codes_a, active_a), (codes_b, active_b)):
        mask = codes.std(axis=0) > 0
        if active is not None:
            mask &= np.asarray(active, dtype=bool)
        masks.append(mask)
    if not masks[0].any() or not masks[1].any():
        return 0.0
    a = _standardise(np.asarray(codes_a, dtype=np.float64)[:, masks[0]])
    b = _standardise(np.asarray(codes_b, dtype=np.float64)[:, masks[1]])
    return relative_strength(similarity_matrix(a, b, correlation, alpha, random_state), average)


@dataclass(frozen=True)
class UDRResult:
    """UDR of M models of one setting.

    Attributes:
        scores: (M,) each model's score, the median of its pair scores.
        pairs: (M, M) UDR of (predictor i, target j); the diagonal is NaN.
    """

    scores: np.ndarray
    pairs: np.ndarray


def udr(codes: Sequence[np.ndarray], kl: Sequence[np.ndarray] | None = None,
        correlation: str = "lasso", kl_threshold: float = 0.01, average: str = "dlib",
        alpha: float = 0.1, random_state: int = 0) -> UDRResult:
    """UDR scores of models of one setting (module docstring).

    Args:
        codes: per model, its codes (N, D_m) (posterior means) of the same N points in the same
            order.
        kl: per model, the mean KL per latent (D_m,) over those points (`mean_kl_per_latent`);
            None: every latent that varies counts as informative.
        correlation: "lasso" or "spearman".
        kl_threshold: latents with a mean KL at or below it are ignored.
        average: "dlib" (default) or "paper" (step 3 of the module docstring).
        alpha: the Lasso penalty.
        random_state: the Lasso's seed.

    Raises:
        ValueError: fewer than 2 models, codes of different N, or non-finite codes.
    """
    if len(codes) < 2:
        raise ValueError(f"UDR needs at least 2 models of a setting, got {len(codes)}")
    codes = [np.asarray(c, dtype=np.float64) for c in codes]
    if any(c.ndim != 2 or len(c) != len(codes[0]) for c in codes):
        raise ValueError("UDR needs codes (N, D) of the same N points from every model, got "
                         f"shapes {[c.shape for c in codes]}")
    if not all(np.isfinite(c).all() for c in codes):
        raise ValueError("UDR: the codes hold NaN or inf values")
    if kl is not None and len(kl) != len(codes):
        raise ValueError(f"UDR: {len(kl)} KL vectors for {len(codes)} models")
    active = ([None] * len(codes) if kl is None
              else [np.asarray(k, dtype=np.float64) > kl_threshold for k in kl])
    m = len(codes)
    pairs = np.full((m, m), np.nan)
    for i in range(m):
        for j in range(m):
            if i != j:
                pairs[i, j] = udr_pair(codes[i], codes[j], active[i], active[j], correlation,
                                       average, alpha, random_state)
    scores = np.array([np.median(np.delete(pairs[:, j], j)) for j in range(m)])
    return UDRResult(scores=scores, pairs=pairs)
