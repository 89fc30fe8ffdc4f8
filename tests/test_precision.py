"""Precision: `train.precision=auto`, bf16 autocast limited to the model's forward, and bf16 runs
that track fp32 for every objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.registry_cases import batches_for, first_model, tiny_data
from vaelab import precision as precision_module
from vaelab.engine import Callback, evaluate_terms, fit, run_precision
from vaelab.factory import run_config_from_dict
from vaelab.models.vae import VAEOutput
from vaelab.precision import autocast_model, resolve_precision, to_fp32
from vaelab.registry import OBJECTIVES

#: bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2 %); over the few steps of these runs
#: every logged loss stayed within 1 % of the fp32 run's (measured: at most 0.23 %, GMVAE).
TOLERANCE = 0.01


def test_explicit_precisions_pass_through_and_auto_follows_the_hardware(monkeypatch):
    for value in ("32-true", "bf16-mixed", "16-mixed"):
        assert resolve_precision(value, "cpu") == value
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("auto", "mps") == "32-true"


def test_native_bf16_is_read_from_the_cpu_flags():
    precision_module.cpu_has_native_bf16.cache_clear()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
    expected = ("avx512_bf16" in flags or "amx_bf16" in flags) and \
        torch.backends.mkldnn.is_available()
    assert precision_module.cpu_has_native_bf16() is expected


def test_auto_in_a_run_config_is_resolved_for_the_device(tiny, monkeypatch):
    config = run_config_from_dict(tiny(precision="auto", accelerator="cpu"))
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert run_precision(config.train) == "32-true"
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert run_precision(config.train) == "bf16-mixed"


def test_to_fp32_converts_16_bit_tensors_of_any_output():
    out = VAEOutput(mu=torch.zeros(2, 3, dtype=torch.bfloat16), logvar=torch.zeros(2, 3),
                    z=torch.zeros(2, 3, dtype=torch.float16),
                    logits=torch.zeros(2, 1, 4, 4, dtype=torch.bfloat16))
    got = to_fp32(out)
    assert isinstance(got, VAEOutput)
    assert {t.dtype for t in (got.mu, got.logvar, got.z, got.logits)} == {torch.float32}
    assert to_fp32({"a": torch.zeros(1, dtype=torch.int64)})["a"].dtype == torch.int64


def _config(objective: str, precision: str, steps: int = 6) -> dict:
    model = first_model(objective)
    return {"name": objective, "seed": 5, "model": {"name": model},
            "objective": {"name": objective}, "data": {**tiny_data(model), **batches_for(objective)},
            "train": {"steps": steps, "batch_size": 8, "log_every": 1, "checkpoint_every": 0,
                      "metrics": [], "progress": False, "tb_images": False,
                      "accelerator": "cpu", "precision": precision}}


class _Dtypes(Callback):
    """Records the dtype of the model outputs the objective is handed (training)."""

    def __init__(self) -> None:
        self.seen: set[torch.dtype] = set()

    def on_train_start(self, ctx):
        objective, seen = ctx.objective, self.seen
        original = objective.forward

        def forward(out, *args, **kwargs):
            seen.update(t.dtype for t in vars(out).values() if isinstance(t, torch.Tensor)
                        and t.is_floating_point())
            return original(out, *args, **kwargs)

        objective.forward = forward
        if hasattr(objective, "pair_terms"):  # the weak objectives' pair batches skip forward
            pair_terms = objective.pair_terms

            def spied(model, *args):
                def seen_model(*a, **k):
                    out = model(*a, **k)
                    seen.update(t.dtype for t in vars(out).values()
                                if isinstance(t, torch.Tensor) and t.is_floating_point())
                    return out

                return pair_terms(seen_model, *args)

            objective.pair_terms = spied


@pytest.mark.parametrize("objective", OBJECTIVES.names())
def test_a_bf16_run_tracks_fp32_and_its_objective_sees_fp32(tmp_path, objective):
    runs = {}
    for precision in ("32-true", "bf16-mixed"):
        spy = _Dtypes()
        runs[precision] = fit(run_config_from_dict(_config(objective, precision, steps=3)),
                              tmp_path / precision, callbacks=[spy])
        assert spy.seen == {torch.float32}, (precision, spy.seen)  # terms computed in fp32
    fp32, bf16 = runs["32-true"].log, runs["bf16-mixed"].log
    assert runs["bf16-mixed"].summary["precision"] == "bf16-mixed"
    assert len(fp32["loss"]) == 3
    np.testing.assert_allclose(bf16["loss"], fp32["loss"], rtol=TOLERANCE, err_msg=objective)
    # the runs differ at all: bf16 really ran
    assert not np.array_equal(bf16["loss"], fp32["loss"])


def test_evaluation_under_bf16_autocasts_the_model_only(tmp_path):
    run = fit(run_config_from_dict(_config("beta_tcvae", "bf16-mixed", steps=2)), tmp_path / "r")
    dataset = run.dataset()
    index = [torch.arange(8)]
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    seen = []
    wrapped = autocast_model(run.model, fabric)
    assert wrapped.partial_decode is True  # the model's attributes show through
    with torch.no_grad():
        out = wrapped(dataset.batch(index[0]))
    seen += [out.logits.dtype, out.mu.dtype]
    assert seen == [torch.float32, torch.float32]
    bf16 = evaluate_terms(run.objective, run.model, dataset, index, torch.tensor(2.0), fabric)
    fp32 = evaluate_terms(run.objective, run.model, dataset, index, torch.tensor(2.0), None)
    assert bf16.keys() == fp32.keys()
    for key in fp32:
        assert bf16[key] == pytest.approx(fp32[key], rel=TOLERANCE, abs=1e-2), key
    assert autocast_model(run.model, Fabric(accelerator="cpu", devices=1)) is run.model
