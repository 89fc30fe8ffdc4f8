"""vaelab's transposed-convolution kernels (`vaelab.models.fastconv`) against PyTorch's.

"auto" must be bit-identical to PyTorch (fp32 untouched, the bf16 adjoint backward equal to
the last bit); "fast" must agree to float rounding. Oracles: PyTorch's own nn.ConvTranspose2d,
and a brute-force scatter of each input pixel for the phase forward.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from vaelab.engine import fit
from vaelab.factory import run_config_from_dict
from vaelab.models import fastconv

CL = torch.channels_last

# (in, out, kernel, stride, padding, output_padding, groups, bias, size)
LAYERS = [
    (32, 32, 4, 2, 1, 0, 1, True, 8),   # the Burgess decoder's inner layers
    (32, 1, 4, 2, 1, 0, 1, True, 16),   # its last layer: thin, so "fast" uses the phase forward
    (8, 3, 4, 2, 1, 0, 1, True, 5),     # thin, 3 channels, odd size
    (8, 3, 3, 1, 1, 0, 1, True, 7),
    (8, 4, 3, 2, 1, 1, 1, True, 5),     # output padding
    (8, 6, 4, 2, 1, 0, 2, True, 6),     # groups
    (4, 2, 5, 1, 0, 0, 1, False, 4),    # no bias
]


def _run(layer: nn.Module, x: torch.Tensor, bf16: bool) -> list[torch.Tensor]:
    layer.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = layer(x)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype)
    y.backward(grad)
    return [y, x.grad, layer.weight.grad] + ([layer.bias.grad] if layer.bias is not None else [])


def _pair(spec, mode):
    cin, cout, k, s, p, op, g, bias, size = spec
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(cin, cout, k, s, p, output_padding=op, groups=g,
                             bias=bias).to(memory_format=CL)
    ours = copy.deepcopy(ref)
    assert fastconv.install(ours, mode) == 1
    x = torch.randn(3, cin, size, size).contiguous(memory_format=CL)
    return ref, ours, x


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("spec", LAYERS, ids=lambda s: "x".join(map(str, s)))
def test_auto_is_bit_identical_to_pytorch(spec, bf16):
    ref, ours, x = _pair(spec, "auto")
    expected, got = _run(ref, x, bf16), _run(ours, x, bf16)
    for name, a, b in zip(("y", "grad x", "grad weight", "grad bias"), expected, got):
        assert a.dtype == b.dtype, name
        assert torch.equal(a, b), name


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("spec", LAYERS, ids=lambda s: "x".join(map(str, s)))
def test_fast_agrees_to_rounding(spec, bf16):
    ref, ours, x = _pair(spec, "fast")
    expected, got = _run(ref, x, bf16), _run(ours, x, bf16)
    tol = 2e-2 if bf16 else 1e-5
    for name, a, b in zip(("y", "grad x", "grad weight", "grad bias"), expected, got):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        scale = a.float().abs().max().item()
        assert (a.float() - b.float()).abs().max().item() <= tol * scale, name


def _scatter(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Transposed conv k4 s2 p1 from its definition: each input pixel adds w times itself into
    the 4x4 output window at (2i - 1, 2j - 1). Float64, loops."""
    B, C, H, W = x.shape
    out = np.zeros((B, w.shape[1], 2 * H + 2, 2 * W + 2))  # one pixel of padding each side
    xn, wn = x.double().numpy(), w.double().numpy()
    for i in range(H):
        for j in range(W):
            out[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += np.einsum("bc,cokl->bokl", xn[:, :, i, j], wn)
    return torch.from_numpy(out[:, :, 1:-1, 1:-1] + b.double().numpy()[None, :, None, None])


def test_the_phase_forward_matches_the_definition():
    torch.manual_seed(3)
    x, w, b = torch.randn(2, 5, 4, 6), torch.randn(5, 2, 4, 4), torch.randn(2)
    got = fastconv.conv_transpose_phases(x.contiguous(memory_format=CL), w, b)
    assert got.shape == (2, 2, 8, 12) and got.is_contiguous(memory_format=CL)
    np.testing.assert_allclose(got.double().numpy(), _scatter(x, w, b).numpy(), atol=1e-5)


def test_install_keeps_parameters_and_state_dict_and_uninstall_restores_the_class():
    model = nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.ConvTranspose2d(4, 1, 4, 2, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert fastconv.install(model, "fast") == 1
    assert isinstance(model[1], nn.ConvTranspose2d) and model[1].kernels == "fast"
    assert type(model[0]) is nn.Conv2d  # plain convolutions are left alone
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    copy.deepcopy(model)  # picklable as any module
    assert fastconv.uninstall(model) == 1 and type(model[1]) is nn.ConvTranspose2d
    with pytest.raises(ValueError, match="conv_kernels must be one of"):
        fastconv.install(model, "quick")


def test_inference_under_fast_uses_the_phase_forward_and_stays_close():
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(32, 1, 4, 2, 1)
    ours = copy.deepcopy(ref)
    fastconv.install(ours, "fast")
    x = torch.randn(2, 32, 8, 8).contiguous(memory_format=CL)
    with torch.inference_mode():
        a, b = ref(x), ours(x)
    assert not torch.equal(a, b)  # a different kernel really ran
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def _engine_config(precision: str, kernels: str) -> dict:
    return {"name": "k", "seed": 3, "model": {"name": "burgess"}, "objective": {"name": "vae"},
            "data": {"name": "dsprites", "limit": 256},
            "train": {"steps": 3, "batch_size": 16, "log_every": 1, "checkpoint_every": 0,
                      "metrics": [], "progress": False, "tb_images": False,
                      "accelerator": "cpu", "precision": precision, "conv_kernels": kernels}}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_engine_runs_under_auto_are_bit_identical_to_stock(tmp_path, precision, monkeypatch):
    calls = []
    original = fastconv._ConvTranspose.apply
    monkeypatch.setattr(fastconv._ConvTranspose, "apply",
                        staticmethod(lambda *a: calls.append(1) or original(*a)))
    runs = {k: fit(run_config_from_dict(_engine_config(precision, k)), tmp_path / k)
            for k in ("stock", "auto")}
    # the adjoint backward ran exactly where "auto" promises it: bf16 only
    assert bool(calls) == (precision == "bf16-mixed")
    a, b = runs["stock"].model.state_dict(), runs["auto"].model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(runs["stock"].log["loss"], runs["auto"].log["loss"])


def test_a_fast_run_tracks_stock(tmp_path):
    runs = {k: fit(run_config_from_dict(_engine_config("32-true", k)), tmp_path / k)
            for k in ("stock", "fast")}
    np.testing.assert_allclose(runs["fast"].log["loss"], runs["stock"].log["loss"], rtol=1e-4)


def test_a_bad_conv_kernels_value_is_refused():
    with pytest.raises(Exception, match="conv_kernels must be one of"):
        run_config_from_dict(_engine_config("32-true", "turbo"))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_cli_trains_with_fast_kernels_and_records_them(tmp_path, capsys, precision):
    import json

    from tests.test_cli import TOY
    from vaelab.cli import main

    code = main(["train", "--out", str(tmp_path), "--name", "k", *TOY, "--no-eval",
                 "--set", "train.conv_kernels=fast", "--set", f"train.precision={precision}"])
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "k" / "config.json").read_text())
    assert config["train"]["conv_kernels"] == "fast"
    summary = json.loads((tmp_path / "k" / "summary.json").read_text())
    assert summary["steps"] == 6 and np.isfinite(summary["final"]["loss"])


def test_the_config_knows_the_same_modes_as_the_module():
    from vaelab.config import CONV_KERNELS

    assert CONV_KERNELS == fastconv.KERNEL_MODES
