"""Faster transposed convolutions for training on CPU (`train.conv_kernels`).

A profile of a Burgess-model training step (dSprites, batch 64, 2 threads) finds two slow spots
in PyTorch's CPU transposed convolution, both written here by hand because no library has them:

1. **Its backward.** oneDNN's transposed-convolution backward is slower than the equivalent
   plain convolutions, badly so in bf16. The adjoint is exact: for y = conv_transpose2d(x, W),
   dL/dx = conv2d(dL/dy, W) with the same stride, padding, dilation and groups, and dL/dW is
   the weight gradient of that conv2d with input dL/dy and output gradient x. Measured alone
   (`benchmarks/conv_kernels.py`, batch 64, 2 idle threads, 32 -> 32 channels, 16x16 -> 32x32):
   fp32 3.0 -> 2.3 ms, bf16 4.6 -> 1.6 ms. In bf16 the results are **bit-identical** to
   PyTorch's (its bias gradient is the same bf16 sum); in fp32 dL/dx and dL/dW are
   bit-identical and the bias gradient differs in rounding (oneDNN sums in its own order).
2. **The forward of a thin one** (the last layer, 32 -> 1 channel, 32x32 -> 64x64): oneDNN runs
   it at ~10 GFLOP/s, 3.1 ms. For a k4 s2 p1 kernel with at most 4 output channels,
   `conv_transpose_phases` computes it as one matmul, weights (C_out*16, C) times the input's
   channels-last pixels, then each of the 4 output phases (2Y+a, 2X+b) as the sum of 4 shifted
   planes of that product: 0.79 ms (bf16: 2.2 -> 1.2 ms). Exact in real arithmetic; float rounding differs.

`train.conv_kernels`:

* "auto" (the default): only what is bit-identical to PyTorch, i.e. the adjoint backward under
  bf16 autocast on CPU. fp32 runs are untouched, so published numbers reproduce digit for digit.
* "fast": both, in fp32 too (float rounding differs from PyTorch's kernels, not the maths).
* "stock": PyTorch's kernels everywhere.

`install(model, mode)` swaps the class of every `nn.ConvTranspose2d` to `ConvTranspose2d` (a
subclass: same parameters, same state dict, checkpoints interchangeable) and returns how many;
`uninstall(model)` swaps them back. Off the CPU, or with gradients off, the layers run PyTorch's
own kernels (on CUDA cuDNN has neither problem), except the thin forward in "fast" mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["KERNEL_MODES", "MAX_THIN_CHANNELS", "ConvTranspose2d", "adjoint_backward",
           "conv_transpose_phases", "install", "uninstall"]

KERNEL_MODES = ("auto", "fast", "stock")

#: The most output channels for which "fast" computes a k4 s2 p1 transposed convolution's
#: forward as `conv_transpose_phases`; wider layers keep oneDNN, which is faster there.
MAX_THIN_CHANNELS = 4

# k4 s2 p1: output row 2m + a takes input row m with kernel row `_SAME[a]` and input row
# m + `_SHIFT[a]` with kernel row `_OTHER[a]` (from output row Y = 2i - 1 + ky).
_SAME = (1, 2)
_OTHER = (3, 0)
_SHIFT = (-1, 1)


def _pair(shift: int, n: int) -> tuple[slice, slice]:
    """(destination, source) slices of length n - 1 that add row m + shift into row m."""
    return (slice(1, n), slice(0, n - 1)) if shift < 0 else (slice(0, n - 1), slice(1, n))


def conv_transpose_phases(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.conv_transpose2d(x, weight, bias, stride=2, padding=1)` for (C, C_out, 4, 4) weights.

    x (B, C, H, W) -> (B, C_out, 2H, 2W), channels-last. Fast when C_out is small (module
    docstring); no autograd of its own (`ConvTranspose2d` pairs it with the adjoint backward).
    """
    B, C, H, W = x.shape
    Co = weight.shape[1]
    pixels = x.permute(0, 2, 3, 1).reshape(B, H * W, C)  # a view when x is channels-last
    # (B, Co*16, H*W): every input pixel's contribution to each of the 16 kernel taps
    taps = torch.matmul(weight.reshape(C, Co * 16).t().to(x.dtype), pixels.transpose(1, 2))
    taps = taps.view(B, Co, 4, 4, H, W)
    # The output channels-last, as oneDNN's: its gradient then arrives channels-last too
    y_cl = taps.new_empty(B, H, 2, W, 2, Co)
    y = y_cl.permute(0, 5, 1, 2, 3, 4)  # (B, Co, H, 2, W, 2)
    for a in range(2):
        rows = _pair(_SHIFT[a], H)
        for b in range(2):
            cols = _pair(_SHIFT[b], W)
            out = y[:, :, :, a, :, b]
            out.copy_(taps[:, :, _SAME[a], _SAME[b]])
            out[:, :, rows[0], :] += taps[:, :, _OTHER[a], _SAME[b], rows[1], :]
            out[:, :, :, cols[0]] += taps[:, :, _SAME[a], _OTHER[b], :, cols[1]]
            out[:, :, rows[0], cols[0]] += taps[:, :, _OTHER[a], _OTHER[b], rows[1], cols[1]]
    y = y_cl.view(B, 2 * H, 2 * W, Co).permute(0, 3, 1, 2)
    if Co == 1:  # a 1-channel tensor's strides are ambiguous: state the channels-last ones
        y = y.as_strided(y.shape, (4 * H * W, 1, 2 * W, 1))
    if bias is not None:
        y += bias.to(y.dtype).view(1, Co, 1, 1)
    return y


def _autocast_args(x: Tensor, weight: Tensor, bias: Tensor | None):
    """(x, weight, bias) in the dtype CPU autocast would run conv_transpose2d in (as they are
    outside autocast)."""
    if not torch.is_autocast_enabled("cpu"):
        return x, weight, bias
    dtype = torch.get_autocast_dtype("cpu")
    return x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


def adjoint_backward(grad: Tensor, x: Tensor, weight: Tensor, stride, padding, dilation,
                     groups: int, needs: tuple[bool, bool, bool]):
    """(dL/dx, dL/dW, dL/db) of y = conv_transpose2d(x, weight, b, ...) from grad = dL/dy, each
    None where `needs` says so, in the dtype of x (module docstring, 1)."""
    grad = grad.to(x.dtype)
    grad_x = F.conv2d(grad, weight, None, stride, padding, dilation, groups) if needs[0] else None
    grad_w = torch.ops.aten.convolution_backward(
        x, grad, weight, None, list(stride), list(padding), list(dilation), False, [0, 0],
        groups, [False, True, False])[1] if needs[1] else None
    grad_b = grad.sum((0, 2, 3)) if needs[2] else None
    return grad_x, grad_w, grad_b


class _ConvTranspose(torch.autograd.Function):
    """conv_transpose2d with the adjoint backward (module docstring, 1)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x, weight, bias, stride, padding, output_padding, groups, dilation, phases):
        x, weight_c, bias_c = _autocast_args(x, weight, bias)
        with torch.autocast("cpu", enabled=False):
            if phases:
                y = conv_transpose_phases(x, weight_c, bias_c)
            else:
                y = F.conv_transpose2d(x, weight_c, bias_c, stride, padding, output_padding,
                                       groups, dilation)
        ctx.save_for_backward(x, weight_c)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_x, grad_w, grad_b = adjoint_backward(
            grad, x, weight, *ctx.conv, (needs[0], needs[1], ctx.dtypes[1] is not None and needs[2]))
        grad_w = None if grad_w is None else grad_w.to(ctx.dtypes[0])  # as autocast's cast back
        grad_b = None if grad_b is None else grad_b.to(ctx.dtypes[1])
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


def _thin(layer: nn.ConvTranspose2d) -> bool:
    return (tuple(layer.kernel_size) == (4, 4) and tuple(layer.stride) == (2, 2)
            and tuple(layer.padding) == (1, 1) and tuple(layer.dilation) == (1, 1)
            and tuple(layer.output_padding) == (0, 0) and layer.groups == 1
            and layer.out_channels <= MAX_THIN_CHANNELS)


class ConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` with vaelab's CPU kernels (`kernels`: "auto" | "fast" | "stock")."""

    kernels: str = "auto"

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        mode = self.kernels
        if (mode == "stock" or x.device.type != "cpu" or x.dim() != 4 or output_size is not None
                or self.padding_mode != "zeros"):
            return super().forward(x, output_size)
        phases = mode == "fast" and _thin(self)
        training = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if not training:
            if not phases:
                return super().forward(x)
            args = _autocast_args(x, self.weight, self.bias)
            with torch.autocast("cpu", enabled=False):
                return conv_transpose_phases(*args)
        if mode == "auto" and not torch.is_autocast_enabled("cpu"):
            return super().forward(x)  # fp32: PyTorch's kernels, bit for bit
        return _ConvTranspose.apply(x, self.weight, self.bias, self.stride, self.padding,
                                    self.output_padding, self.groups, self.dilation, phases)


def install(model: nn.Module, mode: str = "auto") -> int:
    """Runs every `nn.ConvTranspose2d` of `model` with vaelab's kernels; returns how many."""
    if mode not in KERNEL_MODES:
        raise ValueError(f"conv_kernels must be one of {KERNEL_MODES}, got {mode!r}")
    count = 0
    for layer in model.modules():
        if type(layer) is nn.ConvTranspose2d or type(layer) is ConvTranspose2d:
            layer.__class__ = ConvTranspose2d
            layer.kernels = mode
            count += 1
    return count


def uninstall(model: nn.Module) -> int:
    """Undoes `install`; returns how many layers went back to `nn.ConvTranspose2d`."""
    count = 0
    for layer in model.modules():
        if type(layer) is ConvTranspose2d:
            layer.__class__ = nn.ConvTranspose2d
            layer.__dict__.pop("kernels", None)
            count += 1
    return count
