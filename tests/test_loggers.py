"""Loggers (`train.loggers`): TensorBoard by default; Weights & Biases and MLflow offline.

W&B runs in offline mode with its directory under tmp_path and is read back from its transaction
log (`run-<id>.wandb`); MLflow writes a `file:` store under tmp_path read back with its client.
Each logged history must equal `train_log.csv` row for row, the pictures must be logged at every
log row (where TensorBoard gets them), and a resumed run must continue the same logger run.
The W&B and MLflow tests skip when the package is absent (extras `vaelab[wandb]`,
`vaelab[mlflow]`).
"""

from __future__ import annotations

import csv
import json
import signal
import struct
from pathlib import Path

import pytest

from vaelab.callbacks import Callback
from vaelab.config import ConfigError
from vaelab.engine import fit
from vaelab.errors import VaelabError
from vaelab.factory import run_config_from_dict
from vaelab.loggers import LOGGERS, build_logger, standard_callbacks


def _csv_rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _merged_csv_rows(run_dir: Path) -> list[dict[str, float]]:
    """The rows of train_log.csv and valid_log.csv, merged by step (a logger's history)."""
    merged: dict[float, dict[str, float]] = {}
    for name in ("train_log.csv", "valid_log.csv"):
        for row in _csv_rows(run_dir / name):
            merged.setdefault(row["step"], {}).update(row)
    return [merged[step] for step in sorted(merged)]


class _CtrlC(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, ctx, step):
        if step == self.at:
            signal.raise_signal(signal.SIGINT)


def _cut_and_resume(config: dict, run_dir: Path, at: int) -> None:
    """Trains `config` into `run_dir`, interrupted at step `at`, then resumed to the end."""
    with pytest.raises(KeyboardInterrupt):
        fit(run_config_from_dict(config), run_dir, callbacks=[_CtrlC(at)])
    fit(run_config_from_dict(config), run_dir, resume=True)


def test_tensorboard_is_the_default_and_unknown_names_are_refused(tiny):
    config = run_config_from_dict(tiny_config := tiny())
    assert config.train.loggers == ("tensorboard",)
    assert [type(c).__name__ for c in standard_callbacks(config)] == [
        "CsvLogs", "TensorBoardLogger", "TensorBoardImages"]  # progress off in tiny configs
    with pytest.raises(ConfigError, match="unknown logger 'neptune'.*tensorboard, wandb, mlflow"):
        run_config_from_dict({**tiny_config, "train": {**tiny_config["train"],
                                                       "loggers": ["neptune"]}})
    with pytest.raises(VaelabError, match="known loggers: tensorboard, wandb, mlflow"):
        build_logger("neptune")
    assert list(LOGGERS) == ["tensorboard", "wandb", "mlflow"]


def test_no_logger_writes_only_the_csv_log(tmp_path, tiny):
    fit(run_config_from_dict(tiny(loggers=[])), tmp_path / "run")
    assert not (tmp_path / "run" / "tb").exists()
    assert [r["step"] for r in _csv_rows(tmp_path / "run" / "train_log.csv")] == [4, 8, 12]


def test_a_missing_package_names_the_extra(tmp_path, tiny, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb" or name.startswith("wandb."):
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(VaelabError, match=r"pip install vaelab\[wandb\]"):
        fit(run_config_from_dict(tiny(loggers=["wandb"])), tmp_path / "run")


# ----------------------------------------------------------------------------------------------
# MLflow


def _mlflow_history(uri: str, run_id: str) -> tuple[list[dict[str, float]], dict[str, str]]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    steps: dict[int, dict[str, float]] = {}
    for key in run.data.metrics:
        for metric in client.get_metric_history(run_id, key):
            steps.setdefault(metric.step, {"step": float(metric.step)})[key] = metric.value
    return [steps[s] for s in sorted(steps)], run.data.params


def test_mlflow_history_equals_the_csv_log_and_resumes_the_same_run(tmp_path, tiny, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: the file store is opt-in
    config = tiny(loggers=["mlflow"], valid_every=4, valid_holdout=0.25)
    run_dir = tmp_path / "run"
    _cut_and_resume(config, run_dir, at=6)

    run_id = json.loads((run_dir / "loggers.json").read_text())["mlflow"]
    history, params = _mlflow_history(uri, run_id)
    # row for row: every step of both CSV logs, every column, the same float64 value
    assert [r["step"] for r in _csv_rows(run_dir / "train_log.csv")] == [4, 8, 12]
    assert history == _merged_csv_rows(run_dir)
    assert params["model.latent_dim"] == "4" and params["objective.name"] == "beta_tcvae"
    client = MlflowClient(tracking_uri=uri)
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1  # resumed
    assert client.get_run(run_id).info.status == "FINISHED"
    for tag in ("images/reconstructions", "images/samples"):  # at every log row, as TensorBoard
        files = sorted(Path(a.path).name for a in client.list_artifacts(run_id, tag))
        assert files == [f"step-{s:07d}.png" for s in (4, 8, 12)], tag


# ----------------------------------------------------------------------------------------------
# Weights & Biases


def _wandb_records(path: Path) -> list:
    """The protobuf records of a W&B transaction log (`run-<id>.wandb`): the LevelDB log format
    (32 KiB blocks; each record a 7-byte header of checksum, length and type: full, first,
    middle or last fragment) after a 7-byte file header (":W&B", magic 0xBEE1, version)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1
    block, header = 32768, 7
    records, pending, offset = [], b"", 7
    while offset + header <= len(data):
        if block - offset % block < header:  # the block's tail is padding
            offset += block - offset % block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[offset:offset + header])
        if kind == 0 and length == 0:
            break
        chunk = data[offset + header:offset + header + length]
        offset += header + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # full, or the last fragment
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _wandb_history(run_files: list[Path]) -> list[dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    for path in run_files:
        for record in _wandb_records(path):
            if record.WhichOneof("record_type") != "history":
                continue
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                     for i in record.history.item}
            step = int(items.pop("_step"))
            row = {k: v for k, v in items.items() if not k.startswith("_")}
            rows.setdefault(step, {"step": float(step)}).update(row)
    return [rows[s] for s in sorted(rows)]


def test_wandb_offline_history_equals_the_csv_log_and_resumes_the_same_run(tmp_path, tiny,
                                                                          monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb_dir").mkdir()
    config = tiny(loggers=["wandb"], valid_every=4, valid_holdout=0.25)
    run_dir = tmp_path / "run"
    _cut_and_resume(config, run_dir, at=6)

    run_id = json.loads((run_dir / "loggers.json").read_text())["wandb"]
    files = sorted((tmp_path / "wandb_dir").rglob("run-*.wandb"))
    assert len(files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in files)  # resumed
    history = _wandb_history(files)
    images = [{k: v for k, v in row.items() if k.startswith("images/")} for row in history]
    scalars = [{k: v for k, v in row.items() if not k.startswith("images/")} for row in history]
    # the interrupted part logged step 4; the resumed part redoes nothing before it, then 8, 12
    assert scalars == _merged_csv_rows(run_dir)
    # at every log row, as TensorBoard: 8 images and their 8 reconstructions, 8 samples
    assert [(i["images/reconstructions/count"], i["images/samples/count"]) for i in images] == \
        [(16, 8)] * 3
