"""`vaelab report`: content, comparison, bad input, and a real headless-Chromium check."""

from __future__ import annotations

import json
import shutil

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


def test_report_single_run(run_dir):
    assert main(["plot", str(run_dir), "samples", "-r", "2", "-c", "2"]) == 0
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/") == 3  # losses drawn from the log, training.gif, samples.png
    assert "plots/samples.png" in page and "training.gif" in page
    assert "<td class=num>0.123456</td>" in page and "num_train" in page
    assert "http://" not in page and "https://" not in page and "default-src 'none'" in page
    assert "comparison-table" not in page


def test_report_several_runs_compares(run_dir, tmp_path):
    other = shutil.copytree(run_dir, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["name"] = "other"
    (other / "config.json").write_text(json.dumps(config))
    (other / "metrics.json").unlink()
    out = tmp_path / "both.html"
    assert main(["report", str(run_dir), str(other), "--out", str(out)]) == 0
    page = out.read_text()
    assert "comparison-table" in page and 'id="run-1"' in page
    assert "<tr class=differs><th>config.name</th>" in page
    assert "<tr class=differs><th>score.mig</th>" in page  # missing in one run
    assert "<tr><th>config.model.latent_dim</th>" in page  # equal: not highlighted


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
                "--show-kl",
            ]
        )
        == 0
    )
    assert main(["report", str(run_dir)]) == 0
    errors, result = browser.open(run_dir / "report.html", CHECK_PAGE)
    assert errors == []
    result = json.loads(result)
    pictures = len(list((run_dir / "plots").iterdir())) + 1  # + training.gif
    assert len(result["images"]) == pictures
    assert all(complete and width > 0 for _, complete, width in result["images"]), result
    metrics = json.loads((run_dir / "metrics.json").read_text())
    shown = dict(result["metrics"])
    assert set(shown) == {k for k in metrics if k != "protocol"}
    for key, cell in shown.items():
        assert float(cell) == pytest.approx(metrics[key], rel=1e-5)
    shot = tmp_path / "report.png"
    shot.write_bytes(browser.screenshot())
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 600
        assert len(image.convert("L").getcolors(1 << 16) or []) > 10  # not a blank page


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
