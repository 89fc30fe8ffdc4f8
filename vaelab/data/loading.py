"""`load_dataset(name, **options)`: any registered dataset by name."""

from __future__ import annotations

from typing import Any

from vaelab.config import Component, from_dict
from vaelab.data.base import ImageDataset
from vaelab.registry import DATASETS

__all__ = ["load_dataset", "load_dataset_component"]


def load_dataset(name: str, **options: Any) -> ImageDataset:
    """Loads the registered dataset `name` with config options, e.g. `load_dataset("mnist", limit=100)`.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        ConfigError: unknown option or wrong type.
        DataError: files missing or corrupt (the message says how to get them).
    """
    cls = DATASETS.get(name)
    return cls.load(from_dict(cls.config_class, options, prefix="data."))


def load_dataset_component(component: Component) -> ImageDataset:
    """Loads the dataset named by a run config's `data` section."""
    return DATASETS.get(component.name).load(component.config)
