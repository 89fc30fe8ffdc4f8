"""Pairs of images that share all but a few ground-truth factors: the weakly supervised data of
Locatello et al., "Weakly-Supervised Disentanglement Without Compromises" (ICML 2020).

`data.batches = "pairs"` (every `FactorDataset`) draws, per optimiser step, `train.batch_size`
pairs (x1, x2). A pair is drawn as in the paper's Section 5 ("Experimental setup"): z1 from the
data, then k factors that should not be shared, then those k coordinates drawn again to give z2;
x1 and x2 are the items with factors z1 and z2. k is `data.pair_k`, or, with `data.pair_k = 0`
("random", the paper's k = Rnd), uniform in {1, ..., d - 1} per pair, d the number of factors
that take more than one value (a constant factor can never differ).

Samplers (`data.pair_sampler`):

* ``"paper"`` (default): the k factors are distinct and uniform among the d; each gets a fresh
  uniform value. A fresh value can repeat the old one, so a pair differs in *at most* k factors,
  as the paper says of its data sets.
* ``"exact"``: as "paper", but each resampled factor gets a value different from the old one, so
  a pair differs in *exactly* k factors (the generative model of the paper's Section 3 with
  continuous factors, where a redrawn coordinate differs almost surely).
* ``"simple_dynamics"``: disentanglement_lib's sampler (`methods/weak/train_weak_lib.py`,
  `simple_dynamics`): it resamples either 1 factor or k factors, each with probability 1/2
  (`random_state.choice([1, k_observed])`), so with k > 1 half the pairs differ in one factor
  only; the paper's text does not say so (disentanglement_lib issue #31). Values are fresh
  uniform draws as in "paper" (at most k differ). disentanglement_lib draws those values from
  NumPy's global generator instead of the seeded `random_state`; here every draw comes from the
  run's seeded generator.

Layout: the source's `next()` returns a (2, b) index, row 0 the first images, row 1 their
partners; `ImageDataset.batch_of` turns it into one `Batch` of 2b images, first every x1, then
every x2, with `batch.pairs = b`. The factors of both halves are in the dataset, so the number
of factors that differ in each pair (`pair_differences`) is read from them, never stored twice.

On a full factor grid (dSprites, toy_squares) the second item is found by its factor code with no
host sync. On a dataset that covers only part of the grid, or on the training part of a held-out
split, a drawn row may belong to no item: each pair is then drawn afresh, first item included,
up to `RETRIES` times (all candidates drawn at once, the first that exists kept); a pair none of
whose candidates exists is the first item with itself (0 factors differ, still "at most k").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vaelab.data.batches import _FreshBatches

__all__ = ["PAIR_SAMPLERS", "RETRIES", "PairBatches", "pair_differences"]

PAIR_SAMPLERS = ("paper", "exact", "simple_dynamics")
RETRIES = 32  # candidate pairs per pair on partial grids


class PairBatches(_FreshBatches):
    """Batches of b pairs of items that differ in (at most / exactly) k factors.

    Args:
        factors: factor indices of every item (N, F), int64, on the generator's device.
        factor_sizes: the F cardinalities.
        k: factors resampled per pair, 1..d-1 (d: factors with more than one value); 0: uniform
            in {1, ..., d-1} per pair.
        sampler: one of `PAIR_SAMPLERS`.
        batch_size: pairs per batch on one rank.
        generator, rank, world_size: as `EpochPermutation`.
        subset: optional item indices (m,) the pairs are drawn from (both items).
        is_grid: the items are the full factor grid in mixed-radix order (item i has code i).
    """

    kind = "pairs"

    def __init__(self, factors: Tensor, factor_sizes: tuple[int, ...], k: int, sampler: str,
                 batch_size: int, generator: torch.Generator, rank: int = 0,
                 world_size: int = 1, subset: Tensor | None = None,
                 is_grid: bool = False) -> None:
        if sampler not in PAIR_SAMPLERS:
            raise ValueError(f"data.pair_sampler must be one of {', '.join(PAIR_SAMPLERS)}, "
                             f"got {sampler!r}")
        device = generator.device
        sizes = torch.as_tensor(factor_sizes, dtype=torch.long, device=device)
        varying = int((sizes > 1).sum())
        if varying < 2:
            raise ValueError(f"pairs need at least two factors that vary, this dataset has "
                             f"{varying}")
        if not 0 <= k <= varying - 1:
            raise ValueError(f"data.pair_k must be in 1..{varying - 1} (the factors that vary, "
                             f"less one, so at least one is shared) or 0 (random), got {k}")
        self.sizes, self.varying, self.k, self.sampler = sizes, varying, k, sampler
        self.batch_size, self.generator = batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.count = 0
        factors = factors.to(device=device, dtype=torch.long)
        # Mixed-radix codes, last factor fastest (as FactorDataset).
        self.bases = torch.flip(torch.cumprod(torch.flip(
            torch.cat([sizes[1:], sizes.new_ones(1)]), [0]), 0), [0])
        self.items = (torch.arange(len(factors), device=device) if subset is None
                      else subset.to(device=device, dtype=torch.long))
        self.n = len(self.items)
        if self.n == 0:
            raise ValueError("no item to draw pairs from")
        self.factors = factors
        self.direct = is_grid and subset is None
        if not self.direct:
            codes = factors[self.items] @ self.bases
            self.sorted_codes, order = torch.sort(codes, stable=True)
            self.order = self.items[order]

    # -- drawing ------------------------------------------------------------------------------

    def _ks(self, n: int) -> Tensor:
        """How many factors to resample, (n,)."""
        g, device = self.generator, self.generator.device
        if self.k:
            k = torch.full((n,), self.k, dtype=torch.long, device=device)
        else:
            k = torch.randint(1, self.varying, (n,), generator=g, device=device)
        if self.sampler == "simple_dynamics":  # dlib: choice([1, k]) with probability 1/2 each
            one = torch.rand(n, generator=g, device=device) < 0.5
            k = torch.where(one, torch.ones_like(k), k)
        return k

    def _second(self, first: Tensor) -> Tensor:
        """Factor rows (n, F) of the partners of the items `first` (n,)."""
        g, device = self.generator, self.generator.device
        n, f = len(first), len(self.sizes)
        z1 = self.factors[first]  # (n, F)
        k = self._ks(n)
        # k distinct factors among the varying ones: the k smallest of uniform keys.
        keys = torch.rand(n, f, generator=g, device=device)
        keys = torch.where(self.sizes > 1, keys, torch.full_like(keys, 2.0))
        rank = keys.argsort(dim=1).argsort(dim=1)  # (n, F) 0 = smallest key
        chosen = rank < k[:, None]
        u = torch.rand(n, f, generator=g, device=device)
        if self.sampler == "exact":  # one of the size - 1 other values
            step = 1 + (u * (self.sizes - 1)).long().clamp_max(self.sizes - 2).clamp_min(0)
            fresh = (z1 + step) % self.sizes
        else:
            fresh = (u * self.sizes).long().clamp_max(self.sizes - 1)
        return torch.where(chosen, fresh, z1)

    def _draw(self, total: int) -> Tensor:
        """(2, total) item indices of `total` pairs."""
        g, device = self.generator, self.generator.device
        tries = 1 if self.direct else RETRIES
        pick = torch.randint(0, self.n, (tries * total,), generator=g, device=device)
        first = self.items[pick]
        z2 = self._second(first)
        codes = z2 @ self.bases
        if self.direct:
            return torch.stack([first, codes])
        left = torch.searchsorted(self.sorted_codes, codes, side="left")
        right = torch.searchsorted(self.sorted_codes, codes, side="right")
        found = (right > left).view(tries, total)
        u = torch.rand(tries * total, generator=g, device=device)
        within = left + (u * (right - left)).long().clamp_max((right - left - 1).clamp_min(0))
        second = torch.where(right > left, self.order[within.clamp_max(self.n - 1)], first)
        first, second = first.view(tries, total), second.view(tries, total)
        best = torch.where(found.any(0), found.float().argmax(0), torch.zeros_like(found[0],
                           dtype=torch.long))
        columns = torch.arange(total, device=device)
        return torch.stack([first[best, columns], second[best, columns]])

    def next(self) -> Tensor:
        pairs = self._draw(self.batch_size * self.world_size)
        self.count += 1
        return pairs[:, self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pair_k": self.k, "pair_sampler": self.sampler}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (("pair_k", self.k), ("pair_sampler", self.sampler)):
            if key in state and state[key] != mine:
                raise ValueError(f"the checkpoint drew pairs with data.{key}={state[key]!r}, "
                                 f"this run with {mine!r}; resume with the same data options")
        super().load_state_dict(state)


def pair_differences(batch: Any) -> Tensor:
    """Which factors differ in each pair of a pair batch, (b, F) bool, on the images' device.

    Args:
        batch: a `Batch` with `pairs = b` > 0 from a `FactorDataset` (2b items: x1s, then x2s).
    """
    pairs = getattr(batch, "pairs", 0)
    dataset = batch.dataset
    if not pairs or dataset is None or not hasattr(dataset, "factors"):
        raise ValueError("pair_differences needs a pair batch of a factor dataset "
                         "(data.batches = 'pairs')")
    factors = dataset.factors_of(batch.index)  # (2b, F)
    return factors[:pairs] != factors[pairs:]

