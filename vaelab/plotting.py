"""`make_plots`: a run's pictures, drawn from its directory and saved under `RUN/plots/`.

The kinds themselves (`vaelab.viz.plots`, registered in `PLOTS`) are functions of a loaded run;
this module, beside the workflow, loads the run (`vaelab.runs.load_run`) and writes the files.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vaelab.data.base import FactorDataset
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_bytes
from vaelab.registry import PLOTS
from vaelab.runs import load_run
from vaelab.viz.plots import PlotKind, PlotOptions, encode_content, plot_kind_order

__all__ = ["make_plots"]


def _writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VaelabError(f"cannot create the output folder {folder}: {error}") from error
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise VaelabError(f"the output folder {folder} is not writable")


def make_plots(
    run_dir: str | os.PathLike,
    kinds: list[str],
    options: PlotOptions = PlotOptions(),
    overwrite: bool = False,
    out_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Makes the plots `kinds` ("all" for every applicable one) of a run and saves them.

    Args:
        run_dir: the run directory.
        kinds: registered plot names, or "all".
        options: layout and selection options.
        overwrite: replace existing files (otherwise an existing file is an error, raised before
            anything is computed or written).
        out_dir: where to write (default `RUN/plots`).
        checkpoint: a checkpoint file instead of `checkpoints/last.ckpt`.
        device: where to run the model.

    Returns:
        The written paths.

    Raises:
        FileNotFoundError: not a run directory, or no checkpoint.
        KeyError: unknown kind (the message lists the known ones).
        FileExistsError: an output exists and `overwrite` is False.
        VaelabError: a kind cannot apply to this run, or the folder is not writable.
    """
    if not kinds:
        raise VaelabError("name at least one plot kind (or 'all')")
    selected: list[PlotKind] = [PLOTS.get(k) for k in dict.fromkeys(kinds) if k != "all"]
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    if run.device.type == "cpu":  # the Python API gets the CLI's allocator setting too
        from vaelab.perf import tune_allocator

        tune_allocator()
    if "all" in kinds:
        dataset = run.dataset()
        for name in plot_kind_order():
            kind = PLOTS.get(name)
            if kind in selected:
                continue
            if kind.needs_factors and not isinstance(dataset, FactorDataset):
                continue
            if kind.needs_log and not run.log:
                continue
            if (kind.needs_clusters and not run.model.num_clusters) or not kind.in_all:
                continue
            if kind.applies is not None and not kind.applies(run):
                continue
            selected.append(kind)
    folder = Path(out_dir) if out_dir else run.dir / "plots"
    targets = [folder / name for kind in selected for name in kind.filenames(options)]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} already exist(s); pass --overwrite to replace"
        )
    _writable_folder(folder)
    from vaelab.rundir import check_writable

    check_writable(folder / "probe", "choose another --out-dir")
    written = []
    with torch.no_grad():
        for kind in selected:
            for filename, content in kind.make(run, options).items():
                try:
                    atomic_write_bytes(folder / filename, encode_content(filename, content))
                except OSError as error:
                    raise VaelabError(f"cannot write {folder / filename}: {error}") from error
                written.append(folder / filename)
    return written
