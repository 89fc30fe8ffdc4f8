"""The comparison page of a sweep: `vaelab report SWEEP_DIR` -> SWEEP_DIR/report.html.

Sections: the `sweep.csv` table; for each score (every metric in the trials' metrics.json, and
the final loss), a box plot per setting of the swept hyper-parameters with one dot per seed (the
spread over seeds, in the style of Locatello et al., 2019, Fig. 7); and the Spearman rank
correlation between every pair of scores over the finished trials. Where a setting has two or
more finished seeds, UDR (`vaelab.sweep.udr`) joins the scores; where trials have bootstrap
intervals (`vaelab eval --bootstrap`), each seed's dot carries its interval. Images are inlined and a
Content-Security-Policy forbids network requests, as in the single-run report.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_sweep_report", "is_sweep_dir", "rank_correlations", "write_sweep_report"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed { background: #fde2e2; } tr.pending, tr.running { background: #f0f0f0; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } img { max-width: 100%; }
.note { color: #777; font-style: italic; }
"""
# Columns of sweep.csv that are not scores.
_NOT_SCORES = {"trial", "status", "seed", "steps", "wall_time_s", "error"}


def is_sweep_dir(path: str | os.PathLike) -> bool:
    """A folder written by `vaelab sweep` (it has sweep.csv and is not itself a run)."""
    path = Path(path)
    return (path / "sweep.csv").is_file() and not (path / "config.json").is_file()


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def rank_correlations(columns: dict[str, list[float]]) -> dict[tuple[str, str], float]:
    """Spearman's rho between every pair of equally long score columns (NaN when undefined)."""
    from scipy.stats import spearmanr

    names = list(columns)
    result = {}
    for a in names:
        for b in names:
            x, y = np.asarray(columns[a], float), np.asarray(columns[b], float)
            keep = np.isfinite(x) & np.isfinite(y)
            if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
                result[a, b] = float("nan")
            else:
                result[a, b] = float(spearmanr(x[keep], y[keep]).statistic)
    return result


def _png(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}">'


def _box_plot(score: str, groups: dict[str, list[float]],
              intervals: dict[str, list[Any]] | None = None) -> str:
    """One box per setting, the seeds as dots on it; with `intervals` (per setting, one
    (low, high) or None per seed) each dot gets its bootstrap interval as a vertical bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(groups)
    figure, axis = plt.subplots(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.4))
    data = [groups[label] for label in labels]
    axis.boxplot(data, showfliers=False)
    rng = np.random.default_rng(0)
    for position, values in enumerate(data, start=1):
        jitter = rng.uniform(-0.12, 0.12, len(values))
        axis.scatter(position + jitter, values, s=14, color="tab:blue", alpha=0.8, zorder=3)
        bars = (intervals or {}).get(labels[position - 1]) or []
        for x, bar in zip(position + jitter, bars):
            if bar is not None:
                axis.vlines(x, bar[0], bar[1], color="tab:blue", alpha=0.5, lw=1, zorder=2)
    axis.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right", fontsize=8)
    axis.set_ylabel(score)
    bars_note = ", bars: 95% bootstrap intervals" if intervals else ""
    axis.set_title(f"{score} per setting (dots: seeds{bars_note})", fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    return _png(figure)


def _cell(text: str) -> str:
    numeric = _number(text) is not None
    shown = f"{float(text):.4g}" if numeric and "." in text else text
    return f"<td{' class=num' if numeric else ''}>{html.escape(shown)}</td>"


def _score_columns(sweep_dir: Path, columns: list[str], rows: list[dict[str, str]],
                   varying: list[str]) -> list[str]:
    """The metric columns (keys of the trials' metrics.json) and the final loss."""
    metric_keys: set[str] = set()
    for row in rows:
        path = sweep_dir / row["trial"] / "metrics.json"
        if row["status"] == "done" and path.is_file():
            try:
                metric_keys |= set(json.loads(path.read_text()))
            except json.JSONDecodeError:
                continue
    candidates = [c for c in columns if c not in _NOT_SCORES and c not in varying]
    # a metric's parts ("mig.shape") only when it has no overall score ("dci_fast.disentanglement")
    scores = [c for c in candidates if c in metric_keys
              and ("." not in c or c.split(".")[0] not in columns)]
    return [*scores, *(["loss"] if "loss" in columns else [])]


def _trial_intervals(sweep_dir: Path, trial: str) -> dict[str, Any]:
    """The bootstrap intervals in a trial's metrics.json ({} where none were computed)."""
    path = sweep_dir / trial / "metrics.json"
    try:
        content = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
    intervals = content.get("intervals") if isinstance(content, dict) else None
    return intervals if isinstance(intervals, dict) else {}


def _add_udr(sweep_dir: Path, rows: list[dict[str, str]], settings: list[str],
             columns: list[str]) -> tuple[list[str], str]:
    """UDR columns (`vaelab.sweep.udr`) added to the rows in place and written to
    SWEEP/udr.csv; (new columns, a note)."""
    from vaelab.sweep.udr import setting_udr

    results, notes = setting_udr(sweep_dir, rows, settings)
    if not results:
        return [], ""
    added = [c for c in ("udr_lasso", "udr_spearman") if c not in columns]
    for row in rows:
        for key, value in results.get(row["trial"], {}).items():
            row[key] = repr(value)
    from vaelab.runs import atomic_write_text

    atomic_write_text(sweep_dir / "udr.csv", "trial,udr_lasso,udr_spearman\n" + "".join(
        f"{trial},{v['udr_lasso']!r},{v['udr_spearman']!r}\n" for trial, v in results.items()))
    note = ("UDR (Duan et al., 2020): each trial's agreement with the other seeds of its "
            "setting, on 1,000 shared points (disentanglement_lib's protocol)")
    if notes:
        note += "; left out: " + "; ".join(notes)
    return added, note


def build_sweep_report(sweep_dir: str | os.PathLike, udr: bool = True) -> str:
    """The HTML comparison page of the sweep in `sweep_dir`.

    With `udr`, the trials of every setting with two or more finished seeds are also scored
    with UDR (`vaelab.sweep.udr`: their codes are cached in SWEEP/.sweep/udr).
    """
    from vaelab.sweep.table import read_sweep_csv

    sweep_dir = Path(sweep_dir)
    columns, rows = read_sweep_csv(sweep_dir / "sweep.csv")
    meta_path = sweep_dir / ".sweep" / "sweep.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    varying = [k for k in meta.get("varying", []) if k in columns]
    settings = [k for k in varying if k != "seed"]
    name = meta.get("name") or sweep_dir.name
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    parts = [f"<h1>Sweep {html.escape(name)}</h1>"]
    if meta.get("description"):
        parts.append(f"<p>{html.escape(meta['description'])}</p>")
    parts.append(f'<p class="note">{html.escape(str(sweep_dir.resolve()))}: '
                 + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "</p>")

    done = [r for r in rows if r["status"] == "done"]
    scores = _score_columns(sweep_dir, columns, rows, varying)
    udr_note = ""
    if udr and done:
        added, udr_note = _add_udr(sweep_dir, rows, settings, columns)
        scores = [*scores, *added]
        columns = [*columns, *added]
    parts.append("<h2>Scores per setting</h2>")
    if not done or not scores:
        parts.append('<p class="note">no finished trial with scores yet</p>')
    else:
        plots = []
        trial_intervals = {row["trial"]: _trial_intervals(sweep_dir, row["trial"]) for row in done}
        for score in scores:
            groups: dict[str, list[float]] = {}
            bars: dict[str, list[Any]] = {}
            for row in done:
                value = _number(row.get(score, ""))
                if value is None:
                    continue
                label = ", ".join(f"{k.split('.')[-1]}={row[k]}" for k in settings) or "all"
                groups.setdefault(label, []).append(value)
                bars.setdefault(label, []).append(trial_intervals[row["trial"]].get(score))
            if groups:
                has_bars = any(b is not None for values in bars.values() for b in values)
                plots.append(_box_plot(score, groups, bars if has_bars else None))
        parts.append(f'<div class="plots">{"".join(plots)}</div>')
        if udr_note:
            parts.append(f'<p class="note" id="udr-note">{html.escape(udr_note)}</p>')

    parts.append("<h2>Rank correlation between scores (Spearman)</h2>")
    table = {s: [_number(r.get(s, "")) for r in done] for s in scores}
    table = {s: [math.nan if v is None else v for v in values] for s, values in table.items()}
    if len(done) < 3 or len(scores) < 2:
        parts.append('<p class="note">needs at least 3 finished trials and 2 scores</p>')
    else:
        rho = rank_correlations(table)
        head = "<tr><th></th>" + "".join(f"<th>{html.escape(s)}</th>" for s in scores) + "</tr>"
        body = []
        for a in scores:
            cells = []
            for b in scores:
                value = rho[a, b]
                if math.isnan(value):
                    cells.append("<td class=num>n/a</td>")
                else:
                    shade = int(255 - 90 * abs(value))
                    colour = (f"rgb({shade},{shade},255)" if value < 0
                              else f"rgb(255,{shade},{shade})")
                    cells.append(f'<td class=num style="background:{colour}">{value:.2f}</td>')
            body.append(f"<tr><th>{html.escape(a)}</th>{''.join(cells)}</tr>")
        parts.append(f'<table id="rank-correlation"><thead>{head}</thead>'
                     f"<tbody>{''.join(body)}</tbody></table>"
                     f'<p class="note">over the {len(done)} finished trials; n/a: fewer than 3 '
                     "values or a constant score</p>")

    parts.append("<h2>All trials (sweep.csv)</h2>")
    head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    body = "".join(f"<tr class={html.escape(r['status'])}>"
                   + "".join(_cell(r.get(c, "")) for c in columns) + "</tr>" for r in rows)
    parts.append(f'<table id="trials"><thead>{head}</thead><tbody>{body}</tbody></table>'
                 '<p class="note">each trial is a run directory: <code>vaelab report '
                 "SWEEP_DIR/TRIAL</code> shows one</p>")
    title = f"vaelab sweep report: {name}"
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"{''.join(parts)}</body></html>\n"
    )


def write_sweep_report(sweep_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                       overwrite: bool = False, udr: bool = True) -> Path:
    """Writes the comparison page (default SWEEP_DIR/report.html)."""
    from vaelab.viz.report import write_page

    out = Path(out) if out is not None else Path(sweep_dir) / "report.html"
    return write_page(out, lambda: build_sweep_report(sweep_dir, udr=udr), overwrite)
