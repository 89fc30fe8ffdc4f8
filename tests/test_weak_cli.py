"""Weak supervision end to end from the CLI and the Python API: train a preset on dSprites pairs,
evaluate it, draw its pictures (docs/weak.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import vaelab
from vaelab.cli import main
from vaelab.presets import WEAK_DATASETS, WEAK_METHODS, load_preset

TINY = ["--set", "data.limit=1024", "--set", "train.steps=4", "--set", "train.batch_size=8",
        "--set", "train.log_every=2", "--set", "train.checkpoint_every=0", "--set",
        "train.metrics=", "--set", "train.gif_every=0", "--set", "model.latent_dim=4",
        "--no-progress", "--no-eval"]


def test_every_weak_method_has_a_preset_per_dataset():
    names = set(vaelab.list_names("presets"))
    for method in WEAK_METHODS:
        for data in WEAK_DATASETS:
            assert f"{method}_{data}" in names
    config = load_preset("ada_gvae_dsprites")
    assert config["data"]["batches"] == "pairs" and config["data"]["pair_k"] == 1


def test_train_eval_and_plot_an_ada_gvae_dsprites_run(tmp_path, capsys):
    assert main(["train", "ada_gvae_dsprites", "--out", str(tmp_path), "--name", "weak",
                 *TINY]) == 0
    run_dir = tmp_path / "weak"
    log = (run_dir / "train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert "shared" in header and "delta" in header and len(log) == 3
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["batches"] == "pairs" and config["objective"]["name"] == "ada_gvae"

    # metrics encode single images: the model is a plain Gaussian VAE
    assert main(["eval", str(run_dir), "--metrics", "mig,dci_fast", "--option",
                 "mig.num_train=300", "--option", "dci_fast.num_train=300", "--option",
                 "dci_fast.num_test=100", "--quiet"]) == 0
    scores = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(scores["mig"]) and 0.0 <= scores["dci_fast.disentanglement"] <= 1.0

    assert main(["plot", str(run_dir), "weak-pairs", "traversals", "--rows", "3"]) == 0
    picture = Image.open(run_dir / "plots" / "weak_pairs.png")
    assert picture.size[0] > 400 and picture.size[1] > 300
    assert (run_dir / "plots" / "prior_traversals.png").is_file()
    capsys.readouterr()

    # `all` draws the pairs picture for a run trained on pairs
    assert main(["plot", str(run_dir), "all", "--overwrite", "--points", "40", "--frames",
                 "2"]) == 0
    assert (run_dir / "plots" / "weak_pairs.png").is_file()


def test_python_api_trains_on_pairs_and_reports(tmp_path):
    run = vaelab.train(config={
        "name": "api", "seed": 1, "model": {"name": "burgess", "latent_dim": 3},
        "objective": {"name": "ml_vae", "beta": 2.0},
        "data": {"name": "toy_squares", "batches": "pairs", "pair_k": 0,
                 "pair_sampler": "simple_dynamics"},
        "train": {"steps": 3, "batch_size": 8, "log_every": 1, "checkpoint_every": 0,
                  "metrics": [], "progress": False},
    }, out=tmp_path, verbose=False)
    assert run.step == 3 and np.isfinite(run.log["loss"]).all()
    assert (run.log["shared"] >= 0).all() and (run.log["shared"] <= 3).all()
    report = vaelab.write_report([tmp_path / "api"], tmp_path / "report.html")
    assert "ml_vae" in report.read_text()


@pytest.mark.heavy  # trains a run to refuse its plot
def test_plot_of_a_run_without_factors_or_pairs_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path), "--name", "plain", "--set",
                 "data.name=toy_squares", "--set", "objective.name=vae", "--set",
                 "model.latent_dim=3", *TINY[2:]])
    assert code == 0
    # a run not trained on pairs still gets the picture on request (paper sampler, k = 1)
    assert main(["plot", str(tmp_path / "plain"), "weak-pairs"]) == 0
    assert (tmp_path / "plain" / "plots" / "weak_pairs.png").is_file()
    assert main(["plot", str(tmp_path / "plain"), "all", "--overwrite", "--points", "40",
                 "--frames", "2"]) == 0
    capsys.readouterr()


def test_the_weak_study_and_a_sweep_over_pair_options(tmp_path):
    from vaelab.sweep import load_sweep, parse_sweep
    from vaelab.sweep.runner import plan_trials
    from vaelab.sweep.trial import run_trial

    study = load_sweep("dsprites_weak_study")
    assert len(study.trials) == 12
    weak = [t for t in study.trials if t.config.objective.name != "beta_vae"]
    assert {t.config.data.config.batches for t in weak} == {"pairs"}
    assert {t.config.data.config.pair_k for t in weak} == {0, 1}
    beta = [t for t in study.trials if t.config.objective.name == "beta_vae"]
    assert {t.config.train.batch_size for t in beta} == {128}  # same images per step
    spec = parse_sweep({"set": {"data.name": "toy_squares", "model.latent_dim": 3,
                                "objective.name": "ada_mlvae", "data.batches": "pairs",
                                "train.steps": 3, "train.batch_size": 8, "train.log_every": 1,
                                "train.checkpoint_every": 0, "train.metrics": [],
                                "train.tb_images": False},
                        "axes": {"data.pair_sampler": ["paper", "simple_dynamics"]}})
    for trial in plan_trials(spec, tmp_path):
        assert run_trial(trial)["status"] == "done"


def test_a_bad_pair_option_is_one_clear_line(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path), "--set", "data.name=toy_squares", "--set",
                 "objective.name=ada_gvae", "--set", "data.batches=pairs", "--set",
                 "data.pair_k=5", *TINY[2:]])
    err = capsys.readouterr().err
    assert code == 2
    assert "vaelab: error: data.batches=pairs on toy_squares (factors size, pos_x, pos_y): " \
           "data.pair_k must be in 1..2" in err
    assert main(["train", "--out", str(tmp_path), "--set", "data.name=toy_squares", "--set",
                 "objective.name=ada_gvae", *TINY[2:]]) == 2
    assert "set data.batches=pairs" in capsys.readouterr().err
