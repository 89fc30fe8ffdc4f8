"""Allocator tuning: applied once with mallopt on glibc, a no-op elsewhere."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from vaelab import perf


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"),
                    reason="mallopt exists on glibc Linux only")
def test_tune_allocator_applies_once(monkeypatch):
    monkeypatch.setattr(perf, "_done", False)
    assert perf.tune_allocator() is True
    assert perf._done is True
    assert perf.tune_allocator() is True  # idempotent


def test_tune_allocator_is_a_noop_off_linux(monkeypatch):
    monkeypatch.setattr(perf, "_done", False)
    monkeypatch.setattr(perf.sys, "platform", "darwin")
    assert perf.tune_allocator() is False


def test_the_python_api_tunes_the_allocator(tmp_path, tiny, monkeypatch):
    import vaelab
    import vaelab.perf as perf
    from vaelab.metrics.evaluate import evaluate_run

    vaelab.train(config=tiny(), out=tmp_path, verbose=False, pictures=False)
    calls = []
    monkeypatch.setattr(perf, "tune_allocator", lambda: calls.append(1) or True)
    evaluate_run(tmp_path / "tiny", metrics="mig", progress=False, options={"mig": {"num_train": 100}})
    vaelab.make_plots(tmp_path / "tiny", ["samples"])
    assert len(calls) == 2
