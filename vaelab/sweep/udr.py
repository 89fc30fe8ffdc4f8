"""UDR across the seeds of each setting of a sweep (`vaelab.metrics.udr` on the trials' codes).

Every finished trial of a setting (the same swept values, different seeds) encodes the same
`num_points` items of its dataset, drawn once with `seed` (uniformly, without replacement); the
codes and the mean KL per latent are cached in `SWEEP/.sweep/udr/<trial>.npz` with the trial's
checkpoint step, so a later report re-encodes only trials that trained on. Each trial's UDR is
the median of its pair scores with the other seeds of its setting (disentanglement_lib's
`compute_udr_sklearn` with its defaults: 1,000 points, Lasso alpha 0.1, KL threshold 0.01).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["setting_udr", "trial_codes"]

VARIANTS = ("lasso", "spearman")


def trial_codes(run_dir: str | Path, num_points: int = 1000, seed: int = 0,
                device: str = "cpu", cache: str | Path | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Codes (n, D) and mean KL per latent (D,) of a run on `num_points` items drawn with `seed`.

    With `cache` (an .npz path), reuses it when it was written for the same step, points and seed.
    """
    from vaelab.metrics.ground_truth import model_encoder
    from vaelab.metrics.udr import mean_kl_per_latent
    from vaelab.runs import load_run

    run = load_run(run_dir, device=device)
    key = np.array([run.step, num_points, seed])
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as stored:
            if np.array_equal(stored["key"], key):
                return stored["codes"], stored["kl"]
    dataset = run.dataset()
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(dataset), size=min(num_points, len(dataset)), replace=False))
    encode = model_encoder(run.model)
    mus, logvars = [], []
    for start in range(0, len(index), 500):
        mu, logvar = encode(dataset.batch(index[start:start + 500]))
        if logvar is None:
            raise ValueError(f"{run_dir}: UDR needs Gaussian posteriors (log-variances)")
        mus.append(mu.cpu().numpy())
        logvars.append(logvar.cpu().numpy())
    codes = np.concatenate(mus).astype(np.float64)
    kl = mean_kl_per_latent(codes, np.concatenate(logvars))
    if cache is not None:
        from vaelab.runs import atomic_file

        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache) as handle:
            np.savez(handle, codes=codes, kl=kl, key=key)
    return codes, kl


def setting_udr(sweep_dir: str | Path, rows: Sequence[dict[str, Any]], settings: Sequence[str],
                num_points: int = 1000, seed: int = 0, device: str = "cpu",
                progress: bool = False) -> tuple[dict[str, dict[str, float]], list[str]]:
    """UDR (Lasso and Spearman) of every finished trial with at least one other seed.

    Args:
        sweep_dir: the sweep folder (trials are its subfolders).
        rows: the rows of sweep.csv (`trial`, `status`, the swept values).
        settings: the swept keys other than `seed` (a setting is one combination of them).

    Returns:
        ({trial: {"udr_lasso": x, "udr_spearman": y}}, notes on trials left out).
    """
    from vaelab.metrics.udr import udr

    sweep_dir = Path(sweep_dir)
    groups: dict[tuple, list[str]] = {}
    for row in rows:
        if row.get("status") == "done":
            groups.setdefault(tuple(row.get(k, "") for k in settings), []).append(row["trial"])
    results: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for trials in groups.values():
        if len(trials) < 2:
            continue
        codes, kls, kept = [], [], []
        for trial in trials:
            try:
                c, k = trial_codes(sweep_dir / trial, num_points, seed, device,
                                   cache=sweep_dir / ".sweep" / "udr" / f"{trial}.npz")
            except (FileNotFoundError, ValueError, RuntimeError) as error:
                notes.append(f"{trial}: {error}")
                continue
            codes.append(c)
            kls.append(k)
            kept.append(trial)
        if len(kept) < 2:
            continue
        if progress:
            print(f"  UDR over {len(kept)} seeds: {', '.join(kept)}", file=sys.stderr)
        for variant in VARIANTS:
            scores = udr(codes, kls, correlation=variant, random_state=seed).scores
            for trial, value in zip(kept, scores):
                results.setdefault(trial, {})[f"udr_{variant}"] = float(value)
    return results, notes
