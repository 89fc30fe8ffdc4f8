"""Registry-driven test cases: every registered model and objective on tiny toy data.

Tests parametrised with these lists cover a newly registered model or objective without an
edit: each is built from its config class's defaults, at the smallest toy_squares size it takes.
"""

from __future__ import annotations

import torch

import vaelab
from vaelab.config import Component
from vaelab.data.base import Batch
from vaelab.factory import (
    build_model,
    build_objective,
    compatible_models,
    compatible_objectives,
    resolve_model_component,
    resolve_objective_component,
    run_config_from_dict,
)
from vaelab.models.base import Model
from vaelab.objectives.base import Objective
from vaelab.registry import DATASETS, MODELS, OBJECTIVES

#: every (model, objective) pair the registries allow
PAIRS = [(m, o) for m in MODELS.names() for o in compatible_objectives(m)]


def _covering_pairs() -> list[tuple[str, str]]:
    """A few pairs that hold every model and every objective: objective i (by name) with the
    (i mod n)-th of the n models it can train, so the objectives spread over the models; then
    each model still missing with its first objective."""
    pairs = []
    for i, objective in enumerate(OBJECTIVES.names()):
        models = compatible_models(objective)
        if models:
            pairs.append((models[i % len(models)], objective))
    covered = {m for m, _ in pairs}
    pairs += [(m, compatible_objectives(m)[0]) for m in MODELS.names()
              if m not in covered and compatible_objectives(m)]
    return sorted(pairs)


#: the pairs that expensive tests (several `fit`s each) run by default; the others run marked slow
COVERING = _covering_pairs()


def first_model(objective: str) -> str:
    """The first registered model (by name) that `objective` can train."""
    return next(m for m in MODELS.names() if objective in compatible_objectives(m))


def batches_for(objective: str) -> dict:
    """The data.batches an objective declares it trains on ({"batches": "pairs"} for the weakly
    supervised ones; {} for single images)."""
    needs = getattr(OBJECTIVES.get(objective), "batches", "")
    return {"batches": needs} if needs else {}


def tiny_data(model_name: str) -> dict:
    """toy_squares at the smallest size the model takes (32, else 64)."""
    for size in (32, 64):
        data = {"name": "toy_squares", "image_size": size}
        shape = (1, size, size)
        try:
            first = compatible_objectives(model_name)[0]
            resolve_model_component(run_config_from_dict(
                {"model": {"name": model_name}, "objective": {"name": first},
                 "data": {**data, **batches_for(first)}}).model, shape)
            build_model(resolve_model_component(
                Component(model_name, MODELS.get(model_name).config_class()), shape))
            return data
        except ValueError:
            continue
    raise AssertionError(f"model {model_name!r} takes neither 32x32 nor 64x64 toy images")


def build_model_on_toy(model_name: str, n: int = 8, seed: int = 0) -> tuple[Model, Batch]:
    """The model with its default config sized for toy_squares, and a batch of its first n
    images (with the dataset attached, for objectives that read labels or domains)."""
    torch.manual_seed(seed)
    data = vaelab.load_dataset(**tiny_data(model_name), limit=max(n, 8))
    component = resolve_model_component(
        Component(model_name, MODELS.get(model_name).config_class()), data.image_shape)
    return build_model(component), data.batch_of(torch.arange(n))


def build_pair(model_name: str, objective_name: str, n: int = 8,
               seed: int = 0) -> tuple[Model, Objective, Batch]:
    """`build_model_on_toy` plus the objective with its default config, completed from the
    model (and told the dataset size where it needs it). An objective that trains on pairs gets
    n // 2 pairs drawn by the batch source it declares (n images, the pairs interleaved)."""
    model, batch = build_model_on_toy(model_name, n, seed)
    objective = build_objective(resolve_objective_component(
        Component(objective_name, OBJECTIVES.get(objective_name).config_class()), model))
    if objective.needs_dataset_size:
        objective.set_dataset_size(len(batch.dataset))
    if batches_for(objective_name):
        data = batch.dataset
        config = DATASETS.get("toy_squares").config_class(**batches_for(objective_name))
        source = data.batch_source(config, n // 2, torch.Generator().manual_seed(seed))
        batch = data.batch_of(source.next())
    return model, objective, batch
