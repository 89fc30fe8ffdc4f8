"""Sweep files (no Ray needed): validation with the `--set` messages, trial names, searches,
the shipped studies, one trial without Ray (failure record, bit-exact resume), sweep.csv, the
rank correlations of the report, and `vaelab sweep` without Ray installed."""

from __future__ import annotations

import sys

import pytest

from vaelab.callbacks import Callback
from vaelab.config import ConfigError
from vaelab.sweep import SweepError, load_sweep, parse_sweep
from vaelab.sweep.runner import INSTALL_HINT, plan_trials
from vaelab.sweep.table import read_sweep_csv, write_sweep_csv
from vaelab.sweep.trial import run_trial, trial_record
from vaelab.workflow import build_run_config

TOY = {"data.name": "toy_squares", "model.latent_dim": 4, "train.steps": 12,
       "train.batch_size": 16, "train.log_every": 4, "train.checkpoint_every": 4,
       "train.metrics": [], "train.tb_images": False}


def _set_error(override: str) -> str:
    with pytest.raises(ConfigError) as caught:
        build_run_config("default", [override])
    return str(caught.value)


# ----------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("where", ["set", "axes"])
def test_unknown_key_is_refused_with_the_set_message(where):
    value = [1.0, 2.0] if where == "axes" else 1.0
    with pytest.raises(ConfigError) as caught:
        parse_sweep({where: {"objective.bta": value}})
    expected = _set_error("objective.bta=1.0")
    assert "unknown key 'objective.bta'" in expected
    assert str(caught.value).startswith(expected)
    assert "trial" in str(caught.value)


def test_bad_value_is_refused_with_the_set_message():
    with pytest.raises(ConfigError) as caught:
        parse_sweep({"axes": {"objective.beta": [1.0, "high"]}})
    assert str(caught.value).startswith(_set_error('objective.beta="high"'))
    assert "beta=high" in str(caught.value)  # the trial it belongs to


def test_a_bad_value_inside_one_variant_names_that_variants_trial():
    data = {"variants": [{"set": {"objective.name": "beta_vae"}},
                         {"set": {"objective.name": "beta_tcvae", "objective.estimator": "x"}}]}
    with pytest.raises(ConfigError) as caught:
        parse_sweep(data)
    assert str(caught.value).startswith(_set_error('objective.estimator="x"'))
    assert "trial beta_tcvae" in str(caught.value)


@pytest.mark.parametrize("data, words", [
    ({"axes": {"objective.beta": []}}, "axis 'objective.beta' is empty"),
    ({"axes": {"objective.beta": 4.0}}, "axis 'objective.beta' must be a list"),
    ({"axes": {"objective.beta": [1.0, 1.0]}}, "repeats a value"),
    ({"axis": {"objective.beta": [1.0]}}, "unknown key 'axis'"),
    ({"search": {"kind": "bayes"}}, "search.kind must be one of grid, random"),
    ({"search": {"kind": "random"}}, "search.samples must be a positive integer"),
    ({"search": {"samples": 3}}, 'samples applies to kind = "random" only'),
    ({"axes": {"train.lr": {"low": 1e-4, "high": 1e-2}}}, 'ranges need [search] kind = "random"'),
    ({"search": {"kind": "random", "samples": 2}, "axes": {"train.lr": {"low": 1.0, "high": 0.5}}},
     "low (1.0) must be below high"),
    ({"seeds": []}, "seeds must be a non-empty list of integers"),
    ({"seeds": [1, 1]}, "seeds repeats a value"),
    ({"set": {"seed": 3}}, "use seeds = [...]"),
    ({"variants": [{"axes": {"objective.beta": [1.0]}, "set": {"objective.beta": 2.0}}]},
     "given twice"),
    ({"variants": [{"sets": {}}]}, "unknown key 'sets' in sweep variants[0]"),
    ({"preset": "no_such_preset"}, "unknown preset 'no_such_preset'"),
    ({"variants": [{"set": {"objective.beta": 1.0}}, {"set": {"objective.beta": 1.0}}]},
     "give the variants a label"),
])
def test_malformed_sweeps_are_refused_before_anything_starts(data, words):
    with pytest.raises(ConfigError) as caught:
        parse_sweep(data)
    assert words in str(caught.value)


def test_sweep_files_that_do_not_parse_or_exist(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[axes\n")
    with pytest.raises(SweepError, match="cannot parse"):
        load_sweep(bad)
    with pytest.raises(FileNotFoundError, match="dsprites_beta_study"):
        load_sweep(tmp_path / "missing.toml")


# ----------------------------------------------------------------------------------------------
# Trials


def test_grid_of_variants_with_sub_axes_and_seeds_names_every_trial():
    spec = parse_sweep({
        "seeds": [1, 2],
        "set": {"train.steps": 10},
        "axes": {"objective.beta": [1.0, 4.0]},
        "variants": [{"set": {"objective.name": "beta_vae"}},
                     {"set": {"objective.name": "beta_tcvae"},
                      "axes": {"objective.alpha": [0.0, 1.0]}}],
    })
    names = [t.name for t in spec.trials]
    assert names == [f"beta_vae-beta={b}-seed={s}" for b in (1, 4) for s in (1, 2)] + [
        f"beta_tcvae-beta={b}-alpha={a}-seed={s}" for b in (1, 4) for a in (0, 1) for s in (1, 2)]
    assert spec.varying == ["objective.name", "objective.beta", "objective.alpha", "seed"]
    trial = spec.trials[-1]
    assert trial.config.objective.name == "beta_tcvae"
    assert (trial.config.objective.config.beta, trial.config.objective.config.alpha) == (4.0, 1.0)
    assert trial.config.seed == 2 and trial.config.train.steps == 10
    assert trial.config.name == trial.name
    # the component name comes first: a `name` override replaces its section
    assert spec.trials[0].overrides[0] == 'objective.name="beta_vae"'
    assert spec.trials[0].config.objective.config.beta == 1.0


def test_nested_and_dotted_keys_are_the_same_setting():
    dotted = parse_sweep({"set": {"train.steps": 7}, "axes": {"objective.beta": [2.0, 3.0]}})
    nested = parse_sweep({"set": {"train": {"steps": 7}}, "axes": {"objective": {"beta": [2.0, 3.0]}}})
    assert [t.config for t in dotted.trials] == [t.config for t in nested.trials]
    assert [t.name for t in dotted.trials] == ["beta=2", "beta=3"]


def test_leaves_that_clash_keep_their_dotted_key():
    spec = parse_sweep({"axes": {"objective.beta": [1.0, 2.0], "model.latent_dim": [4, 6],
                                 "train.lr": [1e-3]}})
    assert spec.trials[0].name == "beta=1-latent_dim=4"  # train.lr does not vary: not named


def test_random_search_is_reproducible_and_stays_in_range():
    data = {"search": {"kind": "random", "samples": 6, "seed": 5},
            "axes": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                     "model.latent_dim": {"low": 2, "high": 12, "int": True},
                     "objective.beta": [1.0, 4.0]}}
    first, again = parse_sweep(data), parse_sweep(data)
    assert [t.name for t in first.trials] == [t.name for t in again.trials]
    for trial in first.trials:
        assert 1e-4 <= trial.config.train.lr <= 1e-2
        assert 2 <= trial.config.model.config.latent_dim <= 12
        assert trial.config.objective.config.beta in (1.0, 4.0)
    lrs = [t.config.train.lr for t in first.trials]
    assert len(set(lrs)) == len(lrs) >= 5
    other = parse_sweep({**data, "search": {**data["search"], "seed": 6}})
    assert [t.name for t in other.trials] != [t.name for t in first.trials]


def test_the_shipped_studies():
    disvae = load_sweep("disvae_all")
    losses, datasets = ("VAE", "betaH", "betaB", "factor", "btcvae"), (
        "mnist", "fashion", "dsprites", "celeba", "chairs")
    assert [t.name for t in disvae.trials] == [f"{a}_{b}" for a in losses for b in datasets]
    for trial in disvae.trials:  # each is the preset of its name, unchanged
        assert trial.config == build_run_config(trial.name)
    study = load_sweep("dsprites_beta_study")
    assert len(study.trials) == 18
    objectives = {t.config.objective.name for t in study.trials}
    assert objectives == {"beta_vae", "beta_tcvae"}
    assert {t.config.objective.config.beta for t in study.trials} == {1.0, 4.0, 16.0}
    assert {t.config.seed for t in study.trials} == {1, 2, 3}
    assert {t.config.data.name for t in study.trials} == {"dsprites"}


# ----------------------------------------------------------------------------------------------
# One trial, no Ray


class _Interrupt(Callback):
    """An engine callback that stops the run like Ctrl-C after a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, ctx, step):
        if step == self.step:
            raise KeyboardInterrupt


def test_an_interrupted_trial_resumes_bit_exactly_and_a_failed_one_is_recorded(tmp_path):
    spec = parse_sweep({"set": TOY, "axes": {"train.batch_size": [16, 4096]}})
    reference, resumed = plan_trials(spec, tmp_path / "a"), plan_trials(spec, tmp_path / "b")
    good, bad = reference
    assert run_trial(good)["status"] == "done"
    # stopped after step 9 (last checkpoint at step 8), then run again: resumed from step 8
    with pytest.raises(KeyboardInterrupt):
        run_trial(resumed[0], callbacks=(_Interrupt(9),))
    assert trial_record(tmp_path / "b", good["name"])["status"] == "running"
    hows = []
    record = run_trial(resumed[0], on_start=hows.append)
    assert hows == ["resumed"] and record["status"] == "done" and record["attempts"] == 2
    logs = [(tmp_path / d / good["name"] / "train_log.csv").read_text().splitlines()
            for d in ("a", "b")]
    strip = [[",".join(line.split(",")[:2] + line.split(",")[3:]) for line in log] for log in logs]
    assert strip[0] == strip[1]  # every term of every row (images_per_s aside)
    # a batch larger than the data: recorded, with the engine's message
    failed = run_trial(bad)
    assert failed["status"] == "failed"
    assert "fewer than one batch" in failed["error"]
    assert trial_record(tmp_path / "a", bad["name"])["error"] == failed["error"]
    write_sweep_csv(tmp_path / "a" / "sweep.csv", reference, spec.varying)
    columns, rows = read_sweep_csv(tmp_path / "a" / "sweep.csv")
    assert columns[:3] == ["trial", "status", "train.batch_size"]
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert rows[0]["steps"] == "12" and float(rows[0]["loss"]) > 0
    assert rows[1]["error"].startswith("VaelabError") and rows[1]["loss"] == ""


def test_which_trials_a_rerun_starts():
    from vaelab.sweep.runner import trials_to_run

    statuses = {"a": "done", "b": "failed", "c": "running", "d": "pending"}
    assert trials_to_run(statuses) == ["c", "d"]
    assert trials_to_run(statuses, retry_failed=True) == ["b", "c", "d"]


def test_a_trial_never_overwrites_a_run_it_did_not_start(tmp_path):
    spec = parse_sweep({"set": TOY, "axes": {"objective.beta": [1.0, 2.0]}})
    trial = plan_trials(spec, tmp_path)[0]
    foreign = tmp_path / trial["name"]
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    record = run_trial(trial)
    assert record["status"] == "failed" and "did not start" in record["error"]
    assert sorted(p.name for p in foreign.iterdir()) == ["config.json"]
    # a changed sweep file: the stored trial is not silently reused
    assert run_trial(plan_trials(spec, tmp_path)[1])["status"] == "done"
    changed = parse_sweep({"set": {**TOY, "train.lr": 0.01}, "axes": {"objective.beta": [1.0, 2.0]}})
    record = run_trial(plan_trials(changed, tmp_path)[1])
    assert record["status"] == "failed" and "the sweep file changed" in record["error"]


def test_a_trial_stopped_before_its_first_checkpoint_starts_again_and_keeps_the_old_files(tmp_path):
    spec = parse_sweep({"set": {**TOY, "train.checkpoint_every": 0}, "seeds": [1]})
    trial = plan_trials(spec, tmp_path)[0]
    with pytest.raises(KeyboardInterrupt):
        run_trial(trial, callbacks=(_Interrupt(2),))
    hows = []
    assert run_trial(trial, on_start=hows.append)["status"] == "done"
    assert hows == ["restarted"]
    kept = list((tmp_path / ".sweep" / "aborted").iterdir())
    assert len(kept) == 1 and (kept[0] / "config.json").is_file()


# ----------------------------------------------------------------------------------------------
# Report pieces and the CLI without Ray


def test_rank_correlations_known_answers():
    from vaelab.sweep.report import rank_correlations

    rho = rank_correlations({"a": [1, 2, 3, 4], "b": [10, 20, 25, 100], "c": [4, 3, 2, 1],
                             "d": [1, 3, 2, 4], "flat": [1, 1, 1, 1]})
    assert rho["a", "b"] == pytest.approx(1.0) and rho["a", "c"] == pytest.approx(-1.0)
    assert rho["a", "d"] == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert rho["a", "flat"] != rho["a", "flat"]  # NaN: a constant score has no ranks


def test_sweep_without_ray_says_what_to_install(monkeypatch, capsys, tmp_path):
    from vaelab.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = tmp_path / "s.toml"
    spec.write_text('[set]\n"data.name" = "toy_squares"\n[axes]\n"objective.beta" = [1.0, 2.0]\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert INSTALL_HINT in capsys.readouterr().err
    assert "pip install 'vaelab[sweep]'" in INSTALL_HINT
    assert not (tmp_path / "out").exists()  # nothing written
    assert main(["sweep", str(spec), "--dry-run"]) == 0  # validation needs no Ray
    assert "beta=1" in capsys.readouterr().out


def test_bad_sweep_file_on_the_command_line(capsys, tmp_path):
    from vaelab.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text('[axes]\n"objective.bta" = [1.0]\n')
    assert main(["sweep", str(spec), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: unknown key 'objective.bta'") and "\n" == err[-1]
    assert main(["list", "sweeps"]) == 0
    listed = capsys.readouterr().out
    assert "disvae_all" in listed and "25 trials" in listed and "18 trials" in listed


def test_the_docs_sweep_example_is_a_valid_sweep(tmp_path):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "sweeps.md").read_text()
    block = re.search(r"```toml\n(.*?)```", page, re.S).group(1)
    (tmp_path / "study.toml").write_text(block)
    spec = load_sweep(tmp_path / "study.toml")
    assert len(spec.trials) == 3 * 3 + 3 * 2 * 3
    assert spec.trials[0].name == "beta_vae-beta=1-seed=1"
    assert spec.trials[-1].name == "beta_tcvae-beta=16-alpha=1-seed=3"
