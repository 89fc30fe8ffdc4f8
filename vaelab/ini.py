"""Seed 004's INI run files (AndrewSpano/Disentangled-Variational-Autoencoder) as vaelab configs.

The seed describes a conv VAE / beta-VAE run in three INI sections (its `config*.cfg` files, read
with `ConfigParser`), read here unchanged:

    [configuration]
    dataset = MNIST                      ; MNIST | FashionMNIST | CIFAR10
    path = ../datasets/                  ; data folder ("" or absent value: vaelab's data home)
    [architecture]
    conv_layers = 3
    conv_channels = [16, 32, 64]
    conv_kernel_sizes = [(7, 7), (5, 5), (3, 3)]
    conv_strides = [(1, 1), (1, 1), (1, 1)]
    conv_paddings = [(1, 1), (1, 1), (1, 1)]
    z_dimension = 2
    [hyperparameters]
    epochs = 15
    batch_size = 32
    learning_rate = 3e-6
    beta = 4                             ; needed for the B-VAE variation only

They map onto a run dict: the `conv` model (channels, kernels, strides, paddings, latent_dim,
and the image shape of the dataset: 1x28x28 for MNIST and Fashion-MNIST, 3x32x32 for CIFAR-10),
the `vae` objective for variation ``VAE`` or `beta_vae` with beta for ``B-VAE`` (beta is actually
applied, which the seed never did), the dataset (`mnist` / `fashion_mnist` at their original 28x28,
`cifar10`), and `train.epochs`, `train.batch_size`, `train.lr`. The likelihood is Bernoulli (the
seed's summed binary cross-entropy).

Stricter than the seed, whose parser drops malformed tuples and carries on after a list of the
wrong length: every malformed value raises `ConfigError` naming the file, section and key.
Unknown keys in the three sections are errors too (the seed ignored them).

An optional fourth section, which the seed's reader ignores, holds what the seed format cannot:

    [vaelab]
    variation = B-VAE                    ; used when no --variation is given
    description = one line               ; as in the TOML presets
    name = mnist_bvae
    seed = 1
    train.precision = "bf16-mixed"       ; any dotted run-config key, JSON value (as --set)

`run_config_dict_to_ini` writes that section for everything the seed keys do not carry, so
INI -> config -> INI is lossless. Not mapped: the seed's `StepLR(epochs // 2, gamma=0.1)`
schedule (vaelab has no lr schedule yet) and its CPU-only `Trainer`.
"""

from __future__ import annotations

import ast
import configparser
import json
from pathlib import Path
from typing import Any

from vaelab.config import ConfigError, apply_overrides, from_dict
from vaelab.models.conv import ConvConfig

__all__ = [
    "DATASETS",
    "VARIATIONS",
    "run_config_dict_from_ini",
    "run_config_dict_from_ini_text",
    "run_config_dict_to_ini",
]

#: Seed dataset key -> (vaelab data section, image shape (C, H, W)).
DATASETS: dict[str, tuple[dict[str, Any], tuple[int, int, int]]] = {
    "MNIST": ({"name": "mnist", "image_size": 28}, (1, 28, 28)),
    "FashionMNIST": ({"name": "fashion_mnist", "image_size": 28}, (1, 28, 28)),
    "CIFAR10": ({"name": "cifar10"}, (3, 32, 32)),
}
#: Seed variation (`-v`) -> vaelab objective name.
VARIATIONS = {"VAE": "vae", "B-VAE": "beta_vae"}

_SECTIONS = {
    "configuration": ("dataset", "path"),
    "architecture": ("conv_layers", "conv_channels", "conv_kernel_sizes", "conv_strides",
                     "conv_paddings", "z_dimension"),
    "hyperparameters": ("epochs", "batch_size", "learning_rate", "beta"),
}
_OPTIONAL = {("hyperparameters", "beta"), ("configuration", "path")}
_GEOMETRY = {"conv_kernel_sizes": "kernels", "conv_strides": "strides",
             "conv_paddings": "paddings"}
_EXTRA = "vaelab"


# ----------------------------------------------------------------------------------------------
# Reading


class _Reader:
    """Typed access to one parsed INI file; every error names the file, section and key."""

    def __init__(self, parser: configparser.ConfigParser, source: str) -> None:
        self.parser = parser
        self.source = source

    def error(self, section: str, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{section}] {key}: {message}")

    def raw(self, section: str, key: str) -> str | None:
        if not self.parser.has_option(section, key):
            if (section, key) in _OPTIONAL:
                return None
            raise ConfigError(f"{self.source}: [{section}] is missing the key {key!r}")
        return self.parser.get(section, key).strip()

    def integer(self, section: str, key: str, low: int = 1) -> int:
        text = self.raw(section, key)
        try:
            value = int(text)
        except ValueError:
            raise self.error(section, key, f"expected an integer, got {text!r}") from None
        if value < low:
            raise self.error(section, key, f"must be >= {low}, got {value}")
        return value

    def number(self, section: str, key: str) -> int | float:
        text = self.raw(section, key)
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise self.error(section, key, f"expected a number, got {text!r}") from None

    def literal_list(self, section: str, key: str, example: str) -> list[Any]:
        text = self.raw(section, key)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, (list, tuple)):
            raise self.error(section, key, f"expected a list like {example}, got {text!r}")
        return list(value)

    def int_list(self, section: str, key: str) -> list[int]:
        values = self.literal_list(section, key, "[16, 32, 64]")
        for i, v in enumerate(values):
            if not _is_int(v):
                raise self.error(section, key, f"item {i + 1} must be an integer, got {v!r}")
        return values

    def pair_list(self, section: str, key: str) -> list[int | list[int]]:
        values = self.literal_list(section, key, "[(7, 7), (5, 5)]")
        result: list[int | list[int]] = []
        for i, v in enumerate(values):
            if _is_int(v):
                result.append(v)  # a single k means (k, k)
            elif isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_int, v)):
                result.append(list(v))
            else:
                raise self.error(section, key, f"bad tuple {v!r} at position {i + 1}: expected "
                                 "a (height, width) pair of integers such as (7, 7)")
        return result


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_value(value: Any) -> Any:
    """JSON-safe number: ints stay ints."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _parse(text: str, source: str) -> configparser.ConfigParser:
    # The seed reads with a default ConfigParser (basic interpolation, case-folded keys).
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=source)
    except configparser.Error as error:
        raise ConfigError(f"{source}: not a valid INI file: {error}") from None
    missing = [s for s in _SECTIONS if not parser.has_section(s)]
    if missing:
        raise ConfigError(
            f"{source}: missing section [{missing[0]}]; a seed INI file needs [configuration], "
            "[architecture] and [hyperparameters]"
        )
    for section, keys in _SECTIONS.items():
        unknown = sorted(set(parser.options(section)) - set(keys))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key {unknown[0]!r} in [{section}]; known keys: "
                f"{', '.join(keys)}"
            )
    return parser


def _seed_sections(reader: _Reader, variation: str) -> dict[str, Any]:
    """The run dict carried by the three seed sections (before any [vaelab] overrides)."""
    dataset = reader.raw("configuration", "dataset")
    if dataset not in DATASETS:
        raise reader.error("configuration", "dataset",
                           f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    data, (channels, height, width) = DATASETS[dataset]
    data = dict(data)
    path = reader.raw("configuration", "path")
    if path:
        data["root"] = path

    layers = reader.integer("architecture", "conv_layers")
    model: dict[str, Any] = {
        "name": "conv",
        "latent_dim": reader.integer("architecture", "z_dimension"),
        "channels": channels,
        "image_height": height,
        "image_width": width,
        "conv_channels": reader.int_list("architecture", "conv_channels"),
    }
    for key, field in _GEOMETRY.items():
        model[field] = reader.pair_list("architecture", key)
    for key, field in (("conv_channels", "conv_channels"), *_GEOMETRY.items()):
        if len(model[field]) != layers:
            raise reader.error("architecture", key,
                               f"lists {len(model[field])} blocks but conv_layers = {layers}")

    objective: dict[str, Any] = {"name": VARIATIONS[variation]}
    beta = reader.raw("hyperparameters", "beta")
    if variation == "B-VAE":
        if beta is None:
            raise ConfigError(f"{reader.source}: [hyperparameters] is missing the key 'beta', "
                              "which the B-VAE variation needs")
        objective["beta"] = _number_value(reader.number("hyperparameters", "beta"))
    elif beta is not None:
        reader.number("hyperparameters", "beta")  # still type-checked

    epochs = reader.number("hyperparameters", "epochs")
    if epochs < 0:
        raise reader.error("hyperparameters", "epochs", f"must be >= 0, got {epochs}")
    learning_rate = reader.number("hyperparameters", "learning_rate")
    if learning_rate <= 0:
        raise reader.error("hyperparameters", "learning_rate", f"must be > 0, got {learning_rate}")
    train = {
        "steps": 0,
        "epochs": float(epochs),
        "batch_size": reader.integer("hyperparameters", "batch_size"),
        "lr": float(learning_rate),
    }
    return {"model": model, "objective": objective, "data": data, "train": train}


def run_config_dict_from_ini_text(text: str, variation: str | None = None, *,
                                  source: str = "<ini>", name: str = "") -> dict[str, Any]:
    """Like `run_config_dict_from_ini`, from the file's text; `source` names it in errors."""
    parser = _parse(text, source)
    reader = _Reader(parser, source)
    extra = dict(parser.items(_EXTRA)) if parser.has_section(_EXTRA) else {}
    variation = variation or extra.pop("variation", None)
    extra.pop("variation", None)
    beta_given = parser.has_option("hyperparameters", "beta")
    variation = variation or ("B-VAE" if beta_given else "VAE")
    if variation not in VARIATIONS:
        raise ConfigError(f"{source}: unknown variation {variation!r}; "
                          f"known variations: {', '.join(VARIATIONS)}")
    result: dict[str, Any] = {}
    if "description" in extra:
        result["description"] = extra.pop("description")
    result["name"] = name
    result.update(_seed_sections(reader, variation))
    try:
        # The geometry is checked now, so the error names the file (InvalidArchitectureError).
        from_dict(ConvConfig, {k: v for k, v in result["model"].items() if k != "name"},
                  prefix="model.")
    except ConfigError as error:
        raise ConfigError(f"{source}: [architecture]: {error}") from None
    overrides = [f"{key}={value}" for key, value in extra.items()]
    try:
        return apply_overrides(result, overrides)
    except ConfigError as error:
        raise ConfigError(f"{source}: [{_EXTRA}]: {error}") from None


def run_config_dict_from_ini(path: str | Path, variation: str | None = None) -> dict[str, Any]:
    """Reads a seed-004 INI file into a run-config dict (for `run_config_from_dict`).

    Args:
        path: The INI file.
        variation: ``"VAE"`` or ``"B-VAE"`` (the seed's `-v`). None: the file's [vaelab]
            `variation`, else B-VAE when the file gives `beta` and VAE when it does not.

    Returns:
        `{"name", "model", "objective", "data", "train"}` (plus `description` and `seed` when
        the file's [vaelab] section sets them). `name` defaults to the file's stem.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: a missing section or key, a malformed list or tuple, a value of the wrong
            type, lists whose lengths differ from `conv_layers`, an impossible geometry, or an
            unknown dataset or variation; the message names the file, section and key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"INI config {str(path)!r} does not exist")
    return run_config_dict_from_ini_text(path.read_text(), variation, source=str(path),
                                         name=path.stem)


# ----------------------------------------------------------------------------------------------
# Writing


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    items: dict[str, Any] = {}
    for key, value in data.items():
        items.update(_flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return items


def _plain(value: Any) -> Any:
    """Tuples as lists, so values compare the same way they serialise."""
    return json.loads(json.dumps(value))


def _format_pairs(pairs: tuple[tuple[int, int], ...]) -> str:
    return "[" + ", ".join(f"({h}, {w})" for h, w in pairs) + "]"


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def run_config_dict_to_ini(d: dict[str, Any]) -> str:
    """Writes a run-config dict as a seed-004 INI file, the inverse of `run_config_dict_from_ini`.

    The three seed sections carry the conv geometry, latent size, dataset, epochs, batch size,
    learning rate and beta; every other setting that differs from what those sections imply goes
    to the [vaelab] section, so reading the text back gives the same dict.

    Raises:
        ConfigError: the model is not `conv`, the objective is not `vae` or `beta_vae`, or the
            dataset has no seed name (the seed format cannot describe them).
    """
    from vaelab.factory import run_config_from_dict
    from vaelab.registry import OBJECTIVES

    model = dict(d.get("model", {}))
    objective = dict(d.get("objective", {"name": "vae"}))
    data = dict(d.get("data", {}))
    train = dict(d.get("train", {}))
    if model.get("name") != "conv":
        raise ConfigError(f"only the 'conv' model has an INI form, got {model.get('name')!r}")
    variations = {v: k for k, v in VARIATIONS.items()}
    if objective.get("name") not in variations:
        raise ConfigError(f"only the objectives {', '.join(variations)} have an INI form, got "
                          f"{objective.get('name')!r}")
    datasets = {v[0]["name"]: k for k, v in DATASETS.items()}
    if data.get("name") not in datasets:
        raise ConfigError(f"only the datasets {', '.join(datasets)} have an INI form, got "
                          f"{data.get('name')!r}")
    conv = from_dict(ConvConfig, {k: v for k, v in model.items() if k != "name"}, prefix="model.")
    variation = variations[objective["name"]]
    objective_config = from_dict(OBJECTIVES.get(objective["name"]).config_class,
                                 {k: v for k, v in objective.items() if k != "name"},
                                 prefix="objective.")
    lines = [
        "[configuration]",
        f"dataset = {datasets[data['name']]}",
        f"path = {data.get('root', '')}".replace("%", "%%"),
        "",
        "[architecture]",
        f"conv_layers = {len(conv.conv_channels)}",
        f"conv_channels = [{', '.join(map(str, conv.conv_channels))}]",
        f"conv_kernel_sizes = {_format_pairs(conv.kernels)}",
        f"conv_strides = {_format_pairs(conv.strides)}",
        f"conv_paddings = {_format_pairs(conv.paddings)}",
        f"z_dimension = {conv.latent_dim}",
        "",
        "[hyperparameters]",
        f"epochs = {_format_number(train.get('epochs', 0.0))}",
        f"batch_size = {train.get('batch_size', 64)}",
        f"learning_rate = {float(train.get('lr', 5e-4))!r}",
    ]
    if variation == "B-VAE":
        lines.append(f"beta = {_format_number(objective_config.beta)}")
    seed_text = "\n".join(lines) + "\n"

    # Everything the seed sections do not carry goes to [vaelab] as dotted overrides; values
    # equal to what the seed sections imply (defaults included) are left out.
    implied = run_config_from_dict(run_config_dict_from_ini_text(seed_text, variation)).to_dict()
    implied = _flatten(_plain(implied))
    wanted = _flatten(_plain({k: v for k, v in d.items() if k != "description"}))
    wanted["model.kernels"] = _plain(conv.kernels)  # compare the normalised pairs
    wanted["model.strides"] = _plain(conv.strides)
    wanted["model.paddings"] = _plain(conv.paddings)
    extra = [f"variation = {variation}"]
    if "description" in d:
        extra.append(f"description = {d['description']}".replace("%", "%%"))
    for key, value in wanted.items():
        if key not in implied or implied[key] != value:
            extra.append(f"{key} = {json.dumps(value)}".replace("%", "%%"))
    return seed_text + "\n[" + _EXTRA + "]\n" + "\n".join(extra) + "\n"
