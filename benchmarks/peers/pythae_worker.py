"""One pythae training run, timed: run with pythae's own Python (its virtual environment).

The Burgess encoder/decoder (the same layers as vaelab's `burgess` model) as pythae
`BaseEncoder`/`BaseDecoder`, pythae's own model class for the objective and its own trainer's
`train_step` (DataLoader, per-item collation, its optimiser steps and `.item()` logging: pythae
as its users run it) over images held in memory as one float tensor. Prints images/s as JSON.

    python pythae_worker.py OBJECTIVE IMAGES.npy STEPS WARMUP THREADS
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn


def main() -> None:
    objective, images_path, steps, warmup, threads = sys.argv[1:6]
    steps, warmup = int(steps), int(warmup)
    torch.set_num_threads(int(threads))
    from pythae.data.datasets import BaseDataset
    from pythae.models import (
        VAE,
        BetaTCVAE,
        BetaTCVAEConfig,
        BetaVAE,
        BetaVAEConfig,
        DisentangledBetaVAE,
        DisentangledBetaVAEConfig,
        FactorVAE,
        FactorVAEConfig,
        VAEConfig,
    )
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import (
        AdversarialTrainer,
        AdversarialTrainerConfig,
        BaseTrainer,
        BaseTrainerConfig,
    )

    class Encoder(BaseEncoder):  # Burgess et al. (2018), as vaelab's BurgessEncoder
        def __init__(self, latent_dim: int = 10) -> None:
            super().__init__()
            self.convs = nn.ModuleList([nn.Conv2d(1, 32, 4, 2, 1)] +
                                       [nn.Conv2d(32, 32, 4, 2, 1) for _ in range(3)])
            self.lin1, self.lin2 = nn.Linear(512, 256), nn.Linear(256, 256)
            self.head = nn.Linear(256, 2 * latent_dim)
            self.latent_dim = latent_dim

        def forward(self, x):
            h = x
            for conv in self.convs:
                h = torch.relu(conv(h))
            h = torch.relu(self.lin2(torch.relu(self.lin1(h.flatten(1)))))
            mu_logvar = self.head(h).view(-1, self.latent_dim, 2)
            return ModelOutput(embedding=mu_logvar[..., 0], log_covariance=mu_logvar[..., 1])

    class Decoder(BaseDecoder):
        def __init__(self, latent_dim: int = 10) -> None:
            super().__init__()
            self.lin1, self.lin2 = nn.Linear(latent_dim, 256), nn.Linear(256, 256)
            self.lin3 = nn.Linear(256, 512)
            self.convs = nn.ModuleList([nn.ConvTranspose2d(32, 32, 4, 2, 1) for _ in range(3)]
                                       + [nn.ConvTranspose2d(32, 1, 4, 2, 1)])

        def forward(self, z):
            h = torch.relu(self.lin3(torch.relu(self.lin2(torch.relu(self.lin1(z))))))
            h = h.view(-1, 32, 4, 4)
            for conv in self.convs[:-1]:
                h = torch.relu(conv(h))
            return ModelOutput(reconstruction=torch.sigmoid(self.convs[-1](h)))

    common = {"input_dim": (1, 64, 64), "latent_dim": 10, "reconstruction_loss": "bce"}
    models = {
        "vae": (VAE, VAEConfig(**common)),
        "beta_vae": (BetaVAE, BetaVAEConfig(**common, beta=4.0)),
        "annealed_vae": (DisentangledBetaVAE, DisentangledBetaVAEConfig(**common, beta=1000.0,
                                                                        C=25.0)),
        "factor_vae": (FactorVAE, FactorVAEConfig(**common, gamma=6.0)),
        "beta_tcvae": (BetaTCVAE, BetaTCVAEConfig(**common, beta=6.0)),
    }
    cls, config = models[objective]
    torch.manual_seed(0)
    model = cls(config, encoder=Encoder(), decoder=Decoder())
    images = torch.from_numpy(np.load(images_path)).float()  # (N, 1, 64, 64) in memory
    batch = 64
    per_epoch_steps = len(images) // batch
    if per_epoch_steps < max(steps, warmup):
        raise SystemExit(f"{len(images)} images are fewer than {max(steps, warmup)} batches")
    with tempfile.TemporaryDirectory() as folder:
        options = {"output_dir": folder, "per_device_train_batch_size": batch,
                   "num_epochs": 1, "learning_rate": 5e-4, "no_cuda": True}
        if objective == "factor_vae":
            trainer = AdversarialTrainer(model, BaseDataset(images[: warmup * batch],
                                                            torch.zeros(warmup * batch)),
                                         training_config=AdversarialTrainerConfig(**options))
        else:
            trainer = BaseTrainer(model, BaseDataset(images[: warmup * batch],
                                                     torch.zeros(warmup * batch)),
                                  training_config=BaseTrainerConfig(**options))
        trainer.prepare_training()  # optimisers, callbacks (as `trainer.train()` does)
        trainer.train_step(1)  # warm-up epoch of `warmup` steps
        trainer.train_loader = trainer.get_train_dataloader(
            BaseDataset(images[: steps * batch], torch.zeros(steps * batch)))
        start = time.perf_counter()
        trainer.train_step(2)
        elapsed = time.perf_counter() - start
    print(json.dumps(steps * batch / elapsed))


if __name__ == "__main__":
    main()
