"""Validation during training: the validation set, one pass of every term, early stopping.

Every `train.valid_every` steps the engine asks `Validation.run` for the objective's terms on the
validation set (the dataset's "valid" split, or `train.valid_holdout` of the training items held
out), logged as `valid/*` (`valid_log.csv` by the CSV callback), may keep `best.ckpt`, and may
stop the run early (`EarlyStopping`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelab.config import RunConfig
from vaelab.errors import TrainingDiverged

__all__ = ["EarlyStopping", "Validation", "evaluate_terms", "validation_sets"]


class EarlyStopping:
    """Stops after `patience` validation passes without an improvement larger than `min_delta`.

    The rule of the GMVAE seed (psanch21/VAE-GMVAE): the best value starts at +inf and is replaced
    only when a new value beats it by more than `min_delta`; each other pass increments a counter
    that an improvement resets; training stops when the counter exceeds `patience`, i.e. on the
    (patience + 1)-th consecutive pass without improvement.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.bad_passes = math.inf, 0

    def update(self, value: float) -> tuple[bool, bool]:
        """Records one validation value; returns (improved, stop)."""
        improved = value < self.best - self.min_delta
        if improved:
            self.best, self.bad_passes = value, 0
        else:
            self.bad_passes += 1
        return improved, bool(self.patience) and self.bad_passes > self.patience

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "bad_passes": self.bad_passes}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best, self.bad_passes = float(state["best"]), int(state["bad_passes"])


@dataclass
class Validation:
    """The validation set and its batches, and the early-stopping / best-checkpoint record."""

    dataset: Any
    index: torch.Tensor  # (M,) items of `dataset` to validate on
    batch_size: int
    max_batches: int
    seed: int
    stopping: EarlyStopping

    def batches(self) -> list[torch.Tensor]:
        chunks = list(self.index.split(self.batch_size))
        return chunks[: self.max_batches] if self.max_batches else chunks

    def run(self, objective: nn.Module, model: nn.Module, step: int, step_tensor: torch.Tensor,
            fabric: Any) -> tuple[dict[str, float], bool, bool]:
        """One pass: (the `valid/*` row, improved, stop). A non-finite term raises."""
        terms = evaluate_terms(objective, model, self.dataset, self.batches(), step_tensor,
                               fabric, self.seed)
        bad = [k for k, v in terms.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(f"validation term {bad[0]!r} is {terms[bad[0]]} at step "
                                   f"{step}; the last good checkpoint is checkpoints/last.ckpt")
        improved, stop = self.stopping.update(terms["loss"])
        return {"step": float(step), **{f"valid/{k}": v for k, v in terms.items()}}, improved, stop


def evaluate_terms(objective: nn.Module, model: nn.Module, dataset: Any,
                   batches: Sequence[torch.Tensor], step: torch.Tensor, fabric: Any = None,
                   seed: int = 0) -> dict[str, float]:
    """Every term of `objective` on `batches` of `dataset`, averaged over items, in eval mode.

    Runs without gradients under a forked, seeded RNG, so it neither changes the training's
    random stream nor depends on it (objectives that draw, like FactorVAE's permutation, draw
    the same numbers every pass). Schedules are at their final values (eval mode).
    """
    from vaelab.precision import autocast_model

    device = dataset.device
    was_training = (model.training, objective.training)
    model.eval()
    objective.eval()
    keys: list[str] = []
    total: torch.Tensor | None = None  # the weighted sums, on the device: one host sync at the end
    count = 0
    # Mixed precision as in training: autocast around the model's forward only, fp32 terms.
    forward = autocast_model(model, fabric) if fabric is not None else model
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.no_grad():
            torch.manual_seed(seed)
            for index in batches:
                terms = objective.compute(forward, dataset.batch_of(index), step)
                keys = keys or list(terms)
                values = torch.stack([terms[k].float() for k in keys]) * len(index)
                total = values if total is None else total + values
                count += len(index)
    finally:
        model.train(was_training[0])
        objective.train(was_training[1])
    if total is None:
        return {}
    return dict(zip(keys, (total.double().cpu() / max(count, 1)).tolist()))


def validation_sets(config: RunConfig, dataset: Any, device: torch.device
                    ) -> tuple[torch.Tensor | None, Validation | None]:
    """(training subset or None, validation) from `train.valid_*`."""
    from vaelab.config import Component
    from vaelab.data.loading import load_dataset_component

    train = config.train
    subset = None
    if train.valid_holdout:
        order = np.random.default_rng(config.seed).permutation(len(dataset))
        n_valid = max(1, round(train.valid_holdout * len(dataset)))
        held, kept = np.sort(order[:n_valid]), np.sort(order[n_valid:])
        subset = torch.as_tensor(kept, device=device)
    if not train.valid_every:
        return subset, None
    if train.valid_holdout:
        valid_data, valid_index = dataset, torch.as_tensor(held, device=device)
    else:
        valid_config = dataclasses.replace(config.data.config, split="valid")
        valid_data = load_dataset_component(Component(config.data.name, valid_config)).to(device)
        valid_index = torch.arange(len(valid_data), device=device)
    validation = Validation(
        dataset=valid_data, index=valid_index, batch_size=train.batch_size,
        max_batches=train.valid_batches, seed=config.seed,
        stopping=EarlyStopping(train.early_stopping, train.early_stopping_delta),
    )
    return subset, validation
