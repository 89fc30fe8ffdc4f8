"""Typed, strict configs: dataclasses built from dicts, dotted `--set` overrides, run configs.

A run is `RunConfig(name, seed, model, objective, data, train)`. `model`, `objective` and `data`
are `Component`s: a registered name plus the config dataclass of that registered class, so
`{"name": "beta_tcvae", "beta": 6.4}` becomes `Component("beta_tcvae", BetaTCConfig(beta=6.4))`.
This module knows no registry: `vaelab.factory.run_config_from_dict` resolves the names.
Unknown keys and wrong types raise `ConfigError` naming the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Component",
    "ConfigError",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "from_dict",
    "parse_override",
    "to_dict",
]


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or holds a bad value."""


# ----------------------------------------------------------------------------------------------
# Generic dataclass <-> dict conversion


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Checks (and where lossless, converts) `value` to the annotated type `tp`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values ({_type_name(tp)}), got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table/dict, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite(float(value), key)
        raise ConfigError(f"{key}: expected float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected str, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def _finite(value: float, key: str) -> float:
    """Every float setting is finite: NaN or infinity (`--set train.lr=NaN`, `Infinity`) is
    refused where it is read, not found later as a diverged run or a traceback."""
    if not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value}")
    return value


def check_value(value: Any, tp: Any, key: str) -> Any:
    """`value` checked (and converted where lossless) against the annotated type `tp`, as
    config fields are; the ConfigError names `key`."""
    return _coerce(value, tp, key)


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Builds dataclass `cls` from `data`, rejecting unknown keys and wrong types.

    Raises:
        ConfigError: naming the offending key, the expected type and the known keys.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or cls.__name__}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}' for {cls.__name__}; "
            f"known keys: {', '.join(prefix + n for n in names)}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {error}") from error


def to_dict(obj: Any) -> Any:
    """Plain JSON-able form of a config dataclass (tuples become lists)."""
    if isinstance(obj, Component):
        return {"name": obj.name, **to_dict(obj.config)}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flat_dict(config: Any) -> dict[str, Any]:
    """A config as {dotted key: number | str | bool} (lists and None become strings): the run's
    hyper-parameters for TensorBoard, W&B and MLflow."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, (int, float, str, bool)):
            flat[prefix] = value
        else:
            flat[prefix] = str(value)

    walk("", to_dict(config))
    return flat


# ----------------------------------------------------------------------------------------------
# Run config


BINARIZE = ("none", "dynamic")
LOGGERS = ("tensorboard", "wandb", "mlflow")  # `vaelab.loggers.LOGGERS`
CONV_KERNELS = ("auto", "fast", "stock")  # vaelab.models.fastconv.KERNEL_MODES
LR_SCHEDULES = ("constant", "cosine")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train: steps, optimiser, devices and precision, logging and checkpoints."""

    steps: int = 5000  # optimiser steps; 0 means "use epochs"
    epochs: float = 0.0  # passes over the data, used when steps == 0
    batch_size: int = 64  # images per optimiser step (per device)
    lr: float = 5e-4  # Adam learning rate of the model
    lr_schedule: str = "constant"  # "constant" | "cosine": every optimiser's rate follows
    #                                lr_final + (lr - lr_final)(1 + cos(pi t / T)) / 2 over the run
    lr_final: float = 0.0  # the cosine schedule's last rate, as a fraction of each starting rate
    adam_betas: tuple[float, float] = (0.9, 0.999)
    accelerator: str = "auto"  # "auto" | "cpu" | "cuda" | "mps" | "gpu"
    devices: int = 1  # devices per node (-1: all visible)
    num_nodes: int = 1
    strategy: str = "auto"  # Fabric strategy: "auto" | "ddp" | ...
    precision: str = "32-true"  # Fabric precision: "32-true" | "bf16-mixed" | "16-mixed" | ...
    #                             | "auto" (bf16-mixed where the CPU/GPU has native bf16)
    log_every: int = 50  # steps per row of train_log.csv (the mean over those steps)
    checkpoint_every: int = 1000  # steps between periodic checkpoints (0: only last.ckpt)
    keep_checkpoints: int = 0  # periodic checkpoints kept (0: keep all)
    gif_every: int = 0  # steps between training.gif frames (0: no GIF)
    tb_images: bool = True  # reconstructions and samples in TensorBoard at each log row
    metrics: tuple[str, ...] = ("default",)  # metrics run at the end ("default": the suite)
    metrics_every: int = 0  # steps between scorings of train.metrics while training, with a
    #                         small protocol, into metrics_log.csv (0: only at the end)
    progress: bool = True  # progress bar on stderr
    loggers: tuple[str, ...] = ("tensorboard",)  # where the log rows and pictures also go:
    #                          "tensorboard" (RUN/tb), "wandb", "mlflow" (vaelab.loggers; the
    #                          last two need `pip install vaelab[wandb]` / `vaelab[mlflow]`)
    threads: int = 0  # torch intra-op threads on CPU (0: torch's default, capped at the CPUs
    #                   this process may use: affinity and cgroup quota; see vaelab.perf)
    channels_last: bool = True  # NHWC memory layout for conv models (faster on CPU and GPU)
    binarize: str = "none"  # training images: "none" (as stored) | "dynamic" (every pixel drawn
    #                         as Bernoulli(x) at each step, a fresh binary image per visit, for
    #                         Bernoulli likelihoods on grey-level data such as MNIST)
    conv_kernels: str = "auto"  # transposed convolutions on CPU (vaelab.models.fastconv):
    #                             "auto": vaelab's faster backward where it is bit-identical to
    #                             PyTorch's (bf16); "fast": also in fp32 and a faster forward for
    #                             thin output layers (float rounding differs); "stock": PyTorch's
    fused_adam: bool = False  # PyTorch's fused Adam kernel for the model's and the objective's
    #                           Adam (FactorVAE's discriminator): faster, not bit-identical
    compile: bool = False  # torch.compile the model
    compile_mode: str = "default"  # torch.compile mode: "default" | "reduce-overhead" (CUDA
    #                                graphs on a GPU) | "max-autotune" | "max-autotune-no-cudagraphs"
    valid_every: int = 0  # steps between validation passes, terms logged as valid/* (0: none)
    valid_holdout: float = 0.0  # share of the training items held out for validation; 0: use
    #                             the dataset's own "valid" split
    valid_batches: int = 0  # batches per validation pass (0: the whole validation set)
    keep_best: bool = False  # also keep checkpoints/best.ckpt at the lowest valid/loss
    early_stopping: int = 0  # stop after this many validation passes without improvement (0: off)
    early_stopping_delta: float = 0.0  # an improvement beats the best valid/loss by more than this

    def __post_init__(self) -> None:
        if self.steps < 0 or self.epochs < 0:
            raise ValueError(f"steps and epochs must be >= 0, got {self.steps}, {self.epochs}")
        if self.steps == 0 and self.epochs == 0:
            raise ValueError("one of train.steps or train.epochs must be positive")
        for name in ("batch_size", "log_every", "num_nodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"adam_betas must each be in [0, 1), got {list(self.adam_betas)}")
        for name in ("checkpoint_every", "keep_checkpoints", "gif_every", "metrics_every",
                     "threads",
                     "valid_every", "valid_batches", "early_stopping"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.metrics_every and not self.metrics:
            raise ValueError("metrics_every needs metrics to score: set train.metrics "
                             "(e.g. train.metrics=mig,sap) or train.metrics_every=0")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got "
                             f"{self.compile_mode!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_final <= 1.0:
            raise ValueError(f"lr_final is a fraction of the starting rate, in [0, 1]; got "
                             f"{self.lr_final}")
        if self.conv_kernels not in CONV_KERNELS:
            raise ValueError(f"conv_kernels must be one of {CONV_KERNELS}, got "
                             f"{self.conv_kernels!r}")
        unknown = [name for name in self.loggers if name not in LOGGERS]
        if unknown:
            raise ValueError(f"unknown logger {unknown[0]!r} in loggers; known loggers: "
                             f"{', '.join(LOGGERS)}")
        if len(set(self.loggers)) != len(self.loggers):
            raise ValueError(f"loggers names one twice: {list(self.loggers)}")
        if self.binarize not in BINARIZE:
            raise ValueError(f"binarize must be one of {BINARIZE}, got {self.binarize!r}")
        if not 0.0 <= self.valid_holdout < 1.0:
            raise ValueError(f"valid_holdout must be in [0, 1), got {self.valid_holdout}")
        if self.early_stopping_delta < 0:
            raise ValueError(f"early_stopping_delta must be >= 0, got {self.early_stopping_delta}")
        for name in ("keep_best", "early_stopping"):
            if getattr(self, name) and not self.valid_every:
                raise ValueError(f"{name} needs validation passes: set train.valid_every > 0 "
                                 "(and a validation split or train.valid_holdout)")


@dataclass(frozen=True)
class Component:
    """A registered name plus the config dataclass of what it names."""

    name: str
    config: Any


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything needed to rebuild a run: what to train, on what, and how."""

    name: str = ""
    seed: int = 1234
    model: Component
    objective: Component
    data: Component
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.seed < 2**32 - 1024:  # NumPy's seeds; + rank under DDP
            raise ConfigError(f"seed: expected a whole number in [0, {2**32 - 1024}), got "
                              f"{self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


# ----------------------------------------------------------------------------------------------
# `--set key=value` overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """Splits `"objective.beta=4"` into (["objective", "beta"], 4).

    The value is read as JSON when it parses (numbers, true/false, null, [lists], "strings"),
    else as a bare string; a comma-separated value becomes a list. Types are checked later,
    against the field it lands in.
    """
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (for example objective.beta=4), got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: bad key {key!r} in {text!r}")
    return key.split("."), _parse_value(raw.strip())


def _parse_value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    if "," in raw:
        return [_parse_value(part.strip()) for part in raw.split(",") if part.strip()]
    return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Returns a deep copy of the config dict `data` with dotted `key=value` overrides applied.

    A `name` override of a component (`--set objective.name=beta_vae`) replaces that whole
    section, since the other keys belong to the old component. Explicit overrides always win
    over preset values.
    """
    result = json.loads(json.dumps(data))
    for text in overrides:
        path, value = parse_override(text)
        if path[0] in ("model", "objective", "data") and path[1:] == ["name"]:
            if result.get(path[0], {}).get("name") != value:
                result[path[0]] = {"name": value}
            continue
        if path[0] == "train" and len(path) == 2:
            # a single value where a tuple is expected: `--set train.metrics=mig`
            hints = typing.get_type_hints(TrainConfig)
            if typing.get_origin(hints.get(path[1])) is tuple and not isinstance(value, list):
                value = [] if value in ("", None) else [value]
        if path == ["train", "epochs"] and not any(
                parse_override(other)[0] == ["train", "steps"] for other in overrides):
            result.setdefault("train", {})["steps"] = 0  # --set train.epochs wins over steps
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result
