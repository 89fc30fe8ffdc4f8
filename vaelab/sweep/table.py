"""`sweep.csv`: one row per trial (its swept values, seed, status, final terms, every score).

Columns: `trial`, `status` (done, failed, running: interrupted, pending: not started), the swept
keys (`objective.beta`, `preset`, ...), `seed`, `steps`, the final training terms (the mean over
the last `train.log_every` steps, as in summary.json), every numeric score of metrics.json,
`wall_time_s` (of the trial's last attempt) and `error`. Rows are in the sweep's trial order.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaelab.io import atomic_write_text
from vaelab.sweep.trial import trial_record

__all__ = ["read_sweep_csv", "sweep_rows", "write_sweep_csv"]

_META = ("trial", "status", "attempts", "error", "traceback", "config", "how")


def sweep_rows(plan: Sequence[dict[str, Any]], varying: Sequence[str]) -> tuple[list[str],
                                                                                  list[dict]]:
    """(columns, rows) of sweep.csv from the trials' records."""
    value_keys = [k for k in varying if k != "seed"]
    rows, result_keys = [], []
    for trial in plan:
        record = trial_record(Path(trial["out"]), trial["name"])
        row: dict[str, Any] = {"trial": trial["name"], "status": record.get("status", "pending")}
        for key in value_keys:
            row[key] = trial["values"].get(key, "")
        row["seed"] = trial["config"].get("seed")
        for key, value in record.items():
            if key in _META or key == "images_per_s":  # a timing, in the run's summary.json
                continue
            row[key] = value
            if key not in result_keys and key != "wall_time_s":
                result_keys.append(key)
        row["error"] = record.get("error", "")
        rows.append(row)
    ordered = ["steps", *[k for k in result_keys if k != "steps"]] if "steps" in result_keys \
        else result_keys
    columns = ["trial", "status", *value_keys, "seed", *ordered, "wall_time_s", "error"]
    return columns, rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict, bool)):
        return json.dumps(value)
    return str(value)


def write_sweep_csv(path: Path, plan: Sequence[dict[str, Any]], varying: Sequence[str]) -> None:
    columns, rows = sweep_rows(plan, varying)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text(row.get(c)) for c in columns])
    atomic_write_text(path, buffer.getvalue())


def read_sweep_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows as {column: text}) of a sweep.csv."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep.csv in {path.parent}: run `vaelab sweep SPEC --out "
                                f"{path.parent}` first")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)
