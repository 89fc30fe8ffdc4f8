"""The training engine: `fit(config, run_dir)`, a thin loop of our own on Lightning Fabric.

Read top to bottom: `fit`, then `_setup` (Fabric, run directory, data, model and objective, the
`Updater` that owns every optimiser step, a resumed state), `_loop` (the batch source gives
indices, the dataset the `Batch`, the objective's `update` hook takes the step; running sums stay
on the device and are read every `train.log_every` steps, one sync, checked for finiteness and
handed to the callbacks as a log row) and `_finish` (last checkpoint, `summary.json`, the run).
What a run records is callbacks (`vaelab.loggers.standard_callbacks`); validation and early
stopping are `vaelab.validation`. Checkpoints are written only after the finiteness check and
hold everything (model, optimisers, objective, step, batch position, running sums, RNG states),
so `resume=True` continues exactly where a run stopped (bit-identical on CPU).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelab import runs
from vaelab.callbacks import Callback
from vaelab.config import RunConfig
from vaelab.errors import TrainingDiverged, VaelabError
from vaelab.io import atomic_write_json
from vaelab.models import fastconv
from vaelab.optim import Updater, build_optimizers, cosine_lr
from vaelab.precision import make_fabric, run_precision
from vaelab.rundir import clean_failed_start, version_stamp
from vaelab.runs import BEST, TRAIN_LOG, Run
from vaelab.validation import EarlyStopping, Validation, evaluate_terms, validation_sets

__all__ = ["Callback", "EarlyStopping", "TrainContext", "TrainingDiverged", "evaluate_terms",
           "fit", "run_precision", "total_steps"]


def fit(config: RunConfig, run_dir: str | Path, *, resume: bool = False,
        callbacks: Sequence[Callback] = (), dataset: Any = None,
        checkpoint: str | Path | None = None) -> Run:
    """Trains `config` into `run_dir` and returns the trained run (a `Run`), in memory.

    Args:
        config: the run config, complete (`vaelab.factory.resolve_run_config`) or with sizes
            left "from the data", which are completed here the same way.
        run_dir: the run directory; it must not hold another run unless `resume`.
        resume: continue the run in `run_dir` from `checkpoints/last.ckpt`.
        callbacks: callbacks run after those the config asks for (`standard_callbacks`).
        dataset: an already loaded dataset to use instead of loading `config.data`.
        checkpoint: with `resume`, the checkpoint to continue from (default last.ckpt).

    Raises:
        FileExistsError: `run_dir` holds a run and `resume` is False.
        TrainingDiverged: a term became NaN/inf (the last good checkpoint stays).
    """
    from vaelab.loggers import standard_callbacks

    run_dir = Path(run_dir)
    try:
        t = _setup(config, run_dir, resume, dataset, [*standard_callbacks(config), *callbacks],
                   checkpoint)
    except BaseException:
        clean_failed_start(run_dir)  # only what this process wrote since it claimed the folder
        raise
    try:
        return _finish(t, _loop(t))
    finally:
        for callback in t.callbacks:
            callback.on_close(t)


@dataclass
class TrainContext:
    """The training in progress, as callbacks see it: the run, the raw model and objective, the
    data, the Fabric, the step; and what the loop itself keeps (optimisers, batches, sums)."""

    config: RunConfig
    run_dir: Path
    model: nn.Module  # the raw model (checkpoints, callbacks, validation)
    objective: nn.Module
    dataset: Any
    fabric: Any
    fmodel: nn.Module  # the Fabric-wrapped (and maybe compiled) model that trains
    updater: Updater
    batches: Any  # vaelab.data.batches.BatchSource
    n_train: int
    steps: int  # the run's length in optimiser steps
    validation: Validation | None
    resumed: bool = False
    callbacks: list[Callback] = field(default_factory=list)
    step: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # step, sums, count, stopped_early
    writer: Any = None  # the TensorBoard SummaryWriter (rank 0, when TensorBoard logs)
    last_row: dict[str, float] | None = None  # the last log row
    bar: Any = None  # the progress bar (rank 0 with train.progress)

    @property
    def device(self) -> torch.device:
        return self.fabric.device

    @property
    def is_global_zero(self) -> bool:
        return self.fabric.is_global_zero


# 1. Setup


def _setup(config: RunConfig, run_dir: Path, resume: bool, dataset: Any,
           callbacks: list[Callback], checkpoint: str | Path | None = None) -> TrainContext:
    from vaelab.data.base import batch_transform
    from vaelab.data.loading import load_dataset_component
    from vaelab.factory import build_objective, resolve_run_config
    from vaelab.perf import configure_threads, tune_allocator

    train = config.train
    configure_threads(train.threads)
    fabric = make_fabric(train)
    fabric.launch()
    _prepare_on_rank_zero(fabric, run_dir, resume)
    if fabric.device.type == "cpu":
        tune_allocator()
    fabric.seed_everything(config.seed + fabric.global_rank, verbose=False)

    dataset = load_dataset_component(config.data) if dataset is None else dataset
    dataset.to(fabric.device)
    dataset.batch_transform = batch_transform(train.binarize)  # e.g. dynamic binarisation
    subset, validation = validation_sets(config, dataset, fabric.device)
    n_train = len(dataset) if subset is None else len(subset)
    if n_train < train.batch_size * fabric.world_size:
        raise VaelabError(
            f"the dataset has {n_train} training images, fewer than one batch "
            f"(train.batch_size={train.batch_size} x {fabric.world_size} devices)"
        )
    config, model = resolve_run_config(config, dataset.image_shape, with_model=True)
    objective = build_objective(config.objective)
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

    generator = torch.Generator(device=fabric.device).manual_seed(config.seed)
    batches = dataset.batch_source(config.data.config, train.batch_size, generator,
                                   fabric.global_rank, fabric.world_size, subset)
    t = TrainContext(
        config=config, run_dir=run_dir, model=model, objective=objective, dataset=dataset,
        fabric=fabric, fmodel=fmodel, updater=updater, batches=batches, n_train=n_train,
        steps=total_steps(config, n_train, fabric.world_size), validation=validation,
        resumed=resume, callbacks=callbacks,
        state={"step": 0, "sums": {}, "count": 0, "stopped_early": False})
    if resume:
        _restore(t, runs.load_checkpoint(checkpoint or runs.checkpoint_path(run_dir),
                                         fabric.device))
    if fabric.is_global_zero:
        runs.write_config(run_dir, config)
    return t


def _prepare_on_rank_zero(fabric: Any, run_dir: Path, resume: bool) -> None:
    """Rank 0 checks (and creates) the run directory; every rank raises the same error."""
    problem = None
    if fabric.is_global_zero:
        try:
            runs.prepare_run_dir(run_dir, resume)
        except (FileExistsError, FileNotFoundError, VaelabError) as error:
            problem = (type(error), str(error))
    problem = fabric.broadcast(problem) if fabric.world_size > 1 else problem
    if problem is not None:
        raise problem[0](problem[1])


def _restore(t: TrainContext, ckpt: dict[str, Any]) -> None:
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
    t.step = t.state["step"]
    rng = ckpt["rng"]
    runs.set_rng_state(rng[min(t.fabric.global_rank, len(rng) - 1)], t.fabric.device)


# 2. The loop


def _loop(t: TrainContext) -> dict[str, Any]:
    """Trains to `t.steps`; returns the images seen, the loop time and the last log row."""
    train, state, fabric = t.config.train, t.state, t.fabric
    stop = {"requested": False}
    previous_handler = (signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))
                        if threading.current_thread() is threading.main_thread() else None)
    for callback in t.callbacks:
        callback.on_train_start(t)
    step_tensor = torch.full((), float(state["step"]), device=fabric.device)
    progress = {"images": 0, "time": 0.0, "row": {}}
    t.fmodel.train()
    t_interval = time.perf_counter()
    try:
        while state["step"] < t.steps and not state["stopped_early"]:
            batch = t.dataset.training_batch(t.batches.next())  # the global generator draws
            if train.channels_last and batch.x.dim() == 4:
                batch.x = batch.x.contiguous(memory_format=torch.channels_last)
            step_tensor += 1
            if train.lr_schedule != "constant":
                cosine_lr((t.updater.optimizer, t.updater.own_optimizer), state["step"], t.steps,
                          train.lr_final)
            terms = t.objective.update(t.updater, t.fmodel, batch, step_tensor)
            state["step"] += 1
            step = t.step = state["step"]
            _accumulate(state, terms)
            for callback in t.callbacks:
                callback.on_step_end(t, step)
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
                    progress["row"] = t.last_row = row
                    for callback in t.callbacks:
                        callback.on_log(t, step, row)
                    state["sums"], state["count"] = {}, 0
            if valid_due:
                _validate(t, step, step_tensor)
            if ckpt_due and step < t.steps:
                _checkpoint(t, step, periodic=True)
            if stop["requested"]:
                _checkpoint(t, step, periodic=False)
                raise KeyboardInterrupt(f"stopped at step {step}; resume with "
                                        f"`vaelab train --resume {t.run_dir}`")
            t_interval = time.perf_counter()
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    return progress


def _accumulate(state: dict[str, Any], terms: dict[str, torch.Tensor]) -> None:
    for key, value in terms.items():
        sums = state["sums"]
        sums[key] = sums[key].add_(value) if key in sums else value.detach().clone()
    state["count"] += 1


def _finish_interval(t: TrainContext, step: int, elapsed: float) -> dict[str, float]:
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
        saved = runs.checkpoint_path(t.run_dir)
        kept = (f"The last good checkpoint is {saved} (step "
                f"{runs.load_checkpoint(saved)['step']})" if saved.is_file()
                else "No checkpoint had been written yet (`vaelab train --resume "
                f"{t.run_dir} --set train.lr=SMALLER` trains it again from step 0)")
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


def _validate(t: TrainContext, step: int, step_tensor: torch.Tensor) -> None:
    """One validation pass: `valid/*` terms to the callbacks, best checkpoint, early stopping."""
    assert t.validation is not None
    row, improved, stop = t.validation.run(t.objective, t.model, step, step_tensor, t.fabric)
    if improved and t.config.train.keep_best:
        best = runs.checkpoint_path(t.run_dir).with_name(BEST)
        _checkpoint(t, step, periodic=False, path=best)
    for callback in t.callbacks:
        callback.on_validation(t, step, row)
    t.state["stopped_early"] = stop


def _checkpoint(t: TrainContext, step: int, periodic: bool, path: Path | None = None) -> None:
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
        "rng": [runs.rng_state(t.fabric.device)],
        "dataset_size": t.n_train,
        "config": t.config.to_dict(),
        **version_stamp(),
    }
    if t.fabric.is_global_zero:
        runs.save_checkpoint(path or runs.checkpoint_path(t.run_dir), payload)
        if periodic:
            runs.save_checkpoint(runs.checkpoint_path(t.run_dir, step), payload)
            periodic_files = sorted((t.run_dir / "checkpoints").glob("step-*.ckpt"))
            keep = t.config.train.keep_checkpoints
            for old in periodic_files[:-keep] if keep > 0 else []:
                old.unlink()
    if path is None:
        for callback in t.callbacks:
            callback.on_checkpoint(t, step)


# 3. Finish


def _finish(t: TrainContext, progress: dict[str, Any]) -> Run:
    state, fabric, train = t.state, t.fabric, t.config.train
    if t.resumed and not progress["row"] and (t.run_dir / "summary.json").is_file():
        # Resuming a finished run: nothing was trained, so nothing is rewritten.
        return _in_memory_run(t, runs.read_json(t.run_dir / "summary.json"))
    _checkpoint(t, state["step"], periodic=bool(train.checkpoint_every))
    for callback in t.callbacks:
        callback.on_train_end(t)
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
        "resumed": t.resumed,
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


def _in_memory_run(t: TrainContext, summary: dict[str, Any]) -> Run:
    # The layout a reloaded run has, so pictures and metrics match `load_run` exactly.
    model = t.model.to(memory_format=torch.contiguous_format).eval()
    return Run(dir=t.run_dir, config=t.config, model=model, objective=t.objective.eval(),
               log=runs.read_train_log(t.run_dir / TRAIN_LOG), summary=summary,
               metrics=runs.read_metrics(t.run_dir), step=t.state["step"],
               device=t.fabric.device, global_rank=t.fabric.global_rank, _dataset=t.dataset)


# Helpers


def total_steps(config: RunConfig, dataset_size: int, world_size: int = 1) -> int:
    """Optimiser steps of the run: `train.steps`, or `train.epochs` worth of full batches."""
    train = config.train
    if train.steps:
        return train.steps
    per_epoch = max(1, dataset_size // (train.batch_size * world_size))
    return max(1, math.ceil(train.epochs * per_epoch))
