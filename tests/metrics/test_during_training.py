"""train.metrics_every: metrics scored while training, into metrics_log.csv and TensorBoard."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from vaelab.engine import Callback, fit
from vaelab.errors import VaelabError
from vaelab.factory import run_config_from_dict
from vaelab.metrics.during_training import CHEAP_SIZES, TrainingMetrics, cheap_options
from vaelab.metrics.evaluate import evaluate
from vaelab.metrics.ground_truth import as_ground_truth
from vaelab.runs import read_train_log


def _config(tiny, **train):
    return run_config_from_dict(tiny(**{"metrics": ["mig", "active_units"], **train}))


def test_cheap_options_cut_the_protocol():
    options = cheap_options(["mig", "sap", "kl_decomposition", "factor_vae_score"])
    assert options["mig"] == {"num_train": CHEAP_SIZES["num_train"]}
    assert options["sap"] == {"num_train": 2000, "num_test": 1000}
    assert options["kl_decomposition"] == {"batch_size": 1024}
    assert options["factor_vae_score"]["num_variance_estimate"] == 2000
    assert "batch_size" not in options["factor_vae_score"]  # the vote batch is not a size


def test_metrics_are_logged_every_n_steps_and_match_a_direct_evaluation(tmp_path, tiny):
    run = fit(_config(tiny, metrics_every=6), tmp_path / "r")
    log = read_train_log(tmp_path / "r" / "metrics_log.csv")
    assert log["step"].tolist() == [6.0, 12.0]
    assert {"mig", "mig.size", "active_units", "active_units.fraction"} <= set(log)
    assert all(0 <= v <= 1 for v in log["mig"]) and all(0 <= v <= 4 for v in log["active_units"])
    # The last row scores the final model: the same numbers as evaluating it afterwards with
    # the cheap protocol and the run's seed.
    truth = as_ground_truth(run.model, run.dataset())
    names = ["mig", "active_units"]
    scores, _ = evaluate(truth, names, seed=3, options=cheap_options(names))
    assert scores["mig"] > 0  # a score that can tell a wrong model or sample apart
    for key in scores:
        assert log[key][-1] == pytest.approx(scores[key], abs=1e-12), key


def test_scoring_does_not_change_the_training(tmp_path, tiny):
    fit(_config(tiny), tmp_path / "plain")
    fit(_config(tiny, metrics_every=4), tmp_path / "scored")
    plain = read_train_log(tmp_path / "plain" / "train_log.csv")
    scored = read_train_log(tmp_path / "scored" / "train_log.csv")
    assert read_train_log(tmp_path / "scored" / "metrics_log.csv")["step"].tolist() == [4, 8, 12]
    for key in ("loss", "recon", "kl", "tc"):
        np.testing.assert_array_equal(plain[key], scored[key])
    assert not (tmp_path / "plain" / "metrics_log.csv").exists()


def test_tensorboard_gets_the_metrics(tmp_path, tiny):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit(_config(tiny, metrics_every=6), tmp_path / "r")
    events = EventAccumulator(str(tmp_path / "r" / "tb")).Reload()
    assert [e.step for e in events.Scalars("metrics/mig")] == [6, 12]


def test_resume_keeps_the_series(tmp_path, tiny):
    config = _config(tiny, steps=12, metrics_every=3)
    fit(config, tmp_path / "straight")

    class CtrlC(Callback):
        def on_step_end(self, ctx, step):
            if step == 7:
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "cut", callbacks=[CtrlC()])
    assert read_train_log(tmp_path / "cut" / "metrics_log.csv")["step"].tolist() == [3, 6]
    fit(config, tmp_path / "cut", resume=True)
    a = read_train_log(tmp_path / "straight" / "metrics_log.csv")
    b = read_train_log(tmp_path / "cut" / "metrics_log.csv")
    assert b["step"].tolist() == [3, 6, 9, 12]
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-12)


def test_bad_settings_are_refused_before_training(tmp_path, tiny):
    import vaelab
    from vaelab.data.base import ImageDataset

    with pytest.raises(ValueError, match="metrics_every must be >= 0"):
        _config(tiny, metrics_every=-1)
    with pytest.raises(ValueError, match="metrics_every needs metrics"):
        _config(tiny, metrics=[], metrics_every=5)
    data = tiny(metrics=["mig"], metrics_every=5)
    data["data"] = {"name": "mnist"}  # a dataset without factors: refused before any file
    with pytest.raises(VaelabError, match="needs ground-truth factors"):
        vaelab.train(config=data, out=tmp_path, verbose=False)
    assert not (tmp_path / "tiny").exists()
    plain = ImageDataset(vaelab.load_dataset("toy_squares").data, name="plain")
    with pytest.raises(VaelabError, match="needs ground-truth factors"):
        fit(_config(tiny, metrics_every=5), tmp_path / "plain", dataset=plain)
    with pytest.raises(ValueError, match="every must be >= 1"):
        TrainingMetrics(0, ["mig"])
