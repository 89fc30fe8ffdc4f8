"""`vaelab sweep` on real, embedded Ray (127.0.0.1 only): a 2x2 grid on toy_squares with one
failing trial runs and aggregates; a re-run skips everything; a sweep stopped mid-way (Ctrl-C
of a subprocess) and re-run ends with the same sweep.csv as an uninterrupted one.

All tests here share one worker process (xdist group "ray") and one Ray start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")

from vaelab.sweep import load_sweep, run_sweep  # noqa: E402
from vaelab.sweep.table import read_sweep_csv  # noqa: E402
from vaelab.sweep.trial import TIMING_COLUMNS  # noqa: E402

pytestmark = pytest.mark.xdist_group("ray")

SWEEP = """
description = "2 x 2 on toy_squares, and a trial that cannot draw a batch"
seeds = {seeds}
[set]
"data.name" = "toy_squares"
"model.latent_dim" = 4
"train.steps" = {steps}
"train.batch_size" = 16
"train.log_every" = 4
"train.checkpoint_every" = {every}
"train.metrics" = ["mig"]
"train.tb_images" = false
{axes}
"""
GRID = """
[axes]
"objective.beta" = [1.0, 4.0]
"""
WITH_FAILING = """
[[variants]]
label = "ok"
axes = { "objective.beta" = [1.0, 4.0] }
[[variants]]
label = "too_big"
set = { "train.batch_size" = 4096 }
"""


@pytest.fixture(scope="module")
def embedded_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             object_store_memory=100 * 1024**2, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def _write(path: Path, steps: int, axes: str = GRID, every: int = 4,
           seeds: str = "[1, 2]") -> Path:
    path.write_text(SWEEP.format(steps=steps, axes=axes, every=every, seeds=seeds))
    return path


def _without_timings(csv_path: Path) -> list[list[str]]:
    columns, rows = read_sweep_csv(csv_path)
    keep = [c for c in columns if c not in TIMING_COLUMNS]
    return [keep] + [[row[c] for c in keep] for row in rows]


@pytest.mark.heavy  # six Ray trials and the comparison report, ~30 s
def test_grid_runs_aggregates_records_the_failure_and_reruns_nothing(embedded_ray, tmp_path,
                                                                     capsys):
    from vaelab.cli import main
    from vaelab.runs import load_run

    spec = load_sweep(_write(tmp_path / "grid.toml", 8, WITH_FAILING))
    out = tmp_path / "out"
    result = run_sweep(spec, out, progress=False)
    assert result.counts == {"done": 4, "failed": 2}
    columns, rows = read_sweep_csv(out / "sweep.csv")
    assert columns[:6] == ["trial", "status", "variant", "train.batch_size", "objective.beta",
                           "seed"]
    assert [r["trial"] for r in rows] == [
        "ok-batch_size=16-beta=1-seed=1", "ok-batch_size=16-beta=1-seed=2",
        "ok-batch_size=16-beta=4-seed=1", "ok-batch_size=16-beta=4-seed=2",
        "too_big-batch_size=4096-seed=1", "too_big-batch_size=4096-seed=2"]
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 4 and all(r["steps"] == "8" for r in done)
    for r in done:  # the table's score is the trial's own (its run's metrics.json), not ">= 0"
        scores = json.loads((out / r["trial"] / "metrics.json").read_text())
        assert float(r["mig"]) == pytest.approx(scores["mig"], rel=1e-6)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and all("fewer than one batch" in r["error"] for r in failed)
    # every trial is an ordinary run directory
    run = load_run(out / done[0]["trial"])
    assert run.config.objective.config.beta == float(done[0]["objective.beta"])
    assert run.config.seed == int(done[0]["seed"])
    # the comparison page
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    # mig and loss, and UDR (Lasso, Spearman): each setting has two finished seeds
    assert page.count("<img src=\"data:image/png") == 4
    assert "udr_lasso" in page and "udr_spearman" in page
    assert 'id="rank-correlation"' in page and "too_big" in page
    # the same command again (the CLI) starts nothing and keeps the table; failures: exit 1
    before = (out / "sweep.csv").read_text()
    capsys.readouterr()
    assert main(["sweep", str(tmp_path / "grid.toml"), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "4 done, 2 failed (kept), 0 to run" in captured.err
    assert "4 done, 2 failed; table:" in captured.out
    assert "failed: too_big-batch_size=4096-seed=1: VaelabError: the dataset has" in captured.out
    assert (out / "sweep.csv").read_text() == before


@pytest.mark.slow
def test_a_sweep_stopped_midway_resumes_to_the_same_table(embedded_ray, tmp_path):
    sweep = _write(tmp_path / "grid.toml", 160, every=20)
    reference = tmp_path / "reference"
    assert run_sweep(load_sweep(sweep), reference, progress=False).counts == {"done": 4}

    out = tmp_path / "stopped"
    records = out / ".sweep" / "trials"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab.cli", "sweep", str(sweep), "--out", str(out),
         "--num-cpus", "1", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def midway() -> str | None:  # a trial past a periodic checkpoint, after one finished
        found = {p.stem: json.loads(p.read_text()).get("status") for p in records.glob("*.json")}
        if "done" not in found.values():
            return None
        for name, status in found.items():
            if status == "running" and list((out / name / "checkpoints").glob("step-*.ckpt")):
                return name
        return None

    deadline, stopped = time.monotonic() + 300, None
    while time.monotonic() < deadline and process.poll() is None and stopped is None:
        try:
            stopped = midway()
        except (OSError, ValueError):  # a record being replaced
            pass
        time.sleep(0.05)
    assert stopped is not None, "no trial was caught mid-way"
    process.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "resume with `vaelab sweep" in err
    _, rows = read_sweep_csv(out / "sweep.csv")
    by_name = {r["trial"]: r["status"] for r in rows}
    assert by_name[stopped] == "running" and list(by_name.values()).count("done") >= 1

    result = run_sweep(load_sweep(sweep), out, progress=False)
    assert result.counts == {"done": 4}
    assert _without_timings(out / "sweep.csv") == _without_timings(reference / "sweep.csv")
    summary = json.loads((out / stopped / "summary.json").read_text())
    assert summary["resumed"] is True and summary["steps"] == 160
    logs = [(d / stopped / "train_log.csv").read_text().splitlines() for d in (out, reference)]
    assert [line.split(",")[3:] for line in logs[0]] == [line.split(",")[3:] for line in logs[1]]


@pytest.mark.heavy  # starts the embedded Ray (~5 s)
def test_trials_that_cannot_fit_on_the_cluster_are_refused(embedded_ray, tmp_path):
    from vaelab.errors import VaelabError

    spec = load_sweep(_write(tmp_path / "grid.toml", 4))
    with pytest.raises(VaelabError, match="asks for 64 CPUs .* the Ray cluster has 2"):
        run_sweep(spec, tmp_path / "out", threads_per_trial=64, progress=False)
    assert not list((tmp_path / "out").glob("*/config.json"))  # no trial started
