"""The training engine: `fit(config, run_dir)` on Lightning Fabric with a thin loop of our own.

`fit` is three parts, each read top to bottom:

1. `_setup`: Fabric (device(s), precision, DDP), the run directory, the dataset and its batch
   source, the model and objective (checked against each other when the config was built), the
   `Updater` that owns every optimiser step, the validation set, and a resumed state.
2. `_loop`: per step, the dataset's batch source gives indices, the dataset the `Batch`, and the
   objective's `update` hook takes the step through the `Updater`. Running sums of every term stay
   on the device; the host reads them only every `train.log_every` steps (one sync), when a row of
   `train_log.csv`, TensorBoard scalars and the progress bar are written and every term is checked
   for finiteness. A non-finite term stops the run with the step and term named; checkpoints are
   written only after that check, so the last one is always good. Every `train.valid_every`
   steps a validation pass logs `valid/*` terms (`valid_log.csv`), may keep `best.ckpt`, and may
   stop the run early.
3. `_finish`: the last checkpoint, `summary.json`, and the trained run in memory (`vaelab.runs.Run`).

Checkpoints hold the model, optimiser(s), the objective's parameters and state, the step, the batch
source's position, the running sums and every RNG state, so `resume=True` continues exactly where
an interrupted run stopped (bit-identical on CPU).
"""

from __future__ import annotations

import csv
import math
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelab.callbacks import Callback
from vaelab.config import RunConfig
from vaelab.errors import VaelabError
from vaelab.models import fastconv
from vaelab.optim import Updater, build_optimizers
from vaelab.runs import (
    Run,
    atomic_write_json,
    atomic_write_text,
    checkpoint_path,
    load_checkpoint,
    read_json,
    read_train_log,
    save_checkpoint,
)

__all__ = ["Callback", "EarlyStopping", "TrainContext", "TrainingDiverged", "fit"]

BEST = "best.ckpt"


class TrainingDiverged(VaelabError):
    """A loss term became NaN or infinite."""


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
    writer: Any = None  # the TensorBoard SummaryWriter (rank 0; None without TensorBoard)
    last_row: dict[str, float] | None = None  # the last log row
    bar: Any = None  # the progress bar (rank 0 with train.progress; None otherwise)

    @property
    def device(self) -> torch.device:
        return self.fabric.device

    @property
    def is_global_zero(self) -> bool:
        return self.fabric.is_global_zero


class _StopRequested(Exception):
    pass


class EarlyStopping:
    """Stops after `patience` validation passes without an improvement larger than `min_delta`.

    The rule of the GMVAE seed (gmvae.md §5.2): the best value starts at +inf and is replaced
    only when a new value beats it by more than `min_delta`; each other pass increments a counter
    that an improvement resets; training stops when the counter exceeds `patience`, i.e. on the
    (patience + 1)-th consecutive pass without improvement.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.bad_passes = math.inf, 0

    def update(self, value: float) -> tuple[bool, bool]:
        """Records one validation value; returns (improved, stop)."""
        improved = value < self.best - self.min_delta
        if improved:
            self.best, self.bad_passes = value, 0
        else:
            self.bad_passes += 1
        return improved, bool(self.patience) and self.bad_passes > self.patience

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "bad_passes": self.bad_passes}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best, self.bad_passes = float(state["best"]), int(state["bad_passes"])


def total_steps(config: RunConfig, dataset_size: int, world_size: int = 1) -> int:
    """Optimiser steps of the run: `train.steps`, or `train.epochs` worth of full batches."""
    train = config.train
    if train.steps:
        return train.steps
    per_epoch = max(1, dataset_size // (train.batch_size * world_size))
    return max(1, math.ceil(train.epochs * per_epoch))


def _rng_state(fabric: Any) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
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
    """A CSV log (`train_log.csv`, `valid_log.csv`): one row per interval, columns fixed by the
    first row; on resume the rows after the checkpoint's step are dropped (they are redone)."""

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
            handle.write(",".join(_format(row.get(c, float("nan"))) for c in self.columns) + "\n")


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _make_fabric(config: RunConfig) -> Any:
    from lightning.fabric import Fabric

    train = config.train
    devices: Any = train.devices if train.devices != -1 else "auto"
    try:
        return Fabric(accelerator=train.accelerator, devices=devices, num_nodes=train.num_nodes,
                      strategy=train.strategy, precision=run_precision(train))
    except (ValueError, RuntimeError, TypeError) as error:
        raise VaelabError(f"cannot set up the device with the train.* settings: {error}") from error


def run_precision(train: Any) -> str:
    """`train.precision`, with "auto" resolved for the device the run will use
    (`vaelab.precision.resolve_precision`: bf16-mixed only where the hardware has bf16)."""
    from vaelab.precision import resolve_precision

    if train.precision != "auto":
        return train.precision
    accelerator = train.accelerator
    cuda = accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available())
    return resolve_precision("auto", "cuda" if cuda else accelerator if accelerator == "mps"
                             else "cpu")


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Claims the run directory for this process (`vaelab.rundir.claim_run_dir`): refuses one in
    use or holding another run unless resuming; never deletes anything already written."""
    from vaelab.rundir import claim_run_dir

    claim_run_dir(run_dir, resume)


# ----------------------------------------------------------------------------------------------
# Validation


@dataclass
class _Validation:
    """The validation set and its batches, and the early-stopping / best-checkpoint record."""

    dataset: Any
    index: torch.Tensor  # (M,) items of `dataset` to validate on
    batch_size: int
    max_batches: int
    seed: int
    stopping: EarlyStopping
    log: _TrainLog | None = None  # set once the resumed step is known

    def batches(self) -> list[torch.Tensor]:
        chunks = list(self.index.split(self.batch_size))
        return chunks[: self.max_batches] if self.max_batches else chunks


def evaluate_terms(objective: nn.Module, model: nn.Module, dataset: Any,
                   batches: Sequence[torch.Tensor], step: torch.Tensor, fabric: Any = None,
                   seed: int = 0) -> dict[str, float]:
    """Every term of `objective` on `batches` of `dataset`, averaged over items, in eval mode.

    Runs without gradients under a forked, seeded RNG, so it neither changes the training's
    random stream nor depends on it (objectives that draw, like FactorVAE's permutation, draw
    the same numbers every pass). Schedules are at their final values (eval mode).
    """
    from vaelab.precision import autocast_model

    device = dataset.device
    was_training = (model.training, objective.training)
    model.eval()
    objective.eval()
    keys: list[str] = []
    total: torch.Tensor | None = None  # the weighted sums, on the device: one host sync at the end
    count = 0
    # Mixed precision as in training: autocast around the model's forward only, fp32 terms.
    forward = autocast_model(model, fabric) if fabric is not None else model
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.no_grad():
            torch.manual_seed(seed)
            for index in batches:
                terms = objective.compute(forward, dataset.batch_of(index), step)
                keys = keys or list(terms)
                values = torch.stack([terms[k].float() for k in keys]) * len(index)
                total = values if total is None else total + values
                count += len(index)
    finally:
        model.train(was_training[0])
        objective.train(was_training[1])
    if total is None:
        return {}
    return dict(zip(keys, (total.double().cpu() / max(count, 1)).tolist()))


def _validation_sets(config: RunConfig, dataset: Any, device: torch.device
                     ) -> tuple[torch.Tensor | None, _Validation | None]:
    """(training subset or None, validation) from `train.valid_*`."""
    from vaelab.config import Component
    from vaelab.data.loading import load_dataset_component

    train = config.train
    subset = None
    if train.valid_holdout:
        order = np.random.default_rng(config.seed).permutation(len(dataset))
        n_valid = max(1, round(train.valid_holdout * len(dataset)))
        held, kept = np.sort(order[:n_valid]), np.sort(order[n_valid:])
        subset = torch.as_tensor(kept, device=device)
    if not train.valid_every:
        return subset, None
    if train.valid_holdout:
        valid_data, valid_index = dataset, torch.as_tensor(held, device=device)
    else:
        import dataclasses

        valid_config = dataclasses.replace(config.data.config, split="valid")
        valid_data = load_dataset_component(Component(config.data.name, valid_config)).to(device)
        valid_index = torch.arange(len(valid_data), device=device)
    validation = _Validation(
        dataset=valid_data, index=valid_index, batch_size=train.batch_size,
        max_batches=train.valid_batches, seed=config.seed,
        stopping=EarlyStopping(train.early_stopping, train.early_stopping_delta),
    )
    return subset, validation


# ----------------------------------------------------------------------------------------------
# 1. Setup


@dataclass
class _Training:
    """Everything the loop and the finish need."""

    config: RunConfig
    run_dir: Path
    resume: bool
    fabric: Any
    dataset: Any
    model: nn.Module  # the raw model (checkpoints, callbacks, validation)
    fmodel: nn.Module  # the Fabric-wrapped (and maybe compiled) model that trains
    objective: nn.Module
    updater: Updater
    batches: Any  # vaelab.data.batches.BatchSource
    n_train: int
    steps: int
    validation: _Validation | None
    callbacks: list[Callback]
    ctx: TrainContext
    state: dict[str, Any] = field(default_factory=dict)  # step, sums, count, stopped_early


def _prepare_on_rank_zero(fabric: Any, run_dir: Path, resume: bool) -> None:
    """Rank 0 checks (and creates) the run directory; every rank raises the same error."""
    problem = None
    if fabric.is_global_zero:
        try:
            prepare_run_dir(run_dir, resume)
        except (FileExistsError, FileNotFoundError, VaelabError) as error:
            problem = (type(error), str(error))
    problem = fabric.broadcast(problem) if fabric.world_size > 1 else problem
    if problem is not None:
        raise problem[0](problem[1])


def _build(config: RunConfig, dataset: Any) -> tuple[RunConfig, nn.Module, nn.Module]:
    """The model and objective of `config` for `dataset`, and the config completed with both."""
    from vaelab.factory import (
        build_model,
        build_objective,
        resolve_model_component,
        resolve_objective_component,
    )

    model_component = resolve_model_component(config.model, dataset.image_shape)
    model = build_model(model_component)
    config = RunConfig(name=config.name, seed=config.seed, model=model_component,
                       objective=resolve_objective_component(config.objective, model),
                       data=config.data, train=config.train)
    if tuple(model.image_shape) != tuple(dataset.image_shape):
        raise VaelabError(
            f"model {model_component.name!r} takes images of shape {tuple(model.image_shape)} but "
            f"dataset {config.data.name!r} has {tuple(dataset.image_shape)}"
        )
    return config, model, build_objective(config.objective)


def _setup(config: RunConfig, run_dir: Path, resume: bool, dataset: Any,
           callbacks: Sequence[Callback], checkpoint: str | Path | None = None) -> _Training:
    from vaelab.data.loading import load_dataset_component
    from vaelab.perf import tune_allocator

    train = config.train
    if train.threads:
        torch.set_num_threads(train.threads)
    fabric = _make_fabric(config)
    if fabric.device.type == "cpu" and run_precision(train).startswith("16"):
        raise VaelabError(
            f"train.precision={train.precision!r} needs a GPU: float16 autocast on the CPU is "
            "not what trains here; use 'bf16-mixed' (fast on CPUs with AVX-512 BF16) or '32-true'"
        )
    fabric.launch()
    _prepare_on_rank_zero(fabric, run_dir, resume)
    if fabric.device.type == "cpu":
        tune_allocator()
    fabric.seed_everything(config.seed + fabric.global_rank, verbose=False)

    dataset = load_dataset_component(config.data) if dataset is None else dataset
    dataset.to(fabric.device)
    subset, validation = _validation_sets(config, dataset, fabric.device)
    n_train = len(dataset) if subset is None else len(subset)
    if n_train < train.batch_size * fabric.world_size:
        raise VaelabError(
            f"the dataset has {n_train} training images, fewer than one batch "
            f"(train.batch_size={train.batch_size} x {fabric.world_size} devices)"
        )
    config, model, objective = _build(config, dataset)
    if objective.needs_dataset_size:
        objective.set_dataset_size(n_train)
    memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if fabric.device.type == "cpu" and not train.compile and train.conv_kernels != "stock":
        fastconv.install(model, train.conv_kernels)  # no-op for fp32 under "auto"
    objective = objective.to(fabric.device)
    optimizer, own_optimizer = build_optimizers(model, objective, train)
    fmodel, optimizer = fabric.setup(model, optimizer)
    if train.compile:  # "reduce-overhead" replays the model's kernels as CUDA graphs
        fmodel = torch.compile(fmodel, mode=None if train.compile_mode == "default"
                               else train.compile_mode)
    updater = Updater(fmodel, optimizer, objective, fabric, name=config.objective.name,
                      own_optimizer=own_optimizer)

    generator = torch.Generator(device=fabric.device)
    generator.manual_seed(config.seed)
    batches = dataset.batch_source(config.data.config, train.batch_size, generator,
                                   fabric.global_rank, fabric.world_size, subset)
    ctx = TrainContext(config=config, run_dir=run_dir, model=model, objective=objective,
                       dataset=dataset, fabric=fabric)
    t = _Training(
        config=config, run_dir=run_dir, resume=resume, fabric=fabric, dataset=dataset,
        model=model, fmodel=fmodel, objective=objective, updater=updater, batches=batches,
        n_train=n_train, steps=total_steps(config, n_train, fabric.world_size),
        validation=validation, callbacks=[*_default_callbacks(config), *callbacks], ctx=ctx,
        state={"step": 0, "sums": {}, "count": 0, "stopped_early": False},
    )
    if resume:
        _restore(t, load_checkpoint(checkpoint or checkpoint_path(run_dir),
                                    map_location=fabric.device))
    if validation is not None:
        validation.log = _TrainLog(run_dir / "valid_log.csv", t.state["step"] if resume else None)
    if fabric.is_global_zero:
        from vaelab.rundir import stamped_config_json

        atomic_write_text(run_dir / "config.json", stamped_config_json(config))
    return t


def _restore(t: _Training, ckpt: dict[str, Any]) -> None:
    """Model, optimisers, objective, batch position, running sums and RNGs of a checkpoint."""
    t.model.load_state_dict(ckpt["model"])
    t.updater.load_state_dict(ckpt)
    t.objective.load_state_dict(ckpt["objective"])
    t.objective.load_extra_state_dict(ckpt.get("objective_extra", {}))
    # Checkpoints before batch sources kept the epoch permutation's position at the top level.
    batches = ckpt.get("batches") or {k: ckpt[k] for k in ("epoch", "position", "perm_state")}
    t.batches.load_state_dict(batches)
    t.state.update(step=ckpt["step"], count=ckpt["count"],
                   sums={k: v.to(t.fabric.device) for k, v in ckpt["sums"].items()})
    if t.validation is not None and ckpt.get("validation"):
        t.validation.stopping.load_state_dict(ckpt["validation"])
    t.ctx.step = t.state["step"]
    _set_rng_state(ckpt["rng"][min(t.fabric.global_rank, len(ckpt["rng"]) - 1)], t.fabric)


def _checkpoint(t: _Training, step: int, periodic: bool, path: Path | None = None) -> None:
    state = t.state
    payload = {
        "model": t.model.state_dict(),
        **t.updater.state_dict(),
        "objective": t.objective.state_dict(),
        "objective_extra": t.objective.extra_state_dict(),
        "step": step,
        "batches": t.batches.state_dict(),
        "sums": {k: v.detach().cpu() for k, v in state["sums"].items()},
        "count": state["count"],
        "validation": t.validation.stopping.state_dict() if t.validation is not None else None,
        "rng": [_rng_state(t.fabric)],
        "dataset_size": t.n_train,
        "config": t.config.to_dict(),
        **_version_stamp(),
    }
    if t.fabric.is_global_zero:
        save_checkpoint(path or checkpoint_path(t.run_dir), payload)
        if periodic:
            save_checkpoint(checkpoint_path(t.run_dir, step), payload)
            _prune_checkpoints(t.run_dir, t.config.train.keep_checkpoints)
    if path is None:
        for callback in t.callbacks:
            callback.on_checkpoint(t.ctx, step)


# ----------------------------------------------------------------------------------------------
# 2. The loop


def _loop(t: _Training) -> dict[str, Any]:
    """Trains to `t.steps`; returns the images seen, the loop time and the last log row."""
    train, state, fabric = t.config.train, t.state, t.fabric
    log = _TrainLog(t.run_dir / "train_log.csv", state["step"] if t.resume else None)
    writer = _tensorboard(t.run_dir) if fabric.is_global_zero else None
    t.ctx.writer = writer
    bar = t.ctx.bar = _progress(t.config, t.steps, state["step"], fabric.is_global_zero)
    stop = {"requested": False}
    previous_handler = (signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))
                        if _main_thread() else None)
    for callback in t.callbacks:
        callback.on_train_start(t.ctx)
    step_tensor = torch.full((), float(state["step"]), device=fabric.device)
    progress = {"images": 0, "time": 0.0, "row": {}, "writer": writer, "bar": bar}
    t.fmodel.train()
    t_interval = time.perf_counter()
    try:
        while state["step"] < t.steps and not state["stopped_early"]:
            batch = t.dataset.batch_of(t.batches.next())
            if train.binarize == "dynamic":  # the global generator: restored on resume
                batch.x = torch.bernoulli(batch.x)
            if train.channels_last and batch.x.dim() == 4:
                batch.x = batch.x.contiguous(memory_format=torch.channels_last)
            step_tensor += 1
            if train.lr_schedule != "constant":
                _schedule_lr(t, state["step"])
            terms = t.objective.update(t.updater, t.fmodel, batch, step_tensor)
            state["step"] += 1
            step = t.ctx.step = state["step"]
            _accumulate(state, terms)
            for callback in t.callbacks:
                callback.on_step_end(t.ctx, step)
            boundary = step % train.log_every == 0 or step == t.steps
            ckpt_due = bool(train.checkpoint_every) and step % train.checkpoint_every == 0
            valid_due = t.validation is not None and step % train.valid_every == 0
            if not (boundary or ckpt_due or valid_due or stop["requested"]):
                continue
            elapsed = time.perf_counter() - t_interval
            if boundary or ckpt_due or stop["requested"]:
                row = _finish_interval(t, step, elapsed)
                progress["time"] += elapsed
                progress["images"] += int(row.pop("_images"))
                if boundary:
                    _write_row(t, log, progress, step, row)
            if valid_due:
                _validate(t, step, step_tensor, writer)
            if ckpt_due and step < t.steps:
                _checkpoint(t, step, periodic=True)
            if stop["requested"]:
                _checkpoint(t, step, periodic=False)
                raise _StopRequested
            t_interval = time.perf_counter()
    except _StopRequested:
        _close(bar, writer)
        raise KeyboardInterrupt(
            f"stopped at step {state['step']}; resume with `vaelab train --resume {t.run_dir}`"
        ) from None
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    return progress


def _schedule_lr(t: _Training, step: int) -> None:
    """Sets every optimiser's rate for step `step` + 1 (of `t.steps`) from its starting rate.

    Stateless: the starting rate is kept in each param group as `initial_lr` (saved with the
    optimiser, so a resumed run follows the same schedule) and the rate is a function of the step.
    """
    train = t.config.train
    progress = min(1.0, step / max(1, t.steps - 1))
    factor = train.lr_final + (1.0 - train.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    for optimizer in (t.updater.optimizer, t.updater.own_optimizer):
        for group in getattr(optimizer, "param_groups", ()):
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


def _accumulate(state: dict[str, Any], terms: dict[str, torch.Tensor]) -> None:
    sums = state["sums"]
    for key, value in terms.items():
        if key in sums:
            sums[key].add_(value)
        else:
            sums[key] = value.detach().clone()
    state["count"] += 1


def _write_row(t: _Training, log: _TrainLog, progress: dict[str, Any], step: int,
               row: dict[str, float]) -> None:
    progress["row"] = t.ctx.last_row = row
    if t.fabric.is_global_zero:
        log.write(row)
        _tensorboard_row(progress["writer"], row, "train")
        bar = progress["bar"]
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{row['loss']:.2f}", refresh=False)
    for callback in t.callbacks:
        callback.on_log(t.ctx, step, row)
    t.state["sums"], t.state["count"] = {}, 0


def _finish_interval(t: _Training, step: int, elapsed: float) -> dict[str, float]:
    """Reads the running sums (one host sync), checks them, and returns the log row."""
    state, fabric = t.state, t.fabric
    count = max(state["count"], 1)
    keys = list(state["sums"])
    values = torch.stack([state["sums"][k].float() for k in keys]).cpu() / count
    if fabric.world_size > 1:
        values = fabric.all_reduce(values.to(fabric.device), reduce_op="mean").cpu()
    bad = [k for k, v in zip(keys, values.tolist()) if not math.isfinite(v)]
    if bad:
        first = step - state["count"] + 1
        saved = checkpoint_path(t.run_dir)
        kept = (f"The last good checkpoint is {saved} (step {load_checkpoint(saved)['step']})"
                if saved.is_file() else "No checkpoint had been written yet (`vaelab "
                f"train --resume {t.run_dir} --set train.lr=SMALLER` trains it again from step 0)")
        raise TrainingDiverged(
            f"loss term {bad[0]!r} became {values[keys.index(bad[0])].item()} between steps "
            f"{first} and {step} (terms not finite: {', '.join(bad)}); training stopped. {kept}. "
            "Lower train.lr, check the data, or try another likelihood"
        )
    n_images = state["count"] * t.config.train.batch_size * fabric.world_size
    row = {"step": float(step), "epoch": t.batches.epochs,
           "images_per_s": n_images / elapsed if elapsed > 0 else float("nan")}
    row.update({k: float(v) for k, v in zip(keys, values.tolist())})
    row["_images"] = float(n_images)
    return row


def _validate(t: _Training, step: int, step_tensor: torch.Tensor, writer: Any) -> None:
    """One validation pass: `valid/*` terms logged, best checkpoint, early stopping."""
    validation = t.validation
    assert validation is not None
    terms = evaluate_terms(t.objective, t.model, validation.dataset, validation.batches(),
                           step_tensor, t.fabric, validation.seed)
    bad = [k for k, v in terms.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"validation term {bad[0]!r} is {terms[bad[0]]} at step {step}; "
                               "the last good checkpoint is checkpoints/last.ckpt")
    improved, stop = validation.stopping.update(terms["loss"])
    row = {"step": float(step), **{f"valid/{k}": v for k, v in terms.items()}}
    if t.fabric.is_global_zero:
        validation.log.write(row)
        _tensorboard_row(writer, row, None)
    if improved and t.config.train.keep_best:
        _checkpoint(t, step, periodic=False, path=checkpoint_path(t.run_dir).with_name(BEST))
    for callback in t.callbacks:
        callback.on_validation(t.ctx, step, row)
    t.state["stopped_early"] = stop


# ----------------------------------------------------------------------------------------------
# 3. Finish


def fit(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    dataset: Any = None,
    checkpoint: str | Path | None = None,
) -> Run:
    """Trains `config` into `run_dir` and returns the trained run, in memory.

    Args:
        config: the resolved run config.
        run_dir: the run directory; it must not hold another run unless `resume`.
        resume: continue the run in `run_dir` from `checkpoints/last.ckpt`.
        callbacks: extra `Callback`s (the training GIF is added when `train.gif_every` > 0).
        dataset: an already loaded dataset to use instead of loading `config.data`.
        checkpoint: with `resume`, the checkpoint to continue from (default last.ckpt).

    Returns:
        The `Run`: the trained model and objective in eval mode on the training device, the
        dataset, the log, `summary` (as written to `summary.json`) and `global_rank`.

    Raises:
        FileExistsError: `run_dir` holds a run and `resume` is False.
        TrainingDiverged: a term became NaN/inf (the last good checkpoint stays).
    """
    run_dir = Path(run_dir)
    try:
        t = _setup(config, run_dir, resume, dataset, callbacks, checkpoint)
    except BaseException:
        # A start that fails before training (bad data, model or device) removes what this
        # process wrote since it claimed the folder, and nothing else (vaelab.rundir).
        from vaelab.rundir import clean_failed_start

        clean_failed_start(run_dir)
        raise
    progress = _loop(t)
    return _finish(t, progress)


def _finish(t: _Training, progress: dict[str, Any]) -> Run:
    state, fabric, train = t.state, t.fabric, t.config.train
    if t.resume and not progress["row"] and (t.run_dir / "summary.json").is_file():
        # Resuming a finished run: nothing was trained, so nothing is rewritten.
        _close(progress["bar"], progress["writer"])
        return _in_memory_run(t, read_json(t.run_dir / "summary.json"))
    _checkpoint(t, state["step"], periodic=bool(train.checkpoint_every))
    for callback in t.callbacks:
        callback.on_train_end(t.ctx)
    _close(progress["bar"], progress["writer"])
    loop_time = progress["time"]
    summary = {
        "name": t.config.name,
        "steps": state["step"],
        "epochs": t.batches.epochs,
        "images_seen": state["step"] * train.batch_size * fabric.world_size,
        "wall_time_s": round(loop_time, 3),
        "images_per_s": round(progress["images"] / loop_time, 1) if loop_time > 0 else None,
        "device": str(fabric.device),
        "world_size": fabric.world_size,
        "precision": run_precision(train),  # "auto" resolved
        "dataset": t.config.data.name,
        "dataset_size": t.n_train,
        "resumed": t.resume,
        "log_every": train.log_every,
        "final": {k: v for k, v in progress["row"].items() if k not in ("step", "epoch")},
    }
    if t.validation is not None:
        summary["validation"] = {"best_loss": t.validation.stopping.best,
                                 "stopped_early": state["stopped_early"]}
    if fabric.is_global_zero:
        atomic_write_json(t.run_dir / "summary.json", summary)
    fabric.barrier()  # other ranks return only once rank 0 has written everything
    return _in_memory_run(t, summary)


def _in_memory_run(t: _Training, summary: dict[str, Any]) -> Run:
    # The layout a reloaded run has, so pictures and metrics match `load_run` exactly.
    model = t.model.to(memory_format=torch.contiguous_format).eval()
    return Run(dir=t.run_dir, config=t.config, model=model, objective=t.objective.eval(),
               log=read_train_log(t.run_dir / "train_log.csv"), summary=summary,
               metrics=read_json(t.run_dir / "metrics.json"), step=t.state["step"],
               device=t.fabric.device, global_rank=t.fabric.global_rank, _dataset=t.dataset)


def _default_callbacks(config: RunConfig) -> list[Callback]:
    from vaelab.callbacks import StepProgress

    callbacks: list[Callback] = [StepProgress()] if config.train.progress else []
    if config.train.tb_images:
        from vaelab.viz.tensorboard import TensorBoardImages

        callbacks.append(TensorBoardImages())
    if config.train.gif_every:
        from vaelab.viz.training_gif import TrainingGif

        callbacks.append(TrainingGif(every=config.train.gif_every))
    if config.train.metrics_every:
        from vaelab.metrics.during_training import TrainingMetrics

        callbacks.append(TrainingMetrics(config.train.metrics_every, config.train.metrics,
                                         seed=config.seed, verbose=config.train.progress))
    return callbacks


def _version_stamp() -> dict[str, Any]:
    from vaelab.rundir import version_stamp

    return version_stamp()


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


def _tensorboard_row(writer: Any, row: dict[str, float], prefix: str | None) -> None:
    if writer is None:
        return
    step = int(row["step"])
    for key, value in row.items():
        if key != "step":
            writer.add_scalar(f"{prefix}/{key}" if prefix else key, value, step)


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
