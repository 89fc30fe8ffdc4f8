"""Known answers and oracles for discretisation, entropy and mutual information."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from vaelab.metrics._info import discrete_entropy, discretize, mutual_information


@pytest.mark.parametrize("k", [1, 2, 3, 7, 40])
def test_entropy_of_uniform_k_valued_factor_is_log_k(k):
    labels = np.tile(np.arange(k), 5)[:, None]
    assert discrete_entropy(labels)[0] == pytest.approx(math.log(k), abs=1e-12)


def test_fair_bit_has_mutual_information_log2_with_itself():
    bit = np.array([0, 1] * 50)[:, None]
    assert mutual_information(bit, bit)[0, 0] == pytest.approx(math.log(2))


def test_mutual_information_matches_sklearn_on_every_pair():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 7, size=(500, 4))
    a[:, 1] = a[:, 0] // 2  # a dependent column
    b = np.stack([a[:, 0] % 3, rng.integers(0, 5, 500), a[:, 2]], axis=1)
    expected = np.array([[mutual_info_score(a[:, i], b[:, k]) for k in range(3)] for i in range(4)])
    np.testing.assert_allclose(mutual_information(a, b), expected, atol=1e-12)


def test_discretize_matches_disentanglement_lib_histogram_rule():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(1000, 3))
    codes[:, 2] = 5.0  # constant latent
    ours = discretize(codes, 20)
    for j in range(3):
        # disentanglement_lib utils._histogram_discretize, verbatim (values 1..num_bins)
        reference = np.digitize(codes[:, j], np.histogram(codes[:, j], 20)[1][:-1])
        np.testing.assert_array_equal(ours[:, j], reference - 1)
    assert ours.min() == 0 and ours[:, :2].max() == 19 and len(np.unique(ours[:, 2])) == 1


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="integers"):
        mutual_information(np.zeros((3, 1)), np.zeros((3, 1), dtype=int))
    with pytest.raises(ValueError, match="mismatched lengths"):
        mutual_information(np.zeros((3, 1), dtype=int), np.zeros((4, 1), dtype=int))
