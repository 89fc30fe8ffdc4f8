"""Run directories: atomic file writes, checkpoints, and `load_run`.

A run directory (`results/<name>/` by default) holds:

    config.json            the resolved RunConfig (enough to rebuild the run)
    checkpoints/last.ckpt  model, optimiser(s), objective state, step, RNG states
    checkpoints/step-NNNNNNN.ckpt   periodic checkpoints
    train_log.csv          step, epoch, images_per_s, then every term (loss, recon, kl, ..., kl_0..)
    tb/                    TensorBoard event files
    summary.json           steps, wall time, images/s, final terms
    reconstructions.png, samples.png, losses.png
    metrics.json           scores from `vaelab eval` (merged, never clobbered)
    plots/, report.html, training.gif
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from vaelab.config import RunConfig
from vaelab.errors import VaelabError

__all__ = [
    "Run",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "encode_run",
    "checkpoint_path",
    "load_checkpoint",
    "load_run",
    "read_json",
    "read_train_log",
    "save_checkpoint",
]

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


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


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """`torch.save` of `state`, written atomically (a crash never leaves half a checkpoint)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file
        from vaelab.rundir import checkpoint_choices

        raise VaelabError(
            f"cannot read checkpoint {path}: {error}. It may be truncated; choose another with "
            f"--checkpoint FILE (eval, plot, encode, report, train --resume); the others in "
            f"{path.parent}: {checkpoint_choices(path.parent, path)}"
        ) from error
    from vaelab.rundir import check_written_by

    if isinstance(state, dict):
        check_written_by(state, f"checkpoint {path}")
    return state


def checkpoint_path(run_dir: str | os.PathLike, step: int | None = None) -> Path:
    """`checkpoints/last.ckpt`, or the periodic checkpoint of `step`."""
    name = LAST if step is None else f"step-{step:07d}.ckpt"
    return Path(run_dir) / CHECKPOINT_DIR / name


def read_train_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """`train_log.csv` as {column: float array}; empty cells become NaN."""
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


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A run's JSON file ({} when missing); a corrupt one raises a VaelabError naming it."""
    file = Path(path)
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise VaelabError(f"{file} is not valid JSON ({error}); move it aside") from error


def read_config(run_dir: str | os.PathLike) -> RunConfig:
    from vaelab.factory import run_config_from_dict  # the registries sit above run files

    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a vaelab run directory: config.json is missing "
            "(train one with `vaelab train`, or import one with `vaelab import-disvae`)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise VaelabError(f"{path} is not valid JSON: {error}") from error
    from vaelab.rundir import check_written_by

    return run_config_from_dict(check_written_by(data, str(run_dir)) if isinstance(data, dict)
                                else data)


@dataclass
class Run:
    """A trained run loaded from its directory.

    Attributes:
        dir: the run directory.
        config: the resolved RunConfig.
        model: the model in eval mode, on `device`.
        objective: the objective (with its own trained parameters, e.g. a discriminator).
        log: `train_log.csv` as {column: array}.
        summary: `summary.json` (empty when missing).
        metrics: `metrics.json` (empty when missing).
        step: the optimiser step of the loaded checkpoint.
    """

    dir: Path
    config: RunConfig
    model: nn.Module
    objective: nn.Module
    log: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    global_rank: int = 0
    _dataset: Any = None

    def dataset(self, **overrides: Any):
        """The run's dataset (loaded once), on `device`; `overrides` change data options."""
        from vaelab.config import Component
        from vaelab.data.loading import load_dataset_component

        if overrides:
            import dataclasses

            config = dataclasses.replace(self.config.data.config, **overrides)
            return load_dataset_component(Component(self.config.data.name, config)).to(self.device)
        if self._dataset is None:
            self._dataset = load_dataset_component(self.config.data).to(self.device)
        return self._dataset

    def kl_per_latent(self) -> np.ndarray:
        """Mean KL per latent dimension over the last logged rows (for ordering latents)."""
        keys = sorted((k for k in self.log if k.startswith("kl_") and k[3:].isdigit()),
                      key=lambda k: int(k[3:]))
        if not keys:
            return np.zeros(self.model.traversal_dim)
        tail = max(1, len(self.log[keys[0]]) // 10)
        return np.array([np.nanmean(self.log[k][-tail:]) for k in keys])


def encode_run(run_dir: str | os.PathLike, out: str | os.PathLike, split: str | None = None,
               limit: int = 0, device: str = "cpu", overwrite: bool = False,
               batch_size: int = 1024, checkpoint: str | os.PathLike | None = None,
               images: str | os.PathLike | None = None) -> Path:
    """Writes the latents of a run's data (or `split` of it), or of `images` (a folder of image
    files or an .npz file, `vaelab.encoding.encode_images`), to `out` (.npz); see
    `vaelab encode`. Refuses to replace an existing file unless `overwrite`; `checkpoint`: a
    checkpoint file instead of last.ckpt."""
    from vaelab.encoding import encode_dataset, encode_images

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if limit < 0:
        raise VaelabError(f"--limit must be >= 0, got {limit}")
    from vaelab.rundir import check_writable

    check_writable(out, "choose another --out")
    if images is not None and split:
        raise VaelabError("--split chooses among the run's own data; drop it with --images")
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    if images is not None:
        arrays = encode_images(run, images, batch_size=batch_size, limit=limit)
    else:
        options = {k: v for k, v in (("split", split), ("limit", limit)) if v}
        dataset = run.dataset(**options) if options else run.dataset()
        arrays = encode_dataset(run, dataset, device, batch_size)
    with atomic_file(out) as handle:
        np.savez(handle, **arrays)
    return out


def load_run(
    path: str | os.PathLike, checkpoint: str | os.PathLike | None = None, device: str = "cpu"
) -> Run:
    """Loads a run directory: config, model weights, objective state, logs and scores.

    Args:
        path: the run directory.
        checkpoint: a checkpoint file to load instead of `checkpoints/last.ckpt`.
        device: where to put the model.

    Raises:
        FileNotFoundError: not a run directory, or no checkpoint (the message says what to do).
    """
    from vaelab.factory import build_model, build_objective

    run_dir = Path(path)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise VaelabError(f"device {device!r}: no CUDA device is available here; use --device cpu")
    if str(device).startswith("mps") and not torch.backends.mps.is_available():
        raise VaelabError(f"device {device!r}: no MPS device is available here; use --device cpu")
    config = read_config(run_dir)
    ckpt_file = Path(checkpoint) if checkpoint else checkpoint_path(run_dir)
    if not ckpt_file.is_file() and not checkpoint and any(ckpt_file.parent.glob("*.ckpt")):
        from vaelab.rundir import checkpoint_choices

        raise FileNotFoundError(
            f"{ckpt_file} is missing; choose one of the run's other checkpoints with "
            f"--checkpoint FILE (in {ckpt_file.parent}): {checkpoint_choices(ckpt_file.parent)}"
        )
    if not ckpt_file.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint ({ckpt_file} is missing): the run never saved one. "
            f"Train it with `vaelab train --resume {run_dir}` or pick another run"
        )
    state = load_checkpoint(ckpt_file, map_location=device)
    model = build_model(config.model)
    model.load_state_dict(state["model"], strict=True)
    objective = build_objective(config.objective)
    if state.get("objective"):
        objective.load_state_dict(state["objective"], strict=True)
    if state.get("objective_extra"):
        objective.load_extra_state_dict(state["objective_extra"])
    if state.get("dataset_size") and objective.needs_dataset_size:
        objective.set_dataset_size(state["dataset_size"])
    model.to(device).eval()
    objective.to(device).eval()

    return Run(
        dir=run_dir,
        config=config,
        model=model,
        objective=objective,
        log=read_train_log(run_dir / "train_log.csv"),
        summary=read_json(run_dir / "summary.json"),
        metrics=read_json(run_dir / "metrics.json"),
        step=int(state.get("step", 0)),
        device=torch.device(device),
    )
