"""Batch sources: which items each optimiser step trains on, drawn from a seeded torch generator.

A dataset hands the engine a `BatchSource` (`ImageDataset.batch_source`); the engine calls
`next()` once per step and checkpoints `state_dict()`, so a resumed run draws exactly the batches
an uninterrupted one would have (bit-exact on the CPU). Indices are drawn on the generator's
device with no host sync.

* `EpochPermutation` ("shuffle", every dataset): a fresh random permutation each epoch, cut into
  full batches; DDP rank r of W takes the r-th of every W consecutive batches. Optionally over a
  subset of the items (the training part of a held-out validation split).
* `GroupBatches` ("group", factor datasets): every item of a batch shares the value of one
  factor (all hearts, all of the largest scale, ...): a group (factor k, value v) is drawn
  uniformly, then the items uniformly, with replacement, among those with factor k = v. The
  global-structure experiment of UG-VAE trains and evaluates on such batches.
* `DomainBatches` ("random" / "pure", mixed-domain datasets): each batch drawn afresh, with
  replacement, either item by item from domain 0 with probability `proportion` ("random"), or
  all from one domain, domain 0 with probability `proportion` ("pure"), uniform within a domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["BatchSource", "DomainBatches", "EpochPermutation", "GroupBatches"]


class BatchSource:
    """Index batches (B,) for one rank; checkpointable with `state_dict` / `load_state_dict`."""

    kind = ""

    def next(self) -> Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    @property
    def epochs(self) -> float:
        """Passes over the data so far (fractional)."""
        raise NotImplementedError

    def _check_kind(self, state: dict[str, Any]) -> None:
        if state.get("kind", self.kind) != self.kind:
            raise ValueError(f"the checkpoint's batch source is {state['kind']!r}, this run "
                             f"draws {self.kind!r} batches; resume with the same data.batches")


class EpochPermutation(BatchSource):
    """A new permutation of the items each epoch, cut into full batches, sharded over ranks.

    Args:
        n: number of items.
        batch_size: items per batch on one rank.
        generator: seeded torch generator (its device is where indices are drawn).
        rank, world_size: this process and the number of processes.
        subset: optional item indices (m,) to draw from instead of 0..n-1 (n must be m).
    """

    kind = "shuffle"

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, rank: int = 0,
                 world_size: int = 1, subset: Tensor | None = None) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.subset = subset
        self.per_epoch = n // (batch_size * world_size)
        if self.per_epoch < 1:
            raise ValueError(f"{n} items are fewer than one batch of {batch_size} x {world_size}")
        self.epoch, self.position = 0, 0
        self.perm_state = generator.get_state()
        self._perm = self._permutation()

    def _permutation(self) -> Tensor:
        return torch.randperm(self.n, generator=self.generator, device=self.generator.device)

    def next(self) -> Tensor:
        if self.position >= self.per_epoch:  # next epoch: a fresh permutation
            self.epoch += 1
            self.position = 0
            self.perm_state = self.generator.get_state()
            self._perm = self._permutation()
        start = (self.position * self.world_size + self.rank) * self.batch_size
        index = self._perm[start:start + self.batch_size]
        self.position += 1
        return index if self.subset is None else self.subset[index]

    @property
    def epochs(self) -> float:
        return self.epoch + self.position / self.per_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "epoch": self.epoch, "position": self.position,
                "perm_state": self.perm_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_kind(state)
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.perm_state = state["perm_state"]
        self.generator.set_state(self.perm_state)
        self._perm = self._permutation()  # the current epoch's permutation, drawn again


class _FreshBatches(BatchSource):
    """A source that draws every batch afresh (with replacement) from its generator: the state
    is the number of batches drawn and the generator's state."""

    count: int
    n: int
    batch_size: int
    world_size: int
    rank: int
    generator: torch.Generator

    def _shard(self, index: Tensor) -> Tensor:
        """This rank's part of a batch drawn for every rank, (batch_size,)."""
        self.count += 1
        return index[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    @property
    def epochs(self) -> float:
        return self.count * self.batch_size * self.world_size / max(self.n, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_kind(state)
        self.count = int(state["count"])
        self.generator.set_state(state["generator"])


class DomainBatches(_FreshBatches):
    """Batches drawn afresh from per-domain pools: "random" (per item) or "pure" (per batch).

    Args:
        pools: item indices of each domain (a list of (n_k,) tensors on the generator's device).
        mode: "random" or "pure".
        proportion: probability of domain 0 (of an item for "random", of a batch for "pure").
        batch_size, generator, rank, world_size: as `EpochPermutation`.

    Only the first two domains are drawn (domain 1 stands for "not domain 0").
    """

    MODES = ("random", "pure")

    def __init__(self, pools: Sequence[Tensor], mode: str, proportion: float, batch_size: int,
                 generator: torch.Generator, rank: int = 0, world_size: int = 1) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if not 0.0 <= proportion <= 1.0:
            raise ValueError(f"proportion must be in [0, 1], got {proportion}")
        needed = [k for k, p in ((0, proportion > 0), (1, proportion < 1)) if p]
        empty = [k for k in needed if len(pools[k]) == 0]
        if empty:
            raise ValueError(f"domain {empty[0]} has no items, but proportion={proportion} "
                             "draws from it")
        self.kind = mode
        self.pools, self.proportion = list(pools), float(proportion)
        self.batch_size, self.generator = batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.count = 0
        self.n = sum(len(p) for p in pools)

    def next(self) -> Tensor:
        total = self.batch_size * self.world_size
        device = self.generator.device
        if self.kind == "pure":
            draw = torch.rand(1, generator=self.generator, device=device).expand(total)
        else:
            draw = torch.rand(total, generator=self.generator, device=device)
        first = draw < self.proportion  # (total,) True: domain 0
        index = torch.empty(total, dtype=torch.long, device=device)
        for k, mask in ((0, first), (1, ~first)):
            pool = self.pools[k]
            if len(pool) == 0:
                continue
            # Draw a pick for every slot and keep the slots of this domain: no data-dependent
            # shapes, so no host sync.
            pick = torch.randint(0, len(pool), (total,), generator=self.generator, device=device)
            index = torch.where(mask, pool[pick], index)
        return self._shard(index)



class GroupBatches(_FreshBatches):
    """Batches whose items share one factor value; see the module docstring.

    Args:
        groups: item indices of each group, a list of (n_g,) tensors (on the generator's device).
        batch_size, generator, rank, world_size: as `EpochPermutation` (every rank draws the
            same group for a step, and its own items).
    """

    kind = "group"

    def __init__(self, groups: Sequence[Tensor], batch_size: int, generator: torch.Generator,
                 rank: int = 0, world_size: int = 1) -> None:
        groups = [g for g in groups if len(g)]
        if not groups:
            raise ValueError("no group has any item")
        device = generator.device
        longest = max(len(g) for g in groups)
        # (G, longest) padded table and the lengths: a pick is table[g, floor(u * n_g)], so a
        # draw needs no host sync.
        self.table = torch.zeros(len(groups), longest, dtype=torch.long, device=device)
        for row, members in enumerate(groups):
            self.table[row, :len(members)] = members.to(device)
        self.lengths = torch.tensor([len(g) for g in groups], device=device)
        self.batch_size, self.generator = batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.count = 0
        self.n = int(self.lengths.sum())
        self.last_group = torch.zeros((), dtype=torch.long, device=device)

    def next(self) -> Tensor:
        total = self.batch_size * self.world_size
        device = self.generator.device
        group = torch.randint(0, len(self.lengths), (1,), generator=self.generator, device=device)
        u = torch.rand(total, generator=self.generator, device=device)
        picks = (u * self.lengths[group]).long().clamp_max(self.lengths[group] - 1)
        self.last_group = group[0]
        return self._shard(self.table[group[0], picks])

