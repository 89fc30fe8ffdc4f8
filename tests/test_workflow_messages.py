"""What `vaelab train` says: schedule warnings for short runs, the headline metrics line."""

from __future__ import annotations

import vaelab
from vaelab.factory import run_config_from_dict
from vaelab.workflow import _print_summary, schedule_warnings


def test_schedule_warnings(tiny):
    data = tiny()
    data["objective"] = {"name": "beta_vae", "warmup_steps": 100}
    config = run_config_from_dict(data)
    (line,) = schedule_warnings(config, 25)
    assert "objective.warmup_steps=100 is longer than the run's 25 steps" in line
    assert "ends at 25% of its final value" in line and "objective.warmup_steps=5" in line
    assert schedule_warnings(config, 100) == []
    data["objective"] = {"name": "annealed_vae", "capacity_steps": 50}
    assert "capacity ramp" in schedule_warnings(run_config_from_dict(data), 10)[0]


def test_train_warns_when_the_warmup_exceeds_the_run(tiny, tmp_path, capsys):
    data = tiny(steps=8)
    data["objective"] = {"name": "beta_vae", "warmup_steps": 1000}
    vaelab.train(config=data, out=tmp_path, evaluate=False, pictures=False)
    assert "warmup_steps=1,000 is longer than the run's 8 steps" in capsys.readouterr().err
    data["objective"] = {"name": "beta_vae", "warmup_steps": 4}
    vaelab.train(config=data, name="short", out=tmp_path, evaluate=False, pictures=False)
    assert "warning" not in capsys.readouterr().err


def test_summary_line_shows_headline_scores_only(tmp_path, capsys):
    summary = {"final": {"loss": 1.0}, "steps": 2, "epochs": 0.1, "dataset": "d",
               "wall_time_s": 1.0, "images_per_s": 3, "device": "cpu", "world_size": 1}
    _print_summary(tmp_path, summary, {"mig": 0.5, "mig.shape": 0.1, "sap": 0.2,
                                       "sap.pos_x": 0.3, "active_units.fraction": 0.4})
    line = capsys.readouterr().out.splitlines()[-1]
    assert line == "metrics: mig=0.500, sap=0.200"
