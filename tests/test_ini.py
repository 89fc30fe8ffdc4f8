"""Seed-004 INI files: mapping onto run configs, round trips, shipped presets, malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaelab.config import ConfigError
from vaelab.factory import build_model, build_objective, run_config_from_dict
from vaelab.ini import (
    run_config_dict_from_ini,
    run_config_dict_from_ini_text,
    run_config_dict_to_ini,
)
from vaelab.models.vae import VAEOutput
from vaelab.objectives.terms import gaussian_kl, reconstruction_loss

PRESETS = Path(__file__).resolve().parents[1] / "vaelab" / "presets"

# The seed's config/config{1..4}.cfg, verbatim (spec seed004-config-arch.md §2.1).
CONFIG1 = """[configuration]
dataset = MNIST
path = ../datasets/
[architecture]
conv_layers = 3
conv_channels = [16, 32, 64]
conv_kernel_sizes = [(7, 7), (5, 5), (3, 3)]
conv_strides = [(1, 1), (1, 1), (1, 1)]
conv_paddings = [(1, 1), (1, 1), (1, 1)]
z_dimension = 2
[hyperparameters]
epochs = 15
batch_size = 32
learning_rate = 3e-6
"""
CONFIG2 = """[configuration]
dataset = CIFAR10
path = ../datasets/
[architecture]
conv_layers = 4
conv_channels = [16, 32, 64, 128]
conv_kernel_sizes = [(7, 7), (5, 5), (3, 3), (1, 1)]
conv_strides = [(1, 1), (1, 1), (1, 1), (1, 1)]
conv_paddings = [(1, 1), (1, 1), (1, 1), (1, 1)]
z_dimension = 8
[hyperparameters]
epochs = 25
batch_size = 16
learning_rate = 3e-6
beta = 4
"""
CONFIG3 = """[configuration]
dataset = MNIST
path = ../Dataset/
[architecture]
conv_layers = 3
conv_channels = [16, 32, 64]
conv_kernel_sizes = [(7, 7), (5, 5), (3, 3)]
conv_strides = [(2, 2), (1, 1), (3, 2)]
conv_paddings = [(1, 3), (2, 0), (0, 0)]
z_dimension = 2
[hyperparameters]
epochs = 15
batch_size = 32
learning_rate = 3e-6
"""
CONFIG4 = CONFIG1.replace("MNIST", "FashionMNIST").replace(
    "[16, 32, 64]", "[64, 128, 256]").replace("(5, 5), (3, 3)", "(7, 7), (5, 5)") + "beta = 10\n"

# file text, variation, data name, input shape, encoder shapes, parameter count (spec §2.1)
SEED_FILES = {
    "config1": (CONFIG1, "VAE", "mnist", (1, 28, 28), [(28, 28), (24, 24), (22, 22), (22, 22)],
                376_053),
    "config2": (CONFIG2, "B-VAE", "cifar10", (3, 32, 32),
                [(32, 32), (28, 28), (26, 26), (26, 26), (28, 28)], 2_733_379),
    "config3": (CONFIG3, "VAE", "mnist", (1, 28, 28), [(28, 28), (12, 14), (12, 10), (4, 4)],
                166_389),
    "config4": (CONFIG4, "B-VAE", "fashion_mnist", (1, 28, 28),
                [(28, 28), (24, 24), (20, 20), (18, 18)], 5_656_517),
}


@pytest.mark.parametrize("name", sorted(SEED_FILES))
def test_seed_files_build_the_seed_models(name, tmp_path):
    text, variation, data, shape, shapes, params = SEED_FILES[name]
    path = tmp_path / f"{name}.cfg"
    path.write_text(text)
    d = run_config_dict_from_ini(path, variation)
    config = run_config_from_dict(d)
    assert config.name == name
    assert config.data.name == data
    model = build_model(config.model)
    assert model.image_shape == shape
    assert model.encoder_shapes == shapes
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.rand(2, *shape)).logits.shape == (2, *shape)


def test_config1_mapping():
    d = run_config_dict_from_ini_text(CONFIG1, "VAE")
    assert d["model"]["latent_dim"] == 2
    assert d["model"]["conv_channels"] == [16, 32, 64]
    assert d["objective"] == {"name": "vae"}
    assert d["data"] == {"name": "mnist", "image_size": 28, "root": "../datasets/"}
    assert d["train"] == {"steps": 0, "epochs": 15.0, "batch_size": 32, "lr": 3e-6}


def test_beta_is_applied():
    d = run_config_dict_from_ini_text(CONFIG2, "B-VAE")
    objective = build_objective(run_config_from_dict(d).objective)
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)
    logits, x = torch.randn(4, 3, 2, 2, generator=gen), torch.rand(4, 3, 2, 2, generator=gen)
    out = VAEOutput(mu=mu, logvar=logvar, z=mu, logits=logits)
    loss = objective(out, x, torch.tensor(1))["loss"]
    expected = reconstruction_loss(logits, x) + 4.0 * gaussian_kl(mu, logvar).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("text", "variation", "extra", "objective"),
    [
        (CONFIG1, None, "", "vae"),  # no beta: VAE
        (CONFIG2, None, "", "beta_vae"),  # beta given: B-VAE
        (CONFIG2, "VAE", "", "vae"),  # the argument wins
        (CONFIG2, None, "[vaelab]\nvariation = VAE\n", "vae"),  # the file's choice
        (CONFIG2, "B-VAE", "[vaelab]\nvariation = VAE\n", "beta_vae"),
    ],
)
def test_variation_choice(text, variation, extra, objective):
    assert run_config_dict_from_ini_text(text + extra, variation)["objective"]["name"] == objective


def _round_trip(d):
    text = run_config_dict_to_ini(d)
    again = run_config_dict_from_ini_text(text)
    assert again == d
    assert run_config_dict_to_ini(again) == text  # canonical text is a fixed point
    return text


@pytest.mark.parametrize("name", sorted(SEED_FILES))
def test_round_trip_ini_config_ini(name):
    text, variation, *_ = SEED_FILES[name]
    d = run_config_dict_from_ini_text(text, variation)
    written = _round_trip(d)
    # The seed keys come back exactly as the seed writes them.
    for line in ("conv_kernel_sizes", "conv_strides", "conv_paddings", "conv_channels"):
        original = next(x for x in text.splitlines() if x.startswith(line))
        assert original in written.splitlines()
    # And the full config survives too.
    config = run_config_from_dict(run_config_dict_from_ini_text(written))
    assert config == run_config_from_dict(d)


def test_round_trip_keeps_non_seed_settings():
    d = run_config_dict_from_ini_text(CONFIG2, "B-VAE", name="cifar")
    d["seed"] = 7
    d["description"] = "a 100% test"
    d["model"]["norm"] = "none"
    d["model"]["kernels"] = [7, 5, 3, 1]  # ints mean square pairs
    d["objective"]["warmup_steps"] = 100
    d["objective"]["beta"] = 4.5  # a float beta (the seed's int() would refuse it)
    d["train"].update(steps=500, precision="bf16-mixed", metrics=["mig", "dci"])
    text = run_config_dict_to_ini(d)
    assert "beta = 4.5" in text and 'train.precision = "bf16-mixed"' in text
    again = run_config_from_dict({k: v for k, v in run_config_dict_from_ini_text(text).items()
                                  if k != "description"})
    assert again == run_config_from_dict({k: v for k, v in d.items() if k != "description"})
    assert run_config_dict_from_ini_text(text)["description"] == "a 100% test"


def test_full_run_config_round_trip_writes_no_defaults():
    d = run_config_from_dict(run_config_dict_from_ini_text(CONFIG3, "VAE", name="c3")).to_dict()
    text = run_config_dict_to_ini(d)
    assert text.split("[vaelab]\n")[1] == 'variation = VAE\nname = "c3"\n'
    assert run_config_from_dict(run_config_dict_from_ini_text(text)).to_dict() == d


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"model": {"name": "burgess"}, "objective": {"name": "vae"}, "data": {"name": "mnist"}},
         "only the 'conv' model"),
        ({"model": {"name": "conv"}, "objective": {"name": "beta_tcvae"},
          "data": {"name": "mnist"}}, "objectives vae, beta_vae"),
        ({"model": {"name": "conv"}, "objective": {"name": "vae"}, "data": {"name": "celeba"}},
         "datasets mnist, fashion_mnist, cifar10"),
    ],
)
def test_to_ini_rejects_what_the_seed_format_cannot_hold(d, message):
    with pytest.raises(ConfigError, match=message):
        run_config_dict_to_ini(d)


SHIPPED = sorted(p.name for p in PRESETS.glob("seed004_*.ini"))


def test_the_seed004_presets_are_shipped():
    assert SHIPPED == [
        "seed004_cifar10_bvae.ini", "seed004_fashion_bvae.ini", "seed004_fashion_vae.ini",
        "seed004_mnist_bvae.ini", "seed004_mnist_strided_vae.ini", "seed004_mnist_vae.ini",
    ]


@pytest.mark.parametrize("filename", SHIPPED)
def test_presets_load_build_and_round_trip(filename):
    d = run_config_dict_from_ini(PRESETS / filename)
    assert d["description"]
    assert d["objective"]["name"] == ("beta_vae" if "bvae" in filename else "vae")
    config = run_config_from_dict({k: v for k, v in d.items() if k != "description"})
    assert config.name == filename.removesuffix(".ini")
    assert "root" not in d["data"]  # vaelab's data home, not the seed's ../datasets/
    model = build_model(config.model)
    assert model(torch.rand(2, *model.image_shape)).logits.shape == (2, *model.image_shape)
    _round_trip(d)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("[architecture]\n", ""), r"missing section \[architecture\]"),
        (lambda t: t.replace("z_dimension = 2\n", ""),
         r"\[architecture\] is missing the key 'z_dimension'"),
        (lambda t: t.replace("(5, 5)", "(5, 5, 5)"),
         r"conv_kernel_sizes: bad tuple \(5, 5, 5\) at position 2"),
        (lambda t: t.replace("(5, 5)", "(5,)"), "conv_kernel_sizes: bad tuple"),
        (lambda t: t.replace("(3, 3)]", "(3, 3)"), "conv_kernel_sizes: expected a list"),
        (lambda t: t.replace("(5, 5)", "(5, 'a')"), "conv_kernel_sizes: bad tuple"),
        (lambda t: t.replace("[16, 32, 64]", "[16, 32.5, 64]"), "item 2 must be an integer"),
        (lambda t: t.replace("z_dimension = 2", "z_dimension = two"),
         "z_dimension: expected an integer, got 'two'"),
        (lambda t: t.replace("z_dimension = 2", "z_dimension = 0"), "z_dimension: must be >= 1"),
        (lambda t: t.replace("batch_size = 32", "batch_size = 3.2"),
         "batch_size: expected an integer"),
        (lambda t: t.replace("learning_rate = 3e-6", "learning_rate = fast"),
         "learning_rate: expected a number"),
        (lambda t: t.replace("epochs = 15", "epochs = -1"), "epochs: must be >= 0"),
        (lambda t: t.replace("conv_layers = 3", "conv_layers = 4"),
         "conv_channels: lists 3 blocks but conv_layers = 4"),
        (lambda t: t.replace("[(1, 1), (1, 1), (1, 1)]\nz", "[(1, 1), (1, 1)]\nz"),
         "conv_paddings: lists 2 blocks"),
        (lambda t: t.replace("dataset = MNIST", "dataset = SVHN"), "unknown dataset 'SVHN'"),
        (lambda t: t.replace("z_dimension", "z_dim"), "unknown key 'z_dim' in \\[architecture\\]"),
        (lambda t: "dataset = MNIST\n" + t, "not a valid INI file"),
        (lambda t: t.replace("(3, 3)]", "(30, 30)]"), r"conv block 3 .*22x22 map to -5x-5"),
    ],
)
def test_malformed_files_raise_clear_errors(edit, message, tmp_path):
    path = tmp_path / "bad.cfg"
    path.write_text(edit(CONFIG1))
    with pytest.raises(ConfigError, match=message) as info:
        run_config_dict_from_ini(path, "VAE")
    assert str(path) in str(info.value)


def test_b_vae_needs_beta():
    with pytest.raises(ConfigError, match="missing the key 'beta'.*B-VAE"):
        run_config_dict_from_ini_text(CONFIG1, "B-VAE")


def test_bad_beta_type_even_for_vae():
    with pytest.raises(ConfigError, match="beta: expected a number"):
        run_config_dict_from_ini_text(CONFIG1 + "beta = big\n", "VAE")


def test_unknown_variation():
    with pytest.raises(ConfigError, match="unknown variation 'beta'.*VAE, B-VAE"):
        run_config_dict_from_ini_text(CONFIG1, "beta")


def test_bad_vaelab_section_value_is_caught_by_the_run_config():
    d = run_config_dict_from_ini_text(CONFIG1 + "[vaelab]\ntrain.batchsize = 3\n")
    with pytest.raises(ConfigError, match="unknown key .*batchsize"):
        run_config_from_dict(d)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.ini"):
        run_config_dict_from_ini("nope.ini")


def test_cfg_files_are_read_by_the_cli(tmp_path, capsys):
    """The seed's real file names are config1.cfg ...: `vaelab show` and the workflow read them."""
    from vaelab.cli import main
    from vaelab.workflow import build_run_config

    path = tmp_path / "config2.cfg"
    path.write_text(CONFIG2)
    config = build_run_config(None, ["train.epochs=1"], config=path, variation="B-VAE")
    assert config.data.name == "cifar10" and config.objective.name == "beta_vae"
    assert config.train.epochs == 1
    assert main(["show", str(path)]) == 0
    assert '"cifar10"' in capsys.readouterr().out
    other = tmp_path / "config.yaml"
    other.write_text("x: 1")
    with pytest.raises(Exception, match=r"\.toml, \.json, or a seed \.ini / \.cfg"):
        build_run_config(None, config=other)
