"""Discretisation, entropy and mutual information of discrete variables (natural logs, nats).

The estimators are the plug-in (histogram) ones of disentanglement_lib's `utils.py`
(`_histogram_discretize`, `discrete_mutual_info`, `discrete_entropy`), which call scikit-learn's
`mutual_info_score` once per (latent, factor) pair. Here every pair of one factor is counted by a
single `np.bincount` over joint codes, which gives the same numbers (tested against scikit-learn)
at a fraction of the cost: hand-written for speed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["discrete_entropy", "discretize", "mutual_information"]


def discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bins each column of codes (N, D) into `num_bins` equal-width bins over its own range.

    Exactly disentanglement_lib's `_histogram_discretize`: `np.digitize` on the edges of
    `np.histogram(column, num_bins)` without the last edge, so bins are 1..num_bins (the maximum
    falls into the last bin). A constant column falls into one bin. float32 codes are binned
    with float32 edges, as numpy (and so disentanglement_lib) does; other types as float64.

    Returns:
        int64 bin indices (N, D) in 0..num_bins-1.
    """
    codes = np.asarray(codes)
    if codes.dtype not in (np.float32, np.float64):
        codes = codes.astype(np.float64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (N, D), got shape {codes.shape}")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], num_bins)
        out[:, j] = np.digitize(codes[:, j], edges[:-1]) - 1
    return out


def _sizes(labels: np.ndarray) -> np.ndarray:
    return labels.max(axis=0) + 1 if len(labels) else np.zeros(labels.shape[1], dtype=np.int64)


def discrete_entropy(labels: np.ndarray) -> np.ndarray:
    """Plug-in entropy H of each column of integer labels (N, K) >= 0, in nats; shape (K,).

    A uniform k-valued column has entropy log k.
    """
    labels = _as_labels(labels)
    n = len(labels)
    result = np.zeros(labels.shape[1])
    for k in range(labels.shape[1]):
        p = np.bincount(labels[:, k]) / n
        p = p[p > 0]
        result[k] = -(p * np.log(p)).sum()
    return result


def mutual_information(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plug-in mutual information I(a_i; b_k) in nats for every column pair; shape (I, K).

    Args:
        a: integer labels (N, I), values >= 0 (e.g. `discretize(codes)`).
        b: integer labels (N, K), values >= 0 (e.g. factor indices).
    """
    a, b = _as_labels(a), _as_labels(b)
    if len(a) != len(b):
        raise ValueError(f"mismatched lengths: {len(a)} and {len(b)} rows")
    n = len(a)
    size_a, size_b = _sizes(a), _sizes(b)
    offsets = np.concatenate([[0], np.cumsum(size_a)[:-1]])  # each column of a gets its own range
    shifted = (a + offsets).T  # (I, N) labels in disjoint ranges
    p_a_all = np.bincount(shifted.ravel(), minlength=int(size_a.sum())) / n
    result = np.zeros((a.shape[1], b.shape[1]))
    for k in range(b.shape[1]):
        kb = int(size_b[k])
        # Joint code of (a_i, b_k) for every i at once: one bincount for the whole column k.
        joint = np.bincount((shifted * kb + b[:, k]).ravel(), minlength=int(size_a.sum()) * kb)
        p_ab = joint.reshape(-1, kb) / n  # (sum_i |a_i|, |b_k|)
        p_b = np.bincount(b[:, k], minlength=kb) / n  # (|b_k|,)
        expected = p_a_all[:, None] * p_b[None, :]
        nonzero = p_ab > 0
        terms = np.zeros_like(p_ab)
        terms[nonzero] = p_ab[nonzero] * np.log(p_ab[nonzero] / expected[nonzero])
        per_row = terms.sum(axis=1)  # (sum_i |a_i|,)
        result[:, k] = np.add.reduceat(per_row, offsets) if len(per_row) else 0.0
    return np.maximum(result, 0.0)  # plug-in MI is >= 0; clears -1e-17 rounding


def _as_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2:
        raise ValueError(f"labels must be (N, K), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise ValueError("labels must be >= 0")
    return labels.astype(np.int64, copy=False)
