"""Grid geometry, traversal ranges (known answers), latent ordering and traversal decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vaelab.distributions import DiagonalGaussian
from vaelab.models.vae import GaussianVAE
from vaelab.viz.grid import image_grid, pad_value_for, stack_rows, upsample
from vaelab.viz.traversals import (
    order_latents,
    traversal_range,
    traversal_values,
    traverse_latents,
)

Z975 = 1.959963984540054  # Phi^-1(0.975)
Z95 = 1.6448536269514722  # Phi^-1(0.95)


@pytest.mark.parametrize(("n", "size", "expected"), [(100, 64, 662), (100, 32, 342), (36, 32, 206)])
def test_grid_matches_disvae_sizes(n, size, expected):
    side = int(np.sqrt(n))
    grid = image_grid(np.zeros((n, 1, size, size), np.float32), side, side)
    assert grid.shape == (expected, expected)


def test_grid_places_images_row_by_row():
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1).repeat(3, 1) * 10  # RGB 1x1
    grid = image_grid(images, 2, 3, pad=1, pad_value=0.0)
    assert grid.shape == (5, 7, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 3, 0] == 10 and grid[1, 5, 0] == 20
    assert grid[3, 1, 0] == 30 and grid[3, 5, 0] == 50
    assert grid[0].max() == 0  # pad lines


def test_grid_rounds_like_save_image():
    grid = image_grid(np.array([[[[0.5]]], [[[1.0]]]]), 1, 2, pad=0)
    assert grid.tolist() == [[128, 255]]


def test_grid_wrong_size():
    with pytest.raises(ValueError, match="wrong size: 5 images for a grid of 2 rows x 3"):
        image_grid(np.zeros((5, 1, 4, 4)), 2, 3)
    with pytest.raises(ValueError, match="N, 1 or 3"):
        image_grid(np.zeros((6, 2, 4, 4)), 2, 3)


def test_pad_value_follows_background():
    dark, light = np.zeros((2, 1, 8, 8)), np.ones((2, 1, 8, 8))
    assert pad_value_for(dark) == 1.0 and pad_value_for(light) == 0.0
    assert pad_value_for(dark, background=1.0) == 0.0


def test_upsample_and_stack():
    up = upsample(np.array([[[[1, 2], [3, 4]]]]), 2)
    assert up[0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    # disvae's reconstruct-traverse: a 2-row grid over a 10-row grid of 64-px images is 796 high.
    top = image_grid(np.zeros((20, 1, 64, 64)), 2, 10)
    bottom = image_grid(np.zeros((100, 1, 64, 64)), 10, 10)
    assert stack_rows([top, bottom]).shape == (796, 662)
    with pytest.raises(ValueError, match="equal widths"):
        stack_rows([top, bottom[:, :10]])


@pytest.mark.parametrize(
    ("m", "mu", "sigma", "expected"),
    [
        (0.475, 0.0, 1.0, (-Z975, Z975)),  # prior, central 95%
        (0.45, 0.0, 1.0, (-Z95, Z95)),  # disvae help text example
        (2.0, 0.0, 1.0, (-2.0, 2.0)),  # absolute
        (0.5, 3.0, 0.1, (-0.5, 0.5)),  # absolute ignores the posterior
        (0.475, 1.5, 0.5, (1.5 - 0.5 * Z975, 1.5 + 0.5 * Z975)),  # centred on the posterior mean
    ],
)
def test_traversal_range_known_answers(m, mu, sigma, expected):
    assert traversal_range(m, mu, sigma) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mu", "sigma", "expected"),
    [
        (0.0, 1.0, (Z975, -Z975)),  # the seed runs the prior from +1.96 down to -1.96
        (1.0, 0.1, (-(1.0 - 0.1 * Z975), 1.0 - 0.1 * Z975)),  # centred on 0, mu > sigma z: flipped
        (0.1, 1.0, (Z975 - 0.1, 0.1 - Z975)),
    ],
)
def test_traversal_range_disvae_compat(mu, sigma, expected):
    assert traversal_range(0.475, mu, sigma, mode="disvae") == pytest.approx(expected)


def test_traversal_values_linspace():
    values = traversal_values(5, 0.475)
    assert values == pytest.approx(np.linspace(-Z975, Z975, 5))
    assert traversal_values(3, 2.0).tolist() == [-2.0, 0.0, 2.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_traversal": 0.0}, "max traversal"),
        ({"max_traversal": float("nan")}, "max traversal"),
        ({"max_traversal": 0.4, "sigma": 0.0}, "sigma"),
        ({"max_traversal": 0.4, "mode": "bogus"}, "mode"),
    ],
)
def test_traversal_range_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        traversal_range(**kwargs)


def test_order_latents_descending_and_stable():
    assert order_latents([0.1, 3.0, 0.5, 3.0, np.nan]).tolist() == [1, 3, 2, 0, 4]


class PixelDecoder(GaussianVAE):
    """A model whose image k-th pixel holds latent k (0.5 + z / 10), for exact traversal checks."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim, self.image_shape = 3, (1, 1, 3)
        self.dummy = nn.Parameter(torch.zeros(1))

    def generate(self, latents):
        return (0.5 + latents["z"] / 10).reshape(-1, 1, 1, 3)

    def posterior(self, x):
        mu = torch.tensor([[0.5, -1.0, 2.0]]).expand(len(x), 3)
        return {"z": DiagonalGaussian(mu, torch.log(torch.full_like(mu, 0.25)))}  # sigma = 0.5


def test_traverse_latents_moves_one_latent():
    base = {"z": torch.tensor([1.0, 2.0, 3.0])}
    images = traverse_latents(PixelDecoder(), base, [2, 0], np.array([-1.0, 1.0]))
    codes = (images.reshape(2, 2, 3) - 0.5) * 10
    np.testing.assert_allclose(codes[0].numpy(), [[1, 2, -1], [1, 2, 1]], atol=1e-5)
    np.testing.assert_allclose(codes[1].numpy(), [[-1, 2, 3], [1, 2, 3]], atol=1e-5)
