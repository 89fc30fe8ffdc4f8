"""The study of Locatello et al. (2019): its presets and the unsupervised_study_v1 sweep grid."""

from __future__ import annotations

import collections

import pytest

from vaelab.presets import describe_preset, preset_names
from vaelab.presets.study import DATASETS, METHODS
from vaelab.sweep import load_sweep
from vaelab.workflow import build_run_config

# disentanglement_lib config/unsupervised_study_v1/sweep.py, get_default_models()
GRID = {
    "beta_vae": ("beta", [1.0, 2.0, 4.0, 6.0, 8.0, 16.0]),
    "annealed_vae": ("c_final", [5.0, 10.0, 25.0, 50.0, 75.0, 100.0]),
    "factor_vae": ("gamma", [10.0, 20.0, 30.0, 40.0, 50.0, 100.0]),
    "dip_vae_i": ("lambda_od", [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
    "dip_vae_ii": ("lambda_od", [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
    "beta_tcvae": ("beta", [1.0, 2.0, 4.0, 6.0, 8.0, 10.0]),
}


def test_presets_carry_the_study_protocol():
    names = [n for n in preset_names() if n.startswith("study_")]
    assert sorted(names) == sorted(f"study_{m}_{d}" for m in METHODS for d in DATASETS)
    for name in names:
        config = build_run_config(name, [])
        assert config.model.name == "dlib_conv" and config.model.config.latent_dim == 10
        assert config.objective.config.likelihood == "bernoulli"
        assert config.train.lr == 1e-4 and tuple(config.train.adam_betas) == (0.9, 0.999)
        assert config.train.steps == 300_000
        factor = config.objective.name == "factor_vae"
        assert config.train.batch_size == (128 if factor else 64)
        description = describe_preset(name)
        assert "dlib_conv" in description and "Burgess" in description
    annealed = build_run_config("study_annealed_vae_dsprites", []).objective.config
    assert (annealed.gamma, annealed.c_init, annealed.capacity_steps) == (1000.0, 0.0, 100_000)
    factor = build_run_config("study_factor_vae_dsprites", []).objective.config
    assert factor.lr_disc == 1e-4 and tuple(factor.betas_disc) == (0.5, 0.9)
    assert build_run_config("study_beta_tcvae_dsprites", []).objective.config.estimator == "mws"


def test_sweep_is_the_study_grid():
    spec = load_sweep("unsupervised_study_v1")
    assert len(spec.trials) == 6 * 6 * 50 == 1800  # dSprites only (the file says how to add one)
    seen = collections.defaultdict(set)
    seeds = collections.defaultdict(set)
    for trial in spec.trials:
        objective = trial.config.objective
        key, _ = GRID[objective.name]
        value = getattr(objective.config, key)
        seen[objective.name].add(value)
        seeds[(objective.name, value)].add(trial.config.seed)
        assert trial.config.model.name == "dlib_conv"
        assert trial.config.train.steps == 300_000
        if objective.name == "dip_vae_i":
            assert objective.config.lambda_d == 10 * objective.config.lambda_od
        if objective.name == "dip_vae_ii":
            assert objective.config.lambda_d == objective.config.lambda_od
        if objective.name == "annealed_vae":
            assert objective.config.gamma == 1000.0
    assert {m: sorted(v) for m, v in seen.items()} == {m: v for m, (_, v) in GRID.items()}
    assert all(s == set(range(50)) for s in seeds.values()) and len(seeds) == 36


def test_dry_run_prints_the_count_and_the_first_trials(capsys):
    from vaelab.cli import main

    assert main(["sweep", "unsupervised_study_v1", "--dry-run", "--show", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("unsupervised_study_v1: 1800 trials")
    assert out[1].startswith("study_beta_vae_dsprites-beta=1-seed=0 ")
    assert out[2].startswith("study_beta_vae_dsprites-beta=1-seed=1 ")
    assert out[3] == "... and 1798 more (--show 0 lists every trial)"
    assert out[-1] == "1800 trials"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_study_preset_trains_two_steps_on_toy_data(tmp_path, method):
    from vaelab.engine import fit

    config = build_run_config(f"study_{method}_dsprites", [
        "data.name=toy_squares", "data.image_size=64", "train.steps=2", "train.batch_size=8",
        "train.metrics=[]", "train.progress=false", "train.checkpoint_every=0"])
    run = fit(config, tmp_path / method)
    assert run.step == 2
