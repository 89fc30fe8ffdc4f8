"""The sweep report's UDR columns and bootstrap bars, on a sweep folder written by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_eval_cli import _write_run  # noqa: E402

from vaelab.sweep import report as sweep_report  # noqa: E402
from vaelab.sweep.udr import setting_udr, trial_codes  # noqa: E402


def _sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    rows = []
    for beta in (1, 4):
        for seed in (1, 2):
            name = f"beta={beta}-seed={seed}"
            run = _write_run(sweep / name)
            metrics = {"mig": 0.1 * beta + 0.01 * seed}
            if seed == 1:
                metrics["intervals"] = {"mig": [0.05 * beta, 0.2 * beta]}
            (run / "metrics.json").write_text(json.dumps(metrics))
            rows.append(f"{name},done,{beta},{seed},{metrics['mig']}")
    rows.append("beta=8-seed=1,failed,8,1,")
    (sweep / "sweep.csv").write_text("trial,status,objective.beta,seed,mig\n"
                                     + "\n".join(rows) + "\n")
    (sweep / ".sweep").mkdir()
    (sweep / ".sweep" / "sweep.json").write_text(json.dumps(
        {"name": "s", "varying": ["objective.beta", "seed"]}))
    return sweep


def test_udr_columns_and_interval_bars(tmp_path, monkeypatch):
    sweep = _sweep(tmp_path)
    calls = []
    original = sweep_report._box_plot

    def spy(score, groups, intervals=None):
        calls.append((score, groups, intervals))
        return original(score, groups, intervals)

    monkeypatch.setattr(sweep_report, "_box_plot", spy)
    page = sweep_report.build_sweep_report(sweep)
    assert "udr_lasso" in page and "udr_spearman" in page and 'id="udr-note"' in page
    plotted = {score: (groups, intervals) for score, groups, intervals in calls}
    assert set(plotted) >= {"mig", "udr_lasso", "udr_spearman"}
    groups, intervals = plotted["mig"]
    assert intervals["beta=1"] == [[0.05, 0.2], None] and intervals["beta=4"] == [[0.2, 0.8], None]
    assert plotted["udr_lasso"][1] is None  # no intervals for UDR
    # every trial of a setting is the same model here: the pair scores agree
    lasso = plotted["udr_lasso"][0]
    assert lasso["beta=1"][0] == pytest.approx(lasso["beta=1"][1])
    assert all(0 <= v <= 1 for values in lasso.values() for v in values)
    # the codes are cached with the step; a second report reuses them
    cached = sorted(p.name for p in (sweep / ".sweep" / "udr").iterdir())
    assert cached == [f"beta={b}-seed={s}.npz" for b in (1, 4) for s in (1, 2)]
    table = (sweep / "udr.csv").read_text().splitlines()
    assert table[0] == "trial,udr_lasso,udr_spearman" and len(table) == 5
    assert float(table[1].split(",")[1]) == pytest.approx(
        lasso[table[1].split(",")[0].split("-")[0]][0])
    assert "udr_lasso" not in sweep_report.build_sweep_report(sweep, udr=False)


def test_setting_udr_matches_the_pure_function(tmp_path):
    from vaelab.metrics.udr import udr

    sweep = _sweep(tmp_path)
    rows = [{"trial": f"beta=1-seed={s}", "status": "done", "objective.beta": "1"}
            for s in (1, 2)]
    results, notes = setting_udr(sweep, rows, ["objective.beta"], num_points=100)
    codes = [trial_codes(sweep / r["trial"], 100) for r in rows]
    expected = udr([c for c, _ in codes], [k for _, k in codes], correlation="spearman")
    assert [results[r["trial"]]["udr_spearman"] for r in rows] == pytest.approx(
        list(expected.scores))
    assert notes == []
    # a trial whose run is gone is left out with a note, not a crash
    rows.append({"trial": "beta=1-seed=9", "status": "done", "objective.beta": "1"})
    results, notes = setting_udr(sweep, rows, ["objective.beta"], num_points=100)
    assert "beta=1-seed=9" not in results and "beta=1-seed=9" in notes[0]
    assert np.isfinite(results["beta=1-seed=1"]["udr_lasso"])
