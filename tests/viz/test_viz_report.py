"""`vaelab report`: content, comparison, bad input, and a real headless-Chromium check."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from viz_browser import Browser, find_chromium

from vaelab.cli import main
from vaelab.viz.report import build_report, flatten


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": "x",
    }


def _order(page, *markers):
    positions = [page.index(m) for m in markers]
    assert positions == sorted(positions), list(zip(markers, positions))


def test_report_single_run_reads_top_down(run_dir):
    assert main(["plot", str(run_dir), "samples", "reconstruct", "losses", "-r", "2", "-c",
                 "2"]) == 0
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    # pictures first, then the summary, the metrics, and the collapsed tables at the end
    _order(page, "<h3>Reconstructions</h3>", "<h3>Traversals</h3>", "<h3>Samples</h3>",
           "<h3>Loss curves</h3>", "<h3>Summary</h3>", "<h3>Metrics</h3>",
           "<summary>Protocol of the metrics</summary>", "<summary>Config (config.json)</summary>")
    # no duplicates: plots/samples.png stands for samples.png, plots/losses.png for losses.png
    assert page.count("data:image/") == 4  # reconstruct, training.gif, samples, losses
    assert 'alt="plots/samples.png"' in page and 'alt="samples.png"' not in page
    assert 'alt="plots/reconstruct.png"' in page and 'alt="reconstructions.png"' not in page
    assert 'alt="losses.png"' not in page
    assert "<td class=num>0.123456</td><td>higher is better</td>" in page  # mig
    assert "gap in normalised mutual information" in page
    assert "num_train" in page.split("<summary>Protocol of the metrics</summary>")[1]
    assert "30 steps" in page  # the short summary
    assert "http://" not in page and "https://" not in page and "default-src 'none'" in page
    assert "comparison-scores" not in page


def test_report_leaves_out_identical_pictures(run_dir):
    (run_dir / "copy.gif").write_bytes((run_dir / "training.gif").read_bytes())
    page = build_report([run_dir])
    assert 'alt="training.gif"' in page and 'alt="copy.gif"' not in page


def test_report_says_which_plots_predate_the_last_checkpoint(run_dir):
    import os

    assert main(["plot", str(run_dir), "samples", "-r", "2", "-c", "2"]) == 0
    assert "made before the last checkpoint" not in build_report([run_dir])
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    later = (run_dir / "plots" / "samples.png").stat().st_mtime_ns + 10**9
    os.utime(ckpt, ns=(later, later))  # as after `vaelab train --resume` trained on
    page = build_report([run_dir])
    assert "made before the last checkpoint" in page and "plots/samples.png; redraw" in page


def test_report_plots_metrics_during_training(run_dir):
    (run_dir / "metrics_log.csv").write_text("step,mig,mig.shape\n10,0.1,0.2\n20,0.3,0.4\n")
    page = build_report([run_dir])
    assert 'alt="metrics during training (metrics_log.csv)"' in page


def test_report_several_runs_compares(run_dir, tmp_path):
    other = shutil.copytree(run_dir, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["name"] = "other"
    config["objective"]["beta"] = 4.0
    (other / "config.json").write_text(json.dumps(config))
    metrics = json.loads((other / "metrics.json").read_text())
    metrics.update(mig=0.5, sap=0.01, gaussian_total_correlation=0.2)
    (run_dir / "metrics.json").write_text(json.dumps(
        {**json.loads((run_dir / "metrics.json").read_text()), "gaussian_total_correlation": 0.7}))
    (other / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "both.html"
    assert main(["report", str(run_dir), str(other), "--out", str(out)]) == 0
    page = out.read_text()
    _order(page, 'id="comparison"', 'id="run-0"', 'id="run-1"')
    table = page.split('id="comparison-scores"')[1].split("</table>")[0]
    # the best run per metric, by the metric's direction
    assert "<th>mig</th><td class=num>0.123456</td><td class=\"num best\">0.5</td>" in table
    assert "<th>sap</th><td class=\"num best\">0.0421</td><td class=num>0.01</td>" in table
    assert ("<th>gaussian_total_correlation</th><td class=num>0.7</td>"
            "<td class=\"num best\">0.2</td><td>lower is better</td>") in table
    assert "best" not in table.split("<th>dci_disentanglement</th>")[1].split("</tr>")[0]
    assert 'alt="loss curves of every run"' in page
    settings = page.split('id="comparison-table"')[1].split("</table>")[0]
    assert "<th>config.name</th>" in settings and "<th>config.objective.beta</th>" in settings
    assert "config.model.latent_dim" not in settings  # equal settings are not listed


def test_best_runs():
    from vaelab.viz.report import _best_runs

    assert _best_runs([0.1, 0.3, 0.3], 1) == {1, 2}
    assert _best_runs([0.1, float("nan"), 0.05], -1) == {2}
    assert _best_runs([0.1, ""], 1) == set() and _best_runs([1.0, 2.0], 0) == set()


def test_report_bad_input(run_dir, tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    (run_dir / "report.html").write_text("keep me")
    assert main(["report", str(run_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run_dir / "report.html").read_text() == "keep me"
    (run_dir / "metrics.json").write_text("{not json")
    assert main(["report", str(run_dir), "--overwrite"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    (run_dir / "metrics.json").unlink()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(run_dir), "--out", str(blocker / "r.html")]) == 2
    assert "cannot write the report" in capsys.readouterr().err


def test_report_leaves_out_unreadable_pictures(run_dir):
    (run_dir / "broken.png").write_bytes(b"not a png")
    page = build_report([run_dir])
    assert "unreadable, left out: broken.png" in page


CHECK_PAGE = """JSON.stringify({
  images: Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]),
  metrics: Array.from(document.querySelectorAll('#metrics-0 tbody tr'))
             .map(r => [r.cells[0].textContent, r.cells[1].textContent])})"""


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    try:
        session = Browser(executable)
    except RuntimeError as error:
        pytest.skip(f"chromium cannot start here: {error}")
    yield session
    session.close()


FIRST_SCREEN = """JSON.stringify({
  height: window.innerHeight,
  headings: Array.from(document.querySelectorAll('h3')).map(h => [h.textContent,
              h.getBoundingClientRect().top]),
  firstImage: (() => { const r = document.images[0].getBoundingClientRect();
                       return [document.images[0].alt, r.top, r.bottom, r.left, r.right]; })(),
  closed: Array.from(document.querySelectorAll('details')).filter(d => !d.open).length})"""


def test_report_in_headless_chromium(browser, run_dir, tmp_path):
    assert (
        main(
            [
                "plot",
                str(run_dir),
                "all",
                "-r",
                "2",
                "-c",
                "3",
                "--points",
                "30",
                "--frames",
                "4",
            ]
        )
        == 0
    )
    assert main(["report", str(run_dir)]) == 0
    errors, result = browser.open(run_dir / "report.html", CHECK_PAGE)
    assert errors == []
    result = json.loads(result)
    # every picture once; reconstructions.png, samples.png and losses.png have plots/ twins
    pictures = len(list((run_dir / "plots").iterdir())) + 1  # + training.gif
    assert len(result["images"]) == pictures
    assert all(complete and width > 0 for _, complete, width in result["images"]), result
    metrics = json.loads((run_dir / "metrics.json").read_text())
    shown = dict(result["metrics"])
    assert set(shown) == {k for k in metrics if k != "protocol"}
    for key, cell in shown.items():
        assert float(cell) == pytest.approx(metrics[key], rel=1e-5)
    # The first screen (1280 x 1400 window): the reconstructions, fully visible, then the
    # traversals; the summary and the metrics come after the pictures; the tables are closed.
    _, screen = browser.open(run_dir / "report.html", FIRST_SCREEN)
    screen = json.loads(screen)
    alt, top, bottom, left, right = screen["firstImage"]
    assert alt == "plots/reconstruct.png" and 0 < top < bottom < screen["height"]
    assert right - left > 100
    headings = dict(screen["headings"])
    assert headings["Reconstructions"] < headings["Traversals"] < screen["height"]
    assert headings["Traversals"] < headings["Summary"] < headings["Metrics"]
    assert max(headings["Samples"], headings["Loss curves"]) < headings["Summary"]
    assert screen["closed"] == 3  # protocol, full summary, config
    shot = tmp_path / "report.png"
    shot.write_bytes(browser.screenshot())
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 600
        grey = np.asarray(image.convert("L"))
        assert len(np.unique(grey)) > 10  # not a blank page
        # the first picture's pixels are on screen: its black cells
        cells = grey[int(top) + 5 : int(bottom) - 5, int(left) + 5 : int(right) - 5]
        assert (cells < 30).mean() > 0.3


def test_browser_check_catches_errors(browser, tmp_path):
    """The harness itself can fail: a console error, an exception and a broken image are seen."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><img alt=x src="data:image/png;base64,AAAA">'
        '<script>console.error("boom"); missing_function();</script>'
    )
    errors, result = browser.open(page, CHECK_PAGE)
    assert "boom" in errors and len(errors) == 2
    assert json.loads(result)["images"] == [["x", True, 0]]
