"""The dSprites variants of disentanglement_lib (`data/ground_truth/dsprites.py`: ColorDSprites,
NoisyDSprites, ScreamDSprites), as `data.variant` of `dsprites`: the samplers and the painting.
(`dsprites_scream`, dSprites with variant "scream" by default, is registered in `dsprites.py`.)

All three keep dSprites' five factors and items and turn each binary sprite image x (B, 1, 64,
64) into a colour image (B, 3, 64, 64) with fresh randomness every time an item is drawn, as dlib
draws it in `sample_observations_from_factors`:

* `color`: the sprite in one colour drawn per image uniformly from [0.5, 1]^3, on black:
  x * c with c ~ U(0.5, 1) per image and channel.
* `noisy`: the background replaced by uniform noise: min(x + n, 1) with n ~ U(0, 1) per pixel
  and channel (the sprite stays white).
* `scream`: a random 64x64 crop of Munch's "The Scream" (the painting shrunk with Pillow's
  `thumbnail` to fit 350x274, as dlib does), colour-shifted as (crop + s) / 2 with s ~ U(0, 1)^3
  per image, and the crop's colours inverted (1 - value) where the sprite is. Crop offsets are
  uniform over 0 .. H - 65 and 0 .. W - 65 (numpy's `randint(0, H - 64)` excludes the upper
  end, so dlib never uses the last row and column offset; kept for parity).

Randomness comes from the dataset's own torch generator (seeded by `data.variant_seed`) on the
storage device, so the pictures of one process are reproducible; a resumed run draws other
colours than an uninterrupted one would (the generator is not checkpointed), which leaves the
training distribution unchanged. `color` and `noisy` are fully offline; `scream` needs the
painting: `vaelab data dsprites_scream` downloads it (Wikimedia Commons, two URLs; no checksum
is published and the file can be revised upstream, so vaelab checks that it decodes as an image
large enough to crop), or `vaelab data dsprites_scream --from FILE` imports a copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from vaelab.data.base import DataError, data_home
from vaelab.data.download import Resource, fetch, is_offline

if TYPE_CHECKING:  # the sampler reads a config; dsprites.py imports this module
    from vaelab.data.dsprites import DSpritesConfig

__all__ = ["SCREAM", "VariantSampler", "fetch_scream", "load_scream", "make_sampler", "scream_path"]

SCREAM = Resource(
    "The_Scream.jpg",
    ("https://upload.wikimedia.org/wikipedia/commons/f/f4/The_Scream.jpg",
     "https://commons.wikimedia.org/wiki/Special:FilePath/The_Scream.jpg"),
    sha256="",  # none published; the decoded picture is checked instead
)
SCREAM_FIT = (350, 274)  # dlib: scream.thumbnail((350, 274, 3))
SIZE = 64


def scream_path(root: str = "") -> Path:
    return data_home(root or None) / "dsprites" / SCREAM.filename


def load_scream(path: Path) -> np.ndarray:
    """The painting as float32 (H, W, 3) in [0, 1], shrunk to fit 350x274 as dlib does.

    Raises:
        DataError: not an image, or too small to crop 64x64 patches from.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail(SCREAM_FIT)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path} is not a readable image ({error}); get The Scream with "
                        "`vaelab data dsprites_scream` or import a copy with --from FILE") from None
    if min(array.shape[:2]) <= SIZE:
        raise DataError(f"{path}: the painting shrinks to {array.shape[1]}x{array.shape[0]}, too "
                        f"small for {SIZE}x{SIZE} crops")
    return array


def fetch_scream(root: str = "", from_path: str | None = None) -> Path:
    target = scream_path(root)
    if from_path is not None:
        source = Path(from_path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"--from {source}: no such file (the painting, a JPEG)")
        load_scream(source)  # refuses anything that is not a usable picture
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target
    if target.is_file():
        return target
    if is_offline():
        raise DataError(f"dsprites variant 'scream' needs the painting The Scream at {target} "
                        "(offline: VAELAB_OFFLINE=1); import a copy with `vaelab data "
                        "dsprites_scream --from FILE`, or go online and run `vaelab data "
                        f"dsprites_scream` (from {SCREAM.urls[0]})")
    path = fetch(SCREAM, target.parent, dataset="dsprites_scream")
    try:
        load_scream(path)
    except DataError:
        path.unlink(missing_ok=True)
        raise
    return path


class VariantSampler:
    """Turns binary sprites (B, 1, 64, 64) into a variant's colour images (B, 3, 64, 64)."""

    def __init__(self, variant: str, seed: int = 0, scream: np.ndarray | None = None) -> None:
        if variant not in ("color", "noisy", "scream"):
            raise ValueError(f"unknown dSprites variant {variant!r}")
        if variant == "scream" and scream is None:
            raise ValueError("the scream variant needs the painting")
        self.variant, self.seed = variant, seed
        self._scream = None if scream is None else torch.from_numpy(scream).permute(2, 0, 1)
        self._generators: dict[torch.device, torch.Generator] = {}
        self._paintings: dict[torch.device, Tensor] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        generator = self._generators.get(device)
        if generator is None:
            generator = self._generators[device] = torch.Generator(device=device)
            generator.manual_seed(self.seed)
        return generator

    def __call__(self, sprites: Tensor) -> Tensor:
        device, b = sprites.device, len(sprites)
        g = self._generator(device)
        rgb = sprites.expand(-1, 3, -1, -1)
        if self.variant == "color":
            colour = torch.rand((b, 3, 1, 1), generator=g, device=device) * 0.5 + 0.5
            return rgb * colour
        if self.variant == "noisy":
            noise = torch.rand((b, 3, SIZE, SIZE), generator=g, device=device)
            return torch.clamp(rgb + noise, max=1.0)
        painting = self._paintings.get(device)
        if painting is None:
            painting = self._paintings[device] = self._scream.to(device)
        height, width = painting.shape[1:]
        top = torch.randint(0, height - SIZE, (b,), generator=g, device=device)
        left = torch.randint(0, width - SIZE, (b,), generator=g, device=device)
        shift = torch.rand((b, 3, 1, 1), generator=g, device=device)
        offsets = torch.arange(SIZE, device=device)
        rows = (top[:, None] + offsets)[:, :, None]  # (B, 64, 1)
        cols = (left[:, None] + offsets)[:, None, :]  # (B, 1, 64)
        patch = painting[:, rows, cols].permute(1, 0, 2, 3)  # (B, 3, 64, 64)
        background = (patch + shift) / 2
        return torch.where(rgb > 0.5, 1 - background, background)


def make_sampler(config: DSpritesConfig) -> VariantSampler | None:
    """The `VariantSampler` of `config.variant` (None for the plain binary dSprites)."""
    if not config.variant:
        return None
    scream = load_scream(fetch_scream(config.root)) if config.variant == "scream" else None
    return VariantSampler(config.variant, config.variant_seed, scream)
