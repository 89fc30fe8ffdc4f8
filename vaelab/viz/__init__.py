"""Plots, GIFs and the HTML report. Each module is imported here explicitly (the table of contents).

`plots` registers the `vaelab plot` kinds in `PLOTS`; `vaelab.plotting.make_plots` draws them
for a run directory (the pictures never load runs themselves).
"""

from vaelab.viz import (  # noqa: F401
    grid,
    latents,
    losses,
    plots,
    clusters,
    pairs,
    report,
    summary,
    training_gif,
    traversals,
)
from vaelab.viz.grid import image_grid
from vaelab.viz.latents import plot_latent_projection, plot_mean_activations
from vaelab.viz.losses import plot_losses
from vaelab.viz.plots import PlotOptions
from vaelab.viz.report import build_report, write_report
from vaelab.viz.summary import write_training_pictures
from vaelab.viz.training_gif import Callback, TrainingGif
from vaelab.viz.traversals import order_latents, traversal_values

__all__ = [
    "Callback",
    "PlotOptions",
    "TrainingGif",
    "build_report",
    "image_grid",
    "order_latents",
    "plot_latent_projection",
    "plot_losses",
    "plot_mean_activations",
    "traversal_values",
    "write_report",
    "write_training_pictures",
]
