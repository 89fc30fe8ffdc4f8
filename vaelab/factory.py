"""Build models and objectives by registered name."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from vaelab.config import Component, from_dict
from vaelab.registry import MODELS, OBJECTIVES

__all__ = ["build_model", "build_objective", "create_model", "create_objective"]


def create_model(name: str, **options: Any) -> nn.Module:
    """A registered model built from config options: `create_model("burgess", latent_dim=6)`."""
    cls = MODELS.get(name)
    return cls(from_dict(cls.config_class, options, prefix="model."))


def create_objective(name: str, **options: Any) -> nn.Module:
    """A registered objective: `create_objective("beta_tcvae", beta=6.4)`."""
    cls = OBJECTIVES.get(name)
    return cls(from_dict(cls.config_class, options, prefix="objective."))


def resolve_model_component(model: Component, image_shape: tuple[int, int, int]) -> Component:
    """Fills `channels` / `image_size` left at 0 ("from the data") with the dataset's shape."""
    config = model.config
    updates = {}
    names = {f.name for f in dataclasses.fields(config)}
    if "channels" in names and config.channels == 0:
        updates["channels"] = image_shape[0]
    if "image_size" in names and config.image_size == 0:
        if image_shape[1] != image_shape[2]:
            raise ValueError(f"model {model.name!r} needs square images, data is {image_shape}")
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
        raise ValueError(f"model {model.name!r} cannot take images of shape {image_shape}: {error}")


def build_model(model: Component) -> nn.Module:
    return MODELS.get(model.name)(model.config)


def build_objective(objective: Component) -> nn.Module:
    return OBJECTIVES.get(objective.name)(objective.config)


def resolve_objective_component(objective: Component, latent_dim: int) -> Component:
    """Sets an objective's `latent_dim` (e.g. FactorVAE's discriminator input) to the model's."""
    config = objective.config
    if any(f.name == "latent_dim" for f in dataclasses.fields(config)):
        if config.latent_dim != latent_dim:
            return Component(objective.name, dataclasses.replace(config, latent_dim=latent_dim))
    return objective
