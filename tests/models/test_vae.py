"""The Burgess VAE: parameter counts, shapes, seed-compatible weights and the disvae import."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vaelab
from vaelab.cli import main
from vaelab.disvae_import import import_disvae


@pytest.mark.parametrize(("channels", "size", "expected"), [
    (1, 64, 502_005), (3, 64, 504_055), (1, 32, 469_173),
])
def test_parameter_counts_match_the_seed(channels, size, expected):
    model = vaelab.create_model("burgess", channels=channels, image_size=size)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_forward_shapes_and_eval_uses_means():
    model = vaelab.create_model("burgess", channels=3, image_size=32, latent_dim=6).eval()
    x = torch.rand(5, 3, 32, 32)
    out = model(x)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, 6)
    assert out.logits.shape == (5, 3, 32, 32)
    assert torch.equal(out.z, out.mu)  # eval mode: no sampling
    sampled = model(x, sample=True)
    assert not torch.equal(sampled.z, sampled.mu)
    assert torch.allclose(model.reconstruct(x), torch.sigmoid(out.logits))


def test_bad_image_size_is_rejected_with_advice():
    with pytest.raises(vaelab.ConfigError, match="32x32 or 64x64.*conv"):
        vaelab.create_model("burgess", image_size=48)


def test_kaiming_relu_init_bounds():
    torch.manual_seed(0)
    model = vaelab.create_model("burgess")
    weight = model.encoder.lin1.weight  # fan_in 512: bound sqrt(6 / 512)
    assert weight.abs().max() <= (6 / 512) ** 0.5
    assert weight.abs().max() > 0.9 * (6 / 512) ** 0.5


def _seed_forward(state: dict, x: torch.Tensor, latent_dim: int):
    """An independent functional transcription of the seed's Burgess forward pass."""
    def conv(h, name):
        return F.relu(F.conv2d(h, state[f"{name}.weight"], state[f"{name}.bias"], 2, 1))

    h = conv(conv(conv(x, "encoder.conv1"), "encoder.conv2"), "encoder.conv3")
    if "encoder.conv_64.weight" in state:
        h = conv(h, "encoder.conv_64")
    h = h.reshape(len(x), -1)
    h = F.relu(F.linear(h, state["encoder.lin1.weight"], state["encoder.lin1.bias"]))
    h = F.relu(F.linear(h, state["encoder.lin2.weight"], state["encoder.lin2.bias"]))
    head = F.linear(h, state["encoder.mu_logvar_gen.weight"], state["encoder.mu_logvar_gen.bias"])
    mu, logvar = head.view(-1, latent_dim, 2).unbind(-1)
    h = mu
    for name in ("decoder.lin1", "decoder.lin2", "decoder.lin3"):
        h = F.relu(F.linear(h, state[f"{name}.weight"], state[f"{name}.bias"]))
    h = h.view(-1, 32, 4, 4)
    names = ["decoder.convT1", "decoder.convT2"]
    if "decoder.convT_64.weight" in state:
        names.insert(0, "decoder.convT_64")
    for name in names:
        h = F.relu(F.conv_transpose2d(h, state[f"{name}.weight"], state[f"{name}.bias"], 2, 1))
    out = torch.sigmoid(F.conv_transpose2d(h, state["decoder.convT3.weight"],
                                           state["decoder.convT3.bias"], 2, 1))
    return mu, logvar, out


@pytest.mark.parametrize("folder", ["btcvae_dsprites", "factor_mnist"])
def test_import_disvae_reproduces_the_seed_outputs(shared_data, tmp_path, folder):
    source = shared_data / "disvae-pretrained" / folder
    code = main(["import-disvae", str(source), "--out", str(tmp_path), "--name", "imp"])
    assert code == 0
    run = vaelab.load_run(tmp_path / "imp")
    specs = json.loads((source / "specs.json").read_text())
    channels, size, _ = specs["img_size"]
    assert run.model.image_shape == (channels, size, size)
    state = torch.load(source / "model.pt", map_location="cpu", weights_only=True)
    x = torch.rand(6, channels, size, size, generator=torch.Generator().manual_seed(0))
    mu, logvar, recon = _seed_forward(state, x, specs["latent_dim"])
    ours_mu, ours_logvar = run.model.encode(x)
    torch.testing.assert_close(ours_mu, mu)
    torch.testing.assert_close(ours_logvar, logvar)
    torch.testing.assert_close(run.model.reconstruct(x), recon)
    # the seed's per-epoch log arrives as train_log.csv; KL per latent orders the latents
    # one row per seed epoch (factor too: its log has one row per epoch, not per half-batch)
    assert list(run.log["step"]) == [float(e) for e in range(1, specs["epochs"] + 1)]
    assert len(run.kl_per_latent()) == specs["latent_dim"]
    assert run.config.objective.name == {"btcvae": "beta_tcvae", "factor": "factor_vae"}[specs["loss"]]


def test_import_disvae_active_latents_match_the_seed_log(shared_data, tmp_path):
    """On 100 real dSprites images, the latents the seed's log calls active carry the KL."""
    source = shared_data / "disvae-pretrained" / "btcvae_dsprites"
    run = vaelab.load_run(import_disvae(source, out=tmp_path))
    images = np.load(shared_data / "dsprites-real" / "images_100.npz")["images"]
    x = torch.from_numpy(images).float()[:, None]
    mu, logvar = run.model.encode(x)
    kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).mean(0).detach().numpy()
    seed_kl = run.kl_per_latent()
    active = seed_kl > 0.5
    assert active.sum() >= 3
    assert kl[active].min() > 10 * kl[~active].max()


def test_import_disvae_errors(tmp_path, shared_data):
    with pytest.raises(FileNotFoundError, match="model.pt is missing"):
        import_disvae(tmp_path, out=tmp_path / "out")
    source = shared_data / "disvae-pretrained" / "VAE_mnist"
    import_disvae(source, out=tmp_path, name="x")
    with pytest.raises(FileExistsError, match="nothing was changed"):
        import_disvae(source, out=tmp_path, name="x")
    assert main(["import-disvae", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("folder", ["VAE_dsprites", "btcvae_dsprites"])
def test_imported_model_reproduces_the_seed_test_losses(shared_data, tmp_path, folder):
    """The seed evaluated only its first batch: dSprites images 0..999 (all squares), and
    divided each value by 738 batches (its bug #70). Our renderer draws squares pixel-exactly,
    so the imported model must give the seed's numbers on our images."""
    from vaelab.data.dsprites import grid_factors, render_dsprites

    source = shared_data / "disvae-pretrained" / folder
    seed = json.loads((source / "test_losses.log").read_text())
    run = vaelab.load_run(import_disvae(source, out=tmp_path))
    x = torch.from_numpy(render_dsprites(grid_factors()[:1000])).float()[:, None]
    with torch.no_grad():
        mu, logvar = run.model.encode(x)
        recon = F.binary_cross_entropy(torch.sigmoid(run.model.decode({"z": mu})), x, reduction="sum")
    batches = 738
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean(0)
    assert recon.item() / 1000 / batches == pytest.approx(seed["recon_loss"], rel=0.02)
    assert kl.sum().item() / batches == pytest.approx(seed["kl_loss"], rel=0.02)
