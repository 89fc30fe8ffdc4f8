"""The run directory: its layout, config, checkpoints, logs (both ways) and the metrics.json merge.

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
    valid_log.csv, metrics_log.csv   validation terms and scores during training (when asked)
    loggers.json           the W&B / MLflow run ids (`train.loggers`), so a resumed run continues

The atomic writes themselves live on the ground floor (`vaelab.io`); they are re-exported here
for code that imported them from `vaelab.runs`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelab.config import RunConfig
from vaelab.errors import VaelabError
from vaelab.io import (
    CsvLog,
    atomic_file,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_csv_columns,
    read_json,
)
from vaelab.rundir import (
    check_written_by,
    checkpoint_choices,
    claim_run_dir,
    has_checkpoint,
    release_run_dir,
    stamped_config_json,
)

__all__ = [
    "Run",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "checkpoint_path",
    "load_checkpoint",
    "load_run",
    "merge_metrics",
    "open_log",
    "prepare_run_dir",
    "read_config",
    "read_json",
    "read_metrics",
    "read_train_log",
    "save_checkpoint",
    "write_config",
]

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
BEST = "best.ckpt"
TRAIN_LOG, VALID_LOG, METRICS_LOG = "train_log.csv", "valid_log.csv", "metrics_log.csv"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """`torch.save` of `state`, written atomically (a crash never leaves half a checkpoint)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG state a checkpoint keeps (torch, NumPy, Python; CUDA on a CUDA device)."""
    import random

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restores what `rng_state` saved."""
    import random

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file

        raise VaelabError(
            f"cannot read checkpoint {path}: {error}. It may be truncated; choose another with "
            f"--checkpoint FILE (eval, plot, encode, report, train --resume); the others in "
            f"{path.parent}: {checkpoint_choices(path.parent, path)}"
        ) from error

    if isinstance(state, dict):
        check_written_by(state, f"checkpoint {path}")
    return state


def checkpoint_path(run_dir: str | os.PathLike, step: int | None = None) -> Path:
    """`checkpoints/last.ckpt`, or the periodic checkpoint of `step`."""
    name = LAST if step is None else f"step-{step:07d}.ckpt"
    return Path(run_dir) / CHECKPOINT_DIR / name


def read_train_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """`train_log.csv` (or another log of the run) as {column: float array}; empty cells NaN."""
    return read_csv_columns(path)


def open_log(run_dir: str | os.PathLike, name: str, resume_step: int | None) -> CsvLog:
    """The log `name` of a run (`TRAIN_LOG`, `VALID_LOG`, `METRICS_LOG`) opened for writing;
    a resumed run (`resume_step`) keeps the rows up to that step, a fresh one starts it anew."""
    return CsvLog(Path(run_dir) / name, resume_step)


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """`RUN/metrics.json` ({} when missing); a corrupt file raises and is left untouched."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise VaelabError(
            f"{path} is not valid JSON ({error}); move it away to keep its content, then re-run"
        ) from error
    if not isinstance(content, dict):
        raise VaelabError(f"{path} does not hold a JSON object; move it away, then re-run")
    return content


def merge_metrics(run_dir: str | os.PathLike, scores: dict[str, Any], *,
                  section: str | None = None, name: str | None = None, entry: Any = None,
                  protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merges `scores` into `RUN/metrics.json` (never clobbering other scores) and writes it.

    The protocol section records how they were obtained: `entry` goes to
    `protocol[section][name]` (e.g. "metrics" / "mig", "experiments" / "interpolation") and the
    keys of `protocol` replace those of the section. Used by `vaelab eval`, the experiments and
    the end of training; returns the merged content.
    """
    content = read_metrics(run_dir)
    content.update(scores)
    proto = content.setdefault("protocol", {})
    if section is not None:
        proto.setdefault(section, {})[name] = entry
    proto.update(protocol or {})
    atomic_write_json(Path(run_dir) / "metrics.json", content)
    return content


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

    return run_config_from_dict(check_written_by(data, str(run_dir)) if isinstance(data, dict)
                                else data)


def write_config(run_dir: str | os.PathLike, config: RunConfig) -> None:
    """Writes the resolved run config to `RUN/config.json` (atomically)."""
    atomic_write_text(Path(run_dir) / "config.json", stamped_config_json(config))


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Claims the run directory for this process (`vaelab.rundir.claim_run_dir`): refuses one in
    use or holding another run unless resuming; never deletes anything already written."""
    claim_run_dir(run_dir, resume)


# ----------------------------------------------------------------------------------------------
# Resuming from a chosen checkpoint (`vaelab train --resume RUN [--checkpoint FILE]`)


def resume_point(run_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None
                 ) -> Path | None:
    """The checkpoint `vaelab train --resume RUN [--checkpoint FILE]` continues from, or None
    when the run never saved one (it then starts over from step 0 with its stored config, and
    a note says so).

    Raises:
        FileNotFoundError: `checkpoint` was given and is not a file.
    """
    if checkpoint is not None:
        chosen = Path(checkpoint)
        if not chosen.is_file():
            raise FileNotFoundError(f"no checkpoint at {chosen}; the run's checkpoints are in "
                                    f"{Path(run_dir) / 'checkpoints'} (`ls` it)")
        return chosen
    last = checkpoint_path(run_dir)
    if last.is_file():
        return last
    if has_checkpoint(Path(run_dir)):
        raise FileNotFoundError(
            f"{last} is missing but the run has other checkpoints; choose one with "
            f"`vaelab train --resume {run_dir} --checkpoint FILE` (in {last.parent})")
    print(f"note: {run_dir} has no checkpoint (its run stopped before saving one); training it "
          "from step 0 with its stored config", file=sys.stderr)
    return None


def prepare_resume(run_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None
                   ) -> Path | None:
    """Claims `run_dir` for `vaelab train --resume RUN [--checkpoint FILE]` and returns the
    checkpoint to continue from (None: the run never saved one; it trains from step 0).

    Resuming from an earlier checkpoint than `last.ckpt` would overwrite the later state as
    training goes on (last.ckpt, later periodic checkpoints, best.ckpt, the log rows after the
    chosen step). So those checkpoints are first moved, and the logs and scores copied, into
    `checkpoints/before-resume-from-<name>/`: nothing already written is lost.
    """
    run_dir = Path(run_dir)
    claim_run_dir(run_dir, resume=True)
    try:
        start = resume_point(run_dir, checkpoint)
        last = checkpoint_path(run_dir)
        if start is None or start.resolve() == last.resolve():
            return start
        step = int(load_checkpoint(start).get("step", 0))  # a corrupt choice fails here, first
        _set_aside_later_state(run_dir, start, step)
        return start
    except BaseException:
        release_run_dir(run_dir)
        raise


def _set_aside_later_state(run_dir: Path, start: Path, step: int) -> Path | None:
    """Moves the checkpoints later than `start` (step `step`) and copies the logs into
    `checkpoints/before-resume-from-<start's name>/`; returns that folder (None: nothing later)."""
    folder = run_dir / "checkpoints"
    later = []
    for path in sorted(folder.glob("*.ckpt")):
        if path.resolve() == start.resolve():
            continue
        digits = path.stem.removeprefix("step-")
        if path.stem.startswith("step-") and digits.isdigit() and int(digits) <= step:
            continue  # an earlier periodic checkpoint: the resumed run never rewrites it
        later.append(path)
    if not later:
        return None
    aside = folder / f"before-resume-from-{start.stem}"
    n = 1
    while aside.exists():
        n += 1
        aside = folder / f"before-resume-from-{start.stem}-{n}"
    aside.mkdir()
    for name in ("train_log.csv", "valid_log.csv", "metrics_log.csv", "summary.json",
                 "metrics.json"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, aside / name)
    for path in later:
        os.replace(path, aside / path.name)
    print(f"note: resuming {run_dir} from {start} (step {step}); the later checkpoints and the "
          f"logs as they were are kept in {aside}", file=sys.stderr)
    return aside


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
        metrics=read_metrics(run_dir),
        step=int(state.get("step", 0)),
        device=torch.device(device),
    )
