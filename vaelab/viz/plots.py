"""The `vaelab plot` kinds: every seed plot of disentangling-vae plus losses and latent maps.

Each kind is a `PlotKind` registered in `PLOTS`: `filenames(options)` names what it writes (so
existing files are checked before any work) and `make(run, options)` returns {filename: content},
where content is a PIL image, a matplotlib Figure, or a list of uint8 GIF frames. `make_plots`
(`vaelab.plotting`) saves them under `RUN/plots/`. Layouts follow disvae's `main_viz.py` plots,
with its defaults (6 rows, 7 columns, max traversal 2); traversal rows are latents ordered by
decreasing average KL (`Run.kl_per_latent`), and posterior quantile ranges are centred on the
posterior mean (the seed centres them on 0; `traversal_mode="disvae"` reproduces it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vaelab.data.base import FactorDataset
from vaelab.errors import VaelabError
from vaelab.registry import PLOTS
from vaelab.viz.grid import image_grid, pad_value_for, stack_rows, to_pil, upsample
from vaelab.viz.labels import best_factors, caption, label_rows, latent_row_labels, row_centres
from vaelab.viz.latents import (
    encode_means,
    plot_latent_projection,
    plot_mean_activations,
    project_latents,
)
from vaelab.viz.losses import figure_to_png, plot_losses
from vaelab.viz.summary import pil_to_png
from vaelab.viz.training_gif import write_gif
from vaelab.viz.traversals import (
    TRAVERSAL_MODES,
    decode,
    encode_posterior,
    order_latents,
    prior_codes,
    traversal_values,
    traverse_latents,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vaelab.runs import Run

__all__ = ["PlotKind", "PlotOptions", "encode_content", "plot_kind_order", "select_indices"]

MAX_GRID_SIDE = 100
KL_LABEL_WIDTH = 100  # px of the white label strip of reconstruct-traverse (as disvae)
GIF_FPS = 12
DEFAULT_ROWS = 6


@dataclass(frozen=True, kw_only=True)
class PlotOptions:
    """Options shared by the plot kinds (the `vaelab plot` flags)."""

    rows: int = 0  # grid rows; 0: 6 for image grids, every latent for traversal kinds
    cols: int = 7  # images per row (traversal points for traversals)
    max_traversal: float = 2.0  # >= 0.5: absolute range +-m; < 0.5: central 2m prior/posterior mass
    traversal_mode: str = "auto"  # "auto" (correct) | "disvae" (the seed's ranges, sign bug kept)
    posterior: bool = False  # traverse around the first selected image's posterior mean
    indices: tuple[int, ...] = ()  # dataset items shown first; the rest are drawn at random
    upsample: int = 1  # nearest-neighbour upsampling factor of every image
    seed: int = 1234  # picks the random items and prior samples
    factor: str = ""  # latent-projection colours: a factor name, "label" or "cluster"
    show_kl: bool = False  # reconstruct-traverse: the seed's KL strip on the right (no labels)
    plain: bool = False  # the seed's bare pixel grids: no row labels or captions
    frames: int = 15  # gif-traversals: traversal points (= frames)
    points: int = 1000  # latent-projection: images encoded

    def __post_init__(self) -> None:
        if not 0 <= self.rows <= MAX_GRID_SIDE:
            raise ValueError(f"rows must be in 1..{MAX_GRID_SIDE} (0: default), got {self.rows}")
        if not 1 <= self.cols <= MAX_GRID_SIDE:
            raise ValueError(f"cols must be in 1..{MAX_GRID_SIDE}, got {self.cols}")
        if not np.isfinite(self.max_traversal) or self.max_traversal <= 0:
            raise ValueError(f"max_traversal must be a finite number > 0, got {self.max_traversal}")
        if self.traversal_mode not in TRAVERSAL_MODES:
            raise ValueError(
                f"traversal_mode must be one of {TRAVERSAL_MODES}, got {self.traversal_mode!r}"
            )
        if not 1 <= self.upsample <= 16:
            raise ValueError(f"upsample must be in 1..16, got {self.upsample}")
        if not 2 <= self.frames <= 200:
            raise ValueError(f"frames must be in 2..200, got {self.frames}")
        if self.points < 10:
            raise ValueError(f"points must be >= 10, got {self.points}")
        if any(i < 0 for i in self.indices):
            raise ValueError(f"indices must be >= 0, got {list(self.indices)}")


Content = Union[Image.Image, "Figure", list]  # noqa: UP007 (a forward reference); list: uint8 GIF frames


@dataclass(frozen=True)
class PlotKind:
    """A named plot: the files it writes and how to make them from a loaded run."""

    name: str
    filenames: Callable[[PlotOptions], list[str]]
    make: Callable[[Run, PlotOptions], dict[str, Content]]
    needs_factors: bool = False
    needs_log: bool = False
    needs_clusters: bool = False
    in_all: bool = True  # made by "all" (where it applies)
    description: str = ""
    applies: Callable[[Run], bool] | None = None  # "all" makes it only where this is True


def _register(kind: PlotKind) -> PlotKind:
    return PLOTS.register(kind.name)(kind)


EXTRA_KINDS: list[PlotKind] = []


def register_kind(kind: PlotKind) -> PlotKind:
    """Registers a plot kind defined in another module (it runs after the built-in ones)."""
    EXTRA_KINDS.append(kind)
    return _register(kind)


# ----------------------------------------------------------------------------------------------
# Shared helpers


def select_indices(n_items: int, count: int, indices: tuple[int, ...], seed: int) -> np.ndarray:
    """`count` dataset indices: the given `indices` first, then distinct random others.

    Raises:
        VaelabError: an index is out of range, or the dataset has fewer than `count` items.
    """
    bad = [i for i in indices if i >= n_items]
    if bad:
        raise VaelabError(f"index {bad[0]} is out of range for a dataset of {n_items} images")
    if count > n_items:
        raise VaelabError(f"the plot needs {count} images but the dataset has only {n_items}")
    chosen = list(dict.fromkeys(indices))[:count]
    rest = np.setdiff1d(np.arange(n_items), chosen)
    extra = np.random.default_rng(seed).choice(rest, size=count - len(chosen), replace=False)
    return np.concatenate([np.asarray(chosen, dtype=np.int64), extra.astype(np.int64)])


def _images(run: Run, options: PlotOptions, count: int) -> torch.Tensor:
    """The first `count` selected dataset images, float (count, C, H, W) on the model device."""
    dataset = run.dataset()
    index = select_indices(len(dataset), count, options.indices, options.seed)
    return dataset.batch(index)


def _pad_value(run: Run) -> float:
    dataset = run.dataset()
    sample = dataset.uint8(np.arange(min(16, len(dataset))))
    return pad_value_for(sample, getattr(dataset, "background", None))


def _grid(run: Run, images: torch.Tensor, rows: int, cols: int, options: PlotOptions) -> np.ndarray:
    images = upsample(images.detach().float().cpu().numpy(), options.upsample)
    return image_grid(images, rows, cols, pad_value=_pad_value(run))


def _rows(options: PlotOptions, default: int) -> int:
    return options.rows or default


def _latent_order(run: Run) -> np.ndarray:
    latent_dim = run.model.traversal_dim
    kl = run.kl_per_latent()
    if len(kl) != latent_dim:  # no per-latent KL logged: index order
        return np.arange(latent_dim)
    return order_latents(kl)


def _traversal_dims(run: Run, options: PlotOptions) -> np.ndarray:
    latent_dim = run.model.traversal_dim
    rows = _rows(options, latent_dim)
    if rows > latent_dim:
        raise VaelabError(f"--rows {rows} exceeds the model's {latent_dim} latent dimensions")
    return _latent_order(run)[:rows]


FACTOR_LABEL_ITEMS = 5_000  # items encoded to name the factor each latent explains best


def _latent_factors(run: Run) -> list[tuple[str, float]] | None:
    """(factor, normalised MI) per latent on a random subset of factor data (cached on the run);
    None when the data has no factors."""
    cached = getattr(run, "_latent_factors", False)
    if cached is not False:
        return cached
    dataset = run.dataset()
    result = None
    if isinstance(dataset, FactorDataset):
        count = min(FACTOR_LABEL_ITEMS, len(dataset))
        index = np.sort(np.random.default_rng(0).choice(len(dataset), count, replace=False))
        means = encode_means(run.model, dataset, index)
        if means.shape[1] == run.model.traversal_dim:  # the codes are the traversal latent's
            result = best_factors(means, dataset.factors[index], dataset.factor_names)
    run._latent_factors = result
    return result


def _row_labels(run: Run, dims: np.ndarray) -> list[str]:
    kl = run.kl_per_latent()
    return latent_row_labels(dims, kl if len(kl) == run.model.traversal_dim else None,
                             _latent_factors(run))


def _pitch(images: torch.Tensor, options: PlotOptions) -> int:
    return images.shape[-2] * options.upsample + 2  # cell height plus the grid line, px


def _labelled(grid: np.ndarray, labels: list[str], pitch: int, title: str = "",
              top: int = 0) -> Image.Image:
    """`grid` with `labels` beside its rows (starting `top` px down) and `title` above it."""
    image = label_rows(grid, labels, row_centres(len(labels), pitch, top=top))
    return caption(image, title) if title else image


def _range_text(options: PlotOptions) -> str:
    m = options.max_traversal
    if m >= 0.5:
        return f"z from {-m:g} to {m:g}"
    return f"central {200 * m:g}% of the {'posterior' if options.posterior else 'prior'}"


def _traversal_grid(
    run: Run, options: PlotOptions, dims: np.ndarray, n: int, image: torch.Tensor | None
) -> torch.Tensor:
    """Decoded traversals (len(dims), n, C, H, W): prior, or around `image`'s posterior (1, C, H, W)."""
    if image is None:
        values = traversal_values(n, options.max_traversal, mode=options.traversal_mode)
        return traverse_latents(run.model, run.model.prior_center(), dims, values)
    base, mu, sigma = encode_posterior(run.model, image)
    mu, sigma = mu[0].cpu(), sigma[0].cpu()
    values = np.stack(
        [
            traversal_values(
                n, options.max_traversal, float(mu[j]), float(sigma[j]), options.traversal_mode
            )
            for j in dims
        ]
    )
    base = {name: value[:1] for name, value in base.items()}
    return traverse_latents(run.model, base, dims, values)


# ----------------------------------------------------------------------------------------------
# The kinds


def _data_samples(run: Run, options: PlotOptions) -> dict[str, Content]:
    rows = _rows(options, DEFAULT_ROWS)
    images = _images(run, options, rows * options.cols)
    return {"data_samples.png": to_pil(_grid(run, images, rows, options.cols, options))}


def _samples(run: Run, options: PlotOptions) -> dict[str, Content]:
    rows = _rows(options, DEFAULT_ROWS)
    generator = torch.Generator().manual_seed(options.seed)
    images = decode(run.model, prior_codes(run.model, rows * options.cols, generator))
    return {"samples.png": to_pil(_grid(run, images, rows, options.cols, options))}


def _reconstruct(run: Run, options: PlotOptions) -> dict[str, Content]:
    rows = _rows(options, DEFAULT_ROWS)
    if rows % 2:
        raise VaelabError(
            f"reconstruct needs an even number of rows (originals above "
            f"reconstructions), got --rows {rows}"
        )
    originals = _images(run, options, rows // 2 * options.cols)
    recon = run.model.reconstruct(originals).float()
    images = torch.cat([originals, recon])
    grid = _grid(run, images, rows, options.cols, options)
    if options.plain:
        return {"reconstruct.png": to_pil(grid)}
    labels = ["original"] * (rows // 2) + ["reconstruction"] * (rows // 2)
    return {"reconstruct.png": _labelled(grid, labels, _pitch(images, options))}


def _traversal_name(options: PlotOptions) -> str:
    return "posterior_traversals.png" if options.posterior else "prior_traversals.png"


def _traversals(run: Run, options: PlotOptions) -> dict[str, Content]:
    dims = _traversal_dims(run, options)
    image = _images(run, options, 1) if options.posterior else None
    grid = _traversal_grid(run, options, dims, options.cols, image)  # (R, n, C, H, W)
    flat = grid.reshape(-1, *grid.shape[2:])
    pixels = _grid(run, flat, len(dims), options.cols, options)
    if options.plain:
        return {_traversal_name(options): to_pil(pixels)}
    where = "the first image's posterior" if options.posterior else "the prior's centre"
    title = f"each row moves one latent ({_range_text(options)}) around {where}"
    labelled = _labelled(pixels, _row_labels(run, dims), _pitch(flat, options), title)
    return {_traversal_name(options): labelled}


def _label_strip(grid: np.ndarray, labels: list[str], centres: list[float]) -> Image.Image:
    """`grid` with a white strip on its right holding `labels` at row `centres` (px)."""
    image = to_pil(grid)
    canvas = Image.new(image.mode, (image.width + KL_LABEL_WIDTH, image.height), color="white")
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    for label, y in zip(labels, centres):
        draw.text((image.width + 6, y), label, fill="black", font=font, anchor="lm")
    return canvas


def _reconstruct_traverse(run: Run, options: PlotOptions) -> dict[str, Content]:
    dims = _traversal_dims(run, options)
    originals = _images(run, options, options.cols)
    recon = run.model.reconstruct(originals).float()
    top = _grid(run, torch.cat([originals, recon]), 2, options.cols, options)
    image = originals[:1] if options.posterior else None
    grid = _traversal_grid(run, options, dims, options.cols, image)
    bottom = _grid(run, grid.reshape(-1, *grid.shape[2:]), len(dims), options.cols, options)
    stacked = stack_rows([top, bottom])
    if options.plain and not options.show_kl:
        return {"reconstruct_traverse.png": to_pil(stacked)}
    if not options.show_kl:
        pitch = _pitch(originals, options)
        labels = ["original", "reconstruction", *_row_labels(run, dims)]
        centres = row_centres(2, pitch) + row_centres(len(dims), pitch, top=top.shape[0])
        return {"reconstruct_traverse.png": caption(
            label_rows(stacked, labels, centres),
            f"originals, reconstructions, then one row per latent ({_range_text(options)})")}
    side = originals.shape[-1] * options.upsample + 2  # cell pitch in px
    centres = [2 + side * i + (side - 2) / 2 for i in range(2)]
    centres += [top.shape[0] + 2 + side * i + (side - 2) / 2 for i in range(len(dims))]
    kl = run.kl_per_latent()
    labels = ["orig", "recon"] + [
        f"KL={kl[j]:.4f}" if len(kl) == run.model.traversal_dim else f"z{j}" for j in dims
    ]
    return {"reconstruct_traverse.png": _label_strip(stacked, labels, centres)}


def _gif_traversals(run: Run, options: PlotOptions) -> dict[str, Content]:
    dims = _traversal_dims(run, options)
    originals = _images(run, options, options.cols)
    per_image = [  # each (R, frames, C, H, W)
        _traversal_grid(run, options, dims, options.frames, originals[k : k + 1]).cpu()
        for k in range(options.cols)
    ]
    cells = torch.stack(per_image, dim=1)  # (R, cols, frames, C, H, W)
    frames = [
        _grid(run, cells[:, :, j].reshape(-1, *cells.shape[3:]), len(dims), options.cols, options)
        for j in range(options.frames)
    ]
    if not options.plain:
        labels, pitch = _row_labels(run, dims), _pitch(originals, options)
        frames = [np.asarray(_labelled(frame, labels, pitch,
                                       f"posterior traversal {j + 1}/{options.frames}"))
                  for j, frame in enumerate(frames)]
        width = max(frame.shape[1] for frame in frames)  # captions may widen a frame
        frames = [np.pad(f, ((0, 0), (0, width - f.shape[1])) + ((0, 0),) * (f.ndim - 2),
                         constant_values=255) for f in frames]
    return {"posterior_traversals.gif": frames}


def _losses(run: Run, options: PlotOptions) -> dict[str, Content]:
    if not run.log:
        raise VaelabError(f"{run.dir} has no training log (train_log.csv) to plot")
    return {"losses.png": plot_losses(run.log, title=run.config.name or run.dir.name)}


def _factor_dataset(run: Run, kind: str):
    dataset = run.dataset()
    if not isinstance(dataset, FactorDataset):
        raise VaelabError(
            f"{kind} needs ground-truth factors, and dataset {run.config.data.name!r} has none "
            "(use a factor dataset such as dsprites or toy_squares)"
        )
    return dataset


MEAN_ACTIVATION_ITEMS = 65_536


def _mean_activations(run: Run, options: PlotOptions) -> dict[str, Content]:
    dataset = _factor_dataset(run, "mean-activations")
    # The conditional means average over every other factor; a uniform random subset of
    # MEAN_ACTIVATION_ITEMS items (~2,000 per value of a 32-valued factor on dSprites) gives
    # the same curves as the whole grid in a fraction of the time.
    index = None
    if len(dataset) > MEAN_ACTIVATION_ITEMS:
        rng = np.random.default_rng(options.seed)
        index = np.sort(rng.choice(len(dataset), MEAN_ACTIVATION_ITEMS, replace=False))
    means = encode_means(run.model, dataset, index)
    factors = dataset.factors if index is None else dataset.factors[index]
    figure = plot_mean_activations(means, factors, dataset.factor_names, dataset.factor_sizes,
                                   group_labels=getattr(dataset, "shape_names", None))
    return {"mean_activations.png": figure}


def _projection_name(options: PlotOptions) -> str:
    return f"latent_projection_{options.factor}.png" if options.factor else "latent_projection.png"


def _default_colouring(dataset) -> str:
    """What projections are coloured by when no --factor is given: "shape" or the first factor
    of a factor dataset, else the labels, else nothing."""
    if isinstance(dataset, FactorDataset):
        names = list(dataset.factor_names)
        return "shape" if "shape" in names else names[0]
    return "label" if dataset.labels is not None else ""


def _projection_colours(
    run: Run, options: PlotOptions, index: np.ndarray
) -> tuple[np.ndarray | None, list[str] | None]:
    dataset = run.dataset()
    factor = options.factor or _default_colouring(dataset)
    if not factor:
        return None, None
    options = PlotOptions(**{**{f.name: getattr(options, f.name) for f in fields(PlotOptions)},
                             "factor": factor})
    if options.factor == "label":
        if dataset.labels is None:
            raise VaelabError(f"dataset {run.config.data.name!r} has no labels to colour by")
        return np.asarray(dataset.labels)[index], None
    if options.factor == "cluster":
        if not run.model.num_clusters:
            raise VaelabError(
                f"model {run.config.model.name!r} has no clusters (colouring by cluster needs a "
                "mixture model with a `cluster(x)` method, such as a GMVAE)"
            )
        with torch.no_grad():
            clusters = [
                run.model.cluster(dataset.batch(index[i : i + 256])).cpu().numpy()
                for i in range(0, len(index), 256)
            ]
        return np.concatenate(clusters), None
    names = list(getattr(dataset, "factor_names", ()))
    if options.factor not in names:
        known = ", ".join([*names, "label", "cluster"]) if names else "label, cluster"
        raise VaelabError(
            f"unknown colouring {options.factor!r} for dataset "
            f"{run.config.data.name!r}; known: {known}"
        )
    shapes = getattr(dataset, "shape_names", None) if options.factor == "shape" else None
    return dataset.factors[index, names.index(options.factor)], shapes


def _latent_projection(run: Run, options: PlotOptions) -> dict[str, Content]:
    dataset = run.dataset()
    count = min(options.points, len(dataset))
    index = np.sort(np.random.default_rng(options.seed).choice(len(dataset), count, replace=False))
    colours, categories = _projection_colours(run, options, index)
    means = encode_means(run.model, dataset, index)
    projections = {
        "PCA": project_latents(means, "pca", options.seed),
        "t-SNE": project_latents(means, "tsne", options.seed),
    }
    factor = options.factor or _default_colouring(dataset)
    figure = plot_latent_projection(projections, colours, factor, categories)
    return {_projection_name(options): figure}


KINDS = [
    PlotKind(
        "data-samples",
        lambda o: ["data_samples.png"],
        _data_samples,
        description="a grid of dataset images",
    ),
    PlotKind("samples", lambda o: ["samples.png"], _samples, description="decoded prior samples"),
    PlotKind(
        "reconstruct",
        lambda o: ["reconstruct.png"],
        _reconstruct,
        description="originals (top half) above their reconstructions (bottom half)",
    ),
    PlotKind(
        "traversals",
        lambda o: [_traversal_name(o)],
        _traversals,
        description="one row per latent (highest KL first), prior or posterior",
    ),
    PlotKind(
        "reconstruct-traverse",
        lambda o: ["reconstruct_traverse.png"],
        _reconstruct_traverse,
        description="originals, reconstructions, then traversal rows (KL labels optional)",
    ),
    PlotKind(
        "gif-traversals",
        lambda o: ["posterior_traversals.gif"],
        _gif_traversals,
        description="animated posterior traversals of several images",
    ),
    PlotKind(
        "losses",
        lambda o: ["losses.png"],
        _losses,
        needs_log=True,
        description="every logged term over steps, and KL per latent",
    ),
    PlotKind(
        "mean-activations",
        lambda o: ["mean_activations.png"],
        _mean_activations,
        needs_factors=True,
        description="mean code of each latent per ground-truth factor",
    ),
    PlotKind(
        "latent-projection",
        lambda o: [_projection_name(o)],
        _latent_projection,
        description="PCA and t-SNE of posterior means, coloured by a factor/label/cluster",
    ),
]
for _kind in KINDS:
    _register(_kind)


def plot_kind_order() -> list[str]:
    """Kind names in the order `all` runs them."""
    return [k.name for k in [*KINDS, *EXTRA_KINDS] if k.name in PLOTS]


# ----------------------------------------------------------------------------------------------
# Saving


def encode_content(filename: str, content: Content) -> bytes:
    """The bytes of a plot's file: PNG for a PIL image or a Figure, GIF for frames."""
    figures = sys.modules.get("matplotlib.figure")  # not loaded: content is no Figure
    if figures is not None and isinstance(content, figures.Figure):
        return figure_to_png(content)
    if isinstance(content, Image.Image):
        return pil_to_png(content)
    if filename.endswith(".gif"):
        return write_gif(list(content), fps=GIF_FPS)
    raise TypeError(f"cannot save {type(content).__name__} as {filename}")


def options_from_kwargs(**kwargs: Any) -> PlotOptions:
    """PlotOptions from keyword arguments, ignoring None values (unset CLI flags)."""
    names = {f.name for f in fields(PlotOptions)}
    return PlotOptions(**{k: v for k, v in kwargs.items() if k in names and v is not None})
