"""Row labels and the factor each latent explains best (synthetic known answers)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vaelab.viz.labels import (
    best_factors,
    caption,
    label_rows,
    latent_row_labels,
    row_centres,
)


def test_best_factors_names_the_encoded_factor():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, 3, 4000), rng.integers(0, 10, 4000)], axis=1)
    codes = np.stack(
        [
            factors[:, 1] + 0.1 * rng.standard_normal(4000),  # z0 encodes "pos"
            rng.standard_normal(4000),  # z1 encodes nothing
            -2.0 * factors[:, 0] + 0.01 * rng.standard_normal(4000),  # z2 encodes "shape"
        ],
        axis=1,
    )
    result = best_factors(codes, factors, ("shape", "pos"))
    assert [name for name, _ in result] == ["pos", "", "shape"]
    assert result[0][1] > 0.9 and result[2][1] > 0.9 and result[1][1] < 0.05


def test_best_factors_bad_shapes():
    with pytest.raises(ValueError, match="must match"):
        best_factors(np.zeros((5, 2)), np.zeros((4, 1), int), ("a",))
    with pytest.raises(ValueError, match="2 factor names for 1 factors"):
        best_factors(np.zeros((4, 2)), np.zeros((4, 1), int), ("a", "b"))


def test_latent_row_labels():
    labels = latent_row_labels([2, 0], [0.5, 0.0, 3.14159], [("pos", 0.7), ("", 0.01), ("shape", 0.9)])
    assert labels == ["z2  KL 3.14  shape 0.90", "z0  KL 0.50  pos 0.70"]
    assert latent_row_labels([1]) == ["z1"]


def test_row_centres_and_label_strip():
    assert row_centres(2, 34) == [18.0, 52.0]
    grid = np.zeros((70, 50), np.uint8)
    image = label_rows(grid, ["original", "reconstruction"], row_centres(2, 34))
    pixels = np.asarray(image)
    strip = image.width - 50
    assert (pixels[:, strip:] == 0).all()  # the grid is pasted unchanged on the right
    ink = pixels[:, :strip] < 128
    rows = np.flatnonzero(ink.any(axis=1))
    assert rows.min() > 2 and rows.max() < 68 and ink[:34].any() and ink[36:].any()
    assert not ink[:, :3].any()  # nothing clipped at the left edge
    with pytest.raises(ValueError, match="2 labels for 1 rows"):
        label_rows(grid, ["a", "b"], [10.0])


def test_caption_on_top():
    image = caption(Image.new("L", (200, 30)), "step 10")
    pixels = np.asarray(image)
    assert image.size == (200, 54) and (pixels[24:] == 0).all() and (pixels[:24] < 128).any()


def test_loss_panels_have_units(fake_log):
    from vaelab.viz.losses import plot_losses, term_unit

    assert [term_unit(k) for k in ("loss", "valid/recon", "kl_3", "images_per_s", "warmup",
                                   "clusters_used")] == [
        "nats", "nats", "nats", "images / s", "weight (0 to 1)", ""]
    figure = plot_losses(fake_log)
    labels = {a.get_title(): a.get_ylabel() for a in figure.axes}
    assert labels["loss"] == labels["recon"] == labels["KL per latent"] == "nats"
    assert labels["images_per_s"] == "images / s"
