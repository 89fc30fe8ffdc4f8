"""One trial of a sweep, with no Ray in sight: train (or resume) its run and record the outcome.

`run_trial` is what each Ray Tune trial calls, and what `benchmarks/sweep_overhead.py` calls one
by one. The trial's run directory `OUT/<name>` is an ordinary vaelab run; the sweep's own record
of it is `OUT/.sweep/trials/<name>.json` (status, error, wall time, the row of `sweep.csv`), so a
run directory holds nothing `vaelab train` would not write.

States: a trial is *done* when its record says so; *failed* when its record holds an error; a run
directory without a record was interrupted: it resumes from `checkpoints/last.ckpt` through the
ordinary resume path (bit-exact on the CPU), or, if it stopped before its first checkpoint, it is
moved to `OUT/.sweep/aborted/` (never deleted) and starts again.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelab.runs import atomic_write_json, checkpoint_path, read_json

__all__ = ["TIMING_COLUMNS", "aborted_dir", "run_trial", "stored_config_differs", "trial_record",
           "trial_record_path"]

# Columns of sweep.csv that measure time, not results (they differ between identical sweeps).
TIMING_COLUMNS = ("wall_time_s", "images_per_s")
# Settings that do not change what a run computes; a stored run may differ in them.
_HARMLESS = ("progress", "threads")


def trial_record_path(out: Path, name: str) -> Path:
    return Path(out) / ".sweep" / "trials" / f"{name}.json"


def aborted_dir(out: Path) -> Path:
    return Path(out) / ".sweep" / "aborted"


def trial_record(out: Path, name: str) -> dict[str, Any]:
    return read_json(trial_record_path(out, name))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in config.get("train", {}).items() if k not in _HARMLESS}
    return {**config, "train": train}


def stored_config_differs(run_dir: Path, record: dict[str, Any],
                          config: dict[str, Any]) -> str | None:
    """Why the run in `run_dir` is not this trial's (None when it is, or there is none).

    The record keeps the config the trial was planned with (the run's config.json holds the
    resolved one: image sizes filled in from the data), so planned configs are compared.
    """
    if not (run_dir.is_dir() and any(run_dir.iterdir())):
        return None
    if "config" not in record:
        return (f"{run_dir} already holds a run that this sweep did not start (it has no record "
                f"in {trial_record_path(run_dir.parent, run_dir.name).parent})")
    stored, wanted = _comparable(record["config"]), _comparable(config)
    for section in sorted(set(stored) | set(wanted)):
        if stored.get(section) != wanted.get(section):
            return (f"{run_dir} holds a run whose {section!r} differs from this trial's "
                    f"({stored.get(section)!r} there, {wanted.get(section)!r} here): the sweep "
                    "file changed")
    return None


def _row(trial: dict[str, Any], run: Any, wall: float) -> dict[str, Any]:
    """The trial's columns of sweep.csv: final training terms and every numeric score."""
    row: dict[str, Any] = {}
    summary = run.summary if run is not None else {}
    for key, value in summary.get("final", {}).items():
        if isinstance(value, (int, float)) and not (key.startswith("kl_") and key[3:].isdigit()):
            row[key] = value
    row["steps"] = summary.get("steps")
    metrics = read_json(Path(trial["run_dir"]) / "metrics.json")
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = value
    row["wall_time_s"] = round(wall, 3)
    return row


def run_trial(trial: dict[str, Any], threads: int = 1,
              callbacks: tuple[Any, ...] = (),
              on_start: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Trains one trial into its run directory and writes its record; returns the record.

    Args:
        trial: {"name", "out", "run_dir", "config" (the run-config dict)}.
        threads: torch intra-op threads for this trial (`torch.set_num_threads`).
        callbacks: extra engine callbacks (the sweep's progress reports).
        on_start: called with "new", "resumed" or "restarted" before training.

    A trial that fails (NaN loss, bad data, ...) is recorded with its error; this function does
    not raise for it. KeyboardInterrupt propagates (the run keeps its last checkpoint).
    """
    import torch

    from vaelab.factory import run_config_from_dict
    from vaelab.workflow import train

    out, name = Path(trial["out"]), trial["name"]
    run_dir = Path(trial["run_dir"])
    record_path = trial_record_path(out, name)
    start = time.perf_counter()
    previous = read_json(record_path)
    attempts = int(previous.get("attempts", 0)) + 1
    if threads:
        torch.set_num_threads(threads)
    differs = stored_config_differs(run_dir, previous, trial["config"])
    if differs:  # not this trial's run: record why, touch nothing else
        record = {"trial": name, "status": "failed", "attempts": attempts,
                  "error": f"FileExistsError: {differs}; nothing was changed. Use another "
                           "--out for this sweep, or move that run away",
                  **({"config": previous["config"]} if "config" in previous else {})}
        atomic_write_json(record_path, record)
        return record
    try:
        if checkpoint_path(run_dir).is_file():
            how = "resumed"
        elif run_dir.is_dir() and any(run_dir.iterdir()):
            # Stopped before its first checkpoint: keep what it wrote, start again.
            target = aborted_dir(out) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{attempts}"
            target.parent.mkdir(parents=True, exist_ok=True)
            run_dir.rename(target)
            how = "restarted"
        else:
            how = "new"
        atomic_write_json(record_path, {"trial": name, "status": "running", "how": how,
                                        "attempts": attempts, "config": trial["config"]})
        if on_start is not None:
            on_start(how)
        if how == "resumed":
            run = train(resume=run_dir, callbacks=callbacks, verbose=False)
        else:
            run = train(config=run_config_from_dict(trial["config"]), out=out,
                        callbacks=callbacks, verbose=False)
        record = {"status": "done", "error": "", **_row(trial, run, time.perf_counter() - start)}
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001  (any failure is recorded; the study goes on)
        message = " ".join(str(error).split()) or type(error).__name__
        record = {"status": "failed", "error": f"{type(error).__name__}: {message}",
                  "wall_time_s": round(time.perf_counter() - start, 3),
                  "traceback": traceback.format_exc()}
    record.update(trial=name, attempts=attempts, config=trial["config"])
    atomic_write_json(record_path, record)
    return record
