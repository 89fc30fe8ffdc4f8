"""The objective contract shared by every loss, and the default update rule.

An objective is an `nn.Module` registered in `OBJECTIVES` with a `config_class` and `accepts`, the
model output types it can score (`Model.output_type`); pairing it with a model whose output is
not among them is refused before training (`vaelab.factory.check_compatible`). Its
`forward(out, x, step)` returns a dict of 0-d tensors: `"loss"` (what the model's optimiser
minimises) plus every named term (`"recon"`, `"kl"`, `"tc"`, ...) and `kl_<j>` per latent
dimension where the objective has them. `step` is the 1-based index of the optimiser step as a
0-d tensor (on the training device, so schedules need no host sync).

`compute(model, batch, step)` runs the model on a `Batch` (images plus whatever the dataset
carries: labels, domains) and scores it; objectives that need labels or domains override it.
`update(updater, model, batch, step)` is the one hook for an objective with its own update rule
(FactorVAE's discriminator, the Non-Synergistic VAE's two steps); it never calls backward or an
optimiser itself, only the `vaelab.optim.Updater` it is handed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Objective"]


class Objective(nn.Module):
    """Base class of every objective."""

    config_class: type
    #: the model output types this objective scores (e.g. `(VAEOutput,)`)
    accepts: tuple[type, ...] = ()
    #: True when the objective needs the training-set size (`set_dataset_size`), e.g. beta-TCVAE.
    needs_dataset_size: bool = False

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.dataset_size = 0

    @classmethod
    def resolve_config(cls, config: Any, model: nn.Module) -> Any:
        """The config completed from the built model (e.g. a discriminator's input size)."""
        return config

    def set_dataset_size(self, n: int) -> None:
        """Tells the objective N, the number of training images (for TC estimators)."""
        self.dataset_size = int(n)

    def forward(self, out: Any, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def compute(self, model: nn.Module, batch: Any, step: Tensor) -> dict[str, Tensor]:
        """Forward pass of `model` on `batch.x` and every term (used for training and eval)."""
        return self(model(batch.x), batch.x, step)

    def configure_optimizer(self) -> torch.optim.Optimizer | None:
        """Optimiser of the objective's own parameters (None when it has none)."""
        return None

    def update(self, updater: Any, model: nn.Module, batch: Any, step: Tensor) -> dict[str, Tensor]:
        """One training step: the terms, then one optimiser step on "loss"; returns them detached."""
        terms = self.compute(model, batch, step)
        updater.minimize(terms["loss"])
        return {k: v.detach() for k, v in terms.items()}

    def extra_state_dict(self) -> dict[str, Any]:
        """Non-parameter state to checkpoint (schedules, counters); parameters go in state_dict."""
        return {}

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        pass
