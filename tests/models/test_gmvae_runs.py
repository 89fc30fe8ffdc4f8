"""The GMVAE end to end: Frey splits, CLI train/eval/plot/report, and its bad inputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.data.frey import Frey, FreyConfig
from vaelab.engine import fit
from vaelab.errors import VaelabError
from vaelab.workflow import build_run_config


@pytest.fixture
def frey_home(shared_data, tmp_path, monkeypatch):
    """A data folder holding the shared Frey file (copied: nothing is written beside it)."""
    home = tmp_path / "data"
    (home / "frey").mkdir(parents=True)
    shutil.copy(shared_data / "frey" / "frey_rawface.mat", home / "frey")
    monkeypatch.setenv("VAELAB_DATA", str(home))
    return home


def test_frey_splits_are_the_seeds(frey_home):
    sizes = {split: len(vaelab.load_dataset("frey", split=split)) for split in
             ("train", "valid", "test")}
    assert sizes == {"train": 1572, "valid": 196, "test": 197}
    stretched = vaelab.load_dataset("frey", split="valid", stretch=True).data
    flat = stretched.flatten(1)
    assert (flat.min(1).values == 0).all() and (flat.max(1).values == 255).all()


def test_gmvae_from_the_cli_train_eval_plot_report(frey_home, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["train", "gmvae_cnn_frey", "--out", str(out), "--name", "g", "--no-progress",
                 "--set", "train.epochs=0", "--set", "train.steps=6", "--set",
                 "train.valid_every=3", "--set", "train.log_every=3", "--set", "model.K=4"])
    assert code == 0, capsys.readouterr().err
    run_dir = out / "g"
    for name in ("cluster_samples.png", "samples.png", "valid_log.csv"):
        assert (run_dir / name).is_file(), name
    assert main(["eval", str(run_dir)]) == 0
    scores = json.loads((run_dir / "metrics.json").read_text())
    assert scores["protocol"]["metrics"]["clusters"]["scored_on"] == "the test split (held out)"
    test_images = vaelab.load_dataset("frey", split="test")
    clusters = vaelab.load_run(run_dir).model.cluster(
        test_images.batch(torch.arange(len(test_images))))
    assert scores["clusters.used"] == len(clusters.unique())  # K = 4 at most
    assert main(["plot", str(run_dir), "all", "--points", "40"]) == 0
    plots = {p.name for p in (run_dir / "plots").iterdir()}
    assert {"cluster_samples.png", "cluster_members.png", "cluster_histogram.png",
            "cluster_posteriors.png", "projection_z_cluster.png", "projection_w_label.png"} <= plots
    assert main(["plot", str(run_dir), "projector", "--points", "20"]) == 0
    assert list((run_dir / "tb" / "projector").rglob("projector_config.pbtxt"))
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert "cluster_samples.png" in page and "cluster_histogram.png" in page


def test_a_frey_image_into_a_28x28_model_is_refused(tmp_path):
    config = build_run_config("gmvae_mnist", ["train.steps=1", "train.valid_every=0",
                                              "train.early_stopping=0", "model.image_width=28",
                                              "model.image_height=28"])
    with pytest.raises(VaelabError, match=r"takes images of shape \(1, 28, 28\).*\(1, 28, 20\)"):
        fit(config, tmp_path / "r", dataset=Frey.stand_in(FreyConfig(), n=40))


def test_early_stopping_without_a_validation_split_is_refused(tmp_path):
    from vaelab.data.base import DataError
    from vaelab.data.mnist import MNIST, MNISTConfig

    config = build_run_config("gmvae_mnist", ["data.valid_size=0", "train.steps=2"])
    with pytest.raises(DataError, match="mnist has no validation split unless data.valid_size"):
        fit(config, tmp_path / "r", dataset=MNIST.stand_in(MNISTConfig(image_size=28), n=64))


def test_cluster_plots_on_a_model_without_clusters_are_refused(tmp_path, tiny):
    """Asked by name; "all" leaves them out (checked per model in tests/test_contract.py)."""
    from vaelab.plotting import make_plots

    vaelab.train(config=tiny(steps=1, log_every=1), out=tmp_path, verbose=False, pictures=False)
    with pytest.raises(VaelabError, match="needs a mixture model"):
        make_plots(tmp_path / "tiny", ["cluster-samples"])


def test_gmvae_sample_prior_is_one_consistent_draw():
    model = vaelab.create_model("gmvae", image_height=28, image_width=20).eval()
    a = model.sample_prior(5, torch.Generator().manual_seed(3))
    b = model.sample_prior(5, torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in ("z", "w", "y"))


def test_the_paper_architecture_from_the_cli_keeps_its_batchnorm_statistics(frey_home, tmp_path,
                                                                            capsys):
    """architecture=paper end to end: trained from the CLI, scored by `vaelab eval`, and a
    reloaded run clusters as the trained one (BatchNorm's running statistics are saved)."""
    out = tmp_path / "runs"
    code = main(["train", "gmvae_frey", "--out", str(out), "--name", "p", "--no-progress",
                 "--set", "model.architecture=paper", "--set", "model.hidden_dim=32",
                 "--set", "train.epochs=0", "--set", "train.steps=8", "--set",
                 "train.valid_every=4", "--set", "train.log_every=4", "--set", "model.K=4"])
    assert code == 0, capsys.readouterr().err
    run_dir = out / "p"
    assert json.loads((run_dir / "config.json").read_text())["model"]["architecture"] == "paper"
    assert main(["eval", str(run_dir), "--metrics", "clusters"]) == 0
    scores = json.loads((run_dir / "metrics.json").read_text())
    assert "clusters.accuracy" in scores  # its formula: tests/metrics/test_clusters.py
    run = vaelab.load_run(run_dir)
    test_images = vaelab.load_dataset("frey", split="test")
    clusters = run.model.cluster(test_images.batch(torch.arange(len(test_images))))
    assert scores["clusters.used"] == len(clusters.unique())  # the clusters of the test images
    statistics = run.model.encoder.trunk[1].running_mean
    assert statistics.abs().sum() > 0  # trained statistics, not BatchNorm's zeros
    assert int(run.model.encoder.trunk[1].num_batches_tracked) == 8  # one per training step
    x = vaelab.load_dataset("frey", split="test").batch(torch.arange(64))
    kept = run.model.encode(x)[0]
    run.model.encoder.trunk[1].reset_running_stats()  # the statistics are what eval mode uses
    assert not torch.allclose(run.model.encode(x)[0], kept)


def test_the_paper_architecture_refuses_a_training_batch_of_one():
    model = vaelab.create_model("gmvae", architecture="paper", image_height=4, image_width=4)
    with pytest.raises(ValueError, match="at least 2 images, got 1; raise train.batch_size"):
        model(torch.rand(1, 1, 4, 4))
    assert model.eval()(torch.rand(1, 1, 4, 4)).logits.shape == (1, 1, 4, 4)  # eval: fine
