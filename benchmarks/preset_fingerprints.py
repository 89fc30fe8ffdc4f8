"""Fingerprints of every preset after a few CPU steps: proof that a refactor changed no number.

For each preset this trains `--steps` optimiser steps on the CPU (one thread) with the preset's
own model, objective, batch size and learning rate, then prints one line with a SHA-256 digest of
the final checkpoint's tensors (model, optimiser, objective and its optimiser) and of the logged
terms. Run it on two commits and compare the files: identical lines mean bit-identical training.

Datasets that need a download are replaced by a seeded random uint8 stand-in of the preset's
image shape; dSprites is the real procedural grid (generated once into VAELAB_DATA).

    python3 benchmarks/preset_fingerprints.py --out before.txt      # on the old commit
    python3 benchmarks/preset_fingerprints.py --out after.txt       # on the new one
    diff before.txt after.txt
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

# Image shapes of the stand-ins for data that must be downloaded: (name, image_size) -> (C, H, W).
STAND_IN_SHAPES = {
    "mnist": lambda c: (1, c.get("image_size", 32), c.get("image_size", 32)),
    "fashion_mnist": lambda c: (1, c.get("image_size", 32), c.get("image_size", 32)),
    "cifar10": lambda c: (3, 32, 32),
    "celeba": lambda c: (3, c.get("image_size", 64), c.get("image_size", 64)),
    "chairs": lambda c: (1, c.get("image_size", 64), c.get("image_size", 64)),
}


def _digest_tensors(obj, hasher) -> None:
    if isinstance(obj, torch.Tensor):
        hasher.update(str(obj.dtype).encode() + str(tuple(obj.shape)).encode())
        hasher.update(obj.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                      if obj.numel() else b"")
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            hasher.update(str(key).encode())
            _digest_tensors(obj[key], hasher)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _digest_tensors(item, hasher)
    else:
        hasher.update(repr(obj).encode())


def fingerprint(run_dir: Path) -> tuple[str, str]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    hasher = hashlib.sha256()
    for key in ("model", "optimizer", "objective", "aux_optimizer"):
        _digest_tensors(ckpt.get(key), hasher)
    with open(run_dir / "train_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    terms = hashlib.sha256()
    for row in rows:
        for key in sorted(row):
            if key != "images_per_s":
                terms.update(f"{key}={row[key]};".encode())
    return hasher.hexdigest()[:16], terms.hexdigest()[:16]


def stand_in(config, n: int = 512):
    from vaelab.data.base import ImageDataset

    data = config.to_dict()["data"]
    from vaelab.registry import DATASETS

    cls = DATASETS.get(data["name"])
    if hasattr(cls, "stand_in"):  # datasets declare their shape (after the model contract)
        return cls.stand_in(config.data.config, n=n, seed=0)
    shape = STAND_IN_SHAPES[data["name"]](data)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(n, *shape), dtype=np.uint8))
    return ImageDataset(images, name=data["name"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default="-")
    parser.add_argument("--presets", nargs="*", default=None)
    args = parser.parse_args(argv)

    import vaelab
    from vaelab.engine import fit
    from vaelab.workflow import build_run_config

    torch.set_num_threads(1)
    names = args.presets or vaelab.list_names("presets")
    dsprites = None
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            overrides = [f"train.steps={args.steps}", "train.log_every=2",
                         "train.checkpoint_every=0", "train.metrics=", "train.progress=false"]
            from vaelab.config import TrainConfig

            if hasattr(TrainConfig, "valid_every"):  # stand-ins have no validation split
                overrides += ["train.valid_every=0", "train.early_stopping=0",
                              "train.keep_best=false"]
            config = build_run_config(name, overrides)
            data = config.to_dict()["data"]
            if data["name"] == "dsprites":
                if dsprites is None:
                    dsprites = vaelab.load_dataset("dsprites")
                dataset = dsprites
            else:
                dataset = stand_in(config)
            fit(config, Path(tmp) / name, dataset=dataset)
            model_digest, terms_digest = fingerprint(Path(tmp) / name)
            line = f"{name} params={model_digest} terms={terms_digest}"
            print(line, file=sys.stderr)
            lines.append(line)
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
