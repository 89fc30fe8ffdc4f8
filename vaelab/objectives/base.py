"""The objective contract shared by every loss, and the default training step.

An objective is an `nn.Module` registered in `OBJECTIVES` with a `config_class`. Its
`forward(out, x, step)` returns a dict of 0-d tensors: `"loss"` (what the model's optimiser
minimises) plus every named term (`"recon"`, `"kl"`, `"tc"`, ...) and `kl_<j>` per latent
dimension where the objective has them. `step` is the 1-based index of the optimiser step as a
0-d tensor (on the training device, so schedules need no host sync).

Objectives that own parameters (FactorVAE's discriminator) return `configure_optimizer()` and
override `training_step`; the loop then steps both optimisers. Objectives that need a different
update rule (the Non-Synergistic VAE's two steps) override `training_step` too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Objective"]


class Objective(nn.Module):
    """Base class of every objective."""

    config_class: type
    #: True when the objective needs the training-set size (`set_dataset_size`), e.g. beta-TCVAE.
    needs_dataset_size: bool = False

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.dataset_size = 0

    def set_dataset_size(self, n: int) -> None:
        """Tells the objective N, the number of training images (for TC estimators)."""
        self.dataset_size = int(n)

    def forward(self, out: Any, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def compute(self, model: nn.Module, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        """Forward pass of `model` on the batch and every term (used for training and eval)."""
        return self(model(x), x, step)

    def configure_optimizer(self) -> torch.optim.Optimizer | None:
        """Optimiser of the objective's own parameters (None when it has none)."""
        return None

    def training_step(
        self,
        fabric: Any,
        model: nn.Module,
        x: Tensor,
        step: Tensor,
        optimizer: torch.optim.Optimizer,
        aux_optimizer: torch.optim.Optimizer | None,
    ) -> dict[str, Tensor]:
        """One optimiser step; returns the terms (detached)."""
        terms = self.compute(model, x, step)
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(terms["loss"])
        optimizer.step()
        return {k: v.detach() for k, v in terms.items()}

    def extra_state_dict(self) -> dict[str, Any]:
        """Non-parameter state to checkpoint (schedules, counters); parameters go in state_dict."""
        return {}

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        pass
