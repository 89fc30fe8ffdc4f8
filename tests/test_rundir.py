"""Run directories are claimed atomically (issue 36): two processes racing for one name never
delete each other's files, failed starts leave no dead end, stale temporaries are removed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vaelab.cli import main
from vaelab.rundir import LOCK_NAME, claim_run_dir, clean_failed_start, release_run_dir

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "VAELAB_OFFLINE": "1"}

# K rounds; in each, every process waits for the round's start file, then claims the same new
# folder; the winner writes its pid into owner.txt and holds the claim a moment.
RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from vaelab.rundir import claim_run_dir, release_run_dir
    from vaelab.errors import VaelabError
    root, rounds = Path(sys.argv[1]), int(sys.argv[2])
    (root / f"ready-{os.getpid()}").touch()
    for r in range(rounds):
        while not (root / f"go-{r}").exists():
            time.sleep(0.001)
        run = root / "runs" / f"x{r}"
        try:
            claim_run_dir(run, resume=False)
        except (VaelabError, FileExistsError) as error:
            print(f"{r} refused {error}", flush=True)
            continue
        (run / "owner.txt").write_text(str(os.getpid()))
        time.sleep(0.05)
        assert (run / "owner.txt").read_text() == str(os.getpid())
        release_run_dir(run)
        print(f"{r} won", flush=True)
""")


def _start_racers(tmp_path: Path, processes: int, rounds: int) -> list[subprocess.Popen]:
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    racers = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(rounds)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
              for _ in range(processes)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready-*"))) < processes and time.time() < deadline:
        time.sleep(0.05)
    return racers


@pytest.mark.heavy  # three processes, eight rounds (~6 s)
def test_processes_racing_for_one_name_exactly_one_wins_each_time(tmp_path):
    rounds, processes = 8, 3
    racers = _start_racers(tmp_path, processes, rounds)
    for r in range(rounds):
        (tmp_path / f"go-{r}").touch()
        time.sleep(0.2)
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [o[1][-2000:] for o in outputs]
    lines = [line for out, _ in outputs for line in out.splitlines()]
    for r in range(rounds):
        won = [line for line in lines if line == f"{r} won"]
        refused = [line for line in lines if line.startswith(f"{r} refused")]
        assert len(won) == 1 and len(refused) == processes - 1, lines
        # the winner's file is intact: no loser removed or replaced it
        owner = (tmp_path / "runs" / f"x{r}" / "owner.txt").read_text()
        assert owner.isdigit()
    assert any("is in use by process" in line or "already exists" in line for line in lines)


def _train_args(tmp_path: Path, tiny, name: str = "x") -> list[str]:
    config = tmp_path / "tiny.json"
    if not config.is_file():
        config.write_text(json.dumps(tiny(steps=8)))
    return [sys.executable, "-m", "vaelab.cli", "train", "--config", str(config), "--name", name,
            "--out", str(tmp_path / "runs"), "--no-eval"]


def _assert_complete(run: Path) -> None:
    for name in ("config.json", "train_log.csv", "summary.json", "checkpoints/last.ckpt",
                 "samples.png"):
        assert (run / name).is_file(), f"{run / name} is missing"
    assert len((run / "train_log.csv").read_text().splitlines()) == 3  # header + steps 4, 8


def _race_two_trains(tmp_path: Path, tiny, name: str, delay: float | None) -> None:
    """A first `vaelab train --name NAME`, then a second one: after `delay` s, or (None) as soon
    as the first has claimed the folder and before its config.json exists."""
    run = tmp_path / "runs" / name
    first = subprocess.Popen(_train_args(tmp_path, tiny, name), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    if delay is None:
        while not (run / LOCK_NAME).exists() and first.poll() is None:
            time.sleep(0.005)
        assert not (run / "config.json").exists()  # the window of the report
    else:
        time.sleep(delay)
    second = subprocess.run(_train_args(tmp_path, tiny, name), capture_output=True, text=True,
                            env=ENV, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 or second.returncode == 0, (err[-2000:], second.stderr[-2000:])
    assert first.returncode == 0 or second.returncode == 0
    loser = second if first.returncode == 0 else first
    loser_err = loser.stderr if loser is second else err
    assert loser.returncode == 2, loser_err[-2000:]
    assert ("is in use by process" in loser_err or "holds a trained run" in loser_err), loser_err
    assert "Traceback" not in loser_err
    _assert_complete(run)


@pytest.mark.heavy  # two CLI trainings, ~11 s
def test_second_train_of_the_same_name_leaves_the_first_intact(tmp_path, tiny):
    """The issue's report, with real processes: the second starts while the first is setting
    up (folder claimed, no config.json yet); it is refused and the first finishes whole."""
    _race_two_trains(tmp_path, tiny, "x", None)


def test_a_trained_run_is_refused_with_a_command_that_works(tmp_path, capsys, tiny):
    args = _train_args(tmp_path, tiny, "x")[3:]
    assert main(args) == 0
    assert main(args) == 2  # after the first finished: refused, nothing lost
    err = capsys.readouterr().err
    assert "holds a trained run" in err and "vaelab train --resume" in err
    _assert_complete(tmp_path / "runs" / "x")
    run = tmp_path / "runs" / "x"
    assert main(["train", "--resume", str(run), "--set", "train.steps=12", "--no-eval"]) == 0
    assert len((run / "train_log.csv").read_text().splitlines()) == 4  # header + 4, 8, 12


@pytest.mark.slow
def test_many_races_for_one_name(tmp_path, tiny):
    rng = random.Random(0)
    for i in range(10):
        _race_two_trains(tmp_path, tiny, f"r{i}", rng.uniform(0.0, 4.0))


@pytest.mark.heavy  # a second interpreter holds the claim
def test_a_claimed_folder_is_refused_to_another_process(tmp_path):
    run = tmp_path / "held"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from vaelab.rundir import claim_run_dir; "
         f"claim_run_dir({str(run)!r}, resume=False); print('held', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        (run / "config.json").write_text("{}")
        with pytest.raises(Exception, match=f"is in use by process {holder.pid}"):
            claim_run_dir(run, resume=True)
        with pytest.raises(Exception, match="is in use by process"):
            claim_run_dir(run, resume=False)
        assert (run / "config.json").read_text() == "{}"
    finally:
        holder.communicate("", timeout=60)
    claim_run_dir(run, resume=True)  # the holder ended: its lock went with it
    release_run_dir(run)


def test_failed_start_removes_only_what_this_process_wrote(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "train_log.csv").write_text("step\n")  # leftovers of a run without a checkpoint
    (run / "tb").mkdir()
    claim_run_dir(run, resume=False)  # starts over: the leftovers go
    assert not (run / "train_log.csv").exists() and not (run / "tb").exists()
    (run / "config.json").write_text("{}")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "x.bin").write_text("new")
    clean_failed_start(run)  # the folder was there before: it stays, emptied of our files
    assert sorted(os.listdir(run)) == [LOCK_NAME]
    fresh = tmp_path / "fresh"
    claim_run_dir(fresh, resume=False)
    (fresh / "config.json").write_text("{}")
    clean_failed_start(fresh)
    assert not fresh.exists()  # this process made the folder: it goes too
    run = tmp_path / "r2"
    # a folder this process did not make stays, with what was in it before the claim
    run.mkdir()
    (run / "config.json").write_text("old")
    claim_run_dir(run, resume=True)
    (run / "new.txt").write_text("made here")
    clean_failed_start(run)
    assert (run / "config.json").read_text() == "old" and not (run / "new.txt").exists()


def test_other_files_and_trained_runs_are_refused_untouched(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt is not part of a vaelab run"):
        claim_run_dir(run, resume=False)
    (run / "notes.txt").unlink()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_text("x")
    with pytest.raises(FileExistsError, match=r"holds a trained run.*--resume"):
        claim_run_dir(run, resume=False)
    assert (run / "checkpoints" / "last.ckpt").read_text() == "x"


def test_stale_temporaries_go_when_the_run_next_starts(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    stale = [run / "checkpoints" / ".last.ckpt.abc123.tmp", run / ".summary.json.x1.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    kept = run / "checkpoints" / "step-0000004.ckpt"
    kept.write_bytes(b"whole")
    evaluating = run / ".metrics.json.e1.tmp"  # `vaelab eval` (no lock) may be writing it
    evaluating.write_bytes(b"in progress")
    claim_run_dir(run, resume=True)
    release_run_dir(run)
    assert not any(p.exists() for p in stale) and kept.read_bytes() == b"whole"
    assert evaluating.read_bytes() == b"in progress"


def test_failed_start_leaves_no_dead_end(tmp_path, capsys, tiny):
    """A run killed before its first checkpoint: `train` starts over there, `--resume` trains
    it from step 0, and `eval` names a command that works."""
    out = tmp_path / "runs"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny(steps=4)))
    run = out / "x"
    (run / "tb").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**tiny(steps=4), "name": "x"}))
    (run / "train_log.csv").write_text("step,loss\n4,1.0\n")
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"vaelab train --resume {run}" in err
    assert main(["train", "--resume", str(run), "--no-eval"]) == 0  # the suggested command
    assert "training it from step 0" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.ckpt").is_file()
    # the same with `train --name`, on a fresh leftover folder
    other = out / "y"
    (other / "tb").mkdir(parents=True)
    (other / "train_log.csv").write_text("step,loss\n")
    assert main(["train", "--config", str(config), "--name", "y", "--out", str(out),
                 "--no-eval"]) == 0
    assert "never saved a checkpoint; starting it over" in capsys.readouterr().err
    assert (other / "checkpoints" / "last.ckpt").is_file()


def test_a_run_that_diverges_before_its_first_checkpoint_names_a_command_that_works(tmp_path,
                                                                                   tiny):
    import torch

    from vaelab.callbacks import Callback
    from vaelab.engine import TrainingDiverged
    from vaelab.workflow import build_run_config, train

    class Poison(Callback):
        def on_step_end(self, ctx, step):
            with torch.no_grad():
                for p in ctx.model.parameters():
                    p.fill_(float("nan"))

    config = build_run_config(None, [], config=tiny(steps=4), name="d")
    with pytest.raises(TrainingDiverged) as caught:
        train(config=config, out=tmp_path, callbacks=[Poison()], verbose=False, evaluate=False)
    command = str(caught.value).split("`")[1]
    assert command == f"vaelab train --resume {tmp_path / 'd'} --set train.lr=SMALLER"
    assert main(command.split()[1:-2] + ["--set", "train.lr=1e-4", "--no-eval"]) == 0
    assert (tmp_path / "d" / "checkpoints" / "last.ckpt").is_file()
