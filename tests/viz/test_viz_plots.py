"""`vaelab plot` end to end on a tiny trained toy_squares run, plus its bad-input errors."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from vaelab.cli import main
from vaelab.data.base import ImageDataset
from vaelab.distributions import DiagonalGaussian
from vaelab.errors import VaelabError
from vaelab.models.vae import GaussianVAE
from vaelab.plotting import make_plots
from vaelab.runs import Run
from vaelab.viz.latents import conditional_means, plot_mean_activations
from vaelab.viz.plots import PlotOptions, _traversal_grid, select_indices

PITCH = 34  # 32-px images plus the 2-px line


def _size(path):
    with Image.open(path) as image:
        return image.size, getattr(image, "n_frames", 1)


@pytest.mark.parametrize(
    ("args", "filename", "size", "frames"),
    [
        (
            ["data-samples", "-r", "2", "-c", "3"],
            "data_samples.png",
            (3 * PITCH + 2, 2 * PITCH + 2),
            1,
        ),
        (["samples", "-r", "3", "-c", "2"], "samples.png", (2 * PITCH + 2, 3 * PITCH + 2), 1),
        (["reconstruct", "-r", "4", "-c", "3", "--plain"], "reconstruct.png", (104, 4 * PITCH + 2), 1),
        (["traversals", "-c", "5", "--plain"], "prior_traversals.png", (5 * PITCH + 2, 4 * PITCH + 2), 1),
        (
            ["traversals", "-r", "2", "-c", "5", "--posterior", "-t", "0.45", "--plain"],
            "posterior_traversals.png",
            (5 * PITCH + 2, 2 * PITCH + 2),
            1,
        ),
        (
            ["reconstruct-traverse", "-r", "2", "-c", "3", "--show-kl"],
            "reconstruct_traverse.png",
            (3 * PITCH + 2 + 100, 2 * (2 * PITCH + 2)),
            1,
        ),
        (
            ["gif-traversals", "-r", "2", "-c", "3", "--frames", "5", "--plain"],
            "posterior_traversals.gif",
            (3 * PITCH + 2, 2 * PITCH + 2),
            5,
        ),
        (["data-samples", "-r", "1", "-c", "2", "-u", "2"], "data_samples.png", (134, 68), 1),
    ],
)
def test_grid_kinds_write_exact_sizes(run_dir, args, filename, size, frames):
    assert main(["plot", str(run_dir), *args]) == 0
    path = run_dir / "plots" / filename
    assert path.stat().st_size > 0
    assert _size(path) == (size, frames)


@pytest.mark.parametrize(
    ("args", "filename"),
    [
        (["losses"], "losses.png"),
        (["mean-activations"], "mean_activations.png"),
        (["latent-projection", "--factor", "size", "--points", "40"], "latent_projection_size.png"),
    ],
)
def test_figure_kinds(run_dir, args, filename):
    assert main(["plot", str(run_dir), *args]) == 0
    (width, height), _ = _size(run_dir / "plots" / filename)
    assert width > 100 and height > 100


@pytest.mark.parametrize(
    ("args", "filename", "plain", "rows", "captioned"),
    [
        (["reconstruct", "-r", "4", "-c", "3"], "reconstruct.png", (104, 4 * PITCH + 2), 4, False),
        (["traversals", "-c", "5"], "prior_traversals.png", (5 * PITCH + 2, 4 * PITCH + 2), 4,
         True),
        (["reconstruct-traverse", "-r", "2", "-c", "3"], "reconstruct_traverse.png",
         (3 * PITCH + 2, 2 * (2 * PITCH + 2)), 4, True),
        (["gif-traversals", "-r", "2", "-c", "3", "--frames", "3"], "posterior_traversals.gif",
         (3 * PITCH + 2, 2 * PITCH + 2), 2, True),
    ],
)
def test_labelled_kinds_keep_the_grid_and_add_labels(run_dir, args, filename, plain, rows,
                                                      captioned):
    """By default rows are labelled on the left (a white strip) and traversals get a caption
    above; the pixel grid itself is the plain one, pasted unchanged at the bottom right."""
    assert main(["plot", str(run_dir), *args]) == 0
    labelled = np.asarray(Image.open(run_dir / "plots" / filename).convert("L"))
    assert main(["plot", str(run_dir), *args, "--plain", "--out-dir", str(run_dir / "p")]) == 0
    bare = np.asarray(Image.open(run_dir / "p" / filename).convert("L"))
    assert bare.shape == plain[::-1]
    height, width = labelled.shape
    strip, top = width - bare.shape[1], height - bare.shape[0]
    assert strip > 40  # room for "reconstruction" / "z3  KL 0.12  pos_x 0.30"
    assert (top > 10) == captioned
    np.testing.assert_array_equal(labelled[top:, strip:], bare)
    ink = labelled[top:, :strip] < 128  # dark text on the white strip
    assert ink.any(axis=1).sum() > 3 * rows  # text on every row
    pitch = bare.shape[0] // rows
    for r in range(rows):  # each row has its own label, centred on it
        assert ink[r * pitch + 2 : (r + 1) * pitch].any()


def test_traversal_row_labels_name_latent_kl_and_factor(run_dir):
    from vaelab.runs import load_run
    from vaelab.viz.plots import _row_labels

    run = load_run(run_dir)
    kl = run.kl_per_latent()
    dims = np.argsort(-kl)[:2]
    labels = _row_labels(run, dims)
    assert labels[0].startswith(f"z{dims[0]}  KL {kl[dims[0]]:.2f}  ")
    factor_names = vaelab.load_dataset("toy_squares").factor_names
    assert all(label.split("  ")[-1].split(" ")[0] in (*factor_names, "-") for label in labels)


def test_all_writes_every_applicable_kind(run_dir):
    assert (
        main(["plot", str(run_dir), "all", "-r", "2", "-c", "2", "--points", "30", "--frames", "3"])
        == 0
    )
    names = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert names == sorted(
        [
            "data_samples.png",
            "samples.png",
            "reconstruct.png",
            "prior_traversals.png",
            "reconstruct_traverse.png",
            "posterior_traversals.gif",
            "losses.png",
            "mean_activations.png",
            "latent_projection.png",
        ]
    )


def test_reconstruct_shows_chosen_items_first(run_dir):
    assert main(["plot", str(run_dir), "reconstruct", "-r", "2", "-c", "2", "-i", "17", "5",
                 "--plain"]) == 0
    grid = np.asarray(Image.open(run_dir / "plots" / "reconstruct.png"))
    images = vaelab.load_dataset("toy_squares").uint8([17, 5]).numpy()[:, 0]
    assert np.array_equal(grid[2:34, 2:34], images[0])
    assert np.array_equal(grid[2:34, 36:68], images[1])


def test_select_indices():
    picked = select_indices(10, 5, (7, 2), seed=0)
    assert picked[:2].tolist() == [7, 2] and len(set(picked.tolist())) == 5
    assert np.array_equal(picked, select_indices(10, 5, (7, 2), seed=0))
    with pytest.raises(VaelabError, match="out of range"):
        select_indices(10, 5, (10,), seed=0)
    with pytest.raises(VaelabError, match="needs 12 images"):
        select_indices(10, 12, (), seed=0)


class _Pixels(GaussianVAE):
    """Image pixel k holds latent k: posterior mu = (0.5, -1, 2), sigma = 0.5."""

    def __init__(self):
        super().__init__()
        self.latent_dim, self.image_shape = 3, (1, 1, 3)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def generate(self, latents):
        return latents["z"].reshape(-1, 1, 1, 3)

    def posterior(self, x):
        mu = torch.tensor([[0.5, -1.0, 2.0]]).expand(len(x), 3)
        return {"z": DiagonalGaussian(mu, torch.log(torch.full_like(mu, 0.25)))}


def test_posterior_traversal_is_centred_on_the_posterior_mean():
    z975 = 1.959963984540054
    run = SimpleNamespace(model=_Pixels())
    grid = _traversal_grid(
        run, PlotOptions(max_traversal=0.475), np.array([2, 0]), 3, torch.zeros(1, 1, 1, 3)
    )
    codes = grid.reshape(2, 3, 3).numpy()
    np.testing.assert_allclose(codes[0, :, 2], [2 - 0.5 * z975, 2, 2 + 0.5 * z975], rtol=1e-6)
    np.testing.assert_allclose(codes[0, :, :2], [[0.5, -1]] * 3)  # others stay at mu
    np.testing.assert_allclose(codes[1, :, 0], [0.5 - 0.5 * z975, 0.5, 0.5 + 0.5 * z975], rtol=1e-6)
    seed = (
        _traversal_grid(
            run,
            PlotOptions(max_traversal=0.475, traversal_mode="disvae"),
            np.array([2]),
            3,
            torch.zeros(1, 1, 1, 3),
        )
        .reshape(3, 3)
        .numpy()
    )
    v = 2 - 0.5 * z975  # the seed: (-v, v), centred on 0
    np.testing.assert_allclose(seed[:, 2], [-v, 0, v], rtol=1e-6, atol=1e-6)


def test_traversal_rows_follow_kl_order(run_dir):
    from vaelab.runs import load_run
    from vaelab.viz.plots import _traversal_dims

    run = load_run(run_dir)
    kl = run.kl_per_latent()
    assert _traversal_dims(run, PlotOptions(rows=2)).tolist() == np.argsort(-kl)[:2].tolist()


def test_conditional_means_known_answer():
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    means = np.array([[1.0, 0], [3.0, 0], [5.0, 1], [7.0, 1]])
    np.testing.assert_allclose(conditional_means(means, factors[:, 0], 2), [[2, 0], [6, 1]])
    np.testing.assert_allclose(conditional_means(means, factors[:, 1], 3)[:2], [[3, 0.5], [5, 0.5]])
    assert np.isnan(conditional_means(means, factors[:, 1], 3)[2]).all()


def test_mean_activations_one_row_per_active_latent():
    names, sizes = ("shape", "scale", "pos_x", "pos_y"), (3, 2, 4, 4)
    factors = np.stack(np.unravel_index(np.arange(96), sizes), axis=1)
    means = np.stack([factors[:, 2], factors[:, 1], np.full(96, 0.3)], axis=1).astype(float)
    figure = plot_mean_activations(means, factors, names, sizes)
    assert len(figure.axes) == 2 * 2 + 1  # latents 0 and 1 active; pos and scale; colourbar
    assert sorted(a.get_xlabel() for a in figure.axes if a.get_xlabel()) == [
        "position\n(pos_x down, pos_y across)", "scale"]
    colourbar = figure.axes[-1]  # the position maps' scale, above them
    assert colourbar.get_title() == "mean code"
    assert colourbar.get_xlim() == pytest.approx((0.0, 3.0))  # the active latents' range
    assert sorted(a.get_ylabel() for a in figure.axes if a.get_ylabel()) == ["$z_{0}$", "$z_{1}$"]
    pos_map = figure.axes[0].images[0].get_array()  # latent 0 = pos_x: rows vary, columns do not
    np.testing.assert_allclose(pos_map, np.repeat(np.arange(4.0)[:, None], 4, axis=1))
    legend = figure.legends[0]  # one entry per shape, in the shape colours
    assert [t.get_text() for t in legend.get_texts()] == ["shape 0", "shape 1", "shape 2"]
    named = plot_mean_activations(means, factors, names, sizes, group_labels=("a", "b", "c"))
    assert [t.get_text() for t in named.legends[0].get_texts()] == ["a", "b", "c"]


def test_mean_activations_labels_are_not_clipped():
    """Every text of the figure (tick-free axes labels, legend, colourbar, titles) lies inside it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names, sizes = ("shape", "scale", "orientation", "pos_x", "pos_y"), (3, 2, 4, 4, 4)
    factors = np.stack(np.unravel_index(np.arange(384), sizes), axis=1)
    means = np.stack([factors[:, 3], factors[:, 1], factors[:, 2] * 0.5], axis=1).astype(float)
    figure = plot_mean_activations(means, factors, names, sizes, group_labels=("square",
                                   "ellipse", "heart"))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = figure.bbox
    texts = [t for t in figure.findobj(match=lambda a: hasattr(a, "get_text")) if
             hasattr(t, "get_window_extent") and getattr(t, "get_text", lambda: "")()]
    assert len(texts) > 8
    for text in texts:
        extent = text.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, text.get_text()
        assert extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1, text.get_text()


# ------------------------------------------------------------------------------------------
# Bad input


def _plot(run_dir, *args):
    return main(["plot", str(run_dir), *args])


def test_no_checkpoint(run_dir, capsys):
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    assert _plot(run_dir, "samples") == 2
    assert "has no checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reconstruct", "-r", "3"], "even number of rows"),
        (["traversals", "-r", "9"], "exceeds the model's 4 latent"),
        (["samples", "-c", "0"], "--cols must be >= 1"),
        (["samples", "-r", "101"], "rows must be in 1..100"),
        (["traversals", "-t", "-1"], "max_traversal must be a finite number > 0"),
        (["data-samples", "-i", "500"], "index 500 is out of range"),
        (["data-samples", "-r", "20", "-c", "20"], "needs 400 images"),
        (["latent-projection", "--factor", "colour"], "unknown colouring 'colour'"),
        (["latent-projection", "--factor", "label"], "has no labels"),
        (["latent-projection", "--factor", "cluster"], "has no clusters"),
        (["bogus"], "unknown plot 'bogus'"),
    ],
)
def test_bad_options(run_dir, capsys, args, message):
    assert _plot(run_dir, *args) == 2
    assert message in capsys.readouterr().err
    assert not any((run_dir / "plots").glob("*")) if (run_dir / "plots").exists() else True


def test_kind_needing_factors(run_dir, capsys, monkeypatch):
    plain = ImageDataset(vaelab.load_dataset("toy_squares").data, name="plain")
    monkeypatch.setattr(Run, "dataset", lambda self, **kw: plain)
    assert _plot(run_dir, "mean-activations") == 2
    assert "needs ground-truth factors" in capsys.readouterr().err
    # `all` skips it instead
    assert _plot(run_dir, "all", "-r", "2", "-c", "2", "--points", "20", "--frames", "2") == 0
    assert not (run_dir / "plots" / "mean_activations.png").exists()


def test_existing_files_are_kept_without_overwrite(run_dir, capsys):
    assert _plot(run_dir, "samples", "-r", "2", "-c", "2") == 0
    target = run_dir / "plots" / "samples.png"
    before = target.read_bytes()
    assert _plot(run_dir, "data-samples", "samples", "-r", "2", "-c", "3") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert target.read_bytes() == before
    assert not (run_dir / "plots" / "data_samples.png").exists()  # checked before any work
    assert _plot(run_dir, "samples", "-r", "2", "-c", "3", "--overwrite") == 0
    assert _size(target)[0] == (3 * PITCH + 2, 2 * PITCH + 2)


def test_unwritable_output_folder(run_dir, capsys):
    (run_dir / "plots").write_text("a file where the folder should be")
    assert _plot(run_dir, "samples") == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root ignores permissions
        folder = run_dir / "out"
        folder.mkdir(mode=0o500)
        with pytest.raises(VaelabError, match="not writable"):
            make_plots(run_dir, ["samples"], out_dir=folder)
