"""Strict configs: from_dict/to_dict, type errors naming the key, dotted overrides, presets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vaelab
from vaelab.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    from_dict,
    parse_override,
    to_dict,
)
from vaelab.factory import run_config_from_dict
from vaelab.presets import DISVAE_DATASET_SIZES, load_preset, preset_names


def test_from_dict_rejects_unknown_key_and_lists_known():
    with pytest.raises(ConfigError, match=r"unknown key 'train.stepz'.*train.steps"):
        from_dict(TrainConfig, {"stepz": 3}, prefix="train.")


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("steps", "ten", "train.steps: expected int"),
    ("lr", "fast", "train.lr: expected float"),
    ("progress", 1, "train.progress: expected bool"),
    ("adam_betas", [0.9], "train.adam_betas: expected 2 values"),
    ("metrics", "mig", "train.metrics: expected a list"),
])
def test_from_dict_names_key_and_type(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        from_dict(TrainConfig, {key: value}, prefix="train.")


def test_validation_errors_name_the_field():
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        from_dict(TrainConfig, {"batch_size": 0}, prefix="train.")
    with pytest.raises(ConfigError, match="latent_dim"):
        run_config_from_dict({"model": {"name": "burgess", "latent_dim": 0}})


def test_int_where_float_expected_is_accepted_and_tuple_coerced():
    config = from_dict(TrainConfig, {"lr": 1, "adam_betas": [0.5, 0.9]})
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.adam_betas == (0.5, 0.9)


def test_unknown_component_name_lists_known_names():
    with pytest.raises(ConfigError, match=r"objective.name: unknown objective 'betavae'.*beta_vae"):
        run_config_from_dict({"objective": {"name": "betavae"}})


@pytest.mark.parametrize(("text", "path", "value"), [
    ("objective.beta=4", ["objective", "beta"], 4),
    ("train.lr=1e-3", ["train", "lr"], 1e-3),
    ("train.progress=false", ["train", "progress"], False),
    ("data.name=mnist", ["data", "name"], "mnist"),
    ("train.adam_betas=0.5,0.9", ["train", "adam_betas"], [0.5, 0.9]),
    ("train.adam_betas=[0.5, 0.9]", ["train", "adam_betas"], [0.5, 0.9]),
])
def test_parse_override(text, path, value):
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize("bad", ["objective.beta", "=3", "objective..beta=3"])
def test_parse_override_rejects_malformed(bad):
    with pytest.raises(ConfigError):
        parse_override(bad)


def test_overrides_win_and_component_name_resets_section():
    data = load_preset("btcvae_dsprites")
    out = apply_overrides(data, ["objective.beta=2", "train.metrics=mig", "train.metrics=",
                                 "model.latent_dim=6"])
    assert out["objective"]["beta"] == 2 and out["train"]["metrics"] == []
    assert out["model"]["latent_dim"] == 6
    assert data["objective"]["beta"] == 6.4  # the preset itself is untouched
    swapped = apply_overrides(data, ["objective.name=beta_vae"])
    assert swapped["objective"] == {"name": "beta_vae"}


def test_wrong_override_type_names_key():
    data = apply_overrides(load_preset("default"), ["objective.beta=abc"])
    with pytest.raises(ConfigError, match="objective.beta: expected float, got 'abc'"):
        run_config_from_dict({k: v for k, v in data.items() if k != "description"})


def test_run_config_round_trip():
    data = load_preset("factor_dsprites")
    data.pop("description")
    config = run_config_from_dict(data)
    again = run_config_from_dict(json.loads(config.to_json()))
    assert again == config and to_dict(again) == to_dict(config)


@settings(deadline=None, max_examples=30)
@given(steps=st.integers(1, 10**6), lr=st.floats(1e-6, 1.0), batch=st.integers(1, 4096),
       progress=st.booleans())
def test_train_config_round_trip(steps, lr, batch, progress):
    config = TrainConfig(steps=steps, lr=lr, batch_size=batch, progress=progress)
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_every_preset_resolves():
    for name in preset_names():
        data = load_preset(name)
        data.pop("description", None)
        config = run_config_from_dict(data)
        assert config.model.name in vaelab.list_names("models"), name


def test_disvae_presets_match_the_seed_table():
    from vaelab.presets import BENCHMARK_DATA

    names = [n for n in preset_names() if "_" in n and n.split("_")[0] in
             ("VAE", "betaH", "betaB", "factor", "btcvae")
             and n.split("_", 1)[1] not in BENCHMARK_DATA]
    assert len(names) == 25
    factor = load_preset("factor_dsprites")
    assert factor["objective"]["gamma"] == 6.4 and factor["objective"]["lr_disc"] == 1e-4
    assert factor["train"]["batch_size"] == 128 and factor["train"]["epochs"] == 60
    assert factor["train"]["lr"] == 1e-4
    betab = load_preset("betaB_celeba")
    assert betab["objective"]["c_final"] == 50 and betab["objective"]["capacity_steps"] == 100000
    assert betab["train"]["lr"] == 1e-3
    assert load_preset("btcvae_chairs")["objective"]["beta"] == 3.2
    assert load_preset("betaH_celeba")["objective"]["beta"] == 10
    best = load_preset("best_celeba")["objective"]
    assert (best["alpha"], best["beta"], best["likelihood"]) == (-10, 20, "laplace")
    # checkpoint every 10 epochs of dSprites at batch 64
    assert load_preset("VAE_dsprites")["train"]["checkpoint_every"] == 10 * (
        DISVAE_DATASET_SIZES["dsprites"] // 64)


def test_unknown_preset_lists_known():
    with pytest.raises(KeyError, match="unknown preset 'nope'.*btcvae_dsprites"):
        load_preset("nope")
