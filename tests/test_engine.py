"""The training engine: run directory contract, exact resume, NaN stop, refusal to overwrite."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

import vaelab
import vaelab.data.mnist
from vaelab.engine import Callback, TrainingDiverged, fit
from vaelab.factory import run_config_from_dict
from vaelab.runs import checkpoint_path, load_checkpoint, load_run


def _config(tiny, **train):
    return run_config_from_dict(tiny(**train))


def test_run_directory_contract(tmp_path, tiny):
    run = vaelab.train(config=tiny(checkpoint_every=6), out=tmp_path, verbose=False)
    d = tmp_path / "tiny"
    for name in ("config.json", "summary.json", "train_log.csv", "reconstructions.png",
                 "samples.png", "losses.png"):
        assert (d / name).is_file(), name
    assert checkpoint_path(d).is_file() and checkpoint_path(d, 6).is_file()
    assert list((d / "tb").glob("events.out.tfevents.*"))
    config = json.loads((d / "config.json").read_text())
    assert config["model"]["image_size"] == 32 and config["model"]["channels"] == 1  # resolved
    with open(d / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    for key in ("loss", "recon", "kl", "mi", "tc", "dw_kl", "kl_0", "kl_3", "images_per_s"):
        assert np.isfinite(float(rows[-1][key])), key
    summary = json.loads((d / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["images_per_s"] > 0
    assert summary["dataset_size"] == 192
    assert run.step == 12 and run.model.training is False


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _straight_and_resumed(base, tmp_path, at):
    """Runs `base` straight, and again Ctrl-C'd at step `at` then resumed; returns both runs."""
    import signal

    class CtrlC(Callback):
        def on_step_end(self, ctx, step):
            if step == at:
                signal.raise_signal(signal.SIGINT)

    fit(run_config_from_dict(base), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt, match=f"stopped at step {at}"):
        fit(run_config_from_dict(base), tmp_path / "cut", callbacks=[CtrlC()])
    fit(run_config_from_dict(base), tmp_path / "cut", resume=True)
    return load_run(tmp_path / "straight"), load_run(tmp_path / "cut")


@pytest.mark.parametrize("objective", ["beta_tcvae", "factor_vae"])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, tiny, objective):
    base = tiny(steps=14, checkpoint_every=0)
    base["objective"] = {"name": objective}
    # 14 steps of batch 16 over 192 images cross an epoch boundary at step 12.
    fit(run_config_from_dict(base), tmp_path / "straight")

    # A real Ctrl-C sets a flag checked at the end of the step; simulate it via the handler.
    import signal

    class CtrlC(Callback):
        def on_step_end(self, ctx, step):
            if step == 9:
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="stopped at step 9"):
        fit(run_config_from_dict(base), tmp_path / "cut", callbacks=[CtrlC()])
    assert load_checkpoint(checkpoint_path(tmp_path / "cut"))["step"] == 9
    fit(run_config_from_dict(base), tmp_path / "cut", resume=True)
    a, b = load_run(tmp_path / "straight"), load_run(tmp_path / "cut")
    assert torch.equal(_params(a.model), _params(b.model))
    if objective == "factor_vae":  # the discriminator resumes exactly too
        assert torch.equal(_params(a.objective), _params(b.objective))
    assert a.log.keys() == b.log.keys()
    for key in a.log:
        if key != "images_per_s":
            np.testing.assert_allclose(a.log[key], b.log[key], rtol=1e-6, err_msg=key)


def test_exception_in_callback_propagates_without_checkpoint(tmp_path, tiny):
    class Boom(Callback):
        def on_step_end(self, ctx, step):
            if step == 3:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit(_config(tiny), tmp_path / "r", callbacks=[Boom()])
    assert not checkpoint_path(tmp_path / "r").exists()


def test_resume_with_more_steps(tmp_path, tiny):
    vaelab.train(config=tiny(steps=8), out=tmp_path, verbose=False, pictures=False)
    run = vaelab.train(resume=tmp_path / "tiny", overrides=["train.steps=12"], verbose=False,
                       pictures=False)
    assert run.step == 12 and list(run.log["step"]) == [4, 8, 12]


def test_existing_run_directory_is_refused_and_kept(tmp_path, tiny):
    vaelab.train(config=tiny(steps=4), out=tmp_path, verbose=False, pictures=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "tiny").rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="--resume"):
        vaelab.train(config=tiny(steps=4), out=tmp_path, verbose=False)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "tiny").rglob("*") if p.is_file()}
    assert before == after


def test_nan_loss_stops_with_step_and_term(tmp_path, tiny):
    class Poison(Callback):
        def on_step_end(self, ctx, step):
            if step == 6:
                with torch.no_grad():
                    for p in ctx.model.parameters():
                        p.fill_(float("nan"))

    config = _config(tiny, steps=12, log_every=2, checkpoint_every=4)
    with pytest.raises(TrainingDiverged, match=r"'loss' became nan between steps 7 and 8"):
        fit(config, tmp_path / "r", callbacks=[Poison()])
    # the last good checkpoint (step 4) stays and is finite
    state = load_checkpoint(checkpoint_path(tmp_path / "r"))
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_model_that_cannot_take_the_images_is_refused(tmp_path, tiny):
    data = tiny()
    data["model"]["image_size"] = 64
    with pytest.raises(vaelab.errors.VaelabError, match=r"takes images of shape \(1, 64, 64\)"):
        fit(run_config_from_dict(data), tmp_path / "r")


def test_batch_larger_than_dataset_is_refused(tmp_path, tiny):
    with pytest.raises(vaelab.errors.VaelabError, match="fewer than one batch"):
        fit(_config(tiny, batch_size=500), tmp_path / "r")


def test_load_run_errors(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_run(tmp_path)
    vaelab.train(config=tiny(steps=4), out=tmp_path, verbose=False, pictures=False)
    (tmp_path / "tiny" / "checkpoints" / "last.ckpt").write_bytes(b"garbage")
    with pytest.raises(vaelab.errors.VaelabError, match="cannot read checkpoint"):
        load_run(tmp_path / "tiny")


# ----------------------------------------------------------------------------------------------
# Validation, early stopping, batch sources and what reaches the objective


def test_validation_pass_on_a_holdout(tmp_path, tiny):
    run = fit(_config(tiny, steps=12, valid_every=4, valid_holdout=0.25, keep_best=True),
              tmp_path / "r")
    assert run.summary["dataset_size"] == 144  # 48 of the 192 images held out
    assert run.objective.dataset_size == 144  # beta-TCVAE's N is the training part
    with open(tmp_path / "r" / "valid_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    assert {"valid/loss", "valid/recon", "valid/tc", "valid/kl_0"} <= set(rows[0])
    best = load_checkpoint(checkpoint_path(tmp_path / "r").with_name("best.ckpt"))
    losses = [float(r["valid/loss"]) for r in rows]
    assert best["step"] == 4 * (1 + int(np.argmin(losses)))
    assert run.summary["validation"]["best_loss"] == pytest.approx(min(losses))
    # the train log is unchanged in form: no valid columns
    assert not any(k.startswith("valid/") for k in run.log)


def test_validation_terms_are_the_eval_mode_average_over_the_held_out_items(tmp_path, tiny):
    from vaelab.data.base import Batch

    run = fit(_config(tiny, steps=4, valid_every=4, valid_holdout=0.25), tmp_path / "r")
    with open(tmp_path / "r" / "valid_log.csv") as handle:
        logged = float(next(csv.DictReader(handle))["valid/recon"])
    held = np.sort(np.random.default_rng(3).permutation(192)[:48])  # the seed of tiny() is 3
    dataset = run.dataset()
    with torch.no_grad():
        # eval mode: z = mu, so the per-item recon is deterministic; weight each of 3 batches by 16
        recons = [run.objective.compute(run.model, Batch(dataset.batch(torch.as_tensor(chunk))),
                                        torch.tensor(4))["recon"].item()
                  for chunk in np.split(held, 3)]
    assert logged == pytest.approx(np.mean(recons), rel=1e-5)


def test_resume_with_validation_is_exact(tmp_path, tiny):
    base = tiny(steps=12, valid_every=3, valid_holdout=0.25, early_stopping=5)
    a, b = _straight_and_resumed(base, tmp_path, at=7)
    assert torch.equal(_params(a.model), _params(b.model))
    assert (tmp_path / "straight" / "valid_log.csv").read_text() == \
        (tmp_path / "cut" / "valid_log.csv").read_text()


def test_early_stopping_rule_of_the_gmvae_seed():
    from vaelab.engine import EarlyStopping

    # patience 15, delta 0.1: improvements must beat the best by more than 0.1; the 16th
    # consecutive pass without one stops.
    rule = EarlyStopping(15, 0.1)
    values = [10.0, 9.0, 8.95, 8.85, *([8.9] * 14), 8.79, *([8.8] * 16)]
    stops = [rule.update(v)[1] for v in values]
    # 9.0 improves; 8.95 does not (only 0.05 below 9.0); 8.85 does (0.15 below), at index 3;
    # then 14 passes of 8.9 and 8.79 (0.06 below 8.85: not enough) count 15 without one, and
    # the next pass is the 16th.
    assert rule.best == pytest.approx(8.85)
    first_stop = stops.index(True)
    assert first_stop == 3 + 16  # the 16th pass after the last improvement (index 3)
    fresh = EarlyStopping(2)
    assert [fresh.update(v)[1] for v in [1.0, 1.0, 1.0, 1.0]] == [False, False, False, True]
    never = EarlyStopping(0)
    assert not any(never.update(v)[1] for v in [1.0] * 50)  # patience 0: off


def test_early_stopping_ends_the_run(tmp_path, tiny):
    # a tiny learning rate and a huge delta: no pass after the first counts as an improvement
    config = _config(tiny, steps=40, lr=1e-12, valid_every=2, valid_holdout=0.25,
                     early_stopping=2, early_stopping_delta=1e9)
    run = fit(config, tmp_path / "r")
    assert run.step == 8 and run.summary["validation"]["stopped_early"] is True
    assert load_checkpoint(checkpoint_path(tmp_path / "r"))["step"] == 8


def test_validation_settings_are_checked(tmp_path, tiny):
    from vaelab.config import ConfigError
    from vaelab.data.base import DataError

    with pytest.raises(ConfigError, match="keep_best needs validation passes"):
        _config(tiny, keep_best=True)
    with pytest.raises(ConfigError, match="valid_holdout must be in"):
        _config(tiny, valid_holdout=1.0)
    with pytest.raises(DataError, match="no validation split.*valid_holdout"):
        fit(_config(tiny, valid_every=2), tmp_path / "r")


def test_labels_and_domains_reach_the_objective(tmp_path, tiny, monkeypatch):
    from vaelab.data.mixed import CelebAFaces
    from vaelab.objectives.elbo import ELBO
    from vaelab.registry import OBJECTIVES

    seen = []

    class Recording(ELBO):
        def compute(self, model, batch, step):
            seen.append((batch.index.clone(), batch.domains.clone(), batch.labels.clone()))
            return super().compute(model, batch, step)

    monkeypatch.setitem(OBJECTIVES._items, "recording", Recording)
    domains = np.array([0] * 40 + [1] * 24)
    images = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)
    images[40:] = 255
    dataset = CelebAFaces(images, domains, name="celeba_faces")
    data = tiny(steps=30, batch_size=8)
    data.update(objective={"name": "recording"},
                data={"name": "celeba_faces", "batches": "random", "proportion": 0.25,
                      "image_size": 32})
    fit(run_config_from_dict(data), tmp_path / "r", dataset=dataset)
    index = torch.cat([s[0] for s in seen])
    drawn = torch.cat([s[1] for s in seen])
    assert torch.equal(drawn, torch.as_tensor(domains)[index])
    assert torch.equal(torch.cat([s[2] for s in seen]), drawn)
    # 240 items at P(domain 0) = 0.25: sd 0.028; a 50/50 sampler (the seed's) would give 0.5
    assert abs((drawn == 0).float().mean().item() - 0.25) < 0.1


def test_batches_the_dataset_cannot_draw_are_refused(tiny):
    from vaelab.config import ConfigError

    data = tiny()
    data["data"]["batches"] = "pure"
    with pytest.raises(ConfigError, match="data.batches.*'shuffle'"):
        run_config_from_dict(data)


def test_resuming_a_finished_run_changes_nothing(tmp_path, tiny):
    vaelab.train(config=tiny(gif_every=4), out=tmp_path, verbose=False)
    d = tmp_path / "tiny"
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    run = vaelab.train(resume=d, verbose=False, evaluate=False, pictures=False)
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    assert before == after  # summary.json, training.gif, the logs: all as they were
    assert run.step == 12 and run.summary["steps"] == 12


def test_run_names_cannot_leave_out(tmp_path, tiny):
    from vaelab.errors import VaelabError

    for name in ("../escape", "a/b", "/abs", ".."):
        with pytest.raises(VaelabError, match="plain folder name"):
            vaelab.train(config=tiny(), name=name, out=tmp_path / "out", verbose=False)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out").exists()


def test_nan_before_any_checkpoint_says_so(tmp_path, tiny):
    class Poison(Callback):
        def on_step_end(self, ctx, step):
            with torch.no_grad():
                for p in ctx.model.parameters():
                    p.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="No checkpoint had been written yet"):
        fit(_config(tiny, checkpoint_every=0), tmp_path / "r", callbacks=[Poison()])


def test_a_start_that_fails_leaves_no_half_made_run(tmp_path, tiny):
    from vaelab.data.base import DataError

    config = _config(tiny)
    failing = dataclasses.replace(config, data=dataclasses.replace(
        config.data, name="mnist", config=vaelab.data.mnist.MNISTConfig(
            root=str(tmp_path / "no_data"))))
    with pytest.raises(DataError, match="vaelab data mnist --from PATH"):
        fit(failing, tmp_path / "runs" / "r")
    assert not (tmp_path / "runs" / "r").exists()  # nothing half-made to trip --resume
    # A directory that already held something is never removed.
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        fit(failing, tmp_path / "kept")
    assert (tmp_path / "kept" / "notes.txt").read_text() == "mine"


def test_version_flag(capsys):
    from vaelab.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"vaelab {vaelab.__version__}"


def test_options_that_do_what_they_say(tmp_path, tiny):
    from vaelab.config import ConfigError, apply_overrides
    from vaelab.errors import VaelabError
    from vaelab.workflow import build_run_config

    # --set train.epochs wins over the preset's steps (the default preset has 6000 steps)
    assert build_run_config("default", ["train.epochs=2"]).train.steps == 0
    assert build_run_config("default", ["train.epochs=2", "train.steps=7"]).train.steps == 7
    assert apply_overrides({"train": {"steps": 5}}, ["train.lr=0.1"])["train"]["steps"] == 5
    with pytest.raises(ConfigError, match="train.metrics: unknown metric 'migg'"):
        run_config_from_dict(tiny(metrics=["migg"]))
    with pytest.raises(ConfigError, match=r"adam_betas must each be in \[0, 1\)"):
        run_config_from_dict(tiny(adam_betas=[0.9, 1.5]))
    with pytest.raises(VaelabError, match="needs a GPU.*bf16-mixed"), \
            pytest.warns(UserWarning, match="not supported on CPU"):  # Fabric's own warning
        fit(_config(tiny, precision="16-mixed", accelerator="cpu"), tmp_path / "r")
    vaelab.train(config=tiny(), out=tmp_path, verbose=False, pictures=False)
    with pytest.raises(VaelabError, match="only train.\\* settings may change"):
        vaelab.train(resume=tmp_path / "tiny", overrides=["model.latent_dim=8"], verbose=False)
    again = vaelab.train(resume=tmp_path / "tiny", overrides=["train.steps=16"], verbose=False,
                         pictures=False, evaluate=False)
    assert again.step == 16


def test_eval_batch_size_must_be_positive(tmp_path, capsys):
    from vaelab.cli import main

    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path), "--batch-size", "0"])
    assert "expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_no_tracebacks_for_bad_places_and_files(tmp_path, tiny, capsys):
    from vaelab.cli import main
    from vaelab.errors import VaelabError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = ["train", "--out", str(blocker), "--set", "data.name=toy_squares", "--set",
            "train.steps=2", "--set", "train.metrics=", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot create the run directory" in err and err.count("\n") == 1
    vaelab.train(config=tiny(), out=tmp_path, verbose=False, pictures=False)
    (tmp_path / "tiny" / "train_log.csv").write_text("step,loss\n4,abc\n")
    with pytest.raises(VaelabError, match="is not a vaelab training log"):
        load_run(tmp_path / "tiny")
    if not torch.cuda.is_available():
        with pytest.raises(VaelabError, match="no CUDA device is available here"):
            load_run(tmp_path / "tiny", device="cuda")


def test_os_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from vaelab.errors import run_cli_command

    def full_disk(args):
        raise OSError(28, "No space left on device", str(tmp_path / "x"))

    assert run_cli_command(full_disk, None) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: No space left on device") and err.count("\n") == 1

    def read_only(args):  # root ignores permissions, so the error is raised by hand
        raise PermissionError(13, "Permission denied", str(tmp_path / "runs"))

    assert run_cli_command(read_only, None) == 2
    err = capsys.readouterr().err
    assert "Permission denied" in err and err.count("\n") == 1 and "Traceback" not in err


def test_resumed_run_keeps_the_training_gif_frames(tmp_path, tiny):
    import signal

    from PIL import Image, ImageSequence

    base = tiny(steps=10, gif_every=2, checkpoint_every=0)
    fit(run_config_from_dict(base), tmp_path / "straight")

    class CtrlC(Callback):
        def on_step_end(self, ctx, step):
            if step == 5:
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit(run_config_from_dict(base), tmp_path / "cut", callbacks=[CtrlC()])
    fit(run_config_from_dict(base), tmp_path / "cut", resume=True)

    def frames(path):
        return [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(Image.open(path))]

    a, b = frames(tmp_path / "straight" / "training.gif"), frames(tmp_path / "cut" / "training.gif")
    assert len(a) == len(b) >= 2 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_tensorboard_gets_images_and_hparams(tmp_path, tiny):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit(_config(tiny, steps=8, log_every=4), tmp_path / "r")
    events = EventAccumulator(str(tmp_path / "r" / "tb"), size_guidance={"images": 0}).Reload()
    assert {"images/reconstructions", "images/samples"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("images/samples")] == [4, 8]
    assert "train/loss" in events.Tags()["scalars"]
    assert list((tmp_path / "r" / "tb").rglob("hparams/events.out.tfevents.*"))


def test_progress_bar_moves_every_step(tmp_path, tiny, capsys):
    seen = []

    class Watch(Callback):
        def on_step_end(self, ctx, step):
            seen.append(ctx.bar.n)

    fit(_config(tiny, steps=6, log_every=6, progress=True), tmp_path / "r", callbacks=[Watch()])
    assert seen == [1, 2, 3, 4, 5, 6]  # between log rows too (one row here, at step 6)
    assert "6/6" in capsys.readouterr().err


def test_resume_redraws_the_plots_it_made_stale(tmp_path, tiny, capsys):
    from vaelab.plotting import make_plots
    from vaelab.viz.report import stale_plots

    vaelab.train(config=tiny(), out=tmp_path, verbose=False, evaluate=False)
    d = tmp_path / "tiny"
    make_plots(d, ["samples"])
    before = (d / "plots" / "samples.png").read_bytes()
    (d / "plots" / "mine.png").write_bytes(before)  # a picture no plot kind writes by default
    vaelab.train(resume=d, overrides=["train.steps=24"], evaluate=False)
    assert "redrew 1 picture(s)" in capsys.readouterr().err
    assert (d / "plots" / "samples.png").read_bytes() != before  # drawn from the resumed model
    assert stale_plots(d) == ["plots/mine.png"]  # still named stale in the report


def test_dynamic_binarisation_draws_a_fresh_bernoulli_image_per_step(tmp_path, tiny, monkeypatch):
    from vaelab.data.base import ImageDataset
    from vaelab.objectives.elbo import ELBO
    from vaelab.registry import OBJECTIVES

    seen = []

    class Recording(ELBO):
        def compute(self, model, batch, step):
            if model.training:
                seen.append((batch.index.clone(), batch.x.detach().clone()))
            return super().compute(model, batch, step)

    monkeypatch.setitem(OBJECTIVES._items, "recording", Recording)
    # every pixel of item i is grey level g_i, so P(pixel = 1) = g_i / 255
    grey = torch.arange(32, dtype=torch.uint8) * 8
    dataset = ImageDataset(grey[:, None, None, None].expand(32, 1, 32, 32).contiguous(),
                           name="toy_squares")
    data = tiny(steps=40, batch_size=16, binarize="dynamic")
    data["objective"] = {"name": "recording"}
    fit(run_config_from_dict(data), tmp_path / "b", dataset=dataset)
    index = torch.cat([s[0] for s in seen])
    x = torch.cat([s[1] for s in seen])
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # 1,024 pixels per image, 20 visits per item: the mean per item is within 0.01 of g / 255
    means = torch.zeros(32).index_add_(0, index, x.flatten(1).mean(1)) / torch.bincount(index)
    np.testing.assert_allclose(means.numpy(), grey.numpy() / 255, atol=0.01)
    first, second = (x[index == 16][k] for k in (0, 1))  # one item's two visits differ
    assert not torch.equal(first, second)
    with pytest.raises(ValueError, match="binarize must be one of"):
        run_config_from_dict(tiny(binarize="always"))


def test_resume_with_dynamic_binarisation_is_exact(tmp_path, tiny):
    base = tiny(steps=10, checkpoint_every=5, binarize="dynamic")
    fit(run_config_from_dict(base), tmp_path / "straight")
    fit(run_config_from_dict({**base, "train": {**base["train"], "steps": 5}}), tmp_path / "cut")
    fit(run_config_from_dict(base), tmp_path / "cut", resume=True)
    a, b = load_run(tmp_path / "straight"), load_run(tmp_path / "cut")
    assert torch.equal(_params(a.model), _params(b.model))


def test_cosine_schedule_sets_every_optimisers_rate(tmp_path, tiny, monkeypatch):
    import math

    from vaelab.objectives.factor import FactorVAE
    from vaelab.registry import OBJECTIVES

    rates = []

    class Recording(FactorVAE):
        def update(self, updater, model, batch, step):
            rates.append((updater.optimizer.param_groups[0]["lr"],
                          updater.own_optimizer.param_groups[0]["lr"]))
            return super().update(updater, model, batch, step)

    monkeypatch.setitem(OBJECTIVES._items, "recording", Recording)
    data = tiny(steps=9, lr=1e-3, lr_schedule="cosine", lr_final=0.1)
    data["objective"] = {"name": "recording"}
    fit(run_config_from_dict(data), tmp_path / "c")
    disc = rates[0][1]  # the discriminator's own starting rate
    for step, (lr, own) in enumerate(rates):  # step t of T = 9: 0.1 + 0.9 (1 + cos(pi t / 8)) / 2
        factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / 8))
        assert lr == pytest.approx(1e-3 * factor, rel=1e-12), step
        assert own == pytest.approx(disc * factor, rel=1e-12), step
    assert rates[-1][0] == pytest.approx(1e-4)
    for bad in ({"lr_schedule": "step"}, {"lr_final": 1.5}):
        with pytest.raises(ValueError, match="lr_schedule must be|lr_final is a fraction"):
            run_config_from_dict(tiny(**bad))


def test_resume_with_a_cosine_schedule_is_exact(tmp_path, tiny):
    # interrupted at step 5 (not a 5-step run resumed to 10: T is part of the schedule)
    base = tiny(steps=10, checkpoint_every=0, lr_schedule="cosine")
    a, b = _straight_and_resumed(base, tmp_path, at=5)
    assert torch.equal(_params(a.model), _params(b.model))


def test_fused_adam_is_the_same_update_in_one_kernel(tmp_path, tiny, monkeypatch):
    """train.fused_adam: both optimisers (FactorVAE's discriminator too) are PyTorch's fused Adam
    with the run's settings, and the run tracks the unfused one to float rounding."""
    from vaelab.objectives.factor import FactorVAE
    from vaelab.registry import OBJECTIVES

    seen = []

    class Recording(FactorVAE):
        def update(self, updater, model, batch, step):
            if int(step) == 1:
                seen.append(_params(model))
            seen.append((updater.optimizer, updater.own_optimizer))
            return super().update(updater, model, batch, step)

    monkeypatch.setitem(OBJECTIVES._items, "recording", Recording)
    runs = {}
    for fused in (False, True):
        data = tiny(steps=8, lr=1e-3, fused_adam=fused, checkpoint_every=0)
        data["objective"] = {"name": "recording"}
        runs[fused] = fit(run_config_from_dict(data), tmp_path / f"f{fused}")
        model_opt, disc_opt = seen[-1]
        assert bool(model_opt.param_groups[0].get("fused")) is fused
        assert bool(disc_opt.param_groups[0].get("fused")) is fused
        assert model_opt.param_groups[0]["lr"] == 1e-3
        assert disc_opt.param_groups[0]["betas"] == (0.5, 0.9)  # the discriminator's own
    a, b = _params(runs[False].model), _params(runs[True].model)
    assert (a - seen[0]).abs().max() > 1e-3  # 8 steps at lr 1e-3 moved the weights ...
    assert torch.allclose(a, b, rtol=0, atol=1e-5), (a - b).abs().max()  # ... both the same way
    with pytest.raises(ValueError, match="fused_adam"):
        run_config_from_dict(tiny(fused_adam="sometimes"))


def test_fused_adam_rebuild_keeps_settings_and_refuses_a_stepped_optimiser():
    from vaelab.errors import VaelabError
    from vaelab.optim import fused

    w = torch.nn.Parameter(torch.randn(5, 3))
    groups = [{"params": [w], "lr": 0.01, "betas": (0.5, 0.9)}]
    plain = torch.optim.Adam(groups, weight_decay=0.1)
    one = fused(plain)
    assert isinstance(one, torch.optim.Adam) and one.param_groups[0]["fused"]
    assert one.param_groups[0]["lr"] == 0.01 and one.param_groups[0]["betas"] == (0.5, 0.9)
    assert one.param_groups[0]["weight_decay"] == 0.1
    assert fused(one) is one and fused(None) is None
    sgd = torch.optim.SGD([w], lr=0.1)
    assert fused(sgd) is sgd  # no fused kernel: unchanged
    # the same update as torch's reference Adam, to float rounding
    ref_w = torch.nn.Parameter(w.detach().clone())
    ref = torch.optim.Adam([{"params": [ref_w], "lr": 0.01, "betas": (0.5, 0.9)}],
                           weight_decay=0.1, foreach=False)
    for _ in range(5):
        for p, opt in ((w, one), (ref_w, ref)):
            opt.zero_grad()
            (p ** 3).sum().backward()
            opt.step()
    assert torch.allclose(w, ref_w, rtol=1e-6, atol=1e-7)
    assert not torch.equal(w, torch.zeros_like(w))
    with pytest.raises(VaelabError, match="before its first step"):
        fused(ref)
    differentiable = torch.optim.Adam([torch.nn.Parameter(torch.randn(3))], differentiable=True)
    with pytest.raises(VaelabError,
                       match="no fused Adam for these parameters or settings.*fused_adam=false"):
        fused(differentiable)  # settings with no fused kernel: one clear line, not a traceback


def test_resume_keeps_the_runs_own_adam_implementation(tmp_path, tiny):
    """A fused run resumed is exact, and a checkpoint's saved 'fused' flag does not leak."""
    from vaelab.optim import Updater

    base = tiny(steps=10, checkpoint_every=0, fused_adam=True)
    a, b = _straight_and_resumed(base, tmp_path, at=5)
    assert torch.equal(_params(a.model), _params(b.model))
    w = torch.nn.Parameter(torch.randn(3))
    plain = torch.optim.Adam([w])
    fast = torch.optim.Adam([torch.nn.Parameter(torch.randn(3))], fused=True)
    objective = torch.nn.Module()
    objective.configure_optimizer = lambda: None
    Updater(torch.nn.Linear(1, 1), plain, objective).load_state_dict(
        {"optimizer": fast.state_dict()})
    assert not plain.param_groups[0].get("fused")
