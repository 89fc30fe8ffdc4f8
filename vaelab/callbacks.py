"""`Callback`: the hooks the training loop calls at named points (no framework, plain methods)."""

from __future__ import annotations

from typing import Any

__all__ = ["Callback", "StepProgress"]


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


class StepProgress(Callback):
    """Moves the progress bar (`ctx.bar`, a tqdm bar on rank 0) by one at every step, so it
    moves between log rows too; tqdm redraws at most twice a second, so a step costs an
    integer add."""

    def on_step_end(self, ctx: Any, step: int) -> None:
        bar = getattr(ctx, "bar", None)
        if bar is not None:
            bar.update(step - bar.n)
