"""Threads on a shared machine: the OpenMP wait policy, the CPUs really available, --threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from vaelab import perf
from vaelab.precision import bf16_hint


@pytest.mark.parametrize(("env", "others", "policy"), [
    ({}, 0, None),  # idle at the start: the runtime's spinning (fastest on an idle machine)
    ({}, None, None),  # unknown (no /proc/stat): as idle
    ({}, 2, "PASSIVE"),  # others runnable: idle threads sleep at once
    ({"VAELAB_WAIT_POLICY": "Auto"}, 1, "PASSIVE"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, 3, "ACTIVE"),  # the user's choice wins
    ({"GOMP_SPINCOUNT": "10000"}, 3, None),  # so does a user's spin count
    ({"VAELAB_WAIT_POLICY": "runtime"}, 3, None),  # forced: the runtime's own default
    ({"VAELAB_WAIT_POLICY": "Passive"}, 0, "PASSIVE"),  # forced: passive on an idle machine
])
def test_wait_policy_is_passive_only_on_a_busy_machine_unless_chosen(env, others, policy):
    environ = dict(env)
    assert perf.set_wait_policy(environ, others=others) == policy
    assert environ.get("OMP_WAIT_POLICY") == policy
    assert perf.wait_policy_reason()  # says why


def test_others_running_reads_procs_running_less_the_caller(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 3\nprocs_blocked 0\n")
    assert perf.others_running(stat, samples=2) == 2
    stat.write_text("procs_running 1\n")
    assert perf.others_running(stat, samples=1) == 0
    assert perf.others_running(tmp_path / "absent") is None


def test_a_busy_start_hints_one_thread_without_choosing_it(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(perf, "_OTHERS", 2)
        hint = perf.busy_hint(0, "cpu")
        assert hint.startswith("note: 2 other runnable thread(s)") and "train.threads=1" in hint
        assert perf.busy_hint(2, "cpu") is None  # the user chose a thread count
        assert perf.busy_hint(0, "cuda") is None
        monkeypatch.setattr(perf, "_OTHERS", 0)
        assert perf.busy_hint(0, "cpu") is None  # idle at the start
        torch.set_num_threads(1)
        monkeypatch.setattr(perf, "_OTHERS", 2)
        assert perf.busy_hint(0, "cpu") is None  # one thread already
    finally:
        torch.set_num_threads(before)


def test_an_unknown_vaelab_wait_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="VAELAB_WAIT_POLICY must be 'auto', 'passive' or "
                                         "'runtime', got 'spin'"):
        perf.set_wait_policy({"VAELAB_WAIT_POLICY": "spin"})


@pytest.mark.heavy  # two fresh interpreters that import torch
def test_importing_vaelab_sets_the_policy_before_torch_loads():
    code = "import os, sys, vaelab; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["VAELAB_WAIT_POLICY"] = "passive"  # "auto" depends on the load of the test machine
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["PASSIVE", "True"]
    # torch imported first: exporting the policy then would do nothing, so vaelab leaves it unset
    code = "import torch, os, vaelab; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["None"]


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", 2), ("150000 100000\n", 2), ("100000 100000\n", 1), ("50000 100000\n", 1),
])
def test_available_cpus_caps_the_affinity_by_the_cgroup_quota(tmp_path, monkeypatch, cpu_max,
                                                               expected):
    monkeypatch.setattr(perf.os, "sched_getaffinity", lambda pid: {0, 1})
    (tmp_path / "cpu.max").write_text(cpu_max)
    missing = (tmp_path / "no_quota", tmp_path / "no_period")
    assert perf.available_cpus(tmp_path / "cpu.max", missing) == expected


def test_available_cpus_reads_a_cgroup_v1_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(perf.os, "sched_getaffinity", lambda pid: set(range(8)))
    (tmp_path / "quota").write_text("300000\n")
    (tmp_path / "period").write_text("100000\n")
    assert perf.available_cpus(tmp_path / "absent", (tmp_path / "quota", tmp_path / "period")) == 3
    (tmp_path / "quota").write_text("-1\n")  # v1's "unlimited"
    assert perf.available_cpus(tmp_path / "absent", (tmp_path / "quota", tmp_path / "period")) == 8


def test_configure_threads_caps_at_the_cpus_and_the_users_number_wins(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(perf, "available_cpus", lambda: 2)
        torch.set_num_threads(4)
        assert perf.configure_threads(0) == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(1)  # never more than the caller (a test, OMP_NUM_THREADS) chose
        assert perf.configure_threads(0) == 1 and torch.get_num_threads() == 1
        assert perf.configure_threads(3) == 3 and torch.get_num_threads() == 3
        with pytest.raises(ValueError, match="threads must be >= 0"):
            perf.configure_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_threads_option_of_the_cli_reaches_the_run_config(tmp_path, monkeypatch):
    from vaelab import cli

    seen = {}
    monkeypatch.setattr(perf, "configure_threads", lambda n: seen.setdefault("cli", n))
    monkeypatch.setattr("vaelab.workflow.train", lambda *a, **k: seen.setdefault("overrides",
                                                                                 k["overrides"]))
    assert cli.main(["train", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert seen == {"cli": 1, "overrides": ["train.threads=1"]}


@pytest.mark.parametrize("value", ["0", "two"])
def test_a_bad_threads_option_is_one_clear_line(value, capsys):
    from vaelab import cli

    with pytest.raises(SystemExit):
        cli.main(["eval", "somewhere", "--threads", value])
    assert "--threads: expected" in capsys.readouterr().err


def test_bf16_hint_only_for_fp32_cpu_runs_on_native_bf16_cpus(monkeypatch):
    import vaelab.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    assert "train.precision=bf16-mixed" in bf16_hint("32-true", "auto")
    assert bf16_hint("bf16-mixed", "auto") is None
    assert bf16_hint("32-true", "cuda") is None
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    assert bf16_hint("32-true", "auto") is None  # auto trains on the GPU there
    assert "bf16" in bf16_hint("32-true", "cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert bf16_hint("32-true", "cpu") is None
