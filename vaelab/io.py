"""The ground floor: files written atomically, JSON and CSV logs read back.

Nothing here knows what a run is; it imports nothing of vaelab but `vaelab.errors`, so every
layer (data caches, run directories, pictures, sweeps) can use it without an import cycle.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from vaelab.errors import VaelabError

__all__ = [
    "CsvLog",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "format_number",
    "read_csv_columns",
    "read_json",
]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file beside `path`; on success it is synced and renamed over `path`.

    A crash or an exception never leaves a half-written `path` (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)  # mkstemp creates 0600; give the file the usual umask permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`."""
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file ({} when missing); a corrupt one raises a VaelabError naming it."""
    file = Path(path)
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise VaelabError(f"{file} is not valid JSON ({error}); move it aside") from error


def read_csv_columns(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A numeric CSV log (`train_log.csv`, ...) as {column: float array}; empty cells are NaN."""
    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    columns: dict[str, np.ndarray] = {}
    try:
        for j, name in enumerate(header):
            columns[name] = np.array(
                [float(r[j]) if j < len(r) and r[j] != "" else np.nan for r in body],
                dtype=np.float64,
            )
    except ValueError as error:
        raise VaelabError(f"{path} is not a vaelab training log ({error}); move it aside, or "
                          "restore it from the run's TensorBoard events") from None
    return columns


class CsvLog:
    """A CSV log written row by row (`train_log.csv`, `valid_log.csv`, `metrics_log.csv`).

    The columns are fixed by the first row. With `resume_step`, the rows after that step are
    dropped (a resumed run redoes them); without it an existing file is replaced.
    """

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if resume_step is not None and path.is_file():
            with open(path, newline="") as handle:
                rows = list(csv.reader(handle))
            if rows:
                self.columns = rows[0]
                kept = [r for r in rows[1:] if r and float(r[0]) <= resume_step]
                text = "".join(",".join(r) + "\n" for r in [rows[0], *kept])
                atomic_write_text(path, text)
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, float]) -> None:
        if self.columns is None:
            self.columns = list(row)
            with open(self.path, "w") as handle:
                handle.write(",".join(self.columns) + "\n")
        with open(self.path, "a") as handle:
            handle.write(",".join(format_number(row.get(c, float("nan")))
                                  for c in self.columns) + "\n")


def format_number(value: float) -> str:
    """How a log cell is written: integers without a point, other floats by `repr`."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))
