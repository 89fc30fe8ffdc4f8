"""The pictures every training run ends with: reconstructions, prior samples and loss curves."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from vaelab.io import atomic_write_bytes
from vaelab.viz.grid import image_grid, pad_value_for, to_pil
from vaelab.viz.labels import label_rows, row_centres
from vaelab.viz.losses import figure_to_png, plot_losses
from vaelab.viz.traversals import decode, model_device, prior_codes

__all__ = ["pil_to_png", "write_training_pictures"]

RECONSTRUCTION_COLUMNS = 8
SAMPLE_ROWS = SAMPLE_COLUMNS = 8


def pil_to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_training_pictures(
    model: nn.Module,
    dataset,
    log: Mapping[str, np.ndarray],
    run_dir: Path,
    rng: np.random.Generator,
) -> list[Path]:
    """Writes `reconstructions.png`, `samples.png` and `losses.png` into `run_dir`.

    * reconstructions.png: 2 rows x 8 columns, random dataset images above the decoded posterior
      means of their codes (the Non-Syn / UG-VAE "rows" layout), rows labelled "original" and
      "reconstruction" on the left.
    * samples.png: 8 x 8 decoded prior samples.
    * cluster_samples.png (mixture models): one row of 8 prior samples per cluster.
    * losses.png: every term of `log` over `log["step"]` (`plot_losses`).

    Args:
        model: the raw model; it is switched to eval mode for the pictures and restored after.
        dataset: an `ImageDataset` (batches come on its device).
        log: {column: (T,) array}, the training log.
        run_dir: the run directory (created if missing).
        rng: picks the images and seeds the prior samples.

    Returns:
        The written paths.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    n = min(RECONSTRUCTION_COLUMNS, len(dataset))
    index = np.sort(rng.choice(len(dataset), size=n, replace=False))
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = dataset.batch(index).to(model_device(model))
            recon = model.reconstruct(x).float().cpu()
            samples = decode(model, prior_codes(model, SAMPLE_ROWS * SAMPLE_COLUMNS, generator))
            samples = samples.cpu()
            per_cluster = None
            if model.num_clusters:  # one row of samples per cluster
                per_cluster = torch.cat([
                    decode(model, model.sample_prior(SAMPLE_COLUMNS, generator,
                                                     component=k)).cpu()
                    for k in range(model.num_clusters)])
    finally:
        model.train(was_training)
    originals = x.float().cpu()
    pad_value = pad_value_for(originals, getattr(dataset, "background", None))
    paths = []
    pictures = {
        "reconstructions.png": image_grid(torch.cat([originals, recon]), 2, n, pad_value=pad_value),
        "samples.png": image_grid(samples, SAMPLE_ROWS, SAMPLE_COLUMNS, pad_value=pad_value),
    }
    if per_cluster is not None:
        pictures["cluster_samples.png"] = image_grid(per_cluster, model.num_clusters,
                                                     SAMPLE_COLUMNS, pad_value=pad_value)
    pitch = originals.shape[-2] + 2
    for name, grid in pictures.items():
        image = (label_rows(grid, ["original", "reconstruction"], row_centres(2, pitch))
                 if name == "reconstructions.png" else to_pil(grid))
        atomic_write_bytes(run_dir / name, pil_to_png(image))
        paths.append(run_dir / name)
    atomic_write_bytes(run_dir / "losses.png", figure_to_png(plot_losses(dict(log))))
    paths.append(run_dir / "losses.png")
    return paths
