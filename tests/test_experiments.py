"""`vaelab experiment`: UG-VAE's domain-alignment and global-structure experiments."""

from __future__ import annotations

import json

import pytest

import vaelab
from vaelab.cli import main
from vaelab.errors import VaelabError


@pytest.fixture(scope="module")
def ugvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ug")
    config = {"name": "u", "seed": 1,
              "model": {"name": "ugvae", "K": 3, "z_dim": 4, "beta_dim": 3},
              "objective": {"name": "ugvae", "reduction": "mean"},
              "data": {"name": "dsprites_domains", "limit": 64, "batches": "random"},
              "train": {"steps": 6, "batch_size": 16, "log_every": 3, "metrics": [],
                        "progress": False, "checkpoint_every": 0}}
    vaelab.train(config=config, out=out, verbose=False, pictures=False)
    return out / "u"


def test_domain_alignment_from_the_cli(ugvae_run, capsys):
    assert main(["experiment", "domain_alignment", str(ugvae_run), "--batches", "10",
                 "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "experiment.domain_alignment.pure.linear_svm" in out
    scores = json.loads((ugvae_run / "metrics.json").read_text())
    for key in ("pure.linear_svm", "pure.rbf_svm", "three.linear_svm"):
        assert 0.0 <= scores[f"experiment.domain_alignment.{key}"] <= 1.0
    assert (ugvae_run / "plots" / "experiment_domain_alignment.png").is_file()
    assert scores["protocol"]["experiments"]["domain_alignment"]["bn"] == "train"


def test_global_structure_and_bn_modes(ugvae_run):
    from vaelab.experiments import run_experiment

    scores = run_experiment("global_structure", ugvae_run, batches=10, batch_size=8, bn="eval")
    assert 0.0 <= scores["experiment.global_structure.grouped_vs_random.linear_svm"] <= 1.0
    import numpy as np
    import torch

    from vaelab.experiments.ugvae import global_codes

    run = vaelab.load_run(ugvae_run)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    batches = [np.arange(8), np.arange(64, 72)]
    train_mode = global_codes(run.model, run.dataset(), batches, bn="train")
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    eval_mode = global_codes(run.model, run.dataset(), batches, bn="eval")
    assert train_mode.shape == eval_mode.shape == (2, 3)
    assert not np.allclose(train_mode, eval_mode)  # batch statistics differ from running ones


def test_experiments_need_a_global_latent(tmp_path, tiny, capsys):
    from vaelab.experiments import run_experiment

    vaelab.train(config=tiny(), out=tmp_path, verbose=False, pictures=False)
    with pytest.raises(VaelabError, match="batch-level \\(global\\) latent"):
        run_experiment("domain_alignment", tmp_path / "tiny")
    assert main(["experiment", "nope", str(tmp_path / "tiny")]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_interpolation_figures(ugvae_run):
    from PIL import Image

    from vaelab.experiments import run_experiment

    assert run_experiment("interpolation", ugvae_run, batches=10, batch_size=8) == {}
    plots = ugvae_run / "plots"
    grid = Image.open(plots / "experiment_interpolation.png")
    assert grid.size == (7 * 66 + 2, 7 * 66 + 2)  # 7 x 7 cells of 64 px with 2-px borders
    assert (plots / "experiment_interpolation_map.png").is_file()
    assert sorted(p.name for p in plots.glob("experiment_prior_interpolation_*.png")) == [
        f"experiment_prior_interpolation_{k}.png" for k in range(3)]  # K = 3
