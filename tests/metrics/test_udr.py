"""UDR (Duan et al., 2020): known answers on hand-made codes of 'models' of one setting."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vaelab.metrics.udr import mean_kl_per_latent, relative_strength, udr, udr_pair

# A full 6 x 6 x 6 grid: the three latents are exactly uncorrelated (Pearson and Spearman 0), so
# the Lasso's design is orthonormal after standardising and R has closed forms.
GRID = np.array(list(itertools.product(range(6), repeat=3)), dtype=np.float64)  # (216, 3)
ACTIVE = np.ones(3)  # a mean KL of 1 nat per latent: all informative


def test_relative_strength_by_hand():
    square = np.array([[0.8, 0.2], [0.1, 0.5]])
    # columns: .64/.9, .25/.7; rows: .64/1, .25/.6
    expected = ((0.64 / 0.9 + 0.25 / 0.7) / 2 + (0.64 + 0.25 / 0.6) / 2) / 2
    assert relative_strength(square) == pytest.approx(expected)
    assert relative_strength(square, "paper") == pytest.approx(expected)  # d_a = d_b
    wide = np.array([[0.8, 0.2, 0.0], [0.1, 0.5, 0.3]])
    columns = [0.64 / 0.9, 0.25 / 0.7, 0.09 / 0.3]
    rows = [0.64 / 1.0, 0.25 / 0.9]
    assert relative_strength(wide) == pytest.approx((np.mean(columns) + np.mean(rows)) / 2)
    assert relative_strength(wide, "paper") == pytest.approx((sum(columns) + sum(rows)) / 5)
    assert relative_strength(np.array([[0.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.5)


def test_identical_models_score_one_spearman_and_one_minus_alpha_lasso():
    result = udr([GRID, GRID.copy()], [ACTIVE, ACTIVE], correlation="spearman")
    assert result.scores == pytest.approx([1.0, 1.0])
    # Lasso on orthonormal standardised inputs: each coefficient soft-thresholded, 1 - 0.1
    lasso = udr([GRID, GRID.copy()], [ACTIVE, ACTIVE], correlation="lasso")
    assert lasso.scores == pytest.approx([0.9, 0.9], abs=1e-6)
    assert udr_pair(GRID, GRID, alpha=0.3) == pytest.approx(0.7, abs=1e-6)


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_permuted_and_sign_flipped_latents_score_the_same(correlation):
    other = -3.0 * GRID[:, [2, 0, 1]] + 5.0  # permuted, flipped, rescaled, shifted
    same = udr([GRID, GRID], [ACTIVE, ACTIVE], correlation=correlation).scores
    moved = udr([GRID, other], [ACTIVE, ACTIVE], correlation=correlation).scores
    assert moved == pytest.approx(same, abs=1e-6)


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_an_inactive_latent_is_ignored(correlation):
    noise = np.random.default_rng(0).normal(size=(len(GRID), 1))
    with_extra = np.concatenate([GRID, noise], axis=1)
    kl = np.array([1.0, 1.0, 1.0, 0.005])  # the fourth latent is below the 0.01 threshold
    base = udr([GRID, GRID], [ACTIVE, ACTIVE], correlation=correlation).scores
    extra = udr([GRID, with_extra], [ACTIVE, kl], correlation=correlation).scores
    assert extra == pytest.approx(base, abs=1e-9)
    # counted as informative, the noise latent lowers the score
    counted = udr([GRID, with_extra], [ACTIVE, np.ones(4)], correlation=correlation).scores
    assert counted.max() < base.min() - 0.01


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_mixed_latents_score_lower(correlation):
    rotation = np.array([[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, np.sqrt(2)]]) / np.sqrt(2)
    mixed = GRID @ rotation  # the first two latents rotated by 45 degrees
    aligned = udr([GRID, GRID], [ACTIVE, ACTIVE], correlation=correlation).scores
    entangled = udr([GRID, mixed], [ACTIVE, ACTIVE], correlation=correlation).scores
    assert entangled.max() < aligned.min() - 0.1


def test_model_score_is_the_median_over_its_partners():
    rotation = np.array([[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, np.sqrt(2)]]) / np.sqrt(2)
    models = [GRID, -GRID, GRID @ rotation, GRID[:, ::-1]]
    result = udr(models, correlation="spearman")
    assert np.isnan(np.diag(result.pairs)).all()
    # model 0 agrees perfectly with models 1 and 3 and partly with 2: the median is 1
    assert result.scores[0] == pytest.approx(1.0)
    assert result.scores[2] == pytest.approx(result.pairs[0, 2])  # all three partners alike
    assert result.scores[2] < 0.9


def test_a_collapsed_model_scores_zero():
    result = udr([GRID, GRID], [ACTIVE, np.zeros(3)], correlation="spearman")
    assert result.scores == pytest.approx([0.0, 0.0])


def test_mean_kl_per_latent_matches_torch():
    rng = np.random.default_rng(1)
    mu, logvar = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    q = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar)))
    p = torch.distributions.Normal(torch.zeros(50, 4, dtype=torch.float64), 1.0)
    expected = torch.distributions.kl_divergence(q, p).mean(0).numpy()
    assert mean_kl_per_latent(mu, logvar) == pytest.approx(expected)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least 2 models"):
        udr([GRID])
    with pytest.raises(ValueError, match="same N"):
        udr([GRID, GRID[:10]])
    with pytest.raises(ValueError, match="correlation"):
        udr([GRID, GRID], correlation="pearson")
    with pytest.raises(ValueError, match="NaN"):
        udr([GRID, np.full_like(GRID, np.nan)])


def _dlib_reference(codes, kls, correlation):
    """disentanglement_lib's compute_udr_sklearn steps, written out independently: standardise
    every latent, zero the uninformative ones, the full similarity matrix, then the KL filter,
    then relative strength with nanmean / nan_to_num, then the column medians."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import Lasso
    from sklearn.preprocessing import StandardScaler

    reps = [StandardScaler().fit_transform(c) * (k > 0.01) for c, k in zip(codes, kls)]
    masks = [k > 0.01 for k in kls]
    m = len(codes)
    pairs = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            if correlation == "lasso":
                matrix = np.abs(Lasso(alpha=0.1, random_state=0).fit(reps[i], reps[j]).coef_).T
            else:
                d = reps[i].shape[1]
                with np.errstate(invalid="ignore", divide="ignore"):
                    matrix = np.abs(np.array([[spearmanr(reps[i][:, a], reps[j][:, b])[0]
                                               for b in range(d)] for a in range(d)]))
            matrix = matrix[masks[i]][:, masks[j]]
            with np.errstate(invalid="ignore", divide="ignore"):
                x = np.nanmean(np.nan_to_num(matrix.max(0) ** 2 / matrix.sum(0)))
                y = np.nanmean(np.nan_to_num(matrix.max(1) ** 2 / matrix.sum(1)))
            pairs[i, j] = (x + y) / 2
    return np.array([np.median(np.delete(pairs[:, j], j)) for j in range(m)])


@pytest.mark.parametrize("correlation", ["lasso", "spearman"])
def test_matches_disentanglement_libs_procedure_on_random_codes(correlation):
    rng = np.random.default_rng(3)
    factors = rng.normal(size=(300, 4))
    codes, kls = [], []
    for model in range(3):
        mixing = np.eye(4) + 0.3 * rng.normal(size=(4, 4))
        noise = 0.2 * rng.normal(size=(300, 4))
        codes.append(np.concatenate([factors @ mixing + noise, rng.normal(size=(300, 1))], 1))
        kls.append(np.array([1.0, 0.5, 2.0, 0.8, 0.001 if model != 1 else 0.3]))
    expected = _dlib_reference(codes, kls, correlation)
    assert udr(codes, kls, correlation=correlation).scores == pytest.approx(expected, abs=1e-6)
