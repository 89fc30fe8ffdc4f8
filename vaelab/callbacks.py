"""`Callback`: the hooks the training loop calls at named points (no framework, plain methods)."""

from __future__ import annotations

from typing import Any

__all__ = ["Callback"]


class Callback:
    """Hooks the loop calls at named points; subclasses override what they need.

    `ctx` is the engine's `TrainContext`: the run config and directory, the raw model and
    objective, the dataset, the Fabric and the current step.
    """

    def on_train_start(self, ctx: Any) -> None: ...
    def on_step_end(self, ctx: Any, step: int) -> None: ...
    def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None: ...
    def on_validation(self, ctx: Any, step: int, row: dict[str, float]) -> None: ...
    def on_checkpoint(self, ctx: Any, step: int) -> None: ...
    def on_train_end(self, ctx: Any) -> None: ...
