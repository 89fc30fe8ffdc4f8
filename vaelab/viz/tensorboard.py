"""`TensorBoardImages`: reconstructions and prior samples in TensorBoard every log interval (as
the UG-VAE seed saves them), and the run's hyper-parameters with its final terms at the end.
The same pictures go to every logger with an `on_images` hook (W&B, MLflow: `vaelab.loggers`).

Pictures use a fixed set of dataset items and a fixed sample generator, in eval mode under
no_grad, so they never touch the training's random stream. Only the global-zero process writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vaelab.callbacks import Callback
from vaelab.config import flat_dict as flat_hparams  # the name TensorBoard knows
from vaelab.viz.traversals import decode

__all__ = ["TensorBoardImages", "flat_hparams"]

IMAGES = 8


class TensorBoardImages(Callback):
    """Writes `images/reconstructions` and `images/samples` at each log row; hparams at the end."""

    def __init__(self) -> None:
        self._index: np.ndarray | None = None

    def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        writer = getattr(ctx, "writer", None)
        # the other loggers (W&B, MLflow) take the same pictures through `on_images`
        sinks = [c for c in getattr(ctx, "callbacks", ()) if hasattr(c, "on_images")]
        if (writer is None and not sinks) or not ctx.is_global_zero:
            return
        model = ctx.model
        if self._index is None:
            self._index = np.linspace(0, len(ctx.dataset) - 1, IMAGES).astype(np.int64)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                x = ctx.dataset.batch(self._index)
                recon = model.reconstruct(x).float()
                generator = torch.Generator().manual_seed(0)
                samples = decode(model, model.sample_prior(IMAGES, generator))
        finally:
            model.train(was_training)

        def clean(images: torch.Tensor) -> torch.Tensor:  # a diverging model may give NaN
            return torch.nan_to_num(images.cpu(), nan=0.0).clamp(0, 1)

        images = {"images/reconstructions": clean(torch.cat([x.float(), recon])),
                  "images/samples": clean(samples)}
        if writer is not None:
            for tag, batch in images.items():
                writer.add_images(tag, batch, step)
        if sinks:  # (N, C, H, W) in [0, 1] -> uint8 (N, H, W, C)
            arrays = {tag: batch.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
                      for tag, batch in images.items()}
            for sink in sinks:
                sink.on_images(ctx, step, arrays)

    def on_train_end(self, ctx: Any) -> None:
        writer = getattr(ctx, "writer", None)
        if writer is None or not ctx.is_global_zero:
            return
        final = {f"final/{k}": float(v) for k, v in (ctx.last_row or {}).items()
                 if k not in ("step", "epoch") and not (k.startswith("kl_") and k[3:].isdigit())}
        writer.add_hparams(flat_hparams(ctx.config), final, run_name="hparams")
