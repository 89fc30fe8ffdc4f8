"""The ground floor and the run directory: CSV logs on resume, the one metrics.json merge,
declared dataset splits, and the training-batch transform."""

from __future__ import annotations

import json

import pytest
import torch

from vaelab.data.base import DataConfig, DataError, ImageDataset, batch_transform, dynamic_binarize
from vaelab.errors import VaelabError
from vaelab.io import CsvLog, read_csv_columns
from vaelab.registry import DATASETS
from vaelab.runs import merge_metrics, read_metrics


def test_a_resumed_log_keeps_the_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "train_log.csv"
    log = CsvLog(path, resume_step=None)
    for step in (2, 4, 6):
        log.write({"step": float(step), "loss": step / 4})
    assert path.read_text() == "step,loss\n2,0.5\n4,1\n6,1.5\n"
    resumed = CsvLog(path, resume_step=4)  # the checkpoint was at step 4: row 6 is redone
    resumed.write({"step": 6.0, "loss": 7.25})
    assert path.read_text() == "step,loss\n2,0.5\n4,1\n6,7.25\n"
    assert read_csv_columns(path)["loss"].tolist() == [0.5, 1.0, 7.25]
    CsvLog(path, resume_step=None)  # a fresh run replaces the log
    assert not path.exists()


def test_merge_metrics_keeps_other_scores_and_sections(tmp_path):
    merge_metrics(tmp_path, {"mig": 0.25}, section="metrics", name="mig", entry={"bins": 20},
                  protocol={"seed": 1})
    merge_metrics(tmp_path, {"experiment.x.acc": 0.5}, section="experiments", name="x",
                  entry={"folds": 5})
    content = json.loads((tmp_path / "metrics.json").read_text())
    assert content == {"mig": 0.25, "experiment.x.acc": 0.5,
                       "protocol": {"metrics": {"mig": {"bins": 20}}, "seed": 1,
                                    "experiments": {"x": {"folds": 5}}}}
    merge_metrics(tmp_path, {"mig": 0.5}, section="metrics", name="mig", entry={"bins": 10})
    assert read_metrics(tmp_path)["mig"] == 0.5
    assert read_metrics(tmp_path)["protocol"]["experiments"] == {"x": {"folds": 5}}


def test_a_corrupt_metrics_file_is_named_and_left_alone(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(VaelabError, match="metrics.json is not valid JSON"):
        merge_metrics(tmp_path, {"mig": 0.25})
    assert (tmp_path / "metrics.json").read_text() == "{not json"


def test_datasets_declare_their_splits():
    assert DATASETS.get("dsprites").splits(DataConfig()) == ("train",)
    assert DATASETS.get("toy_squares").splits(DataConfig()) == ("train",)
    assert "test" in DATASETS.get("mnist").splits(DataConfig())
    assert "test" in DATASETS.get("cifar10").splits(DataConfig())


def test_the_batch_transform_applies_to_training_batches_only():
    images = torch.full((4, 1, 2, 2), 128, dtype=torch.uint8)
    dataset = ImageDataset(images)
    dataset.batch_transform = batch_transform("dynamic")
    assert dataset.batch_transform is dynamic_binarize and batch_transform("none") is None
    torch.manual_seed(0)
    drawn = dataset.training_batch(torch.arange(4)).x
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.bernoulli(torch.full((4, 1, 2, 2), 128 / 255)))
    assert set(drawn.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(dataset.batch_of(torch.arange(4)).x, images.float() / 255)  # untouched
    with pytest.raises(DataError, match="known: none, dynamic"):
        batch_transform("static")


def test_the_workflow_writes_the_whole_config_before_training(tmp_path, tiny):
    """`resolve_run_config` completes the model from the data and the objective from the model
    (FactorVAE's discriminator input), idempotently; `train` writes exactly that config."""
    import vaelab
    from vaelab.factory import resolve_run_config, run_config_from_dict

    data = tiny(steps=2, log_every=1)
    data["objective"] = {"name": "factor_vae"}
    data["model"] = {"name": "burgess", "latent_dim": 5}
    config = run_config_from_dict(data)
    assert config.model.config.channels == 0 and config.objective.config.latent_dim != 5
    whole = resolve_run_config(config, (1, 32, 32))
    assert (whole.model.config.channels, whole.model.config.image_size) == (1, 32)
    assert whole.objective.config.latent_dim == 5
    assert resolve_run_config(whole, (1, 32, 32)) == whole
    vaelab.train(config=config, out=tmp_path, verbose=False, pictures=False, evaluate=False)
    written = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert written.pop("format_version") == 1 and written.pop("vaelab_version") == vaelab.__version__
    assert written == whole.to_dict()
