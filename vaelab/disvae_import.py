"""Import disentangling-vae (Dubs et al. 2019) result folders as vaelab run directories.

A seed folder holds `model.pt` (the Burgess VAE's state_dict), `specs.json` (its CLI settings) and
`train_losses.log` (CSV rows `epoch,key,value`). The Burgess model here has the same layer names
and the same interleaved mu/logvar head, so the weights load strictly (the seed loaded with
`strict=False`, hiding mismatches). The seed's decoder ends in a sigmoid; ours returns the logits
before it, so `sigmoid(our decoder)` equals the seed's output.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from vaelab.errors import VaelabError

__all__ = ["disvae_run_config", "import_disvae"]

_DATASETS = {
    "dsprites": {"name": "dsprites"},
    "mnist": {"name": "mnist", "image_size": 32},
    "fashion": {"name": "fashion_mnist", "image_size": 32},
    "celeba": {"name": "celeba"},
    "chairs": {"name": "chairs"},
}
_LOG_KEYS = {"recon_loss": "recon", "kl_loss": "kl", "loss": "loss", "mi_loss": "mi",
             "tc_loss": "tc", "dw_kl_loss": "dw_kl", "discrim_loss": "disc_loss"}


def _objective(specs: dict[str, Any]) -> dict[str, Any]:
    loss = specs.get("loss")
    warmup = int(specs.get("reg_anneal", 0))
    likelihood = specs.get("rec_dist", "bernoulli")
    if loss == "VAE":
        return {"name": "vae", "warmup_steps": warmup, "likelihood": likelihood}
    if loss == "betaH":
        return {"name": "beta_vae", "beta": float(specs["betaH_B"]), "warmup_steps": warmup,
                "likelihood": likelihood}
    if loss == "betaB":
        return {"name": "annealed_vae", "c_init": float(specs["betaB_initC"]),
                "c_final": float(specs["betaB_finC"]), "gamma": float(specs["betaB_G"]),
                "capacity_steps": warmup, "likelihood": likelihood}
    if loss == "factor":
        return {"name": "factor_vae", "gamma": float(specs["factor_G"]),
                "lr_disc": float(specs["lr_disc"]), "warmup_steps": warmup,
                "likelihood": likelihood}
    if loss == "btcvae":
        return {"name": "beta_tcvae", "alpha": float(specs["btcvae_A"]),
                "beta": float(specs["btcvae_B"]), "gamma": float(specs["btcvae_G"]),
                "warmup_steps": warmup, "likelihood": likelihood}
    raise VaelabError(f"unknown disentangling-vae loss {loss!r} in specs.json; expected one of "
                      "VAE, betaH, betaB, factor, btcvae")


def disvae_run_config(specs: dict[str, Any], name: str) -> dict[str, Any]:
    """The vaelab run-config dict equivalent to a seed `specs.json`."""
    for key in ("img_size", "latent_dim", "dataset", "loss"):
        if key not in specs:
            raise VaelabError(f"specs.json lacks {key!r}; is this a disentangling-vae result folder?")
    channels, height, width = (int(v) for v in specs["img_size"])
    if specs.get("model_type", "Burgess") != "Burgess" or height != width:
        raise VaelabError(f"only the Burgess model on square images imports, got "
                          f"{specs.get('model_type')} {specs['img_size']}")
    data = _DATASETS.get(specs["dataset"])
    if data is None:
        raise VaelabError(f"unknown disentangling-vae dataset {specs['dataset']!r}")
    return {
        "name": name,
        "seed": int(specs.get("seed") or 0),
        "model": {"name": "burgess", "latent_dim": int(specs["latent_dim"]),
                  "channels": channels, "image_size": height},
        "objective": _objective(specs),
        "data": dict(data),
        "train": {"steps": 0, "epochs": float(specs.get("epochs", 1)),
                  "batch_size": int(specs.get("batch_size", 64)),
                  "lr": float(specs.get("lr", 5e-4)), "checkpoint_every": 0},
    }


def _convert_log(path: Path) -> str:
    """The seed's `epoch,key,value` rows as a train_log.csv (one row per epoch)."""
    rows: dict[int, dict[str, float]] = {}
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for record in reader:
            if len(record) != 3:
                continue
            epoch, key, value = int(record[0]), record[1], float(record[2])
            if key.startswith("kl_loss_"):
                key = "kl_" + key[len("kl_loss_"):]
            else:
                key = _LOG_KEYS.get(key, key)
            rows.setdefault(epoch, {})[key] = value
    if not rows:
        return ""
    columns = ["step", "epoch"]
    for row in rows.values():
        columns += [k for k in row if k not in columns]
    lines = [",".join(columns)]
    for epoch in sorted(rows):
        values = {"step": epoch + 1, "epoch": epoch + 1, **rows[epoch]}
        lines.append(",".join(repr(float(values[c])) if c in values else "" for c in columns))
    return "\n".join(lines) + "\n"


def import_disvae(source: str | Path, out: str | Path = "results", name: str | None = None) -> Path:
    """Turns a disentangling-vae result folder into a vaelab run directory and returns its path.

    The run's train_log.csv has one row per seed epoch (`step` = epoch number, since the seed
    logged per epoch). Nothing existing is overwritten.

    Raises:
        FileNotFoundError: `model.pt` or `specs.json` missing.
        FileExistsError: the destination run directory exists.
        VaelabError: the weights or settings do not fit the Burgess model.
    """
    from vaelab.factory import build_model, run_config_from_dict
    from vaelab.runs import atomic_write_json, atomic_write_text, checkpoint_path, save_checkpoint

    source = Path(source)
    for required in ("model.pt", "specs.json"):
        if not (source / required).is_file():
            raise FileNotFoundError(
                f"{source} is not a disentangling-vae result folder: {required} is missing"
            )
    specs = _read_specs(source / "specs.json")
    name = name or f"disvae_{source.name}"
    run_dir = Path(out) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"{run_dir} already exists; nothing was changed. Pick --name")
    config = run_config_from_dict(disvae_run_config(specs, name))
    model = build_model(config.model)
    state = _load_weights(source / "model.pt")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise VaelabError(f"{source / 'model.pt'} does not fit the Burgess model: {error}") from error
    run_dir.mkdir(parents=True, exist_ok=True)
    from vaelab.rundir import stamped_config_json, version_stamp

    atomic_write_text(run_dir / "config.json", stamped_config_json(config))
    save_checkpoint(checkpoint_path(run_dir), {
        "model": model.state_dict(), "objective": {}, "step": 0,
        "config": config.to_dict(), "imported_from": str(source), **version_stamp(),
    })
    log = _convert_log(source / "train_losses.log") if (source / "train_losses.log").is_file() else ""
    if log:
        atomic_write_text(run_dir / "train_log.csv", log)
    atomic_write_json(run_dir / "summary.json", {
        "name": name, "imported_from": str(source.resolve()), "source": "disentangling-vae",
        "seed_settings": specs,
    })
    return run_dir


def _read_specs(path: Path) -> dict:
    """specs.json of a disentangling-vae folder; a corrupt one is a clear error."""
    try:
        specs = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise VaelabError(f"{path} is not valid JSON ({error}); copy specs.json again from the "
                          "disentangling-vae result folder") from None
    if not isinstance(specs, dict):
        raise VaelabError(f"{path} should hold a JSON object of the seed's settings")
    return specs


def _load_weights(path: Path) -> dict:
    """The state dict in a disentangling-vae `model.pt`, read with `weights_only=True` (a foreign
    file is never unpickled). A truncated or corrupt file is a clear error; PyTorch's own
    message is not shown, since it advises loading with weights_only=False, which would run
    whatever code the file holds."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise VaelabError(
            f"cannot read {path}: it is not a PyTorch weights file (truncated or corrupt?). Copy "
            "model.pt again from the disentangling-vae result folder"
        ) from None
    if not isinstance(state, dict):
        raise VaelabError(f"{path} holds a {type(state).__name__}, not a model's state dict")
    return state
