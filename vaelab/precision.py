"""Training precision: `train.precision="auto"` and bf16 autocast limited to the model's forward.

`resolve_precision("auto", device)` picks `"bf16-mixed"` only where the hardware computes bf16
natively: a CUDA GPU that supports bf16 without emulation (Ampere and later), or a CPU whose
flags list `avx512_bf16` or `amx_bf16` (read from `/proc/cpuinfo`) with oneDNN available.
Everywhere else it picks `"32-true"`, which stays the default (the seeds are reproduced in fp32).

Under `"bf16-mixed"` autocast covers the model's forward pass only (the encoder and decoder
convolutions and linear layers); its outputs are cast back to fp32 before any objective sees
them, so every term (the likelihood, the KLs, beta-TCVAE's log-sum-exps, FactorVAE's
discriminator and cross-entropies, the Non-Syn VAE's greedy selection) is computed in fp32. This
holds in training (Lightning Fabric's module wrapper) and in validation and evaluation
(`autocast_model`).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["PRECISIONS", "autocast_model", "bf16_hint", "cpu_has_native_bf16", "make_fabric",
           "resolve_precision", "run_precision", "to_fp32"]

#: The values `train.precision` takes ("auto" is resolved before the run starts).
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "auto", "64-true", "bf16-true",
              "16-true")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX-512 BF16 or AMX) and oneDNN is built."""
    if not torch.backends.mkldnn.is_available() or not sys.platform.startswith("linux"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def _cuda_has_native_bf16(device: torch.device) -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch without the keyword
        return torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """`precision` itself, or for "auto" the fastest safe one on `device` (module docstring)."""
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16-mixed" if _cuda_has_native_bf16(device) else "32-true"
    if device.type == "cpu":
        return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
    return "32-true"


def bf16_hint(precision: str, accelerator: str) -> str | None:
    """One line that points an fp32 CPU run at bf16 where this CPU computes bf16 natively.

    Args:
        precision: `train.precision` of the run.
        accelerator: `train.accelerator` of the run ("auto" trains on the CPU without CUDA).

    Returns:
        The hint, or None when the run already uses another precision, trains on a GPU, or the
        CPU has neither AMX nor AVX-512 BF16.
    """
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision not in ("32-true", "32") or not on_cpu or not cpu_has_native_bf16():
        return None
    return ("note: this CPU computes bf16 natively (AMX or AVX-512 BF16): "
            "--set train.precision=bf16-mixed trains about 2x faster here; results are not "
            "bit-identical to fp32 (see the performance docs)")


def _fp32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


def to_fp32(output: Any) -> Any:
    """Every 16-bit floating tensor of `output` (tensors, dataclasses, dicts, sequences) as fp32."""
    from lightning_utilities.core.apply_func import apply_to_collection

    return apply_to_collection(output, dtype=torch.Tensor, function=_fp32)


class _AutocastForward(nn.Module):
    """`module` whose forward runs under `autocast` and returns fp32 outputs; attributes are the
    module's (so objectives see `partial_decode` and the like)."""

    def __init__(self, module: nn.Module, autocast: Any) -> None:
        super().__init__()
        self.module = module
        self._autocast = autocast

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._autocast():
            output = self.module(*args, **kwargs)
        return to_fp32(output)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["module"], name)


def autocast_model(model: nn.Module, fabric: Any) -> nn.Module:
    """`model` with the Fabric's autocast around its forward only (outputs fp32), or `model`
    itself when there is no Fabric or its precision is not mixed."""
    from lightning.fabric.plugins.precision import MixedPrecision

    precision = getattr(getattr(fabric, "strategy", None), "precision", None)
    if not isinstance(precision, MixedPrecision):
        return model
    return _AutocastForward(model, precision.forward_context)


def run_precision(train: Any) -> str:
    """`train.precision`, with "auto" resolved for the device the run will use
    (`resolve_precision`: bf16-mixed only where the hardware has bf16)."""
    if train.precision != "auto":
        return train.precision
    accelerator = train.accelerator
    cuda = accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available())
    return resolve_precision("auto", "cuda" if cuda else accelerator if accelerator == "mps"
                             else "cpu")


def make_fabric(train: Any) -> Any:
    """The Lightning Fabric of the `train.*` settings (devices, strategy, resolved precision);
    float16 on a CPU is refused (it is not what trains here)."""
    from lightning.fabric import Fabric

    from vaelab.errors import VaelabError

    devices: Any = train.devices if train.devices != -1 else "auto"
    try:
        fabric = Fabric(accelerator=train.accelerator, devices=devices, num_nodes=train.num_nodes,
                        strategy=train.strategy, precision=run_precision(train))
    except (ValueError, RuntimeError, TypeError) as error:
        raise VaelabError(f"cannot set up the device with the train.* settings: {error}") from error
    if fabric.device.type == "cpu" and run_precision(train).startswith("16"):
        raise VaelabError(
            f"train.precision={train.precision!r} needs a GPU: float16 autocast on the CPU is "
            "not what trains here; use 'bf16-mixed' (fast on CPUs with AVX-512 BF16) or '32-true'"
        )
    return fabric
