"""`Callback`: the hooks the training loop calls at named points (no framework, plain methods).

The engine (`vaelab.engine.fit`) runs the loop and calls every callback; what a run records (CSV
logs, progress bar, TensorBoard / W&B / MLflow, pictures, scores) are callbacks too, composed from
the run config by `vaelab.loggers.standard_callbacks`. This module imports nothing of vaelab, so
every layer can define callbacks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Callback", "StepProgress"]


class Callback:
    """Hooks the loop calls at named points; subclasses override what they need.

    `ctx` is the engine's `TrainContext`: the run config and directory, the raw model and
    objective, the dataset, the Fabric, the current step and whether the run was resumed.
    `on_close` is called whenever the loop ends (finished, interrupted or failed).
    """

    def on_train_start(self, ctx: Any) -> None: ...
    def on_step_end(self, ctx: Any, step: int) -> None: ...
    def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None: ...
    def on_validation(self, ctx: Any, step: int, row: dict[str, float]) -> None: ...
    def on_checkpoint(self, ctx: Any, step: int) -> None: ...
    def on_train_end(self, ctx: Any) -> None: ...
    def on_close(self, ctx: Any) -> None: ...


class StepProgress(Callback):
    """Moves `ctx.bar` (a progress bar made elsewhere) by one at every step."""

    def on_step_end(self, ctx: Any, step: int) -> None:
        bar = getattr(ctx, "bar", None)
        if bar is not None:
            bar.update(step - bar.n)
