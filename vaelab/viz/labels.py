"""Words on pictures: row labels beside pixel grids, a caption above them, and, for traversal
rows, which ground-truth factor each latent explains best.

A labelled grid is the plain pixel grid (`grid.image_grid`, unchanged, so its pixels stay exact)
with a white strip on its left holding one label per row, vertically centred on the row, and
optionally a white strip on top holding a caption. `best_factors` names, for every latent, the
factor with the largest normalised mutual information I(z_j; v_k) / H(v_k) (MIG's normalisation,
20-bin histogram codes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vaelab.metrics._info import discrete_entropy, discretize, mutual_information
from vaelab.viz.grid import to_pil

__all__ = [
    "FONT_SIZE",
    "best_factors",
    "caption",
    "label_rows",
    "latent_row_labels",
    "row_centres",
]

FONT_SIZE = 12
MARGIN = 6  # px around the text of a strip
MIN_SCORE = 0.05  # below this normalised MI a latent is said to explain no factor


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _text_width(text: str, font) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(np.ceil(right - left))


def row_centres(rows: int, pitch: int, pad: int = 2, top: int = 0) -> list[float]:
    """The vertical centre (px) of each of `rows` grid rows of `pitch` = cell + pad pixels."""
    return [top + pad + pitch * r + (pitch - pad) / 2 for r in range(rows)]


def label_rows(
    grid: np.ndarray | Image.Image,
    labels: Sequence[str],
    centres: Sequence[float],
    font_size: int = FONT_SIZE,
) -> Image.Image:
    """`grid` with a white strip on its left holding `labels[r]` centred at height `centres[r]`.

    The strip is as wide as the longest label plus a margin on each side, so nothing is clipped.
    """
    image = grid if isinstance(grid, Image.Image) else to_pil(grid)
    if len(labels) != len(centres):
        raise ValueError(f"{len(labels)} labels for {len(centres)} rows")
    font = _font(font_size)
    width = max((_text_width(label, font) for label in labels), default=0) + 2 * MARGIN
    canvas = Image.new(image.mode, (image.width + width, image.height), color="white")
    canvas.paste(image, (width, 0))
    draw = ImageDraw.Draw(canvas)
    for label, y in zip(labels, centres):
        draw.text((width - MARGIN, y), label, fill="black", font=font, anchor="rm")
    return canvas


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap of `text` into lines at most `width` px wide (a long word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(f"{lines[-1]} {word}", font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def caption(image: Image.Image, text: str, font_size: int = FONT_SIZE) -> Image.Image:
    """`image` with a white strip above it holding `text`, left-aligned and wrapped to the
    image's width (one line is `font_size` + 2 * MARGIN px high; each further line adds
    `font_size` + 2)."""
    font = _font(font_size)
    lines = _wrap(text, font, image.width - 2 * MARGIN)
    line_height = font_size + 2
    height = font_size + 2 * MARGIN + line_height * (len(lines) - 1)
    width = max(image.width, max(_text_width(line, font) for line in lines) + 2 * MARGIN)
    canvas = Image.new(image.mode, (width, image.height + height), color="white")
    canvas.paste(image, (width - image.width, height))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((MARGIN, MARGIN + font_size / 2 + i * line_height), line, fill="black",
                  font=font, anchor="lm")
    return canvas


def best_factors(
    codes: np.ndarray, factors: np.ndarray, factor_names: Sequence[str], num_bins: int = 20
) -> list[tuple[str, float]]:
    """For every latent j, the factor it explains best and its score I(z_j; v_k) / H(v_k).

    Args:
        codes: posterior means (N, D).
        factors: factor indices (N, F).
        factor_names: F names.
        num_bins: histogram bins of each latent (disentanglement_lib's 20).

    Returns:
        D pairs (factor name, score in [0, 1]); the name is "" when no factor scores
        `MIN_SCORE` or more, or when every factor is constant.
    """
    codes, factors = np.asarray(codes), np.asarray(factors, dtype=np.int64)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes (N, D) and factors (N, F) must match, got {codes.shape} and "
                         f"{factors.shape}")
    if factors.shape[1] != len(factor_names):
        raise ValueError(f"{len(factor_names)} factor names for {factors.shape[1]} factors")
    entropy = discrete_entropy(factors)  # (F,)
    mi = mutual_information(discretize(codes, num_bins), factors)  # (D, F)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(entropy > 0, mi / entropy, 0.0)
    result = []
    for j in range(codes.shape[1]):
        k = int(np.argmax(score[j]))
        value = float(score[j, k])
        result.append((factor_names[k] if value >= MIN_SCORE else "", value))
    return result


def latent_row_labels(
    dims: Sequence[int],
    kl: Sequence[float] | np.ndarray | None = None,
    factors: Sequence[tuple[str, float]] | None = None,
) -> list[str]:
    """One label per traversal row: "z3  KL 2.31  pos_x 0.62" (KL in nats, then the factor the
    latent explains best with its normalised MI; "-" when it explains none)."""
    labels = []
    for j in dims:
        parts = [f"z{int(j)}"]
        if kl is not None and len(kl) > int(j) and np.isfinite(kl[int(j)]):
            parts.append(f"KL {float(kl[int(j)]):.2f}")
        if factors is not None:
            name, score = factors[int(j)]
            parts.append(f"{name} {score:.2f}" if name else "-")
        labels.append("  ".join(parts))
    return labels
