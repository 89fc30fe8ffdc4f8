"""`Updater`: the one place where gradients are taken and optimisers step.

The engine builds one per run and hands it to `Objective.update`. It owns the model's optimiser
and, for objectives with parameters of their own (FactorVAE's discriminator), theirs; it knows
the precision plugin (a 16-bit GradScaler) and the DDP world, so no objective calls
`fabric.backward`, all-reduces gradients or checks the precision itself.

* `minimize(loss, own_loss=None)`: zero both, back-propagate `loss` (into the model; with
  `own_loss` only into the model) and `own_loss` into the objective's parameters, step both.
* `gradients(loss)` + `step_with(grads)`: gradients at the current parameters without touching
  `.grad`, then an optimiser step with given gradients (the Non-Syn VAE's two steps).

Without a Fabric (`fabric=None`: tests, notebooks) it uses plain `loss.backward()` on one process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vaelab.errors import VaelabError

__all__ = ["Updater", "build_optimizers", "fused"]

#: Optimisers with a fused implementation (`fused=True`) in PyTorch, and the flags it replaces.
_FUSABLE = (torch.optim.Adam, torch.optim.AdamW)
_IMPLEMENTATION_FLAGS = ("fused", "foreach")


def fused(optimizer: torch.optim.Optimizer | None) -> torch.optim.Optimizer | None:
    """`optimizer` rebuilt with PyTorch's fused kernel (`train.fused_adam`), before its first step.

    An Adam or AdamW becomes the same optimiser over the same parameter groups and settings with
    `fused=True`: one kernel per parameter tensor for the whole update instead of a chain of
    element-wise ops (on CPU ~2.8x faster for FactorVAE's 5M-weight discriminator). The update is
    the same formula, but its float rounding differs in the last bits, so `fused_adam` is an
    option, off by default. Others (and None) are returned unchanged: they have no fused kernel.

    Raises:
        VaelabError: the optimiser has already stepped, or the parameters' device or dtype has no
            fused kernel in this PyTorch.
    """
    if not isinstance(optimizer, _FUSABLE) or optimizer.defaults.get("fused"):
        return optimizer
    if optimizer.state:
        raise VaelabError("train.fused_adam rebuilds the optimiser before its first step; this "
                          "one has already stepped")
    groups = [{k: v for k, v in group.items() if k not in _IMPLEMENTATION_FLAGS}
              for group in optimizer.param_groups]
    defaults = {k: v for k, v in optimizer.defaults.items() if k not in _IMPLEMENTATION_FLAGS}
    try:
        return type(optimizer)(groups, **{**defaults, "fused": True, "foreach": None})
    except (RuntimeError, ValueError) as error:
        raise VaelabError(f"train.fused_adam: PyTorch has no fused {type(optimizer).__name__} "
                          f"for these parameters or settings ({error}); set "
                          "train.fused_adam=false") from None


def build_optimizers(model: nn.Module, objective: nn.Module, train: Any
                     ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
    """The run's two optimisers: Adam(train.lr, train.adam_betas) over the model's parameters and
    the objective's own (`configure_optimizer()`, None for most), both `fused` when
    `train.fused_adam` (the objective's own Adam is FactorVAE's discriminator, ~15 % of an
    unfused CPU step). `train` is a `TrainConfig`; build after moving `objective` to its device.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, betas=train.adam_betas)
    own_optimizer = objective.configure_optimizer()
    if train.fused_adam:
        return fused(optimizer), fused(own_optimizer)
    return optimizer, own_optimizer


def _load_keeping_implementation(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """`optimizer.load_state_dict(state)` that keeps this run's fused/foreach choice.

    A saved param group carries its implementation flags, which `load_state_dict` would copy, so a
    checkpoint of a fused run would silently make a resumed unfused one fused (and back)."""
    flags = [{k: group[k] for k in _IMPLEMENTATION_FLAGS if k in group}
             for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, flags):
        for key in _IMPLEMENTATION_FLAGS:
            if key in kept:
                group[key] = kept[key]
            else:
                group.pop(key, None)


def _grad_scaler(fabric: Any) -> Any:
    precision = getattr(getattr(fabric, "strategy", None), "precision", None)
    return getattr(precision, "scaler", None)


@contextlib.contextmanager
def _outside_fabric_backward(fabric: Any) -> Iterator[None]:
    """Lets `torch.autograd.grad` run on a Fabric model's outputs.

    Fabric hooks every output of a mixed-precision model and refuses a backward pass that does
    not go through `fabric.backward`, because a GradScaler must scale it. `gradients` refuses the
    GradScaler (16-mixed) itself, and for bf16-mixed Fabric's backward is a plain
    `loss.backward()`, so taking the gradients directly is what Fabric would do; the flag Fabric
    sets inside its own backward is set for the call.
    """
    try:
        from lightning.fabric import wrappers
    except ImportError:  # pragma: no cover - lightning is a dependency
        wrappers = None
    if fabric is None or wrappers is None or not hasattr(wrappers, "_in_fabric_backward"):
        yield
        return
    previous = wrappers._in_fabric_backward
    wrappers._in_fabric_backward = True
    try:
        yield
    finally:
        wrappers._in_fabric_backward = previous


class Updater:
    """Optimiser steps of one run (see the module docstring).

    Args:
        model: the (Fabric-wrapped) model whose trainable parameters `optimizer` steps.
        optimizer: the model's optimiser.
        objective: the objective; its own optimiser comes from `configure_optimizer()`.
        fabric: the run's Fabric, or None for a plain single-process loop.
        name: the objective's registry name, for messages.
        own_optimizer: the objective's optimiser instead of `objective.configure_optimizer()`.

    Raises:
        VaelabError: the objective has its own optimiser and the precision uses a GradScaler
            (its gradients would stay scaled).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, objective: nn.Module,
                 fabric: Any = None, name: str = "",
                 own_optimizer: torch.optim.Optimizer | None = None) -> None:
        self.fabric = fabric
        self.name = name or type(objective).__name__
        self.optimizer = optimizer
        self.model_params = [p for p in model.parameters() if p.requires_grad]
        self.own_params = [p for p in objective.parameters() if p.requires_grad]
        self.own_optimizer = own_optimizer or objective.configure_optimizer()
        self.world_size = getattr(fabric, "world_size", 1) if fabric is not None else 1
        if self.own_optimizer is not None and _grad_scaler(fabric) is not None:
            raise VaelabError(
                f"objective {self.name!r} trains its own parameters, which a 16-bit GradScaler "
                "does not support (train.precision='16-mixed'); use '32-true' or 'bf16-mixed'"
            )

    # -- the default rule -----------------------------------------------------------------------

    def _backward(self, loss: Tensor, **kwargs: Any) -> None:
        if self.fabric is None:
            loss.backward(**kwargs)
        else:
            self.fabric.backward(loss, **kwargs)

    def minimize(self, loss: Tensor, own_loss: Tensor | None = None) -> None:
        """One step of the model's optimiser on `loss` (and of the objective's on `own_loss`).

        With `own_loss`, each loss reaches only its own parameters (`backward(inputs=...)`), so
        neither trains the other's parameters; add `own_loss` to `loss` to let it reach the
        model too.
        """
        self.optimizer.zero_grad(set_to_none=True)
        if own_loss is None:
            self._backward(loss)
            self.optimizer.step()
            return
        if self.own_optimizer is None:
            raise VaelabError(f"objective {self.name!r} has no optimiser of its own "
                              "(configure_optimizer() returned None)")
        self.own_optimizer.zero_grad(set_to_none=True)
        self._backward(loss, inputs=self.model_params, retain_graph=True)
        self._backward(own_loss, inputs=self.own_params)
        self.optimizer.step()
        self._all_reduce(self.own_params)
        self.own_optimizer.step()

    # -- custom rules ---------------------------------------------------------------------------

    def gradients(self, loss: Tensor, retain_graph: bool = False) -> tuple[Tensor | None, ...]:
        """d loss / d model parameters at the current parameters; `.grad` is left untouched.

        Raises:
            VaelabError: the precision uses a 16-bit GradScaler, which cannot scale these.
        """
        if _grad_scaler(self.fabric) is not None:
            raise VaelabError(
                f"objective {self.name!r} takes its gradients with torch.autograd.grad, which a "
                "16-bit GradScaler cannot scale; use precision '32-true' or 'bf16-mixed'"
            )
        with _outside_fabric_backward(self.fabric):
            return torch.autograd.grad(loss, self.model_params, retain_graph=retain_graph,
                                       allow_unused=True)

    def step_with(self, grads: Sequence[Tensor | None]) -> None:
        """One model-optimiser step with `grads` (zeros where a parameter got none).

        `torch.autograd.grad` bypasses DDP's hooks, so the gradients are averaged over ranks here.
        """
        for p, g in zip(self.model_params, grads):
            g = torch.zeros_like(p) if g is None else g.detach()
            if self.world_size > 1:
                g = self.fabric.all_reduce(g, reduce_op="mean")
            p.grad = g
        self.optimizer.step()
        for p in self.model_params:
            p.grad = None

    def _all_reduce(self, params: Sequence[Tensor]) -> None:
        # The objective is called directly, not through a DDP forward, so its gradients are
        # averaged by hand.
        if self.world_size > 1:
            for p in params:
                if p.grad is not None:
                    p.grad.copy_(self.fabric.all_reduce(p.grad, reduce_op="mean"))

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(),
                "aux_optimizer": (self.own_optimizer.state_dict()
                                  if self.own_optimizer is not None else None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _load_keeping_implementation(self.optimizer, state["optimizer"])
        if self.own_optimizer is not None and state.get("aux_optimizer"):
            _load_keeping_implementation(self.own_optimizer, state["aux_optimizer"])


def cosine_lr(optimizers: Sequence[Any], step: int, steps: int, lr_final: float) -> None:
    """Sets every optimiser's rate for step `step` + 1 (of `steps`) from its starting rate: a
    cosine from 1 to `lr_final` times the starting rate (`train.lr_schedule="cosine"`).

    Stateless: the starting rate is kept in each param group as `initial_lr` (saved with the
    optimiser, so a resumed run follows the same schedule) and the rate is a function of the step.
    """
    import math

    progress = min(1.0, step / max(1, steps - 1))
    factor = lr_final + (1.0 - lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    for optimizer in optimizers:
        for group in getattr(optimizer, "param_groups", ()):
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor
