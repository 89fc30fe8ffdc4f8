"""Registry-driven: every registered dataset, with its config defaults, gives a stand-in of its
`expected_shape`, a batch source for every batch mode it declares, and one training step; and
`vaelab eval` on short runs of the benchmark datasets writes the default metrics per factor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import vaelab.data  # noqa: F401  (registers every dataset)
from vaelab.config import from_dict
from vaelab.data.base import FactorDataset
from vaelab.engine import fit
from vaelab.factory import run_config_from_dict
from vaelab.registry import DATASETS

NEEDS = {"npz": "path"}  # datasets with a required option: the only non-default values


def _config(name, tmp_path):
    cls = DATASETS.get(name)
    options = {}
    if name in NEEDS:
        path = tmp_path / "tiny.npz"
        np.savez(path, images=np.zeros((4, 16, 16), dtype=np.uint8))
        options[NEEDS[name]] = str(path)
    return cls, from_dict(cls.config_class, options, prefix="data.")


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_stands_in_batches_and_trains_one_step(tmp_path, name):
    cls, config = _config(name, tmp_path)
    shape = cls.expected_shape(config)
    dataset = cls.stand_in(config, n=8, seed=0)
    assert dataset.image_shape == shape and len(dataset) == 8
    assert dataset.batch(torch.arange(3)).shape == (3, *shape)
    if getattr(cls, "factor_sizes", None) and isinstance(cls.factor_sizes, tuple):
        assert isinstance(dataset, FactorDataset)
        assert dataset.factor_names == tuple(cls.factor_names)
        assert dataset.factor_sizes == tuple(cls.factor_sizes)
    assert "shuffle" in cls.batch_modes
    for mode in cls.batch_modes:
        source = dataset.batch_source(dataclasses.replace(config, batches=mode), 4,
                                      torch.Generator().manual_seed(0))
        index = source.next()
        expected = (2, 4) if mode == "pairs" else (4,)  # pairs: a (2, b) index of b pairs
        assert index.shape == expected and int(index.max()) < len(dataset), mode
    model = "burgess" if shape[1] == shape[2] and shape[1] in (32, 64) else "conv"
    run = fit(run_config_from_dict({
        "name": name, "seed": 0, "model": {"name": model, "latent_dim": 4},
        "objective": {"name": "vae"}, "data": {"name": name, **dataclasses.asdict(config)},
        "train": {"steps": 1, "batch_size": 4, "log_every": 1, "checkpoint_every": 0,
                  "metrics": [], "progress": False, "gif_every": 0}}),
        tmp_path / "run", dataset=dataset)
    assert run.step == 1 and all(v == v for v in run.summary["final"].values())


def test_list_datasets_names_factors_and_downloads(capsys):
    from vaelab.cli import main

    assert main(["list", "datasets"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(DATASETS.names()) == set(lines)
    assert ("factors object_color 6, object_shape 6, object_size 2, camera_height 3, "
            "background_color 3, horizontal_axis 40, vertical_axis 40 (needs a download)"
            in lines["mpi3d"])
    assert "category 5, elevation 9, azimuth 18, lighting 6" in lines["smallnorb"]
    assert "elevation 4, azimuth 24, object 183" in lines["cars3d_labelled"]
    assert "floor_hue 10" in lines["shapes3d"] and "(offline)" in lines["dsprites"]
    assert "no factors" in lines["cars3d"]


def test_benchmark_presets_state_steps_and_need_a_download(capsys):
    from vaelab.cli import main
    from vaelab.presets import BENCHMARK_DATA, load_preset

    assert main(["list", "presets"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for loss in ("VAE", "betaH", "betaB", "factor", "btcvae"):
        for data in BENCHMARK_DATA:
            line = lines[f"{loss}_{data}"]
            offline = data in ("dsprites_color", "dsprites_noisy")
            assert "300000 steps" in line
            assert ("(offline)" if offline else "(needs a download)") in line
            assert load_preset(f"{loss}_{data}")["data"] == BENCHMARK_DATA[data]
    assert load_preset("btcvae_mpi3d")["data"]["variant"] == "toy"


def test_data_variant_option_is_checked(capsys):
    from vaelab.cli import main

    assert main(["data", "mnist", "--variant", "toy"]) == 2
    assert "--variant applies to datasets with variants" in capsys.readouterr().err
