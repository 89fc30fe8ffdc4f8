"""What a run records while it trains, as callbacks: CSV logs, progress bar, and loggers.

`standard_callbacks(config)` composes them from the run config: the CSV logs always (they are
the run's record: `train_log.csv`, `valid_log.csv`), the progress bar with `train.progress`, one
logger per name of `train.loggers`, TensorBoard pictures, the training GIF and the scores during
training when asked for. The loggers:

- "tensorboard" (the default): scalars and pictures under `RUN/tb`.
- "wandb": Weights & Biases (`pip install vaelab[wandb]`). The project is `$WANDB_PROJECT` or
  "vaelab"; offline with `WANDB_MODE=offline`. The run id is kept in `RUN/loggers.json`, so a
  resumed run continues the same W&B run.
- "mlflow": MLflow tracking (`pip install vaelab[mlflow]`; mlflow-skinny suffices). The store is
  `$MLFLOW_TRACKING_URI` (default `file:RUN/../mlruns`, beside the run directories); the
  experiment is `$MLFLOW_EXPERIMENT_NAME` or "vaelab". The run id is kept in `RUN/loggers.json`.

Each logger gets exactly the rows of `train_log.csv` (`on_log`), the validation rows
(`on_validation`), the pictures where TensorBoard gets them (`on_images`, called by
`vaelab.viz.tensorboard.TensorBoardImages`), and the run config as parameters. The W&B and MLflow
packages are imported only when such a logger starts, never at `import vaelab`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vaelab.callbacks import Callback
from vaelab.config import flat_dict
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_json, read_json
from vaelab.runs import TRAIN_LOG, VALID_LOG, open_log

__all__ = ["LOGGERS", "CsvLogs", "MlflowLogger", "ProgressBar", "TensorBoardLogger",
           "WandbLogger", "build_logger", "standard_callbacks"]

IDS_FILE = "loggers.json"  # {logger name: its run id}, so a resumed run continues the same run


class CsvLogs(Callback):
    """`train_log.csv` (a row every `train.log_every` steps) and `valid_log.csv` (a row per
    validation pass), written by the global-zero process. A resumed run keeps the rows up to
    its checkpoint's step and redoes the rest."""

    def __init__(self) -> None:
        self.train: Any = None
        self.valid: Any = None

    def on_train_start(self, ctx: Any) -> None:
        if not ctx.is_global_zero:
            return
        resume_step = ctx.step if ctx.resumed else None
        self.train = open_log(ctx.run_dir, TRAIN_LOG, resume_step)
        if ctx.config.train.valid_every:
            self.valid = open_log(ctx.run_dir, VALID_LOG, resume_step)

    def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        if self.train is not None:
            self.train.write(row)

    def on_validation(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        if self.valid is not None:
            self.valid.write(row)


class TensorBoardLogger(Callback):
    """Every log row's terms as TensorBoard scalars under `RUN/tb` (validation as `valid/*`);
    the writer is `ctx.writer` for the TensorBoard pictures and the scores during training."""

    def __init__(self) -> None:
        self.writer: Any = None

    def on_train_start(self, ctx: Any) -> None:
        if not ctx.is_global_zero:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency; tolerate a broken install
            return
        self.writer = ctx.writer = SummaryWriter(log_dir=str(ctx.run_dir / "tb"))

    def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        self._scalars(row, "train")

    def on_validation(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        self._scalars(row, None)

    def _scalars(self, row: dict[str, float], prefix: str | None) -> None:
        if self.writer is None:
            return
        step = int(row["step"])
        for key, value in row.items():
            if key != "step":
                self.writer.add_scalar(f"{prefix}/{key}" if prefix else key, value, step)

    def on_close(self, ctx: Any) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ProgressBar(Callback):
    """A tqdm bar on stderr (global-zero process): it moves at every step (tqdm redraws at most
    twice a second, so a step costs an integer add) and shows the loss of each log row."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_start(self, ctx: Any) -> None:
        if not ctx.is_global_zero:
            return
        from tqdm.auto import tqdm

        self.bar = ctx.bar = tqdm(total=ctx.steps, initial=ctx.step,
                                  desc=ctx.config.name or "train", unit="step",
                                  dynamic_ncols=True, mininterval=0.5)

    def on_step_end(self, ctx: Any, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{row['loss']:.2f}", refresh=False)

    def on_close(self, ctx: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def standard_callbacks(config: Any) -> list[Callback]:
    """The callbacks a run's config asks for, in the order they run.

    The CSV logs always (they are the run's record); the progress bar with `train.progress`;
    each of `train.loggers`; pictures with `train.tb_images` (for every logger that takes
    them); the training GIF with `train.gif_every`; scores with `train.metrics_every`.
    """
    train = config.train
    callbacks: list[Callback] = [CsvLogs()]
    if train.progress:
        callbacks.append(ProgressBar())
    callbacks += [build_logger(name) for name in train.loggers]
    if train.tb_images:
        from vaelab.viz.tensorboard import TensorBoardImages

        callbacks.append(TensorBoardImages())
    if train.gif_every:
        from vaelab.viz.training_gif import TrainingGif

        callbacks.append(TrainingGif(every=train.gif_every))
    if train.metrics_every:
        from vaelab.metrics.during_training import TrainingMetrics

        callbacks.append(TrainingMetrics(train.metrics_every, train.metrics, seed=config.seed,
                                         verbose=train.progress))
    return callbacks


# ----------------------------------------------------------------------------------------------
# Experiment trackers


def _stored_id(run_dir: Path, name: str) -> str | None:
    return read_json(run_dir / IDS_FILE).get(name)


def _store_id(run_dir: Path, name: str, run_id: str) -> None:
    ids = read_json(run_dir / IDS_FILE)
    ids[name] = run_id
    atomic_write_json(run_dir / IDS_FILE, ids)


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise VaelabError(
            f"train.loggers names {extra!r}, and {module} is not installed ({error}); install it "
            f"with `pip install vaelab[{extra}]`, or drop {extra!r} from train.loggers"
        ) from None


class WandbLogger(Callback):
    """Weights & Biases: every log row and validation row as a W&B step, the config as its
    config, the TensorBoard pictures as images. The W&B run id is stored in `RUN/loggers.json`
    and reused (`resume="allow"`) when the run is resumed."""

    name = "wandb"

    def __init__(self) -> None:
        self.run: Any = None

    def on_train_start(self, ctx: Any) -> None:
        if not ctx.is_global_zero:
            return
        wandb = _require("wandb", "wandb")
        run_id = _stored_id(ctx.run_dir, self.name)  # None: W&B makes a new one
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "vaelab"), name=ctx.config.name, id=run_id,
            resume="allow", dir=os.environ.get("WANDB_DIR", str(ctx.run_dir)),
            config=flat_dict(ctx.config), reinit="create_new")
        _store_id(ctx.run_dir, self.name, self.run.id)

    def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def on_validation(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def on_images(self, ctx: Any, step: int, images: dict[str, Any]) -> None:
        """`images`: {tag: uint8 array (N, H, W, C)}, one W&B image list per tag."""
        if self.run is not None:
            import wandb

            self.run.log({tag: [wandb.Image(image) for image in batch]
                          for tag, batch in images.items()}, step=step)

    def on_close(self, ctx: Any) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


class MlflowLogger(Callback):
    """MLflow: every log row and validation row as metrics at its step, the config as
    parameters, the TensorBoard pictures as image artifacts. The MLflow run id is stored in
    `RUN/loggers.json` and reopened when the run is resumed."""

    name = "mlflow"

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id: str | None = None

    def on_train_start(self, ctx: Any) -> None:
        if not ctx.is_global_zero:
            return
        mlflow = _require("mlflow", "mlflow")
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # a local file store beside the run directories, no server or database
            uri = (ctx.run_dir.resolve().parent / "mlruns").as_uri()
            # MLflow 3 keeps its file store (in maintenance mode) behind this opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.run_id = _stored_id(ctx.run_dir, self.name)
        if self.run_id is None:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "vaelab")
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = (found.experiment_id if found is not None
                             else self.client.create_experiment(experiment))
            run = self.client.create_run(experiment_id, run_name=ctx.config.name)
            self.run_id = run.info.run_id
            for key, value in flat_dict(ctx.config).items():
                self.client.log_param(self.run_id, key, value)
            _store_id(ctx.run_dir, self.name, self.run_id)
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def _metrics(self, step: int, row: dict[str, float]) -> None:
        if self.client is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_mlflow_key(k), float(v), now, step) for k, v in row.items()
                   if k != "step"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_log(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        self._metrics(step, row)

    def on_validation(self, ctx: Any, step: int, row: dict[str, float]) -> None:
        self._metrics(step, row)

    def on_images(self, ctx: Any, step: int, images: dict[str, Any]) -> None:
        """`images`: {tag: uint8 array (N, H, W, C)}, saved as `tag/step-NNNNNNN.png` grids."""
        if self.client is None:
            return
        import numpy as np

        for tag, batch in images.items():
            grid = np.concatenate(list(batch), axis=1)  # (H, N * W, C): one row
            self.client.log_image(self.run_id, grid.squeeze(-1) if grid.shape[-1] == 1 else grid,
                                  artifact_file=f"{tag}/step-{step:07d}.png")

    def on_train_end(self, ctx: Any) -> None:
        if self.client is not None:
            self.client.set_terminated(self.run_id, status="FINISHED")
            self.client = None

    def on_close(self, ctx: Any) -> None:
        if self.client is not None:  # interrupted or failed: resumable, not finished
            self.client.set_terminated(self.run_id, status="KILLED")
            self.client = None


def _mlflow_key(key: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces: `valid/loss` stays."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


LOGGERS: dict[str, type[Callback]] = {
    "tensorboard": TensorBoardLogger,
    "wandb": WandbLogger,
    "mlflow": MlflowLogger,
}


def build_logger(name: str) -> Callback:
    """The logger callback `name`; an unknown name raises, listing the known ones."""
    if name not in LOGGERS:
        raise VaelabError(f"unknown logger {name!r} in train.loggers; known loggers: "
                          f"{', '.join(LOGGERS)}")
    return LOGGERS[name]()
