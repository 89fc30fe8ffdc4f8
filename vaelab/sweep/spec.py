"""Sweep files: a base run, fixed settings, axes (a grid or random samples), variants and seeds.

A sweep file is TOML:

    description = "beta-VAE against beta-TCVAE over beta, 3 seeds"
    preset = "default"            # the base run: a preset, or config = "base.toml" (a run config
                                  # file, relative to the sweep file)
    seeds = [1, 2, 3]             # optional: every trial once per seed (sets the run's `seed`)

    [set]                         # fixed settings of every trial, dotted keys as with `--set`
    "train.steps" = 2000

    [axes]                        # every combination of these values (the grid)
    "objective.beta" = [1, 4, 16]

    [[variants]]                  # optional alternatives, each with its own settings and sub-axes;
    set = { "objective.name" = "beta_vae" }       # the trials are the union over the variants
    [[variants]]
    set = { "objective.name" = "annealed_vae" }
    axes = { "objective.c_final" = [5, 25] }

    [search]                      # optional; default kind = "grid"
    kind = "random"               # random: `samples` draws, each axis a list (one value drawn) or
    samples = 20                  # a range { low = 1e-4, high = 1e-2, log = true, int = false }
    seed = 0

`preset` may itself be an axis (`axes.preset = ["VAE_mnist", "betaH_mnist"]`), as may any dotted
key of a run config. Every trial's run config is resolved before anything starts, through the
same `--set` path as `vaelab train`, so a bad key or value is refused with the message `--set`
gives, followed by the trial it belongs to. A trial is named from the values that vary across the
sweep (`beta_vae-beta=4-seed=1`): its run directory is `OUT/<name>`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaelab.config import ConfigError, RunConfig, to_dict

__all__ = ["SweepError", "SweepSpec", "Trial", "load_sweep", "parse_sweep", "sweep_names"]

TOP_KEYS = ("description", "preset", "config", "seeds", "set", "axes", "variants", "search")
VARIANT_KEYS = ("label", "preset", "config", "set", "axes")
SEARCH_KEYS = ("kind", "samples", "seed")
RANGE_KEYS = {"low", "high", "log", "int"}
SEARCH_KINDS = ("grid", "random")


class SweepError(ConfigError):
    """A sweep file is malformed: the message names the key and what was expected."""


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its name, the values it was given, its resolved run config."""

    name: str
    values: dict[str, Any]  # the swept values (axis keys, `preset`, `seed`) of this trial
    overrides: tuple[str, ...]  # the `--set` strings that made it from the base
    config: RunConfig

    def config_dict(self) -> dict[str, Any]:
        return to_dict(self.config)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep: its trials in order, and the keys that vary across them."""

    name: str
    description: str
    trials: list[Trial]
    varying: list[str]  # the keys that differ between trials (the sweep's hyper-parameters)
    source: str = ""  # the sweep file, for messages
    search: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Reading


def sweep_names() -> list[str]:
    """The sweep files shipped in `vaelab/presets/sweeps/` (`vaelab list sweeps`)."""
    from importlib import resources

    folder = resources.files("vaelab.presets") / "sweeps"
    return sorted(e.name[:-5] for e in folder.iterdir() if e.name.endswith(".toml"))


def load_sweep(source: str | Path) -> SweepSpec:
    """Reads and validates a sweep file, or a shipped sweep by name (`vaelab list sweeps`).

    Raises:
        FileNotFoundError: no such file and no shipped sweep of that name.
        SweepError / ConfigError: a malformed sweep or a trial whose run config is refused.
    """
    path = Path(source)
    if not path.is_file():
        if str(source) in sweep_names():
            from importlib import resources

            entry = resources.files("vaelab.presets") / "sweeps" / f"{source}.toml"
            return parse_sweep(_toml(entry.read_text(), str(source)), name=str(source),
                               source=f"sweep {source}")
        known = ", ".join(sweep_names())
        raise FileNotFoundError(f"no sweep file at {source}; give a .toml sweep file or a "
                                f"shipped sweep ({known})")
    return parse_sweep(_toml(path.read_text(), str(path)), name=path.stem, source=str(path),
                       folder=path.parent)


def _toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"cannot parse {where}: {error}") from None


def _flatten(table: Mapping[str, Any], where: str, prefix: str = "",
             leaf_ranges: bool = False) -> dict[str, Any]:
    """Nested TOML tables as dotted keys (`train.steps = 1` and `"train.steps" = 1` alike)."""
    if not isinstance(table, Mapping):
        raise SweepError(f"{where}: expected a table of dotted keys, got {table!r}")
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        is_range = leaf_ranges and isinstance(value, Mapping) and set(value) <= RANGE_KEYS
        if isinstance(value, Mapping) and not is_range:
            flat.update(_flatten(value, where, dotted + ".", leaf_ranges))
        else:
            flat[dotted] = value
    return flat


def _check_keys(table: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SweepError(f"unknown key {unknown[0]!r} in {where}; known keys: {', '.join(known)}")


# ----------------------------------------------------------------------------------------------
# Axes and search


def _check_axis(key: str, values: Any, where: str, search: str) -> None:
    if isinstance(values, Mapping):
        if search != "random":
            raise SweepError(f"{where}: axis {key!r} is a range {values!r}; ranges need "
                             '[search] kind = "random" (a grid takes a list of values)')
        if not {"low", "high"} <= set(values):
            raise SweepError(f"{where}: range axis {key!r} needs low and high, got {values!r}")
        low, high = values["low"], values["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise SweepError(f"{where}: range axis {key!r}: low and high must be numbers")
        if not low < high:
            raise SweepError(f"{where}: range axis {key!r}: low ({low}) must be below high "
                             f"({high})")
        if values.get("log") and low <= 0:
            raise SweepError(f"{where}: range axis {key!r}: log = true needs low > 0")
        return
    if not isinstance(values, list):
        raise SweepError(f"{where}: axis {key!r} must be a list of values, got {values!r} "
                         f"(a single setting belongs in [set])")
    if not values:
        raise SweepError(f"{where}: axis {key!r} is empty; give at least one value")
    seen = [json.dumps(v, sort_keys=True) for v in values]
    if len(set(seen)) != len(seen):
        raise SweepError(f"{where}: axis {key!r} repeats a value: {values!r}")


def _grid(axes: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def _draw(axes: dict[str, Any], rng: Any) -> dict[str, Any]:
    point = {}
    for key, values in axes.items():
        if isinstance(values, Mapping):
            low, high = float(values["low"]), float(values["high"])
            if values.get("log"):
                value = math.exp(rng.uniform(math.log(low), math.log(high)))
            else:
                value = rng.uniform(low, high)
            point[key] = int(round(value)) if values.get("int") else float(f"{value:.4g}")
        else:
            point[key] = values[int(rng.integers(len(values)))]
    return point


# ----------------------------------------------------------------------------------------------
# Trial names


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ",".join(_format_value(v) for v in value)
    return str(value)


def _name_parts(values: dict[str, Any], varying: list[str]) -> list[str]:
    leaves = [k.split(".")[-1] for k in varying]
    parts = []
    for key in varying:
        if key not in values:
            continue
        text = _format_value(values[key])
        if key in ("preset", "variant") or key.endswith(".name"):
            parts.append(text)
        else:
            leaf = key.split(".")[-1]
            parts.append(f"{leaf if leaves.count(leaf) == 1 else key}={text}")
    return parts


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+,-]", "_", name)


# ----------------------------------------------------------------------------------------------
# Parsing


def _set_override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def _ordered(settings: list[tuple[str, Any]]) -> list[str]:
    """`--set` strings, component names first (a `name` override replaces its section)."""
    names = [(k, v) for k, v in settings if k.endswith(".name")]
    rest = [(k, v) for k, v in settings if not k.endswith(".name")]
    return [_set_override(k, v) for k, v in [*names, *rest]]


def parse_sweep(data: Mapping[str, Any], name: str = "sweep", source: str = "sweep",
                folder: Path | None = None) -> SweepSpec:
    """Validates a sweep's dict form and resolves every trial's run config (see the module doc).

    Raises:
        SweepError: a malformed sweep (the message names the key).
        ConfigError: a trial's run config is refused (the `--set` message, then the trial).
    """
    from vaelab.workflow import build_run_config

    _check_keys(data, TOP_KEYS, source)
    search = dict(data.get("search", {}) or {})
    if not isinstance(data.get("search", {}), Mapping):
        raise SweepError(f"{source}: [search] must be a table, got {data['search']!r}")
    _check_keys(search, SEARCH_KEYS, f"{source} [search]")
    kind = search.get("kind", "grid")
    if kind not in SEARCH_KINDS:
        raise SweepError(f"{source}: search.kind must be one of {', '.join(SEARCH_KINDS)}, got "
                         f"{kind!r}")
    samples = search.get("samples", 0)
    if kind == "random" and (not isinstance(samples, int) or isinstance(samples, bool)
                             or samples < 1):
        raise SweepError(f"{source}: search.samples must be a positive integer for a random "
                         f"search, got {samples!r}")
    if kind == "grid" and "samples" in search:
        raise SweepError(f"{source}: search.samples applies to kind = \"random\" only")
    search_seed = search.get("seed", 0)
    if not isinstance(search_seed, int) or isinstance(search_seed, bool):
        raise SweepError(f"{source}: search.seed must be an integer, got {search_seed!r}")

    seeds = data.get("seeds")
    if seeds is not None:
        if (not isinstance(seeds, list) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise SweepError(f"{source}: seeds must be a non-empty list of integers, got "
                             f"{seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise SweepError(f"{source}: seeds repeats a value: {seeds!r}")

    base_set = _flatten(data.get("set", {}), f"{source} [set]")
    base_axes = _flatten(data.get("axes", {}), f"{source} [axes]", leaf_ranges=True)
    variants = data.get("variants", [{}])
    if not isinstance(variants, list) or not variants:
        raise SweepError(f"{source}: variants must be a non-empty array of tables "
                         "([[variants]] sections)")
    for key in ("seed", "name"):
        if key in base_axes or key in base_set:
            raise SweepError(f"{source}: {key!r} cannot be set or swept: "
                             + ("use seeds = [...]" if key == "seed" else
                                "trials are named from their values"))

    # Every trial's swept values and the base it starts from.
    points: list[tuple[dict[str, Any], dict[str, Any], str | None, Any]] = []
    import numpy as np

    for index, variant in enumerate(variants):
        where = f"{source} variants[{index}]"
        if not isinstance(variant, Mapping):
            raise SweepError(f"{where}: expected a table, got {variant!r}")
        _check_keys(variant, VARIANT_KEYS, where)
        v_set = _flatten(variant.get("set", {}), f"{where}.set")
        v_axes = _flatten(variant.get("axes", {}), f"{where}.axes", leaf_ranges=True)
        clash = sorted(set(v_axes) & set(base_axes)) or sorted(set(v_set) & set(v_axes))
        if clash:
            raise SweepError(f"{where}: {clash[0]!r} is given twice (axes and set, or the "
                             "sweep's axes and the variant's); give it once")
        axes = {**base_axes, **v_axes}
        for key, values in axes.items():
            _check_axis(key, values, where if key in v_axes else f"{source} [axes]", kind)
        preset = variant.get("preset", data.get("preset"))
        config = variant.get("config", data.get("config"))
        if preset is not None and config is not None:
            raise SweepError(f"{where}: give either preset or config, not both")
        if "preset" in axes and (config is not None):
            raise SweepError(f"{where}: preset is swept, so config cannot be given")
        if config is not None:
            if not isinstance(config, str):
                raise SweepError(f"{where}: config must be a path string, got {config!r}")
            config = str((folder or Path.cwd()) / config)
        settings = {**base_set, **v_set}
        label = variant.get("label")
        if kind == "grid":
            combos = _grid(axes)
        else:
            rng = np.random.default_rng(search_seed + index)
            combos = [_draw(axes, rng) for _ in range(samples)]
        for combo in combos:
            several = len(variants) > 1
            values = {**({"variant": label} if label is not None else {}),
                      **({"preset": preset} if several and preset else {}),
                      **{k: v for k, v in settings.items() if several}, **combo}
            points.append((values, {**settings, **combo}, preset, config))

    # The keys that vary across trials name them (in order of first appearance).
    keys: list[str] = []
    for values, _, _, _ in points:
        keys += [k for k in values if k not in keys]
    varying = [k for k in keys
               if len({json.dumps(v.get(k), sort_keys=True) for v, _, _, _ in points}) > 1]

    trials: list[Trial] = []
    seen: dict[str, str] = {}
    for values, settings, preset, config in points:
        for seed in seeds if seeds is not None else [None]:
            swept = {k: values[k] for k in varying if k in values}
            if seed is not None:
                swept["seed"] = seed
            parts = _name_parts(swept, [*varying, "seed"])
            trial_name = _clean("-".join(parts) or name)
            key = json.dumps(swept, sort_keys=True)
            if key in seen.values() and kind == "random":
                continue  # a random search drew the same point twice
            if trial_name in seen:
                raise SweepError(f"{source}: two trials would both be named {trial_name!r}; "
                                 "give the variants a label")
            seen[trial_name] = key
            run_preset = settings.get("preset", preset)
            overrides = _ordered([(k, v) for k, v in settings.items() if k != "preset"])
            if seed is not None:
                overrides.append(_set_override("seed", seed))
            try:
                run_config = build_run_config(run_preset or ("default" if config is None
                                                             else None),
                                              overrides, config=config, name=trial_name)
            except KeyError as error:  # an unknown preset
                message = error.args[0] if error.args else str(error)
                raise SweepError(f"{message} (in {source}, trial {trial_name})") from None
            except ConfigError as error:
                raise type(error)(f"{error} (in {source}, trial {trial_name})") from None
            trials.append(Trial(trial_name, swept, tuple(overrides), run_config))
    if not trials:
        raise SweepError(f"{source}: the sweep has no trials")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SweepError(f"{source}: description must be a string")
    return SweepSpec(name=name, description=description, trials=trials,
                     varying=[*varying, *(["seed"] if seeds is not None else [])],
                     source=source, search={"kind": kind, "samples": samples,
                                            "seed": search_seed})
