"""Training callbacks: the no-op `Callback` base and `TrainingGif`, which writes `training.gif`.

`TrainingGif` is disentangling-vae's `GifTraversalsTraining`, captured
every `every` optimiser steps instead of every epoch: prior traversals of all D latents in index
order (one row each), 10 points per latent over the central 95% of the prior (m = 0.475, i.e.
-1.96 to +1.96; the seed runs +1.96 to -1.96 because of its sign bug), written at 12 fps when
training ends. Each frame says its step above the grid and labels its rows z0..z{D-1}
(the labels are drawn when the GIF is written; the kept frames are the bare grids). Nothing is written when training is interrupted; the frames so far are kept with
every checkpoint (`checkpoints/training_gif_frames.npz`), so a resumed run ends with the same
frames as an uninterrupted one.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from vaelab.callbacks import Callback
from vaelab.io import atomic_write_bytes
from vaelab.viz.grid import image_grid, pad_value_for
from vaelab.viz.labels import caption, label_rows, row_centres
from vaelab.viz.traversals import model_device, traversal_latents, traversal_values

__all__ = ["Callback", "TrainingGif", "write_gif"]

GIF_FPS = 12
FRAMES_FILE = "training_gif_frames.npz"
POINTS_PER_LATENT = 10
MAX_TRAVERSAL = 0.475


def write_gif(frames: list[np.ndarray], fps: int = GIF_FPS) -> bytes:
    """GIF bytes of uint8 frames (H, W) or (H, W, 3), looping forever.

    Pillow merges a frame identical to the one before it into a longer frame, so a run whose
    pictures stop changing yields fewer frames than captured.
    """
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=0,
    )
    return buffer.getvalue()


def labelled_frame(frame: np.ndarray, step: int, rows: int) -> np.ndarray:
    """A bare traversal frame (`rows` rows of 10 cells) with its rows labelled z0..z{rows-1}
    and "step N: prior traversals" above it."""
    pitch = (frame.shape[0] - 2) // rows
    image = label_rows(frame, [f"z{j}" for j in range(rows)], row_centres(rows, pitch))
    text = f"step {step}: each row moves one latent (-1.96 to 1.96)"
    return np.asarray(caption(image, text))


class TrainingGif(Callback):
    """Captures a frame of prior traversals every `every` steps; writes `training.gif` at the end.

    A capture decodes D x 10 codes in one batch and copies them to the host as uint8 (the only host
    sync); between captures `on_step_end` is an integer test. Frames are kept as small uint8
    arrays; past `max_frames` every other frame is dropped and the interval doubles, so memory stays
    bounded on long runs. Only the global-zero process captures and writes.

    Args:
        every: steps between frames (>= 1).
        max_frames: most frames kept (>= 2).
    """

    def __init__(self, every: int, max_frames: int = 200) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {max_frames}")
        self.every = int(every)
        self.max_frames = int(max_frames)
        self.frames: list[np.ndarray] = []
        self.frame_steps: list[int] = []
        self._codes: dict[str, torch.Tensor] | None = None
        self._pad_value = 1.0
        self._last_step = 0
        self._last_capture = -1

    def on_train_start(self, ctx: Any) -> None:
        if not ctx.is_global_zero:
            return
        model = ctx.model
        values = traversal_values(POINTS_PER_LATENT, MAX_TRAVERSAL)
        # Row j moves latent j of the traversal latent alone, from the prior's centre:
        # (D * 10, D), and every other decoder input at the centre.
        latents = traversal_latents(model, model.prior_center(), range(model.traversal_dim),
                                    values)
        device = model_device(model)
        self._codes = {name: value.to(device) for name, value in latents.items()}
        sample = ctx.dataset.uint8(np.arange(min(16, len(ctx.dataset))))
        self._pad_value = pad_value_for(sample, getattr(ctx.dataset, "background", None))
        self.frames, self.frame_steps = [], []
        self._restore(ctx)

    def on_step_end(self, ctx: Any, step: int) -> None:
        self._last_step = step
        if step % self.every == 0 and ctx.is_global_zero:
            self.capture(ctx, step)

    def capture(self, ctx: Any, step: int) -> None:
        """Appends one frame (D rows x 10 columns of decoded prior traversals)."""
        if self._codes is None:
            self.on_train_start(ctx)
        model = ctx.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                images = model.generate(self._codes).float()  # (D * 10, C, H, W) in [0, 1]
                images = images.mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8).cpu()
        finally:
            model.train(was_training)
        rows = images.shape[0] // POINTS_PER_LATENT
        self.frames.append(
            image_grid(images.numpy(), rows, POINTS_PER_LATENT, pad_value=self._pad_value)
        )
        self.frame_steps.append(step)
        self._last_capture = step
        if len(self.frames) > self.max_frames:
            self.frames, self.frame_steps = self.frames[::2], self.frame_steps[::2]
            self.every *= 2

    # -- resume: the frames so far travel with the checkpoints ---------------------------------

    @staticmethod
    def _frames_file(ctx: Any):
        return ctx.run_dir / "checkpoints" / FRAMES_FILE

    def on_checkpoint(self, ctx: Any, step: int) -> None:
        if not ctx.is_global_zero or not self.frames:
            return
        buffer = io.BytesIO()
        np.savez(buffer, frames=np.stack(self.frames), steps=np.asarray(self.frame_steps),
                 every=np.asarray(self.every))
        atomic_write_bytes(self._frames_file(ctx), buffer.getvalue())

    def _restore(self, ctx: Any) -> None:
        """On resume, the frames captured up to the checkpoint's step (and the interval)."""
        path = self._frames_file(ctx)
        if not getattr(ctx, "step", 0) or not path.is_file():
            return
        with np.load(path) as saved:
            keep = saved["steps"] <= ctx.step
            self.frames = list(saved["frames"][keep])
            self.frame_steps = [int(v) for v in saved["steps"][keep]]
            self.every = int(saved["every"])
        if self.frame_steps:
            self._last_capture = self.frame_steps[-1]

    def on_train_end(self, ctx: Any) -> None:
        if not ctx.is_global_zero:
            return
        if self._last_step != self._last_capture and self._last_step > 0:
            self.capture(ctx, self._last_step)  # the trained model is always the last frame
        if self.frames:
            rows = ctx.model.traversal_dim
            frames = [labelled_frame(f, s, rows) for f, s in zip(self.frames, self.frame_steps)]
            atomic_write_bytes(ctx.run_dir / "training.gif", write_gif(frames))
