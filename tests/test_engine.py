"""The training engine: run directory contract, exact resume, NaN stop, refusal to overwrite."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import vaelab
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
