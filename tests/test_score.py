"""`vaelab score` (metrics of precomputed codes) and bootstrap intervals, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_eval_cli import _write_run

import vaelab
from vaelab.cli import main
from vaelab.metrics.evaluate import evaluate
from vaelab.metrics.scoring import bootstrap_intervals, score

# gaussian_total_correlation first: its 10,000 draws touch all 192 items, so eval encodes them in
# one batch as `vaelab encode` does. (A CPU's GEMM kernels can round the last bit differently for
# a batch of a handful of images, so codes eval encoded in a tiny leftover batch may differ from
# encode's in the last bit; see docs/study.md.)
METRICS = "gaussian_total_correlation,mig,sap,irs,dci_fast,active_units,kl_decomposition"
SMALL = ["--option", "mig.num_train=500", "--option", "irs.num_train=500",
         "--option", "sap.num_train=500", "--option", "sap.num_test=200",
         "--option", "dci_fast.num_train=500", "--option", "dci_fast.num_test=200"]


@pytest.fixture
def encoded(tmp_path):
    run = _write_run(tmp_path / "run")
    assert main(["encode", str(run), "--out", str(tmp_path / "codes.npz")]) == 0
    return run, tmp_path / "codes.npz"


def test_score_equals_eval_exactly_on_the_runs_codes(encoded, capsys):
    run, codes = encoded
    assert main(["eval", str(run), "--metrics", METRICS, "--seed", "4", "--device", "cpu",
                 "--quiet", *SMALL]) == 0
    evaluated = json.loads((run / "metrics.json").read_text())
    out = codes.parent / "scores.json"
    assert main(["score", str(codes), "--dataset", "toy_squares", "--metrics", METRICS,
                 "--seed", "4", "--quiet", "--out", str(out), *SMALL]) == 0
    scored = json.loads(out.read_text())
    keys = [k for k in evaluated if k != "protocol"]
    assert len(keys) > 15 and "kl_decomposition.tc" in keys
    assert {k: scored[k] for k in keys} == {k: evaluated[k] for k in keys}  # exactly
    assert scored["protocol"]["scored_on"] == "toy_squares"
    assert "mig" in capsys.readouterr().out
    # the Python API gives the same numbers
    api = vaelab.score(codes, dataset="toy_squares", metrics=["mig"], seed=4,
                       options={"mig": {"num_train": 500}})
    assert api.scores["mig"] == evaluated["mig"]


def test_factors_stored_in_the_npz_or_given_as_a_file(encoded, tmp_path):
    _, codes = encoded
    stored = score(codes, metrics="mig,active_units")
    assert "factors stored in" in stored.protocol["scored_on"] and "mig" in stored.scores
    factors = np.load(codes)["factors"]
    np.save(tmp_path / "f.npy", factors)
    given = score(codes, factors=tmp_path / "f.npy", metrics="mig")
    assert given.scores["mig"] == stored.scores["mig"]
    # codes alone: only unsupervised metrics in "default"
    np.savez(tmp_path / "bare.npz", codes=np.load(codes)["codes"])
    bare = score(tmp_path / "bare.npz")
    assert "mig" not in bare.scores and "gaussian_total_correlation" in bare.scores
    assert not any(k.startswith("kl_decomposition") for k in bare.scores)  # no log-variances


def test_bootstrap_intervals_are_percentiles_of_seeded_redraws(encoded):
    _, codes = encoded
    options = {"mig": {"num_train": 300}}
    result = score(codes, dataset="toy_squares", metrics="mig,active_units", seed=2,
                   bootstrap=6, options=options)
    truth = vaelab.metrics.as_ground_truth(np.load(codes)["codes"], vaelab.load_dataset(
        "toy_squares"))
    # the oracle: the six child seeds of SeedSequence(2), each a full evaluation
    from vaelab.metrics.scoring import _DatasetCodes

    truth = _DatasetCodes(truth)
    draws = [evaluate(truth, ["mig"], seed=int(c.generate_state(1)[0]), options=options)[0]["mig"]
             for c in np.random.SeedSequence(2).spawn(6)]
    assert result.intervals["mig"] == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
    assert len(set(draws)) > 1
    # a metric without sampling has a zero-width interval at its value
    low, high = result.intervals["active_units"]
    assert low == high == result.scores["active_units"]
    # reproducible
    again = score(codes, dataset="toy_squares", metrics="mig", seed=2, bootstrap=6,
                  options=options)
    assert again.intervals["mig"] == result.intervals["mig"]
    assert result.as_json()["intervals"]["mig"] == list(result.intervals["mig"])
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_intervals(truth, ["mig"], 0, 1)


def test_eval_bootstrap_writes_and_shows_intervals(encoded, capsys):
    run, _ = encoded
    assert main(["eval", str(run), "--metrics", "mig", "--device", "cpu", "--quiet",
                 "--bootstrap", "3", "--option", "mig.num_train=300"]) == 0
    printed = capsys.readouterr().out
    assert "95% interval" in printed
    content = json.loads((run / "metrics.json").read_text())
    low, high = content["intervals"]["mig"]
    assert low <= high and content["protocol"]["bootstrap"]["resamples"] == 3
    assert content["mig"] == pytest.approx(content["mig"])  # the score itself is kept
    from vaelab.viz.report import build_report

    page = build_report([run])
    assert "95% interval (bootstrap)" in page and f"[{low:.4g}, {high:.4g}]" in page


def test_bad_inputs_are_refused_clearly(encoded, tmp_path, capsys):
    _, codes = encoded

    def error(*argv):
        assert main(["score", *argv]) != 0
        return capsys.readouterr().err

    assert "no codes file" in error(str(tmp_path / "missing.npz"), "--dataset", "toy_squares")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "not a readable .npz" in error(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "nocodes.npz", z=np.zeros((3, 2)))
    assert "no 'codes' array" in error(str(tmp_path / "nocodes.npz"))
    assert "either --dataset or --factors" in error(str(codes), "--dataset", "toy_squares",
                                                     "--factors", str(codes))
    assert "at least 2" in error(str(codes), "--bootstrap", "1")
    assert "give --dataset NAME too" in error(str(codes), "--data-option", "image_size=32")
    assert "bogus" in error(str(codes), "--dataset", "toy_squares", "--data-option", "bogus=1")
    # 64x64 toy_squares has 192 items too, but other images: accepted (the rows are items)
    assert main(["score", str(codes), "--dataset", "toy_squares", "--data-option",
                 "image_size=64", "--metrics", "active_units", "--quiet", "--out",
                 str(tmp_path / "ok.json")]) == 0
    assert json.loads((tmp_path / "ok.json").read_text())["protocol"]["scored_on"] == "toy_squares"
    assert "unknown" in error(str(codes), "--dataset", "no_such_data")
    np.savez(tmp_path / "short.npz", codes=np.zeros((5, 4)))
    assert "mismatched lengths" in error(str(tmp_path / "short.npz"), "--dataset", "toy_squares")
    nan = np.load(codes)["codes"].copy()
    nan[0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", codes=nan)
    assert "NaN" in error(str(tmp_path / "nan.npz"), "--dataset", "toy_squares")
    assert "log-variances" in error(str(tmp_path / "short.npz"), "--metrics", "kl_decomposition")
    out = tmp_path / "scores.json"
    out.write_text("{}")
    assert "already exists" in error(str(codes), "--out", str(out))
    assert out.read_text() == "{}"  # nothing lost
