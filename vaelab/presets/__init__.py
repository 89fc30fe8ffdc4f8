"""Named presets: complete run configs, resolved before `--set` overrides (which always win).

Built in:
- `default`: the main job — beta-TCVAE on the procedural dSprites, a few minutes on a CPU.
- the 25 `<loss>_<data>` experiments of disentangling-vae (loss in VAE, betaH, betaB, factor,
  btcvae; data in mnist, fashion, dsprites, celeba, chairs), plus `best_dsprites`, `best_celeba`
  and `debug`, with the seed's effective hyper-parameters (its `hyperparam.ini` resolution:
  [Custom] defaults, then Common_<data>, Common_<loss>, then the experiment's own section). Unlike
  the seed, explicit overrides win over the preset. The seed's KL / TC / dimension-wise-KL warm-up
  (`reg_anneal` = 10,000 steps) is kept in these presets as `warmup_steps`; the objectives' own
  defaults have no warm-up. Checkpoint intervals given in epochs by the seed are converted to
  steps.
- the `study_<method>_<dataset>` presets of Locatello et al. (2019)'s protocol
  (`vaelab.presets.study`).
- `<method>_<data>` weakly supervised runs on pairs (method in ada_gvae, ada_mlvae, group_vae,
  ml_vae; data in `WEAK_DATASETS`), docs/weak.md.
- `<loss>_<data>` for the same five objectives on the benchmark datasets of Locatello et al.
  (2019) (data in shapes3d, mpi3d, smallnorb, cars3d_labelled and the dSprites variants
  dsprites_color, dsprites_noisy, dsprites_scream): 300,000 steps as in that study,
  the seed's hyper-parameters for a dataset outside its list (`_disvae_objective`'s defaults),
  the Burgess model with 10 latents. `mpi3d` presets use the `toy` variant (`--set
  data.variant=real` for the others). All but the color and noisy dSprites need a download
  (`vaelab data NAME`).
- every `<name>.toml` file in this folder (a RunConfig table plus an optional `description`), and
  every `<name>.ini` in the INI format of the configurable-conv seed (read by `vaelab.ini`).
"""

from __future__ import annotations

import copy
import functools
import tomllib
from importlib import resources
from typing import Any

__all__ = ["BENCHMARK_DATA", "BENCHMARK_STEPS", "DISVAE_DATASET_SIZES", "describe_preset", "load_preset", "preset_names"]

LOSSES = ("VAE", "betaH", "betaB", "factor", "btcvae")
DATASETS = ("mnist", "fashion", "dsprites", "celeba", "chairs")
# Training-set sizes, to turn the seed's per-epoch checkpoint intervals into steps.
DISVAE_DATASET_SIZES = {"mnist": 60000, "fashion": 60000, "dsprites": 737280,
                        "celeba": 202599, "chairs": 86366}
_DATA = {  # vaelab dataset config, epochs, checkpoint interval (epochs) of Common_<data>
    "mnist": ({"name": "mnist", "image_size": 32}, 400, 100),
    "fashion": ({"name": "fashion_mnist", "image_size": 32}, 400, 100),
    "dsprites": ({"name": "dsprites"}, 30, 10),
    "celeba": ({"name": "celeba"}, 200, 100),
    "chairs": ({"name": "chairs"}, 300, 100),
}
_WARMUP = 10000  # the seed's reg_anneal default
# The benchmark datasets of Locatello et al. (2019): preset data name -> vaelab data table.
BENCHMARK_DATA = {
    "shapes3d": {"name": "shapes3d"},
    "mpi3d": {"name": "mpi3d", "variant": "toy"},
    "smallnorb": {"name": "smallnorb"},
    "cars3d_labelled": {"name": "cars3d_labelled"},
    "dsprites_color": {"name": "dsprites", "variant": "color"},
    "dsprites_noisy": {"name": "dsprites", "variant": "noisy"},
    "dsprites_scream": {"name": "dsprites_scream"},
}
BENCHMARK_STEPS = 300_000  # Locatello et al. (2019), section 5: 300,000 training steps


def _disvae_objective(loss: str, data: str) -> tuple[dict[str, Any], float, int]:
    """(objective table, learning rate, batch size) of `<loss>_<data>` in the seed."""
    if loss == "VAE":
        return {"name": "vae", "warmup_steps": _WARMUP}, 5e-4, 64
    if loss == "betaH":
        beta = 10.0 if data == "celeba" else 4.0
        return {"name": "beta_vae", "beta": beta, "warmup_steps": _WARMUP}, 5e-4, 64
    if loss == "betaB":
        c_final = 50.0 if data == "celeba" else 25.0
        objective = {"name": "annealed_vae", "c_init": 0.0, "c_final": c_final, "gamma": 100.0,
                     "capacity_steps": 100000}
        return objective, 1e-3, 64
    if loss == "factor":
        gamma = {"dsprites": 6.4, "celeba": 6.4, "chairs": 3.2}.get(data, 6.0)
        lr_disc = {"dsprites": 1e-4, "celeba": 1e-5, "chairs": 1e-5}.get(data, 5e-5)
        objective = {"name": "factor_vae", "gamma": gamma, "lr_disc": lr_disc,
                     "warmup_steps": _WARMUP}
        return objective, 1e-4, 128  # the seed doubles batch and epochs: two halves per step
    if loss == "btcvae":
        beta = {"dsprites": 6.4, "celeba": 6.4, "chairs": 3.2}.get(data, 6.0)
        objective = {"name": "beta_tcvae", "alpha": 1.0, "beta": beta, "gamma": 1.0,
                     "warmup_steps": _WARMUP}
        return objective, 5e-4, 64
    raise KeyError(loss)


def _disvae_preset(loss: str, data: str) -> dict[str, Any]:
    objective, lr, batch = _disvae_objective(loss, data)
    data_table, epochs, ckpt_epochs = _DATA[data]
    if loss == "factor":
        epochs *= 2
    steps_per_epoch = DISVAE_DATASET_SIZES[data] // batch
    return {
        "description": f"disentangling-vae experiment {loss}_{data}",
        "name": f"{loss}_{data}",
        "seed": 1234,
        "model": {"name": "burgess", "latent_dim": 10},
        "objective": objective,
        "data": dict(data_table),
        "train": {"steps": 0, "epochs": float(epochs), "batch_size": batch, "lr": lr,
                  "checkpoint_every": ckpt_epochs * steps_per_epoch, "log_every": 50},
    }


#: Weakly supervised presets `<method>_<data>` (Locatello et al., 2020; docs/weak.md): one row
#: per factor dataset, its data table (the `pairs` options are added). Add a row for a new
#: factor dataset and its four presets appear.
WEAK_DATASETS: dict[str, dict[str, Any]] = {
    "dsprites": {"name": "dsprites"},
    "shapes3d": {"name": "shapes3d"},
    "smallnorb": {"name": "smallnorb"},
    "cars3d": {"name": "cars3d_labelled"},
    "mpi3d": {"name": "mpi3d", "variant": "toy"},
}
WEAK_METHODS = {
    "ada_gvae": "Ada-GVAE (adaptive threshold, means and variances averaged)",
    "ada_mlvae": "Ada-ML-VAE (adaptive threshold, product of the two Gaussians)",
    "group_vae": "GroupVAE with k known (d - k latents shared, averaged)",
    "ml_vae": "ML-VAE with k known (d - k latents shared, product of Gaussians)",
}


def _weak_preset(method: str, data: str) -> dict[str, Any]:
    """disentanglement_lib's weak-study settings: beta 1, 10 latents, Adam 1e-4, 64 pairs per
    step, 300,000 steps; pairs of the paper's sampler with k = 1."""
    return {
        "description": f"{WEAK_METHODS[method]} on {data} pairs that differ in k = 1 factor "
                       "(paper sampler), beta 1, 64 pairs per step, 300,000 steps",
        "name": f"{method}_{data}",
        "seed": 1234,
        "model": {"name": "burgess", "latent_dim": 10},
        "objective": {"name": method, "beta": 1.0},
        "data": {**WEAK_DATASETS[data], "batches": "pairs", "pair_k": 1,
                 "pair_sampler": "paper"},
        "train": {"steps": 300_000, "batch_size": 64, "lr": 1e-4, "log_every": 100,
                  "checkpoint_every": 10_000},
    }


def _benchmark_preset(loss: str, data: str) -> dict[str, Any]:
    objective, lr, batch = _disvae_objective(loss, data)
    return {
        "description": f"{loss} (disentangling-vae hyper-parameters) on {data}, "
                       f"{BENCHMARK_STEPS:,} steps (Locatello et al., 2019)"
                       + ("" if BENCHMARK_DATA[data]["name"] == "dsprites" else
                          f"; needs `vaelab data {BENCHMARK_DATA[data]['name']}`"),
        "name": f"{loss}_{data}",
        "seed": 1234,
        "model": {"name": "burgess", "latent_dim": 10},
        "objective": objective,
        "data": dict(BENCHMARK_DATA[data]),
        "train": {"steps": BENCHMARK_STEPS, "batch_size": batch, "lr": lr,
                  "checkpoint_every": 50_000, "log_every": 50},
    }


@functools.cache
def _builtin() -> dict[str, dict[str, Any]]:
    """Every preset built in code, built once per process (`load_preset` hands out deep copies;
    a sweep over the 1,800-trial study builds 1,800 configs)."""
    presets = {f"{loss}_{data}": _disvae_preset(loss, data) for loss in LOSSES for data in DATASETS}
    presets.update({f"{method}_{data}": _weak_preset(method, data)
                    for method in WEAK_METHODS for data in WEAK_DATASETS})
    presets.update({f"{loss}_{data}": _benchmark_preset(loss, data)
                    for loss in LOSSES for data in BENCHMARK_DATA})
    best_dsprites = _disvae_preset("btcvae", "dsprites")
    best_dsprites.update(description="disentangling-vae best_dsprites: beta-TCVAE, alpha=-5, "
                         "beta=10", name="best_dsprites")
    best_dsprites["objective"].update(alpha=-5.0, beta=10.0, gamma=1.0)
    best_celeba = _disvae_preset("btcvae", "celeba")
    best_celeba.update(description="disentangling-vae best_celeba: beta-TCVAE, alpha=-10, "
                       "beta=20, Laplace likelihood", name="best_celeba")
    best_celeba["objective"].update(alpha=-10.0, beta=20.0, gamma=1.0, likelihood="laplace")
    debug = _disvae_preset("betaB", "mnist")
    debug.update(description="disentangling-vae debug: annealed VAE on MNIST, one epoch, no "
                 "annealing", name="debug")
    debug["objective"].update(capacity_steps=0)
    debug["train"].update(epochs=1.0, checkpoint_every=0)
    presets.update(best_dsprites=best_dsprites, best_celeba=best_celeba, debug=debug)
    presets["default"] = {
        "description": "the main job: beta-TCVAE (beta=16, batch 32, cosine learning rate) on "
                       "the procedural dSprites, about 5 minutes on 2 CPU cores",
        "name": "btcvae_dsprites_quick",
        "seed": 1234,
        "model": {"name": "burgess", "latent_dim": 10},
        "objective": {"name": "beta_tcvae", "alpha": 1.0, "beta": 16.0, "gamma": 1.0,
                      "warmup_steps": 1000},
        "data": {"name": "dsprites"},
        "train": {"steps": 12000, "batch_size": 32, "lr": 1e-3, "lr_schedule": "cosine",
                  "checkpoint_every": 4000, "log_every": 50, "gif_every": 1000},
    }
    from vaelab.presets.study import study_presets  # Locatello et al. (2019): study_*

    presets.update(study_presets())
    return presets


def _files() -> dict[str, Any]:
    folder = resources.files(__name__)
    found = {}
    for entry in folder.iterdir():
        stem, _, suffix = entry.name.rpartition(".")
        if suffix in ("toml", "ini") and stem:
            found[stem] = entry
    return found


def preset_names() -> list[str]:
    return sorted({*_builtin(), *_files()})


def load_preset(name: str) -> dict[str, Any]:
    """The run-config dict of preset `name` (with its `description` key, if any).

    Raises:
        KeyError: unknown preset; the message lists the known ones.
    """
    builtin = _builtin()
    if name in builtin:
        return copy.deepcopy(builtin[name])
    files = _files()
    if name not in files:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    entry = files[name]
    if entry.name.endswith(".toml"):
        data = tomllib.loads(entry.read_text())
        data.setdefault("name", name)
        return data
    from vaelab.ini import run_config_dict_from_ini

    with resources.as_file(entry) as path:
        data = run_config_dict_from_ini(path)
    data.setdefault("name", name)
    return data


def describe_preset(name: str) -> str:
    data = load_preset(name)
    return str(data.get("description", ""))

