"""dSprites' colour variants (disentanglement_lib's ColorDSprites, NoisyDSprites, ScreamDSprites)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.data import load_dataset
from vaelab.data.base import DataError
from vaelab.data.dsprites import DSpritesConfig
from vaelab.data.dsprites_variants import SCREAM, VariantSampler, load_scream


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    return tmp_path / "data"


def _sprites(n=8):
    dataset = load_dataset("dsprites", limit=4000)  # the first grid items, rendered, not cached
    index = np.linspace(0, 3999, n).astype(int)
    return dataset, dataset._unpack(index).float(), index


def test_color_variant_one_colour_per_image_in_half_to_one(offline_home):
    dataset, sprites, index = _sprites()
    dataset.variant = VariantSampler("color", seed=3)
    x = dataset.batch(index)
    assert x.shape == (8, 3, 64, 64) and dataset.image_shape == (3, 64, 64)
    on = sprites[:, 0] > 0.5
    assert (x.permute(1, 0, 2, 3)[:, ~on] == 0).all()  # black background
    colours = x.amax(dim=(2, 3))  # (8, 3): the sprite's colour
    for i in range(8):
        pixels = x[i][:, on[i]]  # (3, pixels)
        assert torch.equal(pixels, colours[i][:, None].expand_as(pixels))
    assert (colours >= 0.5).all() and (colours <= 1).all()
    g = torch.Generator().manual_seed(3)
    assert torch.allclose(colours, torch.rand((8, 3, 1, 1), generator=g)[:, :, 0, 0] * 0.5 + 0.5)
    assert not torch.equal(dataset.batch(index), x)  # fresh colours per draw
    assert dataset.uint8(index).dtype == torch.uint8


def test_noisy_variant_white_sprite_on_uniform_noise(offline_home):
    dataset, sprites, index = _sprites()
    dataset.variant = VariantSampler("noisy", seed=0)
    x = dataset.batch(index)
    on = (sprites > 0.5).expand(-1, 3, -1, -1)
    assert (x[on] == 1).all()
    background = x[~on]
    assert (background >= 0).all() and (background < 1).all()
    assert abs(background.mean().item() - 0.5) < 0.01 and abs(background.var().item() - 1 / 12) < 0.01
    assert not torch.equal(x[:, 0], x[:, 1])  # noise per channel


def test_scream_variant_colour_shifted_crop_inverted_under_the_sprite(offline_home):
    dataset, sprites, index = _sprites()
    painting = np.zeros((274, 300, 3), dtype=np.float32)
    painting[:] = (0.2, 0.4, 0.6)
    dataset.variant = VariantSampler("scream", seed=1, scream=painting)
    x = dataset.batch(index)
    on = sprites[:, 0] > 0.5
    for i in range(8):
        off_values = x[i][:, ~on[i]]  # (3, pixels): one colour, (c + s) / 2
        colour = off_values[:, 0]
        assert torch.allclose(off_values, colour[:, None].expand_as(off_values))
        shift = 2 * colour - torch.tensor([0.2, 0.4, 0.6])
        assert ((shift >= -1e-6) & (shift <= 1 + 1e-6)).all()
        assert torch.allclose(x[i][:, on[i]], (1 - colour)[:, None].expand(-1, int(on[i].sum())))
    # the crop is a 64x64 window of the painting, at offsets 0 .. H - 65
    ramp = np.zeros((100, 70, 3), dtype=np.float32)
    ramp[:, :, 0] = np.arange(100)[:, None] / 255
    ramp[:, :, 1] = np.arange(70)[None, :] / 255
    sampler = VariantSampler("scream", seed=0, scream=ramp)
    blank = torch.zeros(50, 1, 64, 64)
    crops = sampler(blank)
    rows = torch.diff(crops[:, 0], dim=1)  # (crop + s) / 2: one row step is 1/510
    assert torch.allclose(rows, torch.full_like(rows, 0.5 / 255), atol=1e-6)


def test_scream_painting_import_and_errors(offline_home, tmp_path, capsys):
    from vaelab.cli import main

    with pytest.raises(DataError, match="vaelab data dsprites_scream --from FILE"):
        load_dataset("dsprites", variant="scream", limit=4)
    picture = tmp_path / "munch.png"
    Image.fromarray(np.full((548, 700, 3), 120, dtype=np.uint8)).save(picture)
    not_a_picture = tmp_path / "notes.txt"
    not_a_picture.write_text("hello")
    assert main(["data", "dsprites_scream", "--from", str(not_a_picture)]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert not (offline_home / "dsprites" / SCREAM.filename).exists()
    assert main(["data", "dsprites_scream", "--from", str(picture)]) == 0
    assert SCREAM.filename in capsys.readouterr().out
    scream = load_scream(offline_home / "dsprites" / SCREAM.filename)
    assert scream.shape == (274, 350, 3)  # thumbnail to fit 350x274, aspect kept
    both = [load_dataset("dsprites", variant="scream", limit=4),
            load_dataset("dsprites_scream", limit=4)]
    for dataset in both:
        assert dataset.batch([0, 1]).shape == (2, 3, 64, 64)
    assert load_dataset("dsprites", variant="color", limit=2).batch([0]).shape == (1, 3, 64, 64)


def test_variant_config():
    from vaelab.registry import DATASETS

    assert DATASETS.get("dsprites").expected_shape(DSpritesConfig(variant="noisy")) == (3, 64, 64)
    assert DATASETS.get("dsprites").expected_shape(DSpritesConfig()) == (1, 64, 64)
    with pytest.raises(ValueError, match="variant"):
        DSpritesConfig(variant="blue")
    with pytest.raises(ValueError):
        VariantSampler("scream")
