"""The training engine: `fit(config, run_dir)` on Lightning Fabric with a thin loop of our own.

Fabric sets up the device(s), precision and DDP; the loop draws index batches on the device from
the in-memory dataset, calls the objective's `training_step`, and keeps running sums of every term
on the device. The host reads them only every `train.log_every` steps (one sync), when a row of
`train_log.csv`, TensorBoard scalars and the progress bar are written, and the finiteness of every
term is checked. A non-finite term stops the run with the step and term named; checkpoints are
only written after that check, so the last one is always good.

Checkpoints hold the model, optimiser(s), the objective's parameters and state, the step, the
position in the epoch's permutation, the running sums and every RNG state, so `resume=True`
continues exactly where an interrupted run stopped (bit-identical on CPU).
"""

from __future__ import annotations

import csv
import math
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelab.config import RunConfig
from vaelab.errors import VaelabError
from vaelab.runs import (
    atomic_write_json,
    atomic_write_text,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["Callback", "TrainContext", "TrainingDiverged", "fit"]


class TrainingDiverged(VaelabError):
    """A loss term became NaN or infinite."""


class Callback:
    """Hooks the loop calls at named points; subclasses override what they need."""

    def on_train_start(self, ctx: TrainContext) -> None: ...
    def on_step_end(self, ctx: TrainContext, step: int) -> None: ...
    def on_log(self, ctx: TrainContext, step: int, row: dict[str, float]) -> None: ...
    def on_checkpoint(self, ctx: TrainContext, step: int) -> None: ...
    def on_train_end(self, ctx: TrainContext) -> None: ...


@dataclass
class TrainContext:
    """What callbacks see: the run, the raw model and objective, the data and the device."""

    config: RunConfig
    run_dir: Path
    model: nn.Module
    objective: nn.Module
    dataset: Any
    fabric: Any
    step: int = 0

    @property
    def device(self) -> torch.device:
        return self.fabric.device

    @property
    def is_global_zero(self) -> bool:
        return self.fabric.is_global_zero


class _StopRequested(Exception):
    pass


def total_steps(config: RunConfig, dataset_size: int, world_size: int = 1) -> int:
    """Optimiser steps of the run: `train.steps`, or `train.epochs` worth of full batches."""
    train = config.train
    if train.steps:
        return train.steps
    per_epoch = max(1, dataset_size // (train.batch_size * world_size))
    return max(1, math.ceil(train.epochs * per_epoch))


def _rng_state(fabric: Any) -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if fabric.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(fabric.device)
    return state


def _set_rng_state(state: dict[str, Any], fabric: Any) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and fabric.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], fabric.device)


class _TrainLog:
    """`train_log.csv`: one row per logging interval, columns fixed by the first row."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if resume_step is not None and path.is_file():
            # Keep the rows up to the checkpoint; later ones are redone by the resumed run.
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
            handle.write(",".join(_format(row.get(c, float("nan"))) for c in self.columns) + "\n")


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _make_fabric(config: RunConfig) -> Any:
    from lightning.fabric import Fabric

    train = config.train
    devices: Any = train.devices if train.devices != -1 else "auto"
    try:
        return Fabric(
            accelerator=train.accelerator,
            devices=devices,
            num_nodes=train.num_nodes,
            strategy=train.strategy,
            precision=train.precision,
        )
    except (ValueError, RuntimeError, TypeError) as error:
        raise VaelabError(f"cannot set up the device with the train.* settings: {error}") from error


class _SyncedOptimizer:
    """Wraps the objective's own optimiser: averages its gradients over DDP ranks before a step.

    The objective's parameters (a discriminator) are not wrapped in DDP, because the objective
    is called directly rather than through a DDP forward.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, fabric: Any, params: list[nn.Parameter]):
        self.optimizer, self.fabric, self.params = optimizer, fabric, params

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        if self.fabric.world_size > 1:
            for p in self.params:
                if p.grad is not None:
                    p.grad.copy_(self.fabric.all_reduce(p.grad, reduce_op="mean"))
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuses to reuse a directory that holds a run unless resuming; never deletes anything."""
    if resume:
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"cannot resume {run_dir}: it has no config.json")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"{run_dir} already exists and is not empty; nothing was changed. Continue it with "
            f"`vaelab train --resume {run_dir}`, or choose a new name with --name (or --out DIR)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


def fit(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    dataset: Any = None,
) -> dict[str, Any]:
    """Trains `config` into `run_dir` and returns the run summary.

    Args:
        config: the resolved run config.
        run_dir: the run directory; it must not hold another run unless `resume`.
        resume: continue the run in `run_dir` from `checkpoints/last.ckpt`.
        callbacks: extra `Callback`s (the training GIF is added when `train.gif_every` > 0).
        dataset: an already loaded dataset to use instead of loading `config.data`.

    Returns:
        The summary written to `summary.json`, plus `global_rank` (the caller's DDP rank).

    Raises:
        FileExistsError: `run_dir` holds a run and `resume` is False.
        TrainingDiverged: a term became NaN/inf (the last good checkpoint stays).
    """
    from vaelab.data.loading import load_dataset_component
    from vaelab.factory import (
        build_model,
        build_objective,
        resolve_model_component,
        resolve_objective_component,
    )
    from vaelab.perf import tune_allocator

    run_dir = Path(run_dir)
    train = config.train
    if train.threads:
        torch.set_num_threads(train.threads)
    fabric = _make_fabric(config)
    fabric.launch()
    # Rank 0 checks (and creates) the run directory; every rank raises the same error.
    problem = None
    if fabric.is_global_zero:
        try:
            prepare_run_dir(run_dir, resume)
        except (FileExistsError, FileNotFoundError) as error:
            problem = (type(error), str(error))
    problem = fabric.broadcast(problem) if fabric.world_size > 1 else problem
    if problem is not None:
        raise problem[0](problem[1])
    if fabric.device.type == "cpu":
        tune_allocator()
    fabric.seed_everything(config.seed + fabric.global_rank, verbose=False)

    if dataset is None:
        dataset = load_dataset_component(config.data)
    dataset.to(fabric.device)
    n_data = len(dataset)
    if n_data < train.batch_size * fabric.world_size:
        raise VaelabError(
            f"the dataset has {n_data} images, fewer than one batch "
            f"(train.batch_size={train.batch_size} x {fabric.world_size} devices)"
        )
    model_component = resolve_model_component(config.model, dataset.image_shape)
    model = build_model(model_component)
    config = RunConfig(
        name=config.name, seed=config.seed, model=model_component,
        objective=resolve_objective_component(config.objective, model.latent_dim),
        data=config.data, train=train,
    )
    if tuple(model.image_shape) != tuple(dataset.image_shape):
        raise VaelabError(
            f"model {model_component.name!r} takes images of shape {tuple(model.image_shape)} but "
            f"dataset {config.data.name!r} has {tuple(dataset.image_shape)}"
        )
    objective = build_objective(config.objective)
    if getattr(objective, "needs_dataset_size", False):
        objective.set_dataset_size(n_data)
    memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, betas=train.adam_betas)
    raw_model = model
    fmodel, optimizer = fabric.setup(model, optimizer)
    if train.compile:
        fmodel = torch.compile(fmodel)
    objective = objective.to(fabric.device)
    aux_optimizer = objective.configure_optimizer()
    if aux_optimizer is not None:
        if train.precision.startswith("16"):
            # fabric.backward scales every gradient with the GradScaler, but the objective's own
            # optimiser is stepped outside Fabric, so its gradients would stay scaled.
            raise VaelabError(
                f"objective {config.objective.name!r} trains its own parameters, which "
                f"train.precision={train.precision!r} does not support; use '32-true' or "
                "'bf16-mixed'"
            )
        aux_optimizer = _SyncedOptimizer(aux_optimizer, fabric, list(objective.parameters()))

    steps = total_steps(config, n_data, fabric.world_size)
    generator = torch.Generator(device=fabric.device)
    generator.manual_seed(config.seed)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "sums": {}, "count": 0,
                             "perm_state": generator.get_state()}
    if resume:
        ckpt = load_checkpoint(checkpoint_path(run_dir), map_location=fabric.device)
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        objective.load_state_dict(ckpt["objective"])
        objective.load_extra_state_dict(ckpt.get("objective_extra", {}))
        if aux_optimizer is not None and ckpt.get("aux_optimizer"):
            aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        state.update({k: ckpt[k] for k in ("step", "epoch", "position", "count")})
        state["sums"] = {k: v.to(fabric.device) for k, v in ckpt["sums"].items()}
        state["perm_state"] = ckpt["perm_state"]
        _set_rng_state(ckpt["rng"][min(fabric.global_rank, len(ckpt["rng"]) - 1)], fabric)
    if fabric.is_global_zero:
        atomic_write_text(run_dir / "config.json", config.to_json() + "\n")

    ctx = TrainContext(config=config, run_dir=run_dir, model=raw_model, objective=objective,
                       dataset=dataset, fabric=fabric, step=state["step"])
    callbacks = [*_default_callbacks(config), *callbacks]
    log = _TrainLog(run_dir / "train_log.csv", state["step"] if resume else None)
    writer = _tensorboard(run_dir) if fabric.is_global_zero else None
    bar = _progress(config, steps, state["step"], fabric.is_global_zero)

    def checkpoint(step: int, periodic: bool) -> None:
        payload = {
            "model": raw_model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "objective": objective.state_dict(),
            "objective_extra": objective.extra_state_dict(),
            "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer is not None else None,
            "step": step,
            "epoch": state["epoch"],
            "position": state["position"],
            "perm_state": state["perm_state"],
            "sums": {k: v.detach().cpu() for k, v in state["sums"].items()},
            "count": state["count"],
            "rng": [_rng_state(fabric)],
            "dataset_size": n_data,
            "config": config.to_dict(),
        }
        if fabric.is_global_zero:
            save_checkpoint(checkpoint_path(run_dir), payload)
            if periodic:
                save_checkpoint(checkpoint_path(run_dir, step), payload)
                _prune_checkpoints(run_dir, train.keep_checkpoints)
        for callback in callbacks:
            callback.on_checkpoint(ctx, step)

    stop = {"requested": False}

    def request_stop(signum: int, frame: Any) -> None:
        stop["requested"] = True

    previous_handler = signal.signal(signal.SIGINT, request_stop) if _main_thread() else None
    for callback in callbacks:
        callback.on_train_start(ctx)

    per_rank = train.batch_size
    per_epoch = n_data // (per_rank * fabric.world_size)
    step_tensor = torch.full((), float(state["step"]), device=fabric.device)
    images_seen, loop_time = 0, 0.0
    last_row: dict[str, float] = {}
    generator.set_state(state["perm_state"])
    perm = torch.randperm(n_data, generator=generator, device=fabric.device)
    fmodel.train()
    t_interval = time.perf_counter()
    try:
        while state["step"] < steps:
            if state["position"] >= per_epoch:  # next epoch: a fresh permutation
                state["epoch"] += 1
                state["position"] = 0
                state["perm_state"] = generator.get_state()
                perm = torch.randperm(n_data, generator=generator, device=fabric.device)
            start = (state["position"] * fabric.world_size + fabric.global_rank) * per_rank
            x = dataset.batch(perm[start:start + per_rank])
            if train.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            step_tensor += 1
            terms = objective.training_step(fabric, fmodel, x, step_tensor, optimizer, aux_optimizer)
            state["step"] += 1
            state["position"] += 1
            ctx.step = state["step"]
            sums = state["sums"]
            for key, value in terms.items():
                if key in sums:
                    sums[key].add_(value)
                else:
                    sums[key] = value.detach().clone()
            state["count"] += 1
            step = state["step"]
            for callback in callbacks:
                callback.on_step_end(ctx, step)
            boundary = step % train.log_every == 0 or step == steps
            ckpt_due = bool(train.checkpoint_every) and step % train.checkpoint_every == 0
            if boundary or ckpt_due or stop["requested"]:
                elapsed = time.perf_counter() - t_interval
                row = _finish_interval(state, step, fabric, per_epoch, per_rank, elapsed)
                loop_time += elapsed
                images_seen += int(row.pop("_images"))
                if boundary:
                    last_row = row
                    if fabric.is_global_zero:
                        log.write(row)
                        _tensorboard_row(writer, row)
                        if bar is not None:
                            bar.update(step - bar.n)
                            bar.set_postfix(loss=f"{row['loss']:.2f}", refresh=False)
                    for callback in callbacks:
                        callback.on_log(ctx, step, row)
                    state["sums"], state["count"] = {}, 0
                if ckpt_due and step < steps:
                    checkpoint(step, periodic=True)
                if stop["requested"]:
                    checkpoint(step, periodic=False)
                    raise _StopRequested
                t_interval = time.perf_counter()
    except _StopRequested:
        _close(bar, writer)
        raise KeyboardInterrupt(
            f"stopped at step {state['step']}; resume with `vaelab train --resume {run_dir}`"
        ) from None
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    checkpoint(state["step"], periodic=bool(train.checkpoint_every))
    _close(bar, writer)
    for callback in callbacks:
        callback.on_train_end(ctx)
    summary = {
        "name": config.name,
        "steps": state["step"],
        "epochs": state["epoch"] + state["position"] / max(per_epoch, 1),
        "images_seen": state["step"] * per_rank * fabric.world_size,
        "wall_time_s": round(loop_time, 3),
        "images_per_s": round(images_seen / loop_time, 1) if loop_time > 0 else None,
        "device": str(fabric.device),
        "world_size": fabric.world_size,
        "precision": train.precision,
        "dataset": config.data.name,
        "dataset_size": n_data,
        "resumed": resume,
        "log_every": train.log_every,
        "final": {k: v for k, v in last_row.items() if k not in ("step", "epoch")},
    }
    if fabric.is_global_zero:
        atomic_write_json(run_dir / "summary.json", summary)
    fabric.barrier()  # other ranks return only once rank 0 has written everything
    return {**summary, "global_rank": fabric.global_rank}


def _finish_interval(state, step, fabric, per_epoch, per_rank, elapsed) -> dict[str, float]:
    """Reads the running sums (one host sync), checks them, and returns the log row."""
    count = max(state["count"], 1)
    keys = list(state["sums"])
    values = torch.stack([state["sums"][k].float() for k in keys]).cpu() / count
    if fabric.world_size > 1:
        values = fabric.all_reduce(values.to(fabric.device), reduce_op="mean").cpu()
    bad = [k for k, v in zip(keys, values.tolist()) if not math.isfinite(v)]
    if bad:
        first = step - state["count"] + 1
        raise TrainingDiverged(
            f"loss term {bad[0]!r} became {values[keys.index(bad[0])].item()} between steps "
            f"{first} and {step} (terms not finite: {', '.join(bad)}); training stopped. The last "
            "good checkpoint is checkpoints/last.ckpt. Lower train.lr, check the data, or try "
            "another likelihood"
        )
    n_images = state["count"] * per_rank * fabric.world_size
    row = {"step": float(step), "epoch": state["epoch"] + state["position"] / max(per_epoch, 1),
           "images_per_s": n_images / elapsed if elapsed > 0 else float("nan")}
    row.update({k: float(v) for k, v in zip(keys, values.tolist())})
    row["_images"] = float(n_images)
    return row


def _default_callbacks(config: RunConfig) -> list[Callback]:
    callbacks: list[Callback] = []
    if config.train.gif_every:
        from vaelab.viz.training_gif import TrainingGif

        callbacks.append(TrainingGif(every=config.train.gif_every))
    return callbacks


def _prune_checkpoints(run_dir: Path, keep: int) -> None:
    if keep <= 0:
        return
    periodic = sorted((run_dir / "checkpoints").glob("step-*.ckpt"))
    for old in periodic[:-keep]:
        old.unlink()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; tolerate a broken install
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def _tensorboard_row(writer: Any, row: dict[str, float]) -> None:
    if writer is None:
        return
    step = int(row["step"])
    for key, value in row.items():
        if key != "step":
            writer.add_scalar(f"train/{key}", value, step)


def _progress(config: RunConfig, steps: int, start: int, is_zero: bool) -> Any:
    if not (config.train.progress and is_zero):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, initial=start, desc=config.name or "train", unit="step",
                dynamic_ncols=True, mininterval=0.5)


def _close(bar: Any, writer: Any) -> None:
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
