"""`report.html`: one self-contained page per run or set of runs (images inlined, no network).

A run reads top-down: its pictures first (reconstructions, traversals, samples, loss curves, the
metrics scored during training, then the rest), a short summary, the metric scores each with a
one-line meaning and its direction ("higher is better"), and at the end, collapsed, the protocol
that produced the scores, the full summary and the config. A picture of the same thing in two
places (`samples.png` and `plots/samples.png`, or two identical files) is shown once. With several
runs a comparison comes first: their scores side by side with the best run per metric marked, the
loss curves of every run overlaid, and only the settings that differ.
A Content-Security-Policy forbids every network request, so the page works offline by design.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vaelab.errors import VaelabError
from vaelab.io import atomic_write_text, read_csv_columns

__all__ = ["build_report", "flatten", "write_report"]

PICTURE_SUFFIXES = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
# The picture groups shown first, in this order. Each entry lists alternatives: the first file
# that exists is shown, the others are the same picture made elsewhere (left out).
PICTURE_GROUPS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("Reconstructions", (("plots/reconstruct.png", "reconstructions.png"),)),
    ("Traversals", (("plots/reconstruct_traverse.png",),
                    ("plots/prior_traversals.png", "prior_traversals.png"),
                    ("plots/posterior_traversals.png",), ("plots/posterior_traversals.gif",),
                    ("training.gif",))),
    ("Samples", (("plots/samples.png", "samples.png"), ("cluster_samples.png",))),
    ("Loss curves", (("plots/losses.png", "losses.png"),)),
    ("Pairs and their shared latents", (("plots/weak_pairs.png",),)),
)
CHARTS = ("losses.png", "mean_activations.png", "metrics_during_training.png", "weak_pairs.png")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h3 { margin: .8em 0 .3em; }
ul.headline { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .4em 2em;
  font-size: 1.1em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: bold; background: #e3f4e1; }
td.meaning { color: #555; max-width: 42em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
.groups { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
.pictures { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: .85em; color: #555; text-align: center; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
img.chart { image-rendering: auto; }
ul.summary { margin: .3em 0 1em; } ul.summary li { margin: .1em 0; }
details { margin: .6em 0; } summary { cursor: pointer; color: #345; font-weight: 600; }
.note { color: #777; font-style: italic; }
"""
DIRECTION_TEXT = {1: "higher is better", -1: "lower is better", 0: ""}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {"a.b.c": value}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return json.dumps(value)
    return str(value)


def _cell(value: Any) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"<td{' class=num' if numeric else ''}>{html.escape(_format(value))}</td>"


def _table(rows: Mapping[str, Any], table_id: str, header: tuple[str, str]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in rows.items())
    head = f"<tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>"
    return f'<table id="{table_id}"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise VaelabError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise VaelabError(f"{path} should hold a JSON object, got {type(data).__name__}")
    return data


def _picture(name: str, data: bytes, mime: str, chart: bool = False) -> str:
    """An inlined <figure>; pixel grids narrower than 200 px are shown enlarged (an integer
    factor, no blur), wider ones at their own size (their labels stay crisp)."""
    encoded = base64.b64encode(data).decode("ascii")
    attributes = ' class="chart"' if chart else ""
    if not chart:
        with Image.open(io.BytesIO(data)) as image:
            width = image.width
        attributes += f' width="{width * max(1, 200 // max(width, 1))}"'
    return (
        f'<figure><img{attributes} src="data:{mime};base64,{encoded}" '
        f'alt="{html.escape(name)}"><figcaption>{html.escape(name)}</figcaption></figure>'
    )


def _readable(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        return True
    except Exception:  # noqa: BLE001  (any decoding failure means "leave it out")
        return False


def _is_chart(name: str) -> bool:
    return name in CHARTS or name.startswith("latent_projection")


def _picture_files(run_dir: Path) -> list[str]:
    names = [p.name for p in run_dir.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES]
    plots = run_dir / "plots"
    if plots.is_dir():
        names += [f"plots/{p.name}" for p in plots.iterdir()
                  if p.suffix.lower() in PICTURE_SUFFIXES]
    return sorted(names)


def _pictures(run_dir: Path, log: Mapping[str, Any],
              metric_log: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """[(group title, figures HTML)] in reading order, and the unreadable files left out."""
    files = _picture_files(run_dir)
    seen_digests: set[str] = set()
    skipped: list[str] = []
    used: set[str] = set()

    def figure(name: str) -> str:
        used.add(name)
        data = (run_dir / name).read_bytes()
        if not _readable(data):
            skipped.append(name)
            return ""
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen_digests:  # the same picture under another name
            return ""
        seen_digests.add(digest)
        return _picture(name, data, PICTURE_SUFFIXES[Path(name).suffix.lower()],
                        _is_chart(Path(name).name))

    groups = []
    for title, alternatives in PICTURE_GROUPS:
        parts = []
        for names in alternatives:
            present = [n for n in names if n in files]
            if present:
                parts.append(figure(present[0]))
                used.update(present)  # the duplicates of the one shown
        if title == "Loss curves" and not any(parts) and log:
            from vaelab.viz.losses import figure_to_png, plot_losses

            parts.append(_picture("losses (from train_log.csv)", figure_to_png(plot_losses(log)),
                                  "image/png", chart=True))
        if title == "Loss curves" and metric_log:
            from vaelab.viz.losses import figure_to_png, plot_metrics_during_training

            parts.append(_picture("metrics during training (metrics_log.csv)",
                                  figure_to_png(plot_metrics_during_training(metric_log)),
                                  "image/png", chart=True))
        if any(parts):
            groups.append((title, "".join(parts)))
    rest = "".join(figure(name) for name in files if name not in used)
    if rest:
        groups.append(("More pictures", rest))
    return groups, skipped


def stale_plots(run_dir: Path, checkpoint: Path | None = None) -> list[str]:
    """The pictures under plots/ older than checkpoints/last.ckpt, or `checkpoint` (drawn from
    an earlier model)."""
    checkpoint = Path(checkpoint) if checkpoint else run_dir / "checkpoints" / "last.ckpt"
    plots = run_dir / "plots"
    if not checkpoint.is_file() or not plots.is_dir():
        return []
    newest = checkpoint.stat().st_mtime_ns
    return sorted(f"plots/{p.name}" for p in plots.iterdir()
                  if p.suffix.lower() in PICTURE_SUFFIXES and p.stat().st_mtime_ns < newest)


def _summary_lines(config: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    """A few plain sentences: what was trained, for how long, and where it ended."""
    model, objective = config.get("model", {}), config.get("objective", {})
    data = config.get("data", {})
    lines = [
        f"{objective.get('name', '?')} objective on a {model.get('name', '?')} model "
        f"({model.get('latent_dim', '?')} latents), data {data.get('name', '?')}"
        + (f" ({summary['dataset_size']:,} images)" if isinstance(
            summary.get("dataset_size"), int) else "")
    ]
    if summary:
        wall = summary.get("wall_time_s")
        speed = summary.get("images_per_s")
        lines.append(
            f"{summary.get('steps', '?')} steps ({_format(summary.get('epochs', '?'))} epochs)"
            + (f" in {wall:.0f} s" if isinstance(wall, (int, float)) else "")
            + (f", {speed:,.0f} images/s" if isinstance(speed, (int, float)) else "")
            + f" on {summary.get('device', '?')}"
            + (" (resumed)" if summary.get("resumed") else "")
        )
        final = summary.get("final", {})
        terms = [f"{k} {final[k]:.2f}" for k in ("loss", "recon", "kl", "tc")
                 if isinstance(final.get(k), (int, float))]
        if terms:
            lines.append("final training terms (nats): " + ", ".join(terms))
    else:
        lines.append("not finished: no summary.json yet")
    return lines


def _interval_cell(interval: Any) -> str:
    """A score's bootstrap interval [low, high] (`vaelab eval --bootstrap`), or an empty cell."""
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError):
        return "<td></td>"
    return f"<td class=num>[{low:.4g}, {high:.4g}]</td>"


def _metrics_table(scores: Mapping[str, Any], table_id: str,
                   intervals: Mapping[str, Any] | None = None) -> str:
    from vaelab.metrics.properties import HEADLINE, describe_score

    headline = [k for k in HEADLINE.values() if k in scores]
    keys = _beside_their_scores(headline + [k for k in scores if k not in headline])
    rows = []
    for key in keys:
        meaning, direction = describe_score(key)
        extra = _interval_cell(intervals.get(key)) if intervals else ""
        rows.append(
            f"<tr><th>{html.escape(key)}</th>{_cell(scores[key])}{extra}"
            f"<td>{DIRECTION_TEXT[direction]}</td>"
            f'<td class="meaning">{html.escape(meaning)}</td></tr>'
        )
    interval_head = "<th>95% interval (bootstrap)</th>" if intervals else ""
    head = (f"<tr><th>metric</th><th>score</th>{interval_head}<th>direction</th>"
            "<th>meaning</th></tr>")
    return f'<table id="{table_id}"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _beside_their_scores(keys: list[str]) -> list[str]:
    """`keys` with each experiment score's baselines and margin (`S.baseline.*`, `S.margin`)
    moved right after `S`, in that order, whatever order metrics.json holds them in."""
    from vaelab.metrics.properties import EXPERIMENT_BASELINES

    rank = {f".baseline.{name}": i for i, name in enumerate(EXPERIMENT_BASELINES)}

    def place(key: str) -> int:  # the baselines in their usual order, then the margin
        if key.endswith(".margin"):
            return len(rank) + 1
        return rank.get(".baseline." + key.rpartition(".baseline.")[2], len(rank))

    def owner(key: str) -> str:
        if ".baseline." in key:
            return key.rpartition(".baseline.")[0]
        return key.removesuffix(".margin") if key.endswith(".margin") else ""

    present = set(keys)
    followers: dict[str, list[str]] = {}
    for key in keys:
        if owner(key) in present:
            followers.setdefault(owner(key), []).append(key)
    ordered = []
    for key in keys:
        if owner(key) not in present:
            ordered.append(key)
            tail = followers.get(key, [])
            ordered += sorted(tail, key=place)
    return ordered


def _details(title: str, body: str) -> str:
    return f"<details><summary>{html.escape(title)}</summary>{body}</details>"


def _run_section(index: int, run_dir: Path, checkpoint: Path | None = None
                 ) -> tuple[str, dict[str, Any]]:
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a vaelab run directory: config.json is missing")
    config = _read_json(config_path)
    summary = _read_json(run_dir / "summary.json")
    metrics = _read_json(run_dir / "metrics.json")
    protocol = metrics.get("protocol", {}) if isinstance(metrics.get("protocol"), dict) else {}
    scores = {k: v for k, v in metrics.items() if k not in ("protocol", "intervals")}
    intervals = metrics.get("intervals") if isinstance(metrics.get("intervals"), dict) else None
    log = read_csv_columns(run_dir / "train_log.csv")
    metric_log = read_csv_columns(run_dir / "metrics_log.csv")
    name = config.get("name") or run_dir.name
    groups, skipped = _pictures(run_dir, log, metric_log)
    parts = [
        f'<section id="run-{index}"><h2>{html.escape(str(name))}</h2>',
        f'<p class="note">{html.escape(str(run_dir.resolve()))}</p>',
        headline_numbers(scores, summary, log, run_dir, index),
    ]
    parts.append('<div class="groups">')
    for title, figures in groups:
        parts.append(f'<div class="group"><h3>{html.escape(title)}</h3>'
                     f'<div class="pictures">{figures}</div></div>')
    parts.append("</div>")
    if not groups:
        parts.append('<h3>Pictures</h3><p class="note">no pictures yet (run <code>vaelab plot '
                     "RUN all</code>)</p>")
    if skipped:
        parts.append(f'<p class="note">unreadable, left out: {html.escape(", ".join(skipped))}</p>')
    stale = stale_plots(run_dir, checkpoint)
    if checkpoint:
        parts.append(f'<p class="note">pictures judged against the checkpoint '
                     f'{html.escape(str(checkpoint))}</p>')
    if stale:
        parts.append(f'<p class="note stale">made before the last checkpoint (the run was '
                     f'trained on since): {html.escape(", ".join(stale))}; redraw them with '
                     f"<code>vaelab plot {html.escape(str(run_dir))} all --overwrite</code></p>")
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in _summary_lines(config, summary))
    parts.append(f'<h3>Summary</h3><ul class="summary" id="summary-{index}">{lines}</ul>')
    parts.append("<h3>Metrics</h3>")
    if scores:
        parts.append(_metrics_table(scores, f"metrics-{index}", intervals))
    else:
        parts.append('<p class="note">no metrics.json (run <code>vaelab eval</code>)</p>')
    if protocol:
        parts.append(_details("Protocol of the metrics",
                              _table(flatten(protocol), f"protocol-{index}", ("protocol", "value"))))
    if summary:
        parts.append(_details("Full summary (summary.json)",
                              _table(flatten(summary), f"summary-table-{index}",
                                     ("summary", "value"))))
    parts.append(_details("Config (config.json)",
                          f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>"))
    parts.append("</section>")
    return "".join(parts), {"name": str(name), "config": flatten(config), "scores": scores,
                            "summary": flatten(summary), "log": log}


def _best_runs(values: list[Any], direction: int) -> set[int]:
    """Indices of the runs with the best finite value (ties all marked); none without a
    direction or with fewer than two finite values."""
    finite = [(i, float(v)) for i, v in enumerate(values)
              if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)]
    if direction == 0 or len(finite) < 2:
        return set()
    best = max(v * direction for _, v in finite)
    return {i for i, v in finite if v * direction == best}


def _overlaid_losses(runs: list[dict[str, Any]]) -> str:
    """One panel per common term (loss, recon, kl, ...), one line per run."""
    from vaelab.viz.losses import figure_to_png, new_figure, term_unit

    logs = [r["log"] for r in runs]
    terms = [k for k in ("loss", "recon", "kl", "tc") if sum(k in log for log in logs) >= 1]
    if not terms:
        return '<p class="note">no training logs to overlay</p>'
    figure = new_figure(figsize=(3.8 * len(terms), 3.0), layout="constrained")
    axes = figure.subplots(1, len(terms), squeeze=False)[0]
    for axis, term in zip(axes, terms):
        for run, log in zip(runs, logs):
            if term in log and "step" in log:
                axis.plot(log["step"], log[term], label=run["name"], lw=1.2)
        axis.set_title(term, fontsize=10)
        axis.set_xlabel("step")
        axis.set_ylabel(term_unit(term))
        axis.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    return _picture("loss curves of every run", figure_to_png(figure), "image/png", chart=True)


def _comparison(runs: list[dict[str, Any]]) -> str:
    from vaelab.metrics.properties import HEADLINE, describe_score

    head = ("<tr><th>metric</th>" + "".join(f"<th>{html.escape(r['name'])}</th>" for r in runs)
            + "<th>direction</th></tr>")
    all_keys = list(dict.fromkeys(k for run in runs for k in run["scores"]))
    headline = [k for k in HEADLINE.values() if k in all_keys]
    rows = []
    for key in headline + [k for k in all_keys if k not in headline]:
        values = [r["scores"].get(key, "") for r in runs]
        direction = describe_score(key)[1]
        best = _best_runs(values, direction)
        cells = "".join(
            _cell(v).replace("<td class=num>", '<td class="num best">', 1) if i in best
            else _cell(v) for i, v in enumerate(values))
        rows.append(f"<tr><th>{html.escape(key)}</th>{cells}"
                    f"<td>{DIRECTION_TEXT[direction]}</td></tr>")
    scores = (f'<table id="comparison-scores"><thead>{head}</thead><tbody>{"".join(rows)}'
              "</tbody></table><p class=\"note\">bold: the best run for that metric</p>"
              if rows else '<p class="note">no run has metrics.json</p>')
    settings = []
    keys = list(dict.fromkeys(k for run in runs for k in run["config"]))
    for key in keys:
        values = [r["config"].get(key, "") for r in runs]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            settings.append(f"<tr><th>config.{html.escape(key)}</th>"
                            f"{''.join(_cell(v) for v in values)}</tr>")
    names = "".join(f"<th>{html.escape(r['name'])}</th>" for r in runs)
    differ = (f'<table id="comparison-table"><thead><tr><th>setting</th>{names}</tr></thead>'
              f"<tbody>{''.join(settings)}</tbody></table>"
              if settings else '<p class="note">the runs have the same settings</p>')
    return (
        f'<section id="comparison"><h2>Comparison</h2><h3>Scores</h3>{scores}'
        f'<h3>Loss curves</h3><div class="pictures">{_overlaid_losses(runs)}</div>'
        f"<h3>Settings that differ</h3>{differ}</section>"
    )


def build_report(run_dirs: list[str | os.PathLike], checkpoint: str | os.PathLike | None = None
                 ) -> str:
    """The report HTML of one or more runs.

    Raises:
        FileNotFoundError: a folder is missing or has no config.json.
        VaelabError: a JSON file of a run is malformed.
    """
    if not run_dirs:
        raise VaelabError("name at least one run directory")
    sections, runs = [], []
    for index, run_dir in enumerate(run_dirs):
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"no run directory at {run_dir}")
        section, values = _run_section(index, run_dir, _report_checkpoint(checkpoint, run_dirs))
        sections.append(section)
        runs.append(values)
    title = "vaelab report: " + ", ".join(r["name"] for r in runs)
    comparison = _comparison(runs) if len(runs) > 1 else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{comparison}{''.join(sections)}</body></html>\n"
    )


def write_report(
    run_dirs: list[str | os.PathLike],
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    checkpoint: str | os.PathLike | None = None,
) -> Path:
    """Writes `report.html` (default: inside the run for one run, `./report.html` for several).

    Raises:
        FileExistsError: the output exists and `overwrite` is False.
        VaelabError: the output folder cannot be written.
    """
    if out is None:
        out = Path(run_dirs[0]) / "report.html" if len(run_dirs) == 1 else Path("report.html")
    _report_checkpoint(checkpoint, run_dirs)  # a bad choice is refused before any work
    return write_page(Path(out), lambda: build_report(run_dirs, checkpoint), overwrite)


def write_page(out: Path, build: Any, overwrite: bool) -> Path:
    """Writes the page `build()` returns to `out` atomically; refuses to replace an existing
    file unless `overwrite` (checked before building, so nothing is computed for nothing)."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    from vaelab.rundir import check_writable

    check_writable(out, "choose another --out", what="the report to ")
    page = build()
    try:
        atomic_write_text(out, page)
    except OSError as error:
        raise VaelabError(f"cannot write the report to {out}: {error}") from error
    return out


def _report_checkpoint(checkpoint: str | os.PathLike | None, run_dirs: list[Any]) -> Path | None:
    """`vaelab report --checkpoint FILE`: one run only, and FILE must exist."""
    if checkpoint is None:
        return None
    if len(run_dirs) != 1:
        raise VaelabError("--checkpoint applies to the report of one run; give one RUN")
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    return Path(checkpoint)


# The numbers a report of one run opens with, before the pictures: (label, score keys tried in
# order, what a model that learned nothing scores). Reconstruction comes from summary.json.
HEADLINE_NUMBERS = (
    ("MIG", ("mig",), "0"),
    ("DCI disentanglement", ("dci.disentanglement", "dci_fast.disentanglement"), "0"),
    ("active latents", ("active_units",), "0"),
)


def headline_numbers(scores: Mapping[str, Any], summary: Mapping[str, Any],
                     log: Mapping[str, Any], run_dir: Path, index: int) -> str:
    """The run's headline: MIG, DCI, reconstruction and active latents, each beside its
    baseline (what a model that learned nothing scores; for the reconstruction, the run's
    own first logged value), or where they are missing the command that computes them."""
    items = []
    for label, keys, nothing in HEADLINE_NUMBERS:
        key = next((k for k in keys if isinstance(scores.get(k), (int, float))), None)
        if key is not None:
            items.append(f"<li><b>{html.escape(label)}</b> {float(scores[key]):.3f} "
                         f'<span class="note">({html.escape(key)}; learned nothing: {nothing})'
                         "</span></li>")
    final = summary.get("final") if isinstance(summary.get("final"), Mapping) else {}
    recon = final.get("recon")
    if isinstance(recon, (int, float)):
        first = log.get("recon")
        start = (f"; at the first log row: {float(first[0]):.4g}"
                 if first is not None and len(first) and np.isfinite(first[0]) else "")
        items.append(f"<li><b>reconstruction</b> {float(recon):.4g} <span class=\"note\">(loss "
                     f"per image, mean of the last log interval{start})</span></li>")
    if not any(isinstance(scores.get(k), (int, float)) for _, keys, _ in HEADLINE_NUMBERS
               for k in keys):
        items.append(f"<li class=\"note\">no disentanglement scores yet: run <code>vaelab eval "
                     f"{html.escape(str(run_dir))}</code></li>")
    return f'<ul class="headline" id="headline-{index}">{"".join(items)}</ul>'
