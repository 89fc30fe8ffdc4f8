"""The GMVAE presets on the offline MNIST test split (issue 36, item 8): data.split=test implies
the validation settings off (named in a note), or an explicit conflict names them all."""

from __future__ import annotations

import shutil

import pytest

from vaelab.cli import main
from vaelab.config import ConfigError
from vaelab.presets import preset_names
from vaelab.workflow import build_run_config

GMVAE = [name for name in preset_names()
         if name.startswith("gmvae") and build_run_config(name).data.name == "mnist"]


def test_there_are_gmvae_mnist_presets_that_validate():
    validating = [p for p in GMVAE if build_run_config(p).train.valid_every]
    assert len(validating) >= 3, GMVAE


@pytest.mark.parametrize("preset", GMVAE)
def test_every_gmvae_preset_resolves_on_the_test_split(preset, capsys):
    config = build_run_config(preset, ["data.split=test"])
    train = config.train
    assert (train.valid_every, train.early_stopping, train.keep_best) == (0, 0, False)
    assert getattr(config.data.config, "valid_size", 0) == 0
    assert config.data.config.split == "test"
    if build_run_config(preset).train.valid_every:
        assert "note: data.split=test" in capsys.readouterr().err


def test_an_explicit_validation_setting_on_the_test_split_names_the_recipe():
    with pytest.raises(ConfigError) as caught:
        build_run_config("gmvae_mnist", ["data.split=test", "train.valid_every=100"])
    message = str(caught.value)
    for setting in ("data.valid_size=0", "train.valid_every=0", "train.keep_best=false",
                    "train.early_stopping=0", "train.valid_holdout=0.1"):
        assert setting in message
    # validating on a share of the test images keeps the preset's validation
    config = build_run_config("gmvae_mnist", ["data.split=test", "train.valid_holdout=0.1",
                                              "data.valid_size=0"])
    assert config.train.valid_every == 1531 and config.train.early_stopping == 15
    # the training split is untouched
    assert build_run_config("gmvae_mnist").train.valid_every == 1531


def test_gmvae_preset_trains_offline_on_the_mnist_test_split(tmp_path, shared_data, monkeypatch,
                                                             capsys):
    home = tmp_path / "data"
    (home / "mnist").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist-test" / name, home / "mnist" / name)
    monkeypatch.setenv("VAELAB_DATA", str(home))
    assert main(["train", "gmvae_mnist", "--out", str(tmp_path / "runs"), "--set",
                 "data.split=test", "--set", "data.limit=256", "--set", "train.epochs=0",
                 "--set", "train.steps=3", "--no-eval", "--no-progress"]) == 0
    assert "train.valid_every=0" in capsys.readouterr().err
    assert (tmp_path / "runs" / "gmvae_mnist" / "checkpoints" / "last.ckpt").is_file()
