"""Presets of the study of Locatello et al. (2019): `study_<method>_<dataset>`.

"Challenging Common Assumptions in the Unsupervised Learning of Disentangled Representations"
(ICML 2019) trained six methods with one protocol, disentanglement_lib's
`config/unsupervised_study_v1` (`model_configs/shared.gin` and `sweep.py`):

* the `dlib_conv` model (its `conv_encoder` / `deconv_decoder`), 10 latents;
* Bernoulli likelihood (`reconstruction_loss.loss_fn = @bernoulli_loss`);
* Adam, learning rate 1e-4, beta1 0.9, beta2 0.999, epsilon 1e-8 (PyTorch's default epsilon);
  FactorVAE's discriminator: Adam 1e-4, beta1 0.5, beta2 0.9;
* batch 64, 300,000 steps, seeds 0..49.

Each preset holds one value of its method's swept hyper-parameter (the sweep file
`unsupervised_study_v1` varies it); the table below lists the objective settings. Differences from
disentanglement_lib that remain, stated in each description:

* factor_vae: vaelab's FactorVAE follows Kim & Mnih (2018, Algorithm 2): the batch is split in
  two halves, the VAE terms on the first and the permuted codes from the second.
  disentanglement_lib permutes the codes of the same batch. The presets use batch 128, so the VAE
  terms see 64 images per step as in the study.
* beta_tcvae: disentanglement_lib adds (beta - 1) * TC to the ELBO with the closed-form KL; vaelab's
  beta-TCVAE estimates every term of the decomposition (Chen et al. 2018, eq. 4) on the batch.
  The presets use the minibatch-weighted estimator (`mws`), the one disentanglement_lib uses.

Adding a dataset is one row of `DATASETS` (its vaelab data table).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["DATASETS", "METHODS", "STUDY_TRAIN", "study_presets"]

#: the study's training settings (disentanglement_lib's shared.gin)
STUDY_TRAIN: dict[str, Any] = {
    "steps": 300_000, "batch_size": 64, "lr": 1e-4, "adam_betas": [0.9, 0.999],
    "checkpoint_every": 10_000, "log_every": 100,
}

#: method -> (objective table, what the preset's hyper-parameter value is, extra train settings,
#: difference from disentanglement_lib or "")
METHODS: dict[str, tuple[dict[str, Any], str, dict[str, Any], str]] = {
    "beta_vae": ({"name": "beta_vae", "beta": 4.0}, "beta 4", {}, ""),
    "annealed_vae": ({"name": "annealed_vae", "gamma": 1000.0, "c_init": 0.0, "c_final": 25.0,
                      "capacity_steps": 100_000}, "gamma 1000, C_max 25 reached at 100,000 steps",
                     {}, ""),
    "factor_vae": ({"name": "factor_vae", "gamma": 30.0, "lr_disc": 1e-4,
                    "betas_disc": [0.5, 0.9]}, "gamma 30, discriminator Adam 1e-4 (0.5, 0.9)",
                   {"batch_size": 128},
                   "batch 128 split in halves (Kim & Mnih's Algorithm 2; the VAE terms see 64 "
                   "images as in the study, which permutes codes of the same batch)"),
    "dip_vae_i": ({"name": "dip_vae_i", "lambda_od": 10.0, "lambda_d_factor": 10.0},
                  "lambda_od 10, lambda_d 10 x lambda_od", {}, ""),
    "dip_vae_ii": ({"name": "dip_vae_ii", "lambda_od": 10.0, "lambda_d_factor": 1.0},
                   "lambda_od 10, lambda_d = lambda_od", {}, ""),
    "beta_tcvae": ({"name": "beta_tcvae", "alpha": 1.0, "beta": 6.0, "gamma": 1.0,
                    "estimator": "mws"}, "beta 6, minibatch-weighted sampling", {},
                   "every KL term estimated on the batch (Chen et al. eq. 4) where the study "
                   "adds (beta - 1) x TC to the closed-form KL"),
}

#: dataset -> (vaelab data table, note for the description)
DATASETS: dict[str, tuple[dict[str, Any], str]] = {
    "dsprites": ({"name": "dsprites"},
                 "procedural dSprites by default; the study's file: --set data.source=npz"),
    "color_dsprites": ({"name": "dsprites", "variant": "color"}, "Color-dSprites (offline)"),
    "noisy_dsprites": ({"name": "dsprites", "variant": "noisy"}, "Noisy-dSprites (offline)"),
    "scream_dsprites": ({"name": "dsprites_scream"},
                        "Scream-dSprites; needs `vaelab data dsprites_scream`"),
    "smallnorb": ({"name": "smallnorb"}, "needs `vaelab data smallnorb`"),
    "cars3d": ({"name": "cars3d_labelled"},
               "Cars3D with its factors (`cars3d_labelled`); needs `vaelab data cars3d_labelled`"),
    "shapes3d": ({"name": "shapes3d"}, "needs `vaelab data shapes3d`"),
    "mpi3d_toy": ({"name": "mpi3d", "variant": "toy"},
                  "MPI3D-toy (Locatello et al. 2020's addition); needs `vaelab data mpi3d`"),
}


def _preset(method: str, dataset: str) -> dict[str, Any]:
    objective, value, train, difference = METHODS[method]
    data, data_note = DATASETS[dataset]
    description = (
        f"Locatello et al. (2019) study protocol: {method} ({value}) on {dataset}, "
        "disentanglement_lib's conv architecture (dlib_conv, not vaelab's default Burgess "
        "model), 10 latents, Bernoulli likelihood, Adam 1e-4 (0.9, 0.999), batch 64, 300,000 "
        "steps (vaelab's default preset: Burgess model, lr 1e-3, 5,000 steps); "
        f"{data_note}" + (f"; differs from disentanglement_lib: {difference}" if difference
                          else "")
    )
    return {
        "description": description,
        "name": f"study_{method}_{dataset}",
        "seed": 0,
        "model": {"name": "dlib_conv", "latent_dim": 10},
        "objective": {**copy.deepcopy(objective), "likelihood": "bernoulli"},
        "data": copy.deepcopy(data),
        "train": {**copy.deepcopy(STUDY_TRAIN), **train},
    }


def study_presets() -> dict[str, dict[str, Any]]:
    """Every `study_<method>_<dataset>` preset (methods x datasets)."""
    return {f"study_{m}_{d}": _preset(m, d) for d in DATASETS for m in METHODS}
