"""Build run configs, models and objectives by registered name, and check that they fit together.

This is the top of the import graph for configs: it imports the model, objective and dataset
packages (which fill the registries), so `vaelab.config` stays free of them.

Compatibility: a model declares the type of its forward output (`Model.output_type`), an objective
the output types it scores (`Objective.accepts`). `check_compatible` refuses any other pair,
naming what would work, when a run config is built, so an incompatible run stops before anything
is loaded or trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

import vaelab.data  # noqa: F401  (fills DATASETS)
import vaelab.metrics  # noqa: F401  (fills METRICS)
import vaelab.models  # noqa: F401  (fills MODELS)
import vaelab.objectives  # noqa: F401  (fills OBJECTIVES)
from vaelab.config import Component, ConfigError, RunConfig, TrainConfig, _coerce, from_dict
from vaelab.registry import DATASETS, METRICS, MODELS, OBJECTIVES

__all__ = [
    "build_model",
    "build_objective",
    "check_compatible",
    "compatible_models",
    "compatible_objectives",
    "create_model",
    "create_objective",
    "resolve_model_component",
    "resolve_objective_component",
    "resolve_run_config",
    "run_config_from_dict",
]


def create_model(name: str, **options: Any) -> nn.Module:
    """A registered model built from config options: `create_model("burgess", latent_dim=6)`."""
    cls = MODELS.get(name)
    return cls(from_dict(cls.config_class, options, prefix="model."))


def create_objective(name: str, **options: Any) -> nn.Module:
    """A registered objective: `create_objective("beta_tcvae", beta=6.4)`."""
    cls = OBJECTIVES.get(name)
    return cls(from_dict(cls.config_class, options, prefix="objective."))


# ----------------------------------------------------------------------------------------------
# Compatibility


def compatible_objectives(model: str) -> list[str]:
    """Names of the objectives that accept the output of model `model`."""
    output = MODELS.get(model).output_type
    return [name for name in OBJECTIVES.names() if output in OBJECTIVES.get(name).accepts]


def compatible_models(objective: str) -> list[str]:
    """Names of the models whose output objective `objective` accepts."""
    accepts = OBJECTIVES.get(objective).accepts
    return [name for name in MODELS.names() if MODELS.get(name).output_type in accepts]


def check_compatible(model: str, objective: str) -> None:
    """Raises ConfigError when objective `objective` cannot score model `model`'s output.

    The message names the output type, what the objective takes, and the compatible choices on
    both sides.
    """
    output = MODELS.get(model).output_type
    accepts = OBJECTIVES.get(objective).accepts
    if output in accepts:
        return
    objectives = ", ".join(compatible_objectives(model)) or "(none)"
    models = ", ".join(compatible_models(objective)) or "(none)"
    taken = ", ".join(t.__name__ for t in accepts) or "nothing"
    raise ConfigError(
        f"objective {objective!r} cannot train model {model!r}: the model's forward gives "
        f"{output.__name__}, and {objective!r} takes {taken}. Objectives for {model!r}: "
        f"{objectives}; models for {objective!r}: {models}"
    )


# ----------------------------------------------------------------------------------------------
# Run configs


def _component(section: str, data: Any, registry: Any) -> Component:
    if isinstance(data, Component):
        return data
    if not isinstance(data, Mapping) or "name" not in data:
        raise ConfigError(f"{section}: expected a table with a 'name' key, got {data!r}")
    name = data["name"]
    try:
        target = registry.get(name)
    except KeyError as error:
        raise ConfigError(f"{section}.name: {error.args[0]}") from None
    rest = {k: v for k, v in data.items() if k != "name"}
    return Component(name, from_dict(target.config_class, rest, prefix=f"{section}."))


def run_config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Builds a `RunConfig` from its dict form (as in `config.json` or a preset).

    Raises:
        ConfigError: an unknown key or name, a wrong type or value, an incompatible model and
            objective, or batches the dataset cannot draw (each message names the key).
    """
    from vaelab.rundir import check_written_by

    data = check_written_by(dict(data), "this config") if isinstance(data, Mapping) else data
    known = {"name", "seed", "model", "objective", "data", "train"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    config = RunConfig(
        name=_coerce(data.get("name", ""), str, "name"),
        seed=_coerce(data.get("seed", 1234), int, "seed"),
        model=_component("model", data.get("model", {"name": "burgess"}), MODELS),
        objective=_component("objective", data.get("objective", {"name": "vae"}), OBJECTIVES),
        data=_component("data", data.get("data", {"name": "dsprites"}), DATASETS),
        train=from_dict(TrainConfig, data.get("train", {}), prefix="train."),
    )
    check_compatible(config.model.name, config.objective.name)
    for metric in config.train.metrics:
        if metric not in ("default", "all", "clusters") and metric not in METRICS:
            known = ", ".join(["default", "all", "clusters", *METRICS.names()])
            raise ConfigError(f"train.metrics: unknown metric {metric!r}; known: {known}")
    modes = DATASETS.get(config.data.name).batch_modes
    if config.data.config.batches not in modes:
        raise ConfigError(
            f"data.batches: dataset {config.data.name!r} draws "
            f"{' or '.join(repr(m) for m in modes)} batches, not {config.data.config.batches!r}"
        )
    needs = getattr(OBJECTIVES.get(config.objective.name), "batches", "")
    if needs and config.data.config.batches != needs:
        raise ConfigError(
            f"data.batches: objective {config.objective.name!r} trains on {needs!r} batches, "
            f"not {config.data.config.batches!r}; set data.batches={needs} (--set "
            f"data.batches={needs})"
        )
    return config


# ----------------------------------------------------------------------------------------------
# Resolution against the data and the model


def resolve_model_component(model: Component, image_shape: tuple[int, int, int]) -> Component:
    """Fills `channels` / `image_size` left at 0 ("from the data") with the dataset's shape."""
    config = model.config
    updates = {}
    names = {f.name for f in dataclasses.fields(config)}
    if "channels" in names and config.channels == 0:
        updates["channels"] = image_shape[0]
    if "image_size" in names and config.image_size == 0:
        if image_shape[1] != image_shape[2]:
            raise ConfigError(
                f"model {model.name!r} needs square images, and the data's are "
                f"{image_shape[1]}x{image_shape[2]}; resize the data or use the 'conv' model"
            )
        updates["image_size"] = image_shape[1]
    if "image_height" in names and config.image_height == 0:
        updates["image_height"] = image_shape[1]
    if "image_width" in names and config.image_width == 0:
        updates["image_width"] = image_shape[2]
    if not updates:
        return model
    try:
        return Component(model.name, dataclasses.replace(config, **updates))
    except ValueError as error:
        raise ConfigError(
            f"model {model.name!r} cannot take images of shape {image_shape}: {error}"
        ) from None


def build_model(model: Component) -> nn.Module:
    return MODELS.get(model.name)(model.config)


def build_objective(objective: Component) -> nn.Module:
    return OBJECTIVES.get(objective.name)(objective.config)


def resolve_objective_component(objective: Component, model: nn.Module) -> Component:
    """The objective's config completed from the built model (`Objective.resolve_config`)."""
    config = OBJECTIVES.get(objective.name).resolve_config(objective.config, model)
    return objective if config is objective.config else Component(objective.name, config)


def resolve_run_config(config: RunConfig, image_shape: tuple[int, int, int],
                       with_model: bool = False) -> Any:
    """The run config completed for data of `image_shape` (C, H, W): the model's channels and
    size from the data, then the objective's sizes from the built model (a discriminator's
    input). Idempotent; `with_model` also returns the model it built, (config, model).

    Raises:
        ConfigError: the model cannot take these images.
        VaelabError: the built model's image shape is not the data's.
    """
    from vaelab.errors import VaelabError

    model_component = resolve_model_component(config.model, image_shape)
    model = build_model(model_component)
    if tuple(model.image_shape) != tuple(image_shape):
        raise VaelabError(
            f"model {model_component.name!r} takes images of shape {tuple(model.image_shape)} but "
            f"dataset {config.data.name!r} has {tuple(image_shape)}"
        )
    config = RunConfig(name=config.name, seed=config.seed, model=model_component,
                       objective=resolve_objective_component(config.objective, model),
                       data=config.data, train=config.train)
    return (config, model) if with_model else config
