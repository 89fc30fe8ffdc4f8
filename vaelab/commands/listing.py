"""`vaelab list presets|sweeps|models|objectives|datasets|metrics|plots`.

Models are listed with their latents and the objectives that accept their output, objectives
with the models they can train, so an incompatible pair is visible before it is refused.
"""

from __future__ import annotations

import argparse

KINDS = ["presets", "sweeps", "models", "objectives", "datasets", "metrics", "plots"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="list registered presets, models, objectives, ...")
    parser.add_argument("kind", choices=KINDS)
    parser.set_defaults(func=run)


def _rows(names: list[str], describe) -> None:
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {describe(name)}")


OFFLINE_DATASETS = ("dsprites", "dsprites_domains", "toy_squares")


def _preset_line(name: str) -> str:
    from vaelab.commands.show import describe_length
    from vaelab.presets import describe_preset
    from vaelab.workflow import build_run_config

    config = build_run_config(name)
    needs = "offline" if config.data.name in OFFLINE_DATASETS else "needs a download"
    return (f"{describe_length(config)} on {config.data.name} ({needs}); "
            f"{describe_preset(name)}")


def _dataset_line(name: str) -> str:
    """Factors (names, and sizes where the class fixes them) and whether it needs a download."""
    from vaelab.registry import DATASETS

    cls = DATASETS.get(name)
    names = tuple(getattr(cls, "factor_names", ()) or ())
    sizes = tuple(getattr(cls, "factor_sizes", ()) or ())
    if names and len(sizes) == len(names):
        factors = "factors " + ", ".join(f"{n} {s}" for n, s in zip(names, sizes))
    elif names:
        factors = "factors " + ", ".join(names)
    else:
        factors = "no factors"
    needs = ("offline" if name in OFFLINE_DATASETS else
             "your own files" if name in ("image_folder", "npz") else "needs a download")
    return f"{factors} ({needs})"


def _sweep_line(name: str) -> str:
    from vaelab.sweep import load_sweep

    spec = load_sweep(name)
    return f"{len(spec.trials)} trials; {' '.join(spec.description.split())}"


def _model_line(name: str) -> str:
    from vaelab.factory import compatible_objectives
    from vaelab.registry import MODELS

    cls = MODELS.get(name)
    latents = ", ".join(spec.describe() for spec in cls(cls.config_class()).latents)
    return f"latents {latents}; objectives: {', '.join(compatible_objectives(name))}"


def _objective_line(name: str) -> str:
    from vaelab.factory import compatible_models
    from vaelab.registry import OBJECTIVES

    accepts = ", ".join(t.__name__ for t in OBJECTIVES.get(name).accepts)
    return f"takes {accepts}; models: {', '.join(compatible_models(name))}"


def run(args: argparse.Namespace) -> int:
    import vaelab

    if args.kind == "sweeps":
        from vaelab.sweep import sweep_names

        _rows(sweep_names(), _sweep_line)
        return 0
    names = vaelab.list_names(args.kind)
    if args.kind == "presets":
        _rows(names, _preset_line)
    elif args.kind == "models":
        _rows(names, _model_line)
    elif args.kind == "objectives":
        _rows(names, _objective_line)
    elif args.kind == "datasets":
        import vaelab.data  # noqa: F401  (registers every dataset)

        _rows(names, _dataset_line)
    else:
        for name in names:
            print(name)
    return 0
