"""Values that used to reach a traceback (issue 36, item 3): non-finite settings, badly typed or
out-of-range metric options, a corrupt disvae model.pt. Each is one clear line, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest

from vaelab.cli import main
from vaelab.config import ConfigError
from vaelab.metrics.evaluate import metric_protocol

TOY = ["--set", "data.name=toy_squares", "--set", "train.steps=4", "--set", "train.batch_size=16",
       "--set", "train.metrics=", "--no-progress"]


def _one_line(capsys, message: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaelab: error:") and message in err and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("key, value", [("train.lr", "NaN"), ("train.lr", "Infinity"),
                                        ("train.lr", "-Infinity"), ("objective.beta", "NaN"),
                                        ("train.lr_final", "1e999"), ("train.epochs", "Infinity")])
def test_non_finite_settings_are_refused_before_anything_is_written(tmp_path, capsys, key,
                                                                    value):
    assert main(["train", "--out", str(tmp_path), "--name", "x", *TOY, "--set",
                 f"{key}={value}"]) == 2
    _one_line(capsys, f"{key}: expected a finite number")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("option, message", [
    ("mig.num_bins=abc", "mig.num_bins: expected int, got 'abc'"),
    ("mig.num_bins=0", "mig.num_bins: expected a whole number >= 1, got 0"),
    ("mig.num_bins=2.5", "mig.num_bins: expected int, got 2.5"),
    ("dci.num_train=-3", "dci.num_train: expected a whole number >= 1"),
    ("dci.n_jobs=0", "dci.n_jobs: expected a number of jobs >= 1, or -1"),
    ("factor_vae_score.prune_threshold=NaN", "prune_threshold: expected a finite number"),
    ("irs.diff_quantile=2", "irs.diff_quantile: expected a quantile in [0, 1], got 2.0"),
    ("mig_chen.use_mean=maybe", "mig_chen.use_mean: expected bool"),
])
def test_bad_metric_options_are_one_line_before_any_work(tmp_path, capsys, option, message):
    # the run does not even need to exist: options are checked first
    assert main(["eval", str(tmp_path / "none"), "--option", option]) == 2
    _one_line(capsys, message)


def test_good_metric_options_still_pass():
    assert metric_protocol("mig", {"num_train": "all", "num_bins": 10})["num_bins"] == 10
    assert metric_protocol("dci", {"n_jobs": -1, "num_train": 50.0})["num_train"] == 50
    assert metric_protocol("active_units", {"threshold": 0})["threshold"] == 0.0
    with pytest.raises(ValueError, match="has no option 'bins'"):
        metric_protocol("mig", {"bins": 3})


def test_non_finite_values_in_a_config_file_are_refused(tmp_path, tiny):
    from vaelab.workflow import build_run_config

    (tmp_path / "c.json").write_text(json.dumps(tiny(lr=float("nan"))))
    with pytest.raises(ConfigError, match="train.lr: expected a finite number, got nan"):
        build_run_config(None, [], config=tmp_path / "c.json")


@pytest.mark.parametrize("content", [b"", b"garbage, not a zip or a pickle", b"PK\x03\x04trunc"])
def test_corrupt_disvae_model_is_a_clear_error_without_unsafe_advice(tmp_path, capsys, content,
                                                                     shared_data):
    source = tmp_path / "folder"
    shutil.copytree(shared_data / "disvae-pretrained" / "VAE_mnist", source)
    (source / "model.pt").write_bytes(content)
    assert main(["import-disvae", str(source), "--out", str(tmp_path / "out")]) == 2
    err = _one_line(capsys, "is not a PyTorch weights file")
    assert "weights_only" not in err and "Copy model.pt again" in err
    assert not (tmp_path / "out").exists()
    (source / "specs.json").write_text("{not json")
    assert main(["import-disvae", str(source), "--out", str(tmp_path / "out")]) == 2
    _one_line(capsys, "specs.json is not valid JSON")


def test_negative_seeds_are_refused_where_read(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--name", "x", *TOY, "--set", "seed=-5"]) == 2
    _one_line(capsys, "seed: expected a whole number in [0,")
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path), "--seed", "-1"])
    assert "expected a whole number in [0, 2**32), got -1" in capsys.readouterr().err
