"""`vaelab eval` and `evaluate_run` end to end on a tiny toy_squares run written by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.factory import run_config_from_dict
from vaelab.metrics import DEFAULT_METRICS, as_ground_truth
from vaelab.metrics.evaluate import evaluate, resolve_metric_names
from vaelab.registry import METRICS
from vaelab.runs import save_checkpoint

SMALL = {"mig": {"num_train": 500}, "irs": {"num_train": 500}}


def _write_run(path: Path, nan: bool = False, data: dict | None = None) -> Path:
    config = run_config_from_dict({
        "name": "tiny", "seed": 0,
        "model": {"name": "burgess", "latent_dim": 4, "channels": 1, "image_size": 32},
        "objective": {"name": "vae"},
        "data": data or {"name": "toy_squares"},
        "train": {"steps": 1},
    })
    torch.manual_seed(0)
    model = vaelab.create_model("burgess", latent_dim=4, channels=1, image_size=32)
    if nan:
        with torch.no_grad():
            model.encoder.mu_logvar_gen.bias.fill_(float("nan"))
    path.mkdir(parents=True)
    (path / "config.json").write_text(config.to_json())
    save_checkpoint(path / "checkpoints" / "last.ckpt",
                    {"model": model.state_dict(), "objective": {}, "step": 1})
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return _write_run(tmp_path / "run")


def test_evaluate_run_merges_scores_and_protocol(run_dir):
    (run_dir / "metrics.json").write_text(json.dumps({"custom": 1.5, "protocol": {"note": "kept"}}))
    scores = evaluate_run(run_dir, metrics="mig,irs", seed=3, device="cpu", progress=False,
                          options=SMALL)
    content = json.loads((run_dir / "metrics.json").read_text())
    assert content["custom"] == 1.5 and content["protocol"]["note"] == "kept"
    assert {"mig", "mig.size", "mig.pos_x", "mig.pos_y", "irs"} <= set(scores)
    assert all(content[k] == v for k, v in scores.items())
    protocol = content["protocol"]
    assert protocol["seed"] == 3 and protocol["dataset"] == "toy_squares"
    assert protocol["metrics"]["mig"]["num_train"] == 500
    assert protocol["metrics"]["mig"]["num_bins"] == 20
    assert set(protocol["versions"]) >= {"numpy", "scikit-learn", "torch", "vaelab"}
    # Codes are shared: irs draws the same 500 points and encodes nothing new.
    assert protocol["metrics"]["mig"]["images_encoded"] > 0
    assert protocol["metrics"]["irs"]["images_encoded"] == 0
    # A second evaluation adds to, and does not clobber, the first.
    evaluate_run(run_dir, metrics=["gaussian_total_correlation"], progress=False)
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["mig"] == content["mig"] and "gaussian_total_correlation" in again
    assert {"mig", "irs", "gaussian_total_correlation"} <= set(again["protocol"]["metrics"])


def test_same_seed_same_scores_through_a_model(run_dir):
    first = evaluate_run(run_dir, metrics="mig", seed=1, progress=False, options=SMALL)
    second = evaluate_run(run_dir, metrics="mig", seed=1, progress=False, options=SMALL)
    assert first == second


def test_metrics_on_a_non_grid_factor_dataset(tmp_path):
    run_dir = _write_run(tmp_path / "run", data={"name": "toy_squares", "limit": 150})
    scores = evaluate_run(
        run_dir, metrics="mig,factor_vae_score,beta_vae_score,mig_chen", progress=False,
        options={"mig": {"num_train": 300},
                 "factor_vae_score": {"num_train": 60, "num_eval": 30, "batch_size": 8,
                                      "num_variance_estimate": 150},
                 "beta_vae_score": {"num_train": 60, "num_eval": 30, "batch_size": 8},
                 "mig_chen": {"n_samples": 50}})
    assert all(np.isfinite(v) for v in scores.values())
    assert 0 <= scores["mig_chen"] <= 1


def test_encoder_is_called_once_per_item():
    dataset = vaelab.load_dataset("toy_squares")
    calls = []

    def represent(x):
        calls.append(len(x))
        return x.flatten(1)[:, ::256]  # 4 pixels as a code

    truth = as_ground_truth(represent, dataset, batch_size=64)
    evaluate(truth, ["mig", "aam", "irs", "active_units"], seed=0,
             options={m: {"num_train": 1000} for m in ("mig", "aam", "irs", "active_units")})
    assert sum(calls) == truth.encoded_images <= len(dataset)
    assert max(calls) <= 64


def test_bad_inputs_give_clear_errors(run_dir, tmp_path):
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        evaluate_run(run_dir, metrics="mig,nope", progress=False)
    (run_dir / "metrics.json").write_text("{broken")
    with pytest.raises(VaelabError, match="not valid JSON"):
        evaluate_run(run_dir, metrics="mig", progress=False)
    assert (run_dir / "metrics.json").read_text() == "{broken"  # nothing lost
    (run_dir / "metrics.json").unlink()
    nan_dir = _write_run(tmp_path / "nan", nan=True)
    with pytest.raises(VaelabError, match="NaN/inf"):
        evaluate_run(nan_dir, metrics="mig", progress=False, options=SMALL)
    plain = vaelab.ImageDataset(torch.zeros((10, 1, 4, 4), dtype=torch.uint8))
    truth = as_ground_truth(lambda x: x.flatten(1), plain)
    with pytest.raises(VaelabError, match="metric 'mig' needs ground-truth factors"):
        evaluate(truth, ["mig"])
    with pytest.raises(ValueError, match="has no option 'bins'"):
        evaluate_run(run_dir, metrics="mig", progress=False, options={"mig": {"bins": 3}})


def test_default_metrics_are_registered_and_unsupervised_without_factors():
    assert set(DEFAULT_METRICS) <= set(METRICS.names())
    assert resolve_metric_names("default", has_factors=False) == [
        "gaussian_total_correlation", "gaussian_wasserstein_correlation", "mutual_info_score",
        "active_units", "kl_decomposition"]


def test_cli_eval_prints_table_and_writes_metrics(run_dir, capsys):
    code = main(["eval", str(run_dir), "--metrics", "mig,active_units", "--seed", "2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "mig" in out and "active_units" in out
    content = json.loads((run_dir / "metrics.json").read_text())
    assert content["protocol"]["seed"] == 2 and "mig" in content


@pytest.mark.heavy  # fresh interpreters
def test_cli_eval_errors_are_one_line(run_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "eval", str(run_dir), "--metrics", "migg"],
        capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2
    assert "vaelab: error: unknown metric 'migg'" in result.stderr
    assert main(["eval", str(tmp_path / "missing")]) == 2


def test_progress_names_each_metric_before_it_runs(capsys):
    """A long metric shows its name while it runs; its score completes the same line."""
    truth = as_ground_truth(np.random.default_rng(0).standard_normal((300, 3)),
                            np.random.default_rng(1).integers(0, 4, (300, 2)))
    seen = []

    def on_metric(name, scores, protocol):
        seen.append(capsys.readouterr().err)  # what was printed while / right after it ran

    evaluate(truth, ["mig", "sap"], options={"mig": {"num_train": 300},
             "sap": {"num_train": 200, "num_test": 100}}, progress=True, on_metric=on_metric)
    assert seen[0].startswith("  mig ") and seen[0].rstrip().endswith("s)")
    assert seen[0].count("\n") == 1 and " mig = " in seen[0]
    no_factors = as_ground_truth(np.random.default_rng(0).standard_normal((300, 3)))
    with pytest.raises(Exception, match="factors"):
        evaluate(no_factors, ["mig"], progress=True)
    assert capsys.readouterr().err.rstrip().endswith("failed")


def test_mig_on_every_item_once():
    dataset = vaelab.load_dataset("toy_squares")
    calls = []

    def represent(x):
        calls.append(len(x))
        mass = x.sum((1, 2, 3))  # size, then the centroid: a code that knows the factors
        grid = torch.arange(x.shape[-1], dtype=x.dtype)
        rows = (x.sum((1, 3)) * grid).sum(1) / mass
        cols = (x.sum((1, 2)) * grid).sum(1) / mass
        return torch.stack([mass, rows, cols], dim=1)

    truth = as_ground_truth(represent, dataset, batch_size=50)
    scores = METRICS.get("mig")(truth, None, np.random.default_rng(0), num_train="all")
    assert truth.encoded_images == sum(calls) == len(dataset)  # every item, each once
    codes = truth.codes(np.arange(len(dataset)))
    # the same as scoring the whole array of codes (drawn without replacement there)
    assert scores["mig"] > 0.5
    assert scores == METRICS.get("mig")(codes.astype(np.float32), dataset, num_train=len(dataset))
    drawn = METRICS.get("mig")(as_ground_truth(represent, dataset), None,
                               np.random.default_rng(0), num_train=len(dataset))
    assert drawn["mig"] != scores["mig"]  # drawing len(dataset) rows repeats items
    with pytest.raises(ValueError, match="whole number or 'all'"):
        METRICS.get("mig")(truth, None, num_train="every")


@pytest.mark.skipif(not __import__("vaelab.metrics.ground_truth", fromlist=["x"])
                    .bf16_supported("cpu"), reason="this CPU has no native bf16")
def test_bf16_encoding_tracks_fp32():
    from vaelab.metrics.ground_truth import model_encoder

    torch.manual_seed(0)
    model = vaelab.create_model("burgess", latent_dim=4, channels=1, image_size=32).eval()
    x = vaelab.load_dataset("toy_squares").batch(np.arange(64))
    mu32, lv32 = model_encoder(model)(x)
    mu16, lv16 = model_encoder(model, precision="bf16")(x)
    assert mu16.dtype == torch.float32 and not torch.equal(mu16, mu32)  # it did run in bf16
    scale = mu32.abs().max()
    assert (mu16 - mu32).abs().max() <= 0.02 * scale  # bf16: 8 bits of mantissa
    assert (lv16 - lv32).abs().max() <= 0.02 * lv32.abs().max()


def test_bf16_where_the_device_has_none_is_refused(monkeypatch):
    import vaelab.metrics.ground_truth as gt

    monkeypatch.setattr(gt, "bf16_supported", lambda device: False)
    model = vaelab.create_model("burgess", latent_dim=4, channels=1, image_size=32)
    with pytest.raises(VaelabError, match="needs native bf16"):
        gt.model_encoder(model, precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        gt.model_encoder(model, precision="fp16")


def test_cli_eval_options_and_precision(run_dir, capsys):
    args = ["eval", str(run_dir), "--metrics", "mig", "--quiet", "--option", "mig.num_train=all",
            "--option", "mig.num_bins=5"]
    if __import__("vaelab.metrics.ground_truth", fromlist=["x"]).bf16_supported("cpu"):
        args += ["--precision", "bf16"]
    assert main(args) == 0
    protocol = json.loads((run_dir / "metrics.json").read_text())["protocol"]
    assert protocol["metrics"]["mig"]["num_train"] == "all"
    assert protocol["metrics"]["mig"]["num_bins"] == 5
    assert protocol["metrics"]["mig"]["images_encoded"] == 192  # toy_squares, each item once
    assert protocol["encoder_precision"] == ("bf16" if "bf16" in args else "fp32")
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--option", "mig.bins=5"]) == 2
    assert "metric 'mig' has no option 'bins'" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--option", "mig=5"]) == 2
    assert "expects METRIC.KEY=VALUE" in capsys.readouterr().err


def test_kl_decomposition_is_scored_on_the_held_out_split(run_dir, monkeypatch):
    from vaelab.data.toy import ToySquares
    from vaelab.metrics.ground_truth import model_encoder
    from vaelab.runs import load_run

    evaluate_run(run_dir, metrics="mig,kl_decomposition", progress=False, options=SMALL)
    entry = json.loads((run_dir / "metrics.json").read_text())["protocol"]["metrics"]
    assert entry["kl_decomposition"]["scored_on"] == (
        "the train split (toy_squares has no held-out split)")
    assert entry["kl_decomposition"]["batch_size"] == 4096
    assert "scored_on" not in entry["mig"]

    run = load_run(run_dir, device="cpu")
    train = run.dataset()
    images = (train.batch(np.arange(150)).flip(-1) * 255).round().to(torch.uint8)
    test = vaelab.ImageDataset(images, name="mirrored")  # other items
    run.dataset = lambda split=None, **_: test if split == "test" else train
    # the dataset declares its splits (`ImageDataset.splits`): here one with a test split
    monkeypatch.setattr(ToySquares, "splits", classmethod(lambda cls, config: ("train", "test")))
    scores = evaluate_run(run, metrics="kl_decomposition", progress=False)
    entry = json.loads((run_dir / "metrics.json").read_text())["protocol"]["metrics"]
    assert entry["kl_decomposition"]["scored_on"] == "the test split (held out)"
    expected = METRICS.get("kl_decomposition")(
        as_ground_truth(model_encoder(run.model), test), None, np.random.default_rng(0))
    assert scores == expected and scores["kl_decomposition.batch_size"] == 150


def test_cli_eval_encodes_through_the_onednn_path_with_the_eager_scores(run_dir, monkeypatch):
    from vaelab.models import onednn
    from vaelab.models.vae import GaussianVAE

    if not onednn.available():
        pytest.skip("this PyTorch has no oneDNN")
    calls = []
    original = onednn.PackedEncoder.__call__
    monkeypatch.setattr(onednn.PackedEncoder, "__call__",
                        lambda self, x: calls.append(len(x)) or original(self, x))
    args = ["eval", str(run_dir), "--metrics", "mig", "--quiet", "--option", "mig.num_train=all"]
    assert main(args) == 0
    packed = json.loads((run_dir / "metrics.json").read_text())
    assert sum(calls) == packed["protocol"]["metrics"]["mig"]["images_encoded"] == 192
    monkeypatch.setattr(GaussianVAE, "inference_posterior", lambda self, dtype: None)
    (run_dir / "metrics.json").unlink()
    assert main(args) == 0
    eager = json.loads((run_dir / "metrics.json").read_text())
    assert sum(calls) == 192  # not called again: the eager path encoded
    assert {k: v for k, v in packed.items() if k.startswith("mig")} == {
        k: v for k, v in eager.items() if k.startswith("mig")}
