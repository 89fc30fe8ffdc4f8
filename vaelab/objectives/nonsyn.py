"""The Non-Synergistic VAE objective (Barrientos & Sootla, "Non-Synergistic Variational
Autoencoders", ICLR 2019 submission; seed Gonzalob90/non-synergistic-vae, final variant "1F").

As the seed's trainers and `utils/ops.py` compute it. Every step:

1. L_vae = recon + KL (beta = 1, no annealing).
2. A greedy scan (`greedy_select_latents`) splits the latents into the most informative
   ("best") and the rest ("worst"), using the batch-mean KL of each latent as its information.
3. The "synergy" penalty is alpha * I(worst) = alpha * mean_b sum_{j in worst} KL_bj: the
   KL of the latents outside the chosen subset, pushed toward the prior so that information
   concentrates in a few latents. (Despite the paper's name, no synergy in the
   information-theoretic sense is computed; this is what the code does.)

Two update rules (`update`):

* ``"two_step"`` (the seed's intent): both gradients are taken at the same parameters theta_t
  from one forward pass, then the optimiser steps twice, first with grad L_vae, then with
  grad(alpha * I(worst)); the two gradient sets come from `torch.autograd.grad` before either
  step. This is NOT bit-for-bit the seed under PyTorch 0.4.1: the seed called
  `backward(retain_graph=True)` twice around the first `optimizer.step()`, and 0.4.1's Adam wrote
  `p.data` in place without a version bump, so the second backward combined the first forward's
  activations with the *updated* weights (theta_{t+1}) wherever a weight is saved for backward
  (about 4.9 % relative difference in the penalty's gradient on a fresh step, measured).
  Modern PyTorch raises an in-place-modification error on that code, and `two_step` does not
  reproduce the mixed gradient. Adam is not linear, so this differs from one step on the summed
  gradient.
* ``"two_step_torch041"``: the seed's update as PyTorch 0.4.1 ran it: the penalty's gradient is
  taken after the first step, through the first forward pass's graph, so it combines that pass's
  activations with the updated weights wherever a weight is saved for backward (vaelab resets
  the parameters' autograd version counters after the first step, the check 0.4.1 lacked). With
  a single linear encoder layer the two rules agree (no weight is saved on the penalty's path).
  Parameters the penalty does not reach (the decoder) get a zero gradient in the second step,
  as the seed's `zero_grad()` (which zeroed, not freed, gradients) gave them: Adam's moments still
  decay and move them.
* ``"joint"``: one step on recon + KL + alpha * I(worst) (cleaner; not the seed's).

`resample=True` re-encodes the batch after the first step (the seed's `--sample sample`) and
selects and penalises on that pass, so the penalty's gradient is taken at the updated
parameters. The seed re-encodes a batch of random *other* images; the training loop hands an
objective one batch, so the same images are re-encoded (both are i.i.d. draws from the data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vaelab.models.vae import VAEOutput
from vaelab.objectives.base import Objective
from vaelab.objectives.terms import (
    LIKELIHOODS,
    gaussian_kl_per_dim,
    kl_terms,
    reconstruction_loss,
)
from vaelab.registry import OBJECTIVES

__all__ = ["NonSyn", "NonSynObjectiveConfig", "greedy_select_latents", "synergy_penalty"]

UPDATES = ("two_step", "joint", "two_step_torch041")
#: The seed's CelebA loss: sum of squared errors of sigmoid(logits), mean over the batch.
SSE = "sse"


def greedy_select_latents(
    kl_per_latent: Sequence[float] | Tensor, omega: float
) -> tuple[list[int], list[int]]:
    """The seed's `greedy_policy_s_max_discount_worst`: most informative latents, greedily.

    With I(S) = sum_{j in S} KL_j, the scan runs D rounds. Each round tries the latents not yet
    chosen in ascending index order, each as `best + [j]`; the first round accepts a candidate
    when I(c) > I_best, later rounds when omega * I(c) > I_best, and every acceptance replaces
    the round's pick and sets I_best = I(c) (undiscounted). So a round is a path-dependent scan,
    not an argmax: a later candidate replaces an earlier pick only if omega * its value beats the
    pick's. At most one latent joins per round; ties go to the lower index (strict >).

    Consequences: if every KL is 0, best = [] and worst = all latents; omega >= 1 accepts every
    latent that adds positive KL. Worked example (by hand): KL = [0.2, 4.0, 0.05, 3.0, 1.0,
    0.5, 0.01, 2.9, 0.3, 0.0] with omega = 0.9 gives best = [1, 3, 7].

    Args:
        kl_per_latent: Batch-mean KL of every latent, KL_j = mean_b KL_bj, length D (a tensor is
            read to the host: one sync per call).
        omega: Discount in (0, inf); the CLI's `--omega` (the seed passes it as `alpha`).

    Returns:
        (best, worst): best in the order chosen, worst ascending; together all of 0..D-1.
    """
    if isinstance(kl_per_latent, Tensor):
        kl_per_latent = kl_per_latent.detach().to("cpu", torch.float64).tolist()
    values = [float(v) for v in kl_per_latent]
    best: list[int] = []
    i_best = 0.0
    for _ in range(len(values)):
        chosen = best
        base = sum(values[j] for j in best)
        for j in range(len(values)):
            if j in best:
                continue
            i_new = base + values[j]  # I(best + [j]), summed in the order of the set
            threshold = i_new if not best else omega * i_new
            if threshold > i_best:
                chosen, i_best = best + [j], i_new
        if chosen is best:  # nothing accepted: every later round would repeat this one
            break
        best = chosen
    worst = [j for j in range(len(values)) if j not in best]
    return best, worst


def synergy_penalty(kl_per_dim: Tensor, worst: Sequence[int]) -> Tensor:
    """I(worst) = mean_b sum_{j in worst} KL_bj, with gradients; 0 when `worst` is empty.

    Args:
        kl_per_dim: Per-example, per-latent KL, shape (B, D).
        worst: Latent indices to penalise.

    Returns:
        0-d tensor in nats.
    """
    mask = torch.zeros(kl_per_dim.shape[1], dtype=kl_per_dim.dtype, device=kl_per_dim.device)
    mask[list(worst)] = 1.0
    return (kl_per_dim * mask).sum(dim=1).mean()  # (B, D) -> (B,) -> ()


@dataclass(frozen=True, kw_only=True)
class NonSynObjectiveConfig:
    """Weights and update rule of the Non-Syn VAE objective."""

    alpha: float = 5.0  # synergy weight (seed CLI default 1.5; every seed script uses 5.0)
    omega: float = 0.9  # greedy discount (seed CLI default 0.8; every seed script uses 0.9)
    update: str = "two_step"  # "two_step" (seed: two optimiser steps) | "joint" (one step)
    #                           | "two_step_torch041" (the seed's mixed gradient under 0.4.1)
    resample: bool = False  # re-encode after step 1 and penalise that pass (seed's --sample)
    likelihood: str = "bernoulli"  # "bernoulli" (dSprites) | "sse" (seed's CelebA) | ...

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if self.omega <= 0:
            raise ValueError(f"omega must be > 0, got {self.omega}")
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {self.update!r}")
        if self.resample and self.update != "two_step":
            raise ValueError("resample=True needs update='two_step' (it re-encodes after step 1)")
        known = (*LIKELIHOODS, SSE)
        if self.likelihood not in known:
            raise ValueError(f"likelihood must be one of {known}, got {self.likelihood!r}")


@OBJECTIVES.register("nonsyn")
class NonSyn(Objective):
    """recon + KL, plus alpha * KL of the latents outside the greedy most-informative set.

    Terms: "loss" (recon + kl + syn), "recon", "kl", "syn" (alpha * I(worst)), "i_worst",
    "n_best" (size of the chosen set), and "kl_<j>". `best_counts` / `worst_counts` count how
    often each latent was chosen over training (the seed's console percentages).
    """

    config_class = NonSynObjectiveConfig
    accepts = (VAEOutput,)

    def __init__(self, config: NonSynObjectiveConfig = NonSynObjectiveConfig()) -> None:
        super().__init__(config)
        self.best_counts: Tensor | None = None  # (D,) int64 on the CPU
        self.worst_counts: Tensor | None = None
        self._last_split: tuple[int, list[int], list[int]] = (0, [], [])

    def _recon(self, logits: Tensor, x: Tensor) -> Tensor:
        if self.config.likelihood == SSE:
            return (torch.sigmoid(logits) - x).pow(2).sum() / x.shape[0]
        return reconstruction_loss(logits, x, self.config.likelihood)

    def _penalty(self, mu: Tensor, logvar: Tensor) -> dict[str, Tensor]:
        kl_per_dim = gaussian_kl_per_dim(mu, logvar)  # (B, D)
        best, worst = greedy_select_latents(kl_per_dim.detach().mean(dim=0), self.config.omega)
        self._last_split = (kl_per_dim.shape[1], best, worst)
        i_worst = synergy_penalty(kl_per_dim, worst)
        return {
            "syn": self.config.alpha * i_worst,
            "i_worst": i_worst,
            "n_best": torch.tensor(float(len(best)), device=mu.device),
        }

    def _count(self) -> None:
        """Adds the last selection (of the pass that was penalised) to the counters."""
        latent_dim, best, worst = self._last_split
        if self.best_counts is None or self.best_counts.numel() != latent_dim:
            self.best_counts = torch.zeros(latent_dim, dtype=torch.int64)
            self.worst_counts = torch.zeros(latent_dim, dtype=torch.int64)
        self.best_counts[best] += 1
        self.worst_counts[worst] += 1

    def forward(self, out: VAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        terms = {"recon": self._recon(out.logits, x), **kl_terms(out.mu, out.logvar)}
        terms.update(self._penalty(out.mu, out.logvar))
        terms["loss"] = terms["recon"] + terms["kl"] + terms["syn"]
        return terms

    def update(self, updater: Any, model: nn.Module, batch: Any, step: Tensor) -> dict[str, Tensor]:
        """`joint`: the default single step. `two_step`: two optimiser steps (module docstring)."""
        if self.config.update == "joint":
            terms = super().update(updater, model, batch, step)
            self._count()
            return terms
        terms = self.compute(model, batch, step)
        grads_vae = updater.gradients(terms["recon"] + terms["kl"],
                                      retain_graph=not self.config.resample)
        if self.config.resample:
            updater.step_with(grads_vae)
            out = model(batch.x)  # fresh pass at the updated parameters; only mu, logvar are used
            terms.update(self._penalty(out.mu, out.logvar))
            grads_syn = updater.gradients(terms["syn"])
        elif self.config.update == "two_step_torch041":
            params = tuple(updater.model_params)
            versions = tuple(p._version for p in params)
            updater.step_with(grads_vae)
            # 0.4.1's Adam wrote p.data without bumping the version: backward then reads the
            # updated weights where the graph saved them, next to the first pass's activations.
            torch._C._autograd._unsafe_set_version_counter(params, versions)
            grads_syn = updater.gradients(terms["syn"])
        else:
            grads_syn = updater.gradients(terms["syn"])
            updater.step_with(grads_vae)
        updater.step_with(grads_syn)
        self._count()
        terms["loss"] = terms["recon"] + terms["kl"] + terms["syn"]
        return {k: v.detach() for k, v in terms.items()}

    def extra_state_dict(self) -> dict[str, Any]:
        if self.best_counts is None:
            return {}
        return {
            "best_counts": self.best_counts.tolist(),
            "worst_counts": self.worst_counts.tolist(),
        }

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        if "best_counts" in state:
            self.best_counts = torch.tensor(state["best_counts"], dtype=torch.int64)
            self.worst_counts = torch.tensor(state["worst_counts"], dtype=torch.int64)
