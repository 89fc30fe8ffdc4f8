"""Plots, GIFs and the HTML report. Each module is imported here explicitly (the table of contents)."""

from vaelab.viz import grid, losses, summary, training_gif, traversals  # noqa: F401
from vaelab.viz.grid import image_grid
from vaelab.viz.summary import write_training_pictures
from vaelab.viz.training_gif import Callback, TrainingGif
from vaelab.viz.traversals import order_latents, traversal_values

__all__ = [
    "Callback",
    "TrainingGif",
    "image_grid",
    "order_latents",
    "traversal_values",
    "write_training_pictures",
]
