"""Name -> class/function registries for models, objectives, datasets, metrics and plots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to the classes or functions of one kind (model, metric, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under `name`; a duplicate name raises."""

        def decorate(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorate

    def get(self, name: str) -> T:
        """The item registered as `name`; an unknown name raises a KeyError listing the known ones."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


MODELS: Registry = Registry("model")
OBJECTIVES: Registry = Registry("objective")
DATASETS: Registry = Registry("dataset")
METRICS: Registry = Registry("metric")
PLOTS: Registry = Registry("plot")
