"""FactorVAE: the total correlation estimated by a discriminator (density-ratio trick).

Kim & Mnih, "Disentangling by Factorising" (ICML 2018), eq. 2 and Algorithm 1:

    vae_loss  = recon + KL + w_t * gamma * tc,     tc = mean_b (d_b0 - d_b1),  d = D(z_1)
    disc_loss = 1/2 [CE(D(z_1), "joint") + CE(D(permute_dims(z_2)), "permuted")]

The batch is split in halves: the first half gives the VAE terms and the codes z_1 that the
discriminator scores; the second half gives codes z_2 whose columns `permute_dims` shuffles
independently, which samples the product of the marginals prod_j q(z_j). Logit 0 means "joint",
logit 1 "permuted" (as the seed), so d_b0 - d_b1 estimates log q(z) / prod_j q(z_j). An odd last
example is dropped. The seed doubles the batch size for this loss (its `main.py`); presets do that.

The discriminator is a submodule, so it is in the objective's `state_dict` and in checkpoints
(the seed's `FactorKLoss` does not save it). It updates only the discriminator: `update` back-
propagates it into the discriminator's parameters alone (`Updater.minimize(own_loss=...)`), as
if the codes were detached. The seed, since its "PyTorch >= 1.5" commit, lets that loss flow
into the encoder too (commit f8f64d8); `leak_disc_grad=True` reproduces that.

Cost: only the first half is decoded (the second half's reconstructions are never used), and the
discriminator runs twice per step, on z_1 (its logits serve both the TC term and the
discriminator loss) and on permute_dims(z_2). The seed decodes the whole batch and scores z_1 a
second time on detached codes; the terms and gradients are the same.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaelab.models.vae import VAEOutput, kaiming_init
from vaelab.objectives.base import Objective
from vaelab.objectives.elbo import elbo_terms
from vaelab.objectives.terms import check_likelihood, linear_warmup
from vaelab.registry import OBJECTIVES

__all__ = ["Discriminator", "FactorVAE", "FactorVAEConfig", "permute_dims"]


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Shuffles every latent column with its own random permutation of the rows.

    Kim & Mnih (2018), Algorithm 1: turns samples of q(z) into samples of prod_j q(z_j). One
    `argsort` of uniform noise gives all D permutations at once, with no host sync.

    Args:
        z: Codes, shape (B, D).
        generator: Optional torch generator (on z's device) for reproducibility.

    Returns:
        Shape (B, D): column j is a permutation of z[:, j].
    """
    noise = torch.rand(z.shape, generator=generator, device=z.device)  # (B, D)
    rows = noise.argsort(dim=0)  # (B, D): an independent permutation per column
    return z.gather(0, rows)


class Discriminator(nn.Module):
    """MLP z (B, D) -> 2 logits (joint, permuted); LeakyReLU(0.2) between layers.

    The seed's: 6 linear layers of 1000 units, Kaiming-uniform (ReLU rule) weights.
    """

    def __init__(self, latent_dim: int, hidden_dim: int = 1000, num_layers: int = 6) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        widths = [latent_dim] + [hidden_dim] * (num_layers - 1)
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(widths[-1], 2))
        self.net = nn.Sequential(*layers)
        kaiming_init(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


@dataclass(frozen=True, kw_only=True)
class FactorVAEConfig:
    """FactorVAE (Kim & Mnih, 2018): the TC weight and the discriminator's settings."""

    likelihood: str = "bernoulli"  # "bernoulli" | "laplace" | "gaussian"
    gamma: float = 6.0  # weight of the total correlation: the paper's gamma (Kim & Mnih, eq. 2)
    latent_dim: int = 10  # D of the model's codes (the discriminator's input)
    hidden_dim: int = 1000  # units of each hidden discriminator layer
    num_layers: int = 6  # linear layers of the discriminator, >= 2
    lr_disc: float = 5e-5  # Adam learning rate of the discriminator
    betas_disc: tuple[float, float] = (0.5, 0.9)  # Adam betas of the discriminator
    warmup_steps: int = 0  # linear warm-up of the TC weight, as the seed; 0: none
    leak_disc_grad: bool = False  # let the discriminator loss reach the encoder (the seed's bug)

    def __post_init__(self) -> None:
        check_likelihood(self.likelihood)
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {self.hidden_dim}")
        if self.num_layers < 2:
            raise ValueError(f"num_layers must be >= 2, got {self.num_layers}")
        if self.lr_disc <= 0:
            raise ValueError(f"lr_disc must be > 0, got {self.lr_disc}")
        if not all(0 <= b < 1 for b in self.betas_disc):
            raise ValueError(f"betas_disc must be in [0, 1), got {self.betas_disc}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@OBJECTIVES.register("factor_vae")
class FactorVAE(Objective):
    """recon + KL + w_t * gamma * tc, with tc from a discriminator the objective owns and trains.

    `forward` computes every term, including "disc_loss" and "disc_acc", without updating
    anything (it serves evaluation); `training_step` steps the model's optimiser on "loss" and
    the discriminator's (`configure_optimizer`) on "disc_loss".
    """

    config_class = FactorVAEConfig
    accepts = (VAEOutput,)

    @classmethod
    def resolve_config(cls, config: FactorVAEConfig, model: nn.Module) -> FactorVAEConfig:
        """`latent_dim` (the discriminator's input) set to the size of the model's codes z."""
        latent_dim = model.spec("z").dim
        if config.latent_dim == latent_dim:
            return config
        return dataclasses.replace(config, latent_dim=latent_dim)

    def __init__(self, config: FactorVAEConfig = FactorVAEConfig()) -> None:
        super().__init__(config)
        self.discriminator = Discriminator(config.latent_dim, config.hidden_dim, config.num_layers)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        """Adam(lr_disc, betas_disc) over the discriminator, as the seed."""
        return torch.optim.Adam(
            self.discriminator.parameters(), lr=self.config.lr_disc, betas=self.config.betas_disc
        )

    def forward(self, out: VAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        batch_size, latent_dim = out.z.shape
        if batch_size < 2:
            raise ValueError(
                f"factor_vae splits the batch in two halves and needs >= 2 images, got {batch_size}"
            )
        if latent_dim != self.config.latent_dim:
            raise ValueError(
                f"factor_vae's discriminator takes codes of size latent_dim="
                f"{self.config.latent_dim}, the model gives {latent_dim}; set "
                f"objective.latent_dim={latent_dim}"
            )
        half = batch_size // 2
        first = VAEOutput(mu=out.mu[:half], logvar=out.logvar[:half], z=out.z[:half],
                          logits=out.logits[:half])
        terms = elbo_terms(first, x[:half], self.config.likelihood)
        z_joint = first.z  # (h, D), samples of q(z)
        z_perm = permute_dims(out.z[half:2 * half].detach())  # (h, D), samples of prod_j q(z_j)

        # One pass on z_1 serves both losses: "loss" reaches only the model's parameters and
        # "disc_loss" only the discriminator's (`update`), so no detached second pass is needed.
        logits_joint = self.discriminator(z_joint)  # (h, 2)
        tc = (logits_joint[:, 0] - logits_joint[:, 1]).mean()
        weight = linear_warmup(step, self.config.warmup_steps if self.training else 0)
        loss = terms["recon"] + terms["kl"] + weight * self.config.gamma * tc

        logits_perm = self.discriminator(z_perm)
        joint_label = torch.zeros(half, dtype=torch.long, device=z_joint.device)
        disc_loss = 0.5 * (F.cross_entropy(logits_joint, joint_label)
                           + F.cross_entropy(logits_perm, joint_label + 1))
        disc_acc = 0.5 * ((logits_joint.argmax(-1) == 0).float().mean()
                          + (logits_perm.argmax(-1) == 1).float().mean())
        return {"loss": loss, **terms, "tc": tc, "warmup": weight, "disc_loss": disc_loss,
                "disc_acc": disc_acc.detach()}

    def compute(self, model: nn.Module, batch: Any, step: Tensor) -> dict[str, Tensor]:
        """One encoder pass on the whole (even part of the) batch; only the first half is decoded
        (models with `partial_decode`; others decode all and the second half is dropped)."""
        x = batch.x
        if x.shape[0] < 2:
            raise ValueError(
                f"factor_vae splits the batch in two halves and needs >= 2 images, got {x.shape[0]}"
            )
        half = x.shape[0] // 2
        x = x[: half * 2]
        if getattr(model, "partial_decode", False):
            return self(model(x, decode_first=half), x, step)
        return self(model(x), x, step)

    def update(self, updater: Any, model: nn.Module, batch: Any, step: Tensor) -> dict[str, Tensor]:
        """Steps the model on "loss" and the discriminator on "disc_loss"; returns the terms.

        Each loss is back-propagated only into its own parameters (`Updater.minimize` with
        `own_loss`), so the TC term does not train the discriminator and, unless
        `leak_disc_grad`, the discriminator loss does not train the model (it shares the
        discriminator's pass on z_1 with the TC term, so this separation is what keeps it out). With the leak the
        model's gradient is that of loss + disc_loss, as in the seed.
        """
        terms = self.compute(model, batch, step)
        model_loss = terms["loss"]
        if self.config.leak_disc_grad:
            model_loss = model_loss + terms["disc_loss"]
        updater.minimize(model_loss, own_loss=terms["disc_loss"])
        return {k: v.detach() for k, v in terms.items()}
