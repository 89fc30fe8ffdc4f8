"""Registry-driven contract tests: every registered model with every objective it accepts, and
every preset. Registering a model, an objective or a preset adds its rows here automatically.

Per model x objective, on tiny data: forward and backward with a finite gradient on every
parameter, three `fit` steps, an interrupted-and-resumed run equal to the straight one, every
applicable plot kind and the default metrics (protocol sizes cut to a few hundred points).
Per preset: it builds and takes one step, on a seeded stand-in of the dataset's shape.
"""

from __future__ import annotations

import signal

import pytest
import torch

import vaelab
from vaelab.config import Component
from vaelab.data.base import Batch, FactorDataset
from vaelab.engine import Callback, fit
from vaelab.factory import (
    build_model,
    build_objective,
    check_compatible,
    compatible_objectives,
    resolve_model_component,
    resolve_objective_component,
    run_config_from_dict,
)
from vaelab.metrics.evaluate import DEFAULT_METRICS, evaluate_run, metric_protocol
from vaelab.models.base import Model
from vaelab.registry import DATASETS, MODELS, OBJECTIVES
from vaelab.viz.plots import PlotOptions, make_plots
from vaelab.workflow import build_run_config

PAIRS = [(m, o) for m in MODELS.names() for o in compatible_objectives(m)]


def _tiny_data(model_name: str) -> dict:
    """toy_squares at the smallest size the model takes (32, else 64)."""
    for size in (32, 64):
        data = {"name": "toy_squares", "image_size": size}
        shape = (1, size, size)
        try:
            first = compatible_objectives(model_name)[0]
            resolve_model_component(run_config_from_dict(
                {"model": {"name": model_name}, "objective": {"name": first},
                 "data": {**data, **_batches(first)}}).model, shape)
            build_model(resolve_model_component(
                Component(model_name, MODELS.get(model_name).config_class()), shape))
            return data
        except ValueError:
            continue
    raise AssertionError(f"model {model_name!r} takes neither 32x32 nor 64x64 toy images")


def _batches(objective: str) -> dict:
    """The data.batches an objective declares it trains on (weak objectives: "pairs")."""
    needs = getattr(OBJECTIVES.get(objective), "batches", "")
    return {"batches": needs} if needs else {}


def _config(model: str, objective: str, steps: int) -> dict:
    return {
        "name": f"{model}-{objective}", "seed": 7,
        "model": {"name": model}, "objective": {"name": objective},
        "data": {**_tiny_data(model), **_batches(objective)},
        "train": {"steps": steps, "batch_size": 8, "log_every": 1, "checkpoint_every": 0,
                  "metrics": [], "progress": False},
    }


def test_every_model_has_an_objective_and_declares_its_latents():
    assert len(PAIRS) >= len(MODELS.names())
    for name in MODELS.names():
        cls = MODELS.get(name)
        assert issubclass(cls, Model) and compatible_objectives(name), name
        model = cls(cls.config_class())
        assert model.latents and model.traversal_latent in {s.name for s in model.latents}
        assert set(model.decoder_inputs) <= {s.name for s in model.latents}
        assert model.representation_dim >= 1


@pytest.mark.parametrize(("model_name", "objective_name"), PAIRS)
def test_forward_backward_finite_gradient_on_every_parameter(model_name, objective_name):
    torch.manual_seed(0)
    data = vaelab.load_dataset(**_tiny_data(model_name), limit=8)
    component = resolve_model_component(
        Component(model_name, MODELS.get(model_name).config_class()), data.image_shape)
    model = build_model(component)
    objective = build_objective(resolve_objective_component(
        Component(objective_name, OBJECTIVES.get(objective_name).config_class()), model))
    if objective.needs_dataset_size:
        objective.set_dataset_size(len(data))
    batch = data.batch_of(torch.arange(8))
    if _batches(objective_name):  # 4 pairs drawn by the batch source the objective trains on
        config = DATASETS.get("toy_squares").config_class(**_batches(objective_name))
        batch = data.batch_of(data.batch_source(config, 4, torch.Generator()).next())
    out = model(batch.x)
    assert isinstance(out, model.output_type)
    terms = objective.compute(model, batch, torch.tensor(1))
    assert "loss" in terms and all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())
    sum(v for v in terms.values() if v.requires_grad).backward()
    for owner, module in (("model", model), ("objective", objective)):
        for name, p in module.named_parameters():
            assert p.grad is not None, f"{owner} parameter {name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{owner} parameter {name}: non-finite gradient"
    posterior = model.posterior(batch.x)
    assert set(posterior) == {s.name for s in model.latents}
    assert model.represent(batch.x).shape == (8, model.representation_dim)
    prior = model.sample_prior(3, torch.Generator().manual_seed(0))
    assert model.generate(prior).shape == (3, *model.image_shape)


@pytest.mark.parametrize(("model_name", "objective_name"), PAIRS)
def test_three_fit_steps_and_an_exact_resume(tmp_path, model_name, objective_name):
    straight = fit(run_config_from_dict(_config(model_name, objective_name, 3)), tmp_path / "a")
    assert straight.step == 3 and len(straight.log["loss"]) == 3
    assert isinstance(straight.model, MODELS.get(model_name)) and not straight.model.training

    class CtrlC(Callback):
        def on_step_end(self, ctx, step):
            if step == 2:
                signal.raise_signal(signal.SIGINT)

    config = run_config_from_dict(_config(model_name, objective_name, 3))
    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "b", callbacks=[CtrlC()])
    resumed = fit(config, tmp_path / "b", resume=True)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b), "the resumed run differs from the straight one"


# Pictures and metrics read only the model contract (and the log); the default run covers each
# model with its first objective, the slow run every pair.
# (The first objective on single-image batches where the model has one; the first on pairs for
# the burgess model too.)
FIRST = {m: next((o for mm, o in PAIRS if mm == m and not _batches(o)),
                 next(o for mm, o in PAIRS if mm == m)) for m in MODELS.names()}
FAST = set(FIRST.items()) | {("burgess", next(o for m, o in PAIRS if m == "burgess"
                                               and _batches(o)))}
PICTURE_PAIRS = [pytest.param(m, o, marks=() if (m, o) in FAST else pytest.mark.slow)
                 for m, o in PAIRS]


@pytest.mark.parametrize(("model_name", "objective_name"), PICTURE_PAIRS)
def test_every_applicable_plot_and_the_default_metrics(tmp_path, model_name, objective_name):
    run = fit(run_config_from_dict(_config(model_name, objective_name, 3)), tmp_path / "a")
    options = PlotOptions(points=20, frames=2, cols=3, rows=2)
    written = {p.name for p in make_plots(tmp_path / "a", ["all"], options)}
    expected = {"samples.png", "reconstruct.png", "prior_traversals.png", "losses.png",
                "mean_activations.png", "latent_projection.png", "posterior_traversals.gif",
                "data_samples.png", "reconstruct_traverse.png"}
    if run.model.num_clusters:
        expected |= {"cluster_samples.png", "cluster_members.png", "cluster_histogram.png",
                     "cluster_posteriors.png", "projection_z_cluster.png"}
    assert expected <= written and not (written - expected - {
        "projection_w_cluster.png", "projection_z_label.png", "projection_w_label.png",
        "weak_pairs.png"})
    assert ("weak_pairs.png" in written) == bool(_batches(objective_name))
    assert isinstance(run.dataset(), FactorDataset)
    sizes = {name: {k: min(v, 200) for k, v in metric_protocol(name).items()
                    if k.startswith("num_") and isinstance(v, int)} for name in DEFAULT_METRICS}
    scores = evaluate_run(run, options=sizes, progress=False)
    assert {"mig", "dci_fast.disentanglement", "active_units"} <= set(scores)
    assert all(v == v for v in scores.values())  # no NaN


@pytest.mark.parametrize("preset", vaelab.list_names("presets"))
def test_every_preset_builds_and_takes_one_step(tmp_path, preset):
    overrides = ["train.steps=1", "train.log_every=1", "train.checkpoint_every=0",
                 "train.metrics=", "train.progress=false", "train.gif_every=0",
                 "train.batch_size=4", "train.valid_every=0", "train.early_stopping=0",
                 "train.keep_best=false"]  # stand-ins have no validation split
    config = build_run_config(preset, overrides)
    dataset = DATASETS.get(config.data.name).stand_in(config.data.config, n=4, seed=0)
    run = fit(config, tmp_path / preset, dataset=dataset)
    assert run.step == 1 and all(v == v for v in run.summary["final"].values())


def test_an_incompatible_pair_stops_before_training(tmp_path, tiny, monkeypatch):
    from vaelab.config import ConfigError
    from vaelab.models.vae import VAE

    class ClusterOutput:  # an output with no Gaussian posterior fields
        pass

    class Clusterer(VAE):
        output_type = ClusterOutput

    monkeypatch.setitem(MODELS._items, "clusterer", Clusterer)
    with pytest.raises(ConfigError) as error:
        check_compatible("clusterer", "beta_tcvae")
    message = str(error.value)
    assert "objective 'beta_tcvae' cannot train model 'clusterer'" in message
    assert "ClusterOutput" in message and "VAEOutput" in message
    assert "Objectives for 'clusterer': (none)" in message
    assert "models for 'beta_tcvae': burgess, conv, nonsyn_burgess" in message
    data = tiny()
    data["model"] = {"name": "clusterer"}
    with pytest.raises(ConfigError, match="cannot train model 'clusterer'"):
        vaelab.train(config=data, out=tmp_path, verbose=False)
    assert not (tmp_path / "tiny").exists()  # nothing was written


def test_decode_takes_a_mapping_of_latents():
    model = build_model(Component("burgess", MODELS.get("burgess").config_class(image_size=32)))
    with pytest.raises(TypeError, match=r"\{'z': codes\}"):
        model.decode(torch.zeros(2, 10))
    assert model.decode({"z": torch.zeros(2, 10)}).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="takes no component"):
        model.sample_prior(2, component=1)
    assert Batch(torch.zeros(1)).index is None
