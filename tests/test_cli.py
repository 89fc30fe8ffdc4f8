"""End-to-end tests of `vaelab train`, `vaelab list` and their errors (in-process and subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources

import pytest

from vaelab.cli import main
from vaelab.runs import checkpoint_path, load_checkpoint

TOY = ["--set", "data.name=toy_squares", "--set", "train.steps=6", "--set", "train.batch_size=16",
       "--set", "train.log_every=3", "--set", "train.metrics=", "--set", "model.latent_dim=3",
       "--no-progress"]


def test_list_commands(capsys):
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "btcvae_dsprites", "factor_celeba", "best_dsprites", "debug"):
        assert name in out
    assert main(["list", "objectives"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines][:5] == ["ada_gvae", "ada_mlvae", "annealed_vae",
                                                       "beta_tcvae", "beta_vae"]
    assert ("beta_tcvae    takes VAEOutput; models: burgess, conv, dlib_conv, nonsyn_burgess, "
            "seed_vae") in lines
    assert "gmvae         takes GMVAEOutput; models: gmvae" in lines
    assert main(["list", "models"]) == 0
    models = capsys.readouterr().out.splitlines()
    assert any(line.startswith("burgess") and "latents z: gaussian (10)" in line
               and "objectives: ada_gvae, ada_mlvae, annealed_vae, beta_tcvae" in line
               for line in models)


@pytest.mark.heavy  # a fresh interpreter
def test_the_cli_starts_without_the_plotting_and_scipy_stacks():
    """matplotlib and scipy.stats/io/linalg (like scikit-learn and Lightning) load on first use, not
    at `import vaelab`: `import vaelab.cli` took 3.0 s before and 1.6 s after on an idle 2-core
    host (4.9 s and 1.9 s on a loaded one), paid by every `vaelab` command, Ray trial worker and
    DDP rank."""
    heavy = ["matplotlib", "scipy.stats", "scipy.io", "scipy.linalg", "sklearn", "lightning",
             "wandb", "mlflow"]
    code = f"import sys, vaelab.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_incompatible_pair_from_the_cli_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from vaelab.models.vae import VAE
    from vaelab.registry import MODELS

    class Other:
        pass

    class OtherModel(VAE):
        output_type = Other

    monkeypatch.setitem(MODELS._items, "other", OtherModel)
    code = main(["train", "--out", str(tmp_path), *TOY, "--set", "model.name=other"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "cannot train model 'other'" in err and "Objectives for 'other': (none)" in err
    assert not any(tmp_path.iterdir())


def test_train_preset_with_overrides_end_to_end(tmp_path, capsys):
    code = main(["train", "betaH_dsprites", "--out", str(tmp_path), "--name", "cli", *TOY,
                 "--set", "objective.beta=2.5"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"results: {tmp_path / 'cli'}" in out and "images/s" in out and "recon=" in out
    config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert config["objective"] == {**config["objective"], "name": "beta_vae", "beta": 2.5,
                                   "warmup_steps": 10000}  # preset value kept, --set wins
    assert config["train"]["steps"] == 6 and config["train"]["lr"] == 5e-4
    # resume to more steps
    assert main(["train", "--resume", str(tmp_path / "cli"), "--set", "train.steps=9",
                 "--no-progress", "--no-eval"]) == 0
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["steps"] == 9


@pytest.mark.parametrize(("args", "message"), [
    (["train", "nopreset"], "unknown preset 'nopreset'; known presets:"),
    (["train", "--set", "train.stepz=3"], "unknown key 'train.stepz'"),
    (["train", "--set", "objective.beta=big"], "objective.beta: expected float, got 'big'"),
    (["train", "--set", "data.name=imagenet"], "unknown dataset 'imagenet'; known datasets:"),
    (["train", "--set", "model.name=resnet"], "unknown model 'resnet'; known models: burgess"),
    (["train", "--set", "objective.name=elbo"], "unknown objective 'elbo'"),
    (["train", "--set", "notakey"], "--set expects key=value"),
    (["train", "--set", "train.conv_kernels=turbo"], "conv_kernels must be one of"),
    (["train", "--set", "train.fused_adam=maybe"], "train.fused_adam: expected bool"),
    (["train", "--config", "missing.ini"], "no config file at missing.ini"),
    (["train", "--resume", "nowhere"], "config.json is missing"),
])
def test_train_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path)] if "--resume" not in args else args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vaelab: error:") and message in err and "\n" not in err


def test_existing_run_is_refused_not_deleted(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--name", "x", *TOY]) == 0
    marker = tmp_path / "x" / "keep.txt"
    marker.write_text("mine")
    assert main(["train", "--out", str(tmp_path), "--name", "x", *TOY]) == 2
    assert "already exists" in capsys.readouterr().err and marker.read_text() == "mine"


@pytest.mark.slow  # ~14 s in a subprocess; the .cfg CLI path and the seed004 presets' steps run in
# the default suite (test_ini.py, test_contract.py)
def test_train_ini_config_on_mnist_test_split(tmp_path, shared_data):
    """The seed's INI format, the conv model and the MNIST loader, end to end, in a subprocess."""
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist-test" / name, root / "mnist" / name)
    with resources.as_file(resources.files("vaelab.presets") / "seed004_mnist_bvae.ini") as ini:
        shutil.copy(ini, tmp_path / "config1.ini")
    result = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "train", "--config", str(tmp_path / "config1.ini"),
         "--variation", "B-VAE", "--out", str(tmp_path), "--name", "ini",
         "--set", f"data.root={root}", "--set", "data.split=test", "--set", "data.limit=64",
         "--set", "train.steps=2", "--set", "train.batch_size=16", "--set", "train.metrics=",
         "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "ini" / "config.json").read_text())
    assert config["model"]["name"] == "conv" and config["objective"]["name"] == "beta_vae"
    assert config["data"]["name"] == "mnist"
    assert (tmp_path / "ini" / "samples.png").is_file()


def test_show_list_presets_and_encode(tmp_path, capsys):
    import numpy as np

    assert main(["show", "default", "--set", "objective.beta=3"]) == 0
    out = capsys.readouterr().out
    config = json.loads(out[: out.rindex("}") + 1])
    assert config["objective"]["beta"] == 3.0 and "# 12000 steps of batch 32 on dsprites" in out
    assert main(["list", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("default ") and "12000 steps of batch 32 on dsprites (offline)"
               in line for line in lines)
    assert any(line.startswith("betaH_celeba ") and "(needs a download)" in line for line in lines)
    assert main(["train", "--out", str(tmp_path), "--name", "e", *TOY]) == 0
    # the main job's cosine rate through the CLI: 1e-3 at the start, 0 at the last of its steps
    (group,) = load_checkpoint(checkpoint_path(tmp_path / "e"))["optimizer"]["param_groups"]
    assert group["initial_lr"] == 1e-3 and group["lr"] == pytest.approx(0.0, abs=1e-12)
    assert main(["encode", str(tmp_path / "e"), "--limit", "50"]) == 0
    with np.load(tmp_path / "e" / "latents.npz") as saved:
        assert saved["codes"].shape == (50, 3) and saved["z_logvar"].shape == (50, 3)
        assert saved["factors"].shape == (50, 3) and list(saved["factor_names"])[0] == "size"
    assert main(["encode", str(tmp_path / "e")]) == 2  # exists: refused
    assert "already exists" in capsys.readouterr().err


def test_the_docs_toml_example_is_a_valid_run_config(tmp_path):
    import re
    from pathlib import Path

    from vaelab.workflow import build_run_config

    page = Path(__file__).resolve().parents[1] / "docs" / "training.md"
    block = re.search(r"```toml\n(.*?)```", page.read_text(), re.S).group(1)
    (tmp_path / "my_run.toml").write_text(block)
    config = build_run_config(None, [], config=tmp_path / "my_run.toml")
    assert config.objective.name == "beta_tcvae" and config.train.steps == 20000


def test_train_with_fused_adam_end_to_end(tmp_path):
    args = ["train", "--out", str(tmp_path), "--name", "f", *TOY, "--set", "train.fused_adam=true",
            "--set", "objective.name=factor_vae"]
    assert main(args) == 0
    config = json.loads((tmp_path / "f" / "config.json").read_text())
    assert config["train"]["fused_adam"] is True
    ckpt = load_checkpoint(checkpoint_path(tmp_path / "f"))
    assert ckpt["optimizer"]["param_groups"][0]["fused"]
    assert ckpt["aux_optimizer"]["param_groups"][0]["fused"]  # the discriminator's
