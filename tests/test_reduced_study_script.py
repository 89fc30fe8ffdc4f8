"""benchmarks/reduced_study.py --quick end to end: trains, reports, draws both figures (the
report's figure step once broke silently when a helper moved)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.heavy
def test_reduced_study_quick_writes_report_and_figures(tmp_path):
    out = tmp_path / "rs"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reduced_study.py"),
                             "--out", str(out), "--quick", "--jobs", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (out / "rank_correlation.png").stat().st_size > 0
    assert (out / "spread.png").stat().st_size > 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["finished"] == summary["runs"] > 0
