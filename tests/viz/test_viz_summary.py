"""write_training_pictures and the TrainingGif callback."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.viz.summary import write_training_pictures
from vaelab.viz.training_gif import TrainingGif


def test_training_pictures_sizes_and_mode(tiny_model, toy_dataset, fake_log, tmp_path):
    tiny_model.train()
    paths = write_training_pictures(
        tiny_model, toy_dataset, fake_log, tmp_path, np.random.default_rng(0)
    )
    assert [p.name for p in paths] == ["reconstructions.png", "samples.png", "losses.png"]
    assert tiny_model.training  # mode restored
    # 8 columns of 32-px images with 2-px lines: 8 * 34 + 2 = 274 wide; 2 rows -> 70 high,
    # plus the strip on the left labelling the rows "original" and "reconstruction".
    width, height = Image.open(tmp_path / "reconstructions.png").size
    assert height == 70 and 274 + 60 < width < 274 + 160
    assert Image.open(tmp_path / "samples.png").size == (274, 274)
    assert Image.open(tmp_path / "losses.png").size[0] > 300


def test_training_pictures_top_row_is_the_data(tiny_model, toy_dataset, fake_log, tmp_path):
    write_training_pictures(tiny_model, toy_dataset, fake_log, tmp_path, np.random.default_rng(3))
    grid = np.asarray(Image.open(tmp_path / "reconstructions.png"))
    strip = grid.shape[1] - 274
    assert (grid[:, :strip] < 128).any()  # the row labels' ink
    grid = grid[:, strip:]
    index = np.sort(np.random.default_rng(3).choice(len(toy_dataset), 8, replace=False))
    first = toy_dataset.uint8(index[:1]).numpy()[0, 0]
    assert np.array_equal(grid[2:34, 2:34], first)
    assert (grid[0:2] == 255).all()  # black background -> white grid lines


def test_training_pictures_empty_log(tiny_model, toy_dataset, tmp_path):
    paths = write_training_pictures(tiny_model, toy_dataset, {}, tmp_path, np.random.default_rng(0))
    assert all(p.stat().st_size > 0 for p in paths)


def _ctx(model, dataset, run_dir, rank_zero=True):
    return SimpleNamespace(
        model=model,
        dataset=dataset,
        run_dir=Path(run_dir),
        config=None,
        device=torch.device("cpu"),
        is_global_zero=rank_zero,
    )


def _train_steps(gif, ctx, steps):
    gif.on_train_start(ctx)
    for step in range(1, steps + 1):
        with torch.no_grad():
            for parameter in ctx.model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        gif.on_step_end(ctx, step)
    gif.on_train_end(ctx)


def test_training_gif_frames_and_size(tiny_model, toy_dataset, tmp_path):
    tiny_model.train()
    gif = TrainingGif(every=3)
    _train_steps(gif, _ctx(tiny_model, toy_dataset, tmp_path), steps=10)
    assert tiny_model.training
    image = Image.open(tmp_path / "training.gif")
    # Frames at steps 3, 6, 9 and the final step 10; D = 4 rows x 10 columns of 32-px images,
    # with the rows labelled z0..z3 on the left and "step N: ..." above.
    assert image.n_frames == 4
    width, height = image.size
    assert 10 * 34 + 2 + 15 < width < 10 * 34 + 2 + 60 and height == 4 * 34 + 2 + 24
    assert image.info["duration"] == 80  # 12 fps: 83 ms, stored in hundredths


def test_training_gif_frame_is_prior_traversal(tiny_model, toy_dataset, tmp_path):
    from vaelab.viz.traversals import traverse_latents

    gif = TrainingGif(every=1)
    ctx = _ctx(tiny_model, toy_dataset, tmp_path)
    gif.on_train_start(ctx)
    gif.on_step_end(ctx, 1)
    expected = traverse_latents(
        tiny_model, {"z": torch.zeros(4)}, range(4), np.linspace(-1.959964, 1.959964, 10)
    )
    cell = gif.frames[0][2 + 34 : 2 + 34 + 32, 2 + 34 * 9 : 2 + 34 * 9 + 32]  # latent 1, last point
    want = np.clip(expected[1, 9, 0].numpy() * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(cell.astype(int) - want.astype(int)).max() <= 1


def test_training_gif_other_ranks_write_nothing(tiny_model, toy_dataset, tmp_path):
    gif = TrainingGif(every=1)
    _train_steps(gif, _ctx(tiny_model, toy_dataset, tmp_path, rank_zero=False), steps=3)
    assert not (tmp_path / "training.gif").exists()


def test_training_gif_thins_frames(tiny_model, toy_dataset, tmp_path):
    gif = TrainingGif(every=1, max_frames=4)
    _train_steps(gif, _ctx(tiny_model, toy_dataset, tmp_path), steps=9)
    assert len(gif.frames) <= 5 and gif.every >= 2


def test_training_gif_bad_interval():
    with pytest.raises(ValueError, match="every"):
        TrainingGif(every=0)


def test_engine_writes_training_gif(trained_run_template):
    # The fixture trains 30 steps with train.gif_every = 10: frames at steps 10, 20 and 30.
    image = Image.open(trained_run_template / "training.gif")
    assert image.n_frames == 3
    assert image.size[1] == 4 * 34 + 2 + 24  # the caption above the 4 rows


def test_training_gif_frames_say_their_step():
    """The caption differs exactly where the step's digits are drawn; the grid is unchanged."""
    from vaelab.viz.training_gif import labelled_frame

    frame = np.zeros((4 * 34 + 2, 10 * 34 + 2), np.uint8)
    first, later = labelled_frame(frame, 1, 4), labelled_frame(frame, 2000, 4)
    assert first.shape[0] == later.shape[0] == frame.shape[0] + 24
    assert (first[24:, -frame.shape[1]:] == frame).all()
    assert (first[:24] != later[:24]).any() and (first[24:] == later[24:]).all()
