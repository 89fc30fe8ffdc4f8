"""`train()`: preset + overrides -> run config -> `fit` -> pictures -> metrics -> `Run`.

This is what `vaelab train` and `vaelab.train(...)` do; `vaelab.engine.fit` is the bare loop.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.callbacks import Callback
from vaelab.config import RunConfig, apply_overrides
from vaelab.errors import VaelabError
from vaelab.factory import run_config_from_dict
from vaelab.precision import bf16_hint

__all__ = ["build_run_config", "imply_split_settings", "schedule_warnings", "train"]


def build_run_config(
    preset: str | None = "default",
    overrides: Sequence[str] = (),
    config: dict[str, Any] | str | Path | None = None,
    name: str | None = None,
    variation: str | None = None,
) -> RunConfig:
    """Resolves a run config: a preset, or a config file/dict, then `key=value` overrides.

    Args:
        preset: a preset name (`vaelab list presets`), used when `config` is None.
        overrides: dotted `key=value` strings; they always win over the preset.
        config: a run-config dict, a `config.json` / `.toml` file, or a seed-style `.ini` / `.cfg` file.
        name: the run name (default: the preset's).
        variation: for `.ini` configs, "VAE" or "B-VAE" (overrides the file's variation).
    """
    from vaelab.presets import load_preset

    if config is None:
        data = load_preset(preset or "default")
    elif isinstance(config, dict):
        data = dict(config)
    else:
        data = _read_config_file(Path(config), variation)
    data.pop("description", None)
    data = apply_overrides(data, list(overrides))
    data = imply_split_settings(data, overrides)
    if name:
        data["name"] = name
    if not data.get("name"):
        data["name"] = preset or "run"
    return run_config_from_dict(data)


# What validating on the dataset's "valid" split (held out from its training images) needs;
# training on another split turns these off (`imply_split_settings`).
VALIDATION_SETTINGS = (("data", "valid_size", 0), ("train", "valid_every", 0),
                       ("train", "keep_best", False), ("train", "early_stopping", 0))


def imply_split_settings(data: dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A run config dict trained on `data.split=test` (or valid) with the validation settings
    that need the training images turned off.

    A preset that validates on the dataset's "valid" split (the GMVAE presets: data.valid_size
    held out of MNIST's training images, validation passes, early stopping, the best checkpoint)
    cannot run on the test split alone (offline, only the test files may be there). Those four
    settings are implied off, with a note naming them; one set explicitly to a value that
    validates is an error naming them all. `train.valid_holdout` (validating on a share of the
    split trained on) keeps validation on, and nothing is implied.
    """
    from vaelab.config import ConfigError, parse_override

    split = (data.get("data") or {}).get("split", "train")
    train = data.get("train") or {}
    if split == "train" or not train.get("valid_every") or train.get("valid_holdout"):
        return data
    explicit = {".".join(parse_override(text)[0]) for text in overrides}
    names = ", ".join(f"{section}.{key}={str(off).lower()}"
                      for section, key, off in VALIDATION_SETTINGS)
    implied = []
    for section, key, off in VALIDATION_SETTINGS:
        values = data.setdefault(section, {})
        if key not in values or values[key] == off:
            continue
        if f"{section}.{key}" in explicit:
            raise ConfigError(
                f"data.split={split} trains without the dataset's training images, so there "
                f"is no validation split held out of them, but {section}.{key}={values[key]} "
                f"asks for one; set {names}, or validate on part of the {split} images with "
                "train.valid_holdout=0.1"
            )
        values[key] = off
        implied.append(f"{section}.{key}={str(off).lower()}")
    print(f"note: data.split={split}: no validation on the dataset's held-out training images, "
          f"so {', '.join(implied)} (validate on part of the {split} images with "
          "train.valid_holdout=0.1)", file=sys.stderr)
    return data


def _read_config_file(path: Path, variation: str | None) -> dict[str, Any]:
    import json
    import tomllib

    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    suffix = path.suffix.lower()
    if suffix in (".ini", ".cfg"):  # the configurable-conv seed names its files config1.cfg
        from vaelab.ini import run_config_dict_from_ini

        return run_config_dict_from_ini(path, variation=variation)
    if variation:
        raise VaelabError("--variation applies to .ini / .cfg configs only")
    try:
        if suffix == ".toml":
            return tomllib.loads(path.read_text())
        if suffix == ".json":
            return json.loads(path.read_text())
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise VaelabError(f"cannot parse {path}: {error}") from error
    raise VaelabError(f"config files must be .toml, .json, or a seed .ini / .cfg, got {path.name}")


def train(
    preset: str | None = "default",
    *,
    overrides: Sequence[str] = (),
    config: dict[str, Any] | str | Path | RunConfig | None = None,
    name: str | None = None,
    out: str | Path = "results",
    resume: str | Path | None = None,
    checkpoint: str | Path | None = None,
    variation: str | None = None,
    evaluate: bool = True,
    pictures: bool = True,
    callbacks: Sequence[Any] = (),
    verbose: bool = True,
):
    """Trains a run and returns it loaded (`vaelab.runs.Run`; None on DDP ranks other than 0).

    Args:
        preset: preset name (see `vaelab.list_names("presets")`), used when `config` is None.
        overrides: dotted `key=value` strings, e.g. `["objective.beta=4", "train.steps=100"]`.
        config: a RunConfig, a dict, or a config file (.json/.toml/.ini/.cfg) instead of a preset.
        name: run name; the directory is `out/name`.
        out: parent folder of run directories.
        resume: a run directory to continue (its config, with `train.*` overrides applied).
        checkpoint: with `resume`, the checkpoint to continue from (default last.ckpt); the
            later state is kept aside (`vaelab.runs.prepare_resume`).
        variation: with an `.ini` config, "VAE" or "B-VAE".
        evaluate: run `train.metrics` at the end when the data has ground-truth factors.
        pictures: write reconstructions.png, samples.png and losses.png at the end.
        callbacks: extra `vaelab.callbacks.Callback`s, run after those the config asks for
            (`vaelab.loggers.standard_callbacks`: logs, loggers, pictures, scores).
        verbose: print where the results are and a short summary.
    """
    from vaelab.data.loading import load_dataset_component
    from vaelab.engine import fit, total_steps
    from vaelab.factory import resolve_run_config
    from vaelab.runs import read_config

    if resume is not None:
        run_dir = Path(resume)
        changing = [o for o in overrides if not o.strip().startswith("train.")]
        if changing:
            raise VaelabError(
                f"--resume continues the run as configured; {changing[0]!r} would change its "
                "model, objective or data (only train.* settings may change). Start a new run "
                "with these settings instead (--name NEW)"
            )
        stored = read_config(run_dir).to_dict()
        stored = apply_overrides(stored, list(overrides))
        run_config = run_config_from_dict(stored)
    else:
        if isinstance(config, RunConfig):
            run_config = config
            if name:
                run_config = run_config_from_dict({**config.to_dict(), "name": name})
        else:
            run_config = build_run_config(preset, overrides, config, name, variation)
        run_dir = _run_directory(Path(out), run_config.name)
    _check_metrics_every(run_config)
    # The config is made whole before training (the model's sizes from the data, the
    # objective's from the model): config.json is what trains, and its checks are plain checks.
    dataset = load_dataset_component(run_config.data)
    run_config = resolve_run_config(run_config, dataset.image_shape)
    train_config = run_config.train
    world = max(1, train_config.devices) * train_config.num_nodes
    warnings = schedule_warnings(run_config, total_steps(run_config, len(dataset), world))
    if hint := bf16_hint(train_config.precision, train_config.accelerator):
        warnings.append(hint)
    from vaelab.perf import busy_hint

    if hint := busy_hint(train_config.threads, train_config.accelerator):
        warnings.append(hint)
    if verbose and warnings:  # printed once the run directory is claimed (errors come first)
        callbacks = [*callbacks, _PrintAtStart(warnings)]
    from vaelab.rundir import release_run_dir
    from vaelab.runs import prepare_resume

    if checkpoint is not None and resume is None:
        raise VaelabError("--checkpoint chooses where a resumed run continues from; use it with "
                          "--resume RUN")
    start = prepare_resume(run_dir, checkpoint) if resume is not None else None
    run = fit(run_config, run_dir, resume=start is not None, callbacks=callbacks,
              dataset=dataset, checkpoint=start)
    if run.global_rank != 0:
        return None  # DDP: rank 0 writes the pictures and metrics and returns the run
    summary = run.summary
    if pictures:
        from vaelab.viz.summary import write_training_pictures

        rng = np.random.default_rng(run_config.seed)
        write_training_pictures(run.model, run.dataset(), run.log, run_dir, rng)
        draw_traversal_figure(run_dir, verbose=verbose)
        if resume is not None:
            redraw_stale_plots(run_dir, verbose=verbose)
    scores: dict[str, Any] = {}
    metrics = run_config.train.metrics
    if evaluate and metrics:
        from vaelab.data.base import FactorDataset

        if isinstance(run.dataset(), FactorDataset):
            from vaelab.evaluation import evaluate_run

            names = None if tuple(metrics) == ("default",) else list(metrics)
            scores = evaluate_run(run, metrics=names, seed=run_config.seed, progress=verbose)
            run.metrics = scores
    if verbose:
        _print_summary(run_dir, summary, scores)
    release_run_dir(run_dir)
    return run


def draw_traversal_figure(run_dir: str | Path, verbose: bool = True) -> list[Path]:
    """Draws `RUN/prior_traversals.png` at the end of training: one row per latent, highest KL
    first, each labelled with its KL and (on factor data) the factor it encodes best (the
    figure of `vaelab plot RUN traversals`, beside the other end-of-training pictures, so
    `vaelab plot RUN all` still writes its own under plots/). A failure is a warning: the
    training is never lost."""
    try:
        from vaelab.plotting import make_plots

        written = make_plots(run_dir, ["traversals"], overwrite=True, out_dir=run_dir)
    except (VaelabError, OSError, ValueError) as error:
        print(f"warning: could not draw the traversal figure: {error}", file=sys.stderr)
        return []
    if verbose:
        print(f"traversals: {written[0]} (each latent's KL and the factor it encodes)",
              file=sys.stderr)
    return written


def redraw_stale_plots(run_dir: str | Path, verbose: bool = True) -> list[Path]:
    """Redraws the pictures under `RUN/plots` that predate the last checkpoint (a resumed run).

    A kind is redrawn, with the default plot options, when one of the files it writes by default
    is stale; pictures drawn with other options (other file names) stay, and the report keeps
    naming them stale. A kind that fails is reported and skipped: the training is never lost.
    """
    from vaelab.plotting import make_plots
    from vaelab.registry import PLOTS
    from vaelab.viz.plots import PlotOptions, plot_kind_order
    from vaelab.viz.report import stale_plots

    stale = {Path(p).name for p in stale_plots(Path(run_dir))}
    kinds = [name for name in plot_kind_order()
             if stale & set(PLOTS.get(name).filenames(PlotOptions()))]
    written: list[Path] = []
    if not kinds:
        return written
    try:  # one call: the run is loaded once for every kind
        written = make_plots(run_dir, kinds, overwrite=True)
    except (VaelabError, OSError, ValueError):
        for kind in kinds:  # one kind failed: redraw the others, name the failures
            try:
                written += make_plots(run_dir, [kind], overwrite=True)
            except (VaelabError, OSError, ValueError) as error:
                print(f"warning: could not redraw the stale {kind} plot: {error}",
                      file=sys.stderr)
    if verbose and written:
        print(f"redrew {len(written)} picture(s) in {Path(run_dir) / 'plots'} from the resumed "
              "model", file=sys.stderr)
    return written


# Objective schedules that ramp a weight or a capacity linearly over this many steps.
SCHEDULES = {"warmup_steps": "the KL warm-up", "capacity_steps": "the capacity ramp"}


def schedule_warnings(config: RunConfig, steps: int) -> list[str]:
    """Warnings for objective schedules longer than the run (a disvae preset cut short: the KL
    weight never reaches 1, so the run trains a different objective than it says)."""
    from vaelab.config import to_dict

    objective = to_dict(config.objective.config) if hasattr(config.objective, "config") else {}
    warnings = []
    for key, what in SCHEDULES.items():
        length = objective.get(key, 0)
        if isinstance(length, int) and length > steps:
            warnings.append(
                f"warning: objective.{key}={length:,} is longer than the run's {steps:,} steps: "
                f"{what} ends at {steps / length:.0%} of its final value. Lower it "
                f"(--set objective.{key}={max(1, steps // 5)}) or train longer"
            )
    return warnings


class _PrintAtStart(Callback):
    """Prints `lines` on stderr when training starts (global-zero process only)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def on_train_start(self, ctx: Any) -> None:
        if ctx.is_global_zero:
            for line in self.lines:
                print(line, file=sys.stderr, flush=True)


def _check_metrics_every(config: RunConfig) -> None:
    """train.metrics_every on a dataset class without factors is refused before the run directory
    is made (datasets that may or may not carry factors, such as npz, are checked at the start)."""
    from vaelab.data.base import FactorDataset, ImageDataset
    from vaelab.registry import DATASETS

    cls = DATASETS.get(config.data.name)
    if (config.train.metrics_every and issubclass(cls, ImageDataset)
            and not issubclass(cls, FactorDataset) and not getattr(cls, "may_have_factors", False)):
        raise VaelabError(
            f"train.metrics_every needs ground-truth factors, and dataset {config.data.name!r} "
            "has none; set train.metrics_every=0 or use a factor dataset such as dsprites"
        )


def _run_directory(out: Path, name: str) -> Path:
    """`out/name`, refusing names that would leave `out` (absolute, "..", separators)."""
    if not name or Path(name).name != name or name in (".", ".."):
        raise VaelabError(
            f"run name {name!r} must be a plain folder name (no '/', '..' or absolute path): it "
            f"names a folder inside --out {out}"
        )
    return out / name


def _print_summary(run_dir: Path, summary: dict[str, Any], scores: dict[str, Any]) -> None:
    final = summary.get("final", {})
    terms = ", ".join(
        f"{k}={v:.4g}" for k, v in final.items()
        if k != "images_per_s" and not (k.startswith("kl_") and k[3:].isdigit())
    )
    lines = [
        f"results: {run_dir}",
        f"steps: {summary['steps']} ({summary['epochs']:.3f} epochs of {summary['dataset']}), "
        f"{summary['wall_time_s']:.1f} s, {summary['images_per_s']} images/s on "
        f"{summary['device']} x{summary['world_size']}",
        f"final terms (mean over the last {summary.get('log_every', '')} steps): {terms}",
    ]
    from vaelab.metrics.properties import HEADLINE

    numbers = {k: scores[k] for k in HEADLINE.values()
               if isinstance(scores.get(k), (int, float))}  # the headline scores only
    if numbers:
        lines.append("metrics: " + ", ".join(f"{k}={v:.3f}" for k, v in numbers.items()))
    print("\n".join(lines), file=sys.stdout)
