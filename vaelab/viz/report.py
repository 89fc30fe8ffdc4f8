"""`report.html`: one self-contained page per run or set of runs (images inlined, no network).

For each run: its config, `summary.json`, the `metrics.json` scores (with the protocol that produced
them), the loss curves and every picture in the run directory and its `plots/` folder. With several
runs a comparison table puts their configs and scores side by side (differing rows highlighted).
A Content-Security-Policy forbids every network request, so the page works offline by design.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from vaelab.errors import VaelabError
from vaelab.runs import atomic_write_text, read_train_log

__all__ = ["build_report", "flatten", "write_report"]

PICTURE_SUFFIXES = {
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
# Shown first, in this order; the rest of the run's pictures follow by name.
TOP_PICTURES = ("losses.png", "reconstructions.png", "samples.png", "training.gif")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.differs { background: #fff6d6; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
.pictures { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: .85em; color: #555; text-align: center; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
img.chart { image-rendering: auto; }
.note { color: #777; font-style: italic; }
"""


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
    """An inlined <figure>; small pixel grids are shown enlarged (integer factor, no blur)."""
    encoded = base64.b64encode(data).decode("ascii")
    attributes = ' class="chart"' if chart else ""
    if not chart:
        with Image.open(io.BytesIO(data)) as image:
            width = image.width
        attributes += f' width="{width * max(1, 400 // max(width, 1))}"'
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
    return name in ("losses.png", "mean_activations.png") or name.startswith("latent_projection")


def _pictures(run_dir: Path, log: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """HTML of the loss curves and of every other picture of a run, and unreadable files."""
    files = sorted(p for p in run_dir.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES)
    files.sort(key=lambda p: TOP_PICTURES.index(p.name) if p.name in TOP_PICTURES else 99)
    plots = run_dir / "plots"
    if plots.is_dir():
        files += sorted(p for p in plots.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES)
    curves, pictures, skipped = [], [], []
    for path in files:
        data = path.read_bytes()
        name = str(path.relative_to(run_dir))
        if not _readable(data):
            skipped.append(name)
            continue
        html_part = _picture(
            name, data, PICTURE_SUFFIXES[path.suffix.lower()], _is_chart(path.name)
        )
        (curves if path.name == "losses.png" and not curves else pictures).append(html_part)
    if not curves and log:
        from vaelab.viz.losses import figure_to_png, plot_losses

        curves.append(
            _picture(
                "losses (from train_log.csv)",
                figure_to_png(plot_losses(log)),
                "image/png",
                chart=True,
            )
        )
    return "".join(curves), "".join(pictures), skipped


def _run_section(index: int, run_dir: Path) -> tuple[str, dict[str, Any]]:
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a vaelab run directory: config.json is missing")
    config = _read_json(config_path)
    summary = _read_json(run_dir / "summary.json")
    metrics = _read_json(run_dir / "metrics.json")
    protocol = metrics.get("protocol", {}) if isinstance(metrics.get("protocol"), dict) else {}
    scores = {k: v for k, v in metrics.items() if k != "protocol"}
    log = read_train_log(run_dir / "train_log.csv")
    name = config.get("name") or run_dir.name
    curves, pictures, skipped = _pictures(run_dir, log)
    parts = [
        f'<section id="run-{index}"><h2>{html.escape(str(name))}</h2>',
        f'<p class="note">{html.escape(str(run_dir.resolve()))}</p>',
    ]
    parts.append("<h3>Metrics</h3>")
    if scores:
        parts.append(_table(scores, f"metrics-{index}", ("metric", "score")))
        if protocol:
            parts.append(_table(flatten(protocol), f"protocol-{index}", ("protocol", "value")))
    else:
        parts.append('<p class="note">no metrics.json (run <code>vaelab eval</code>)</p>')
    parts.append("<h3>Summary</h3>")
    parts.append(
        _table(flatten(summary), f"summary-{index}", ("summary", "value"))
        if summary
        else '<p class="note">no summary.json</p>'
    )
    parts.append(
        f"<h3>Loss curves</h3>{curves}"
        if curves
        else '<h3>Loss curves</h3><p class="note">no training log</p>'
    )
    parts.append(
        f'<h3>Pictures</h3><div class="pictures">{pictures}</div>'
        if pictures
        else '<h3>Pictures</h3><p class="note">no pictures yet (run <code>vaelab plot '
        "RUN all</code>)</p>"
    )
    if skipped:
        parts.append(f'<p class="note">unreadable, left out: {html.escape(", ".join(skipped))}</p>')
    parts.append(f"<h3>Config</h3><pre>{html.escape(json.dumps(config, indent=2))}</pre></section>")
    flat = {f"config.{k}": v for k, v in flatten(config).items()}
    flat.update({f"score.{k}": v for k, v in scores.items()})
    flat.update({f"summary.{k}": v for k, v in flatten(summary).items()})
    return "".join(parts), {"name": str(name), "values": flat}


def _comparison(runs: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for run in runs for k in run["values"]))
    head = (
        "<tr><th>key</th>" + "".join(f"<th>{html.escape(r['name'])}</th>" for r in runs) + "</tr>"
    )
    rows = []
    for key in keys:
        values = [r["values"].get(key, "") for r in runs]
        differs = len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1
        cells = "".join(_cell(v) for v in values)
        rows.append(
            f"<tr{' class=differs' if differs else ''}><th>{html.escape(key)}</th>{cells}</tr>"
        )
    return (
        f'<section id="comparison"><h2>Comparison</h2><p class="note">highlighted rows '
        f'differ between runs</p><table id="comparison-table"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def build_report(run_dirs: list[str | os.PathLike]) -> str:
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
        section, values = _run_section(index, run_dir)
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
) -> Path:
    """Writes `report.html` (default: inside the run for one run, `./report.html` for several).

    Raises:
        FileExistsError: the output exists and `overwrite` is False.
        VaelabError: the output folder cannot be written.
    """
    if out is None:
        out = Path(run_dirs[0]) / "report.html" if len(run_dirs) == 1 else Path("report.html")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    page = build_report(run_dirs)
    try:
        atomic_write_text(out, page)
    except OSError as error:
        raise VaelabError(f"cannot write the report to {out}: {error}") from error
    return out
