"""Registry-driven contract tests: every registered model with every objective it accepts, and
every preset. Registering a model, an objective or a preset adds its rows here automatically.

Per model x objective, on tiny data: `loss` itself (not the sum of the terms) gives every model
parameter a finite, non-zero gradient. For a covering set of pairs (every model and every
objective; all pairs in the slow run): three `fit` steps move every parameter; an
interrupted-and-resumed run equals the straight one bit for bit; every applicable plot kind and
the default metrics (protocol sizes cut to a few hundred points), once per model. Per objective: a frozen config
whose fields all have defaults. The model contract's own promises (latent declarations, shapes,
per-item posteriors) are checked per model in tests/models/test_model_contract.py.
Per preset: its config builds and names a compatible model and objective; it takes one step on a
seeded stand-in of the dataset's shape (in the default run, the presets that bring a new
(model, objective) or (dataset, batches); every preset in the heavy run).
"""

from __future__ import annotations

import dataclasses
import signal

import pytest
import torch

import vaelab
from tests.registry_cases import COVERING, PAIRS, build_pair, tiny_data
from tests.registry_cases import batches_for as _batches
from vaelab.data.base import Batch, FactorDataset
from vaelab.engine import Callback, fit
from vaelab.evaluation import evaluate_run
from vaelab.factory import (
    check_compatible,
    compatible_objectives,
    run_config_from_dict,
)
from vaelab.metrics.evaluate import DEFAULT_METRICS, metric_protocol
from vaelab.models.base import Model
from vaelab.objectives.base import Objective
from vaelab.optim import Updater
from vaelab.plotting import make_plots
from vaelab.registry import DATASETS, MODELS, OBJECTIVES
from vaelab.viz.plots import PlotOptions
from vaelab.workflow import build_run_config


def _config(model: str, objective: str, steps: int) -> dict:
    return {
        "name": f"{model}-{objective}", "seed": 7,
        "model": {"name": model}, "objective": {"name": objective},
        "data": {**tiny_data(model), **_batches(objective)},
        "train": {"steps": steps, "batch_size": 8, "log_every": 1, "checkpoint_every": 0,
                  "metrics": [], "progress": False},
    }


def test_every_model_has_an_objective_and_every_objective_a_model():
    assert all(issubclass(MODELS.get(m), Model) and compatible_objectives(m)
               for m in MODELS.names())
    assert {o for _, o in PAIRS} == set(OBJECTIVES.names())  # each objective trains a model


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_builds_from_a_frozen_all_default_config(name):
    cls = OBJECTIVES.get(name)
    assert issubclass(cls, Objective) and cls.accepts, name
    config = cls.config_class()  # every field has a default
    assert dataclasses.is_dataclass(config)
    with pytest.raises(dataclasses.FrozenInstanceError):  # configs are values, never edited
        setattr(config, dataclasses.fields(config)[0].name, None)


def check_gradients(model: Model, objective, batch: Batch) -> dict:
    """The training contract of one step, on `batch`; returns the terms.

    Every term is a finite 0-d tensor. `loss` alone (what the model's optimiser minimises, not
    the sum of the terms) gives every model parameter a finite, non-zero gradient: a `loss` that
    forgot its reconstruction leaves the decoder without one. The objective's own parameters
    (FactorVAE's discriminator) get a finite gradient from its `update` rule, and its own
    optimiser (`configure_optimizer`) steps them.
    """
    terms = objective.compute(model, batch, torch.tensor(1))
    assert "loss" in terms
    for key, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), f"term {key}: {value}"
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(terms["loss"], [p for _, p in named], allow_unused=True)
    for (name, _), grad in zip(named, grads):
        assert grad is not None, f"model parameter {name} gets no gradient from 'loss'"
        assert torch.isfinite(grad).all(), f"model parameter {name}: non-finite gradient"
        assert grad.abs().sum() > 0, f"model parameter {name}: zero gradient from 'loss'"
    own = [(n, p) for n, p in objective.named_parameters() if p.requires_grad]
    if own:
        before = [p.detach().clone() for _, p in own]
        updater = Updater(model, torch.optim.SGD(model.parameters(), lr=0.0), objective,
                          own_optimizer=objective.configure_optimizer())
        objective.update(updater, model, batch, torch.tensor(1))
        for (name, p), old in zip(own, before):
            assert p.grad is not None, f"objective parameter {name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"objective parameter {name}: non-finite"
            assert not torch.equal(p, old), f"objective parameter {name}: not stepped"
    return terms


@pytest.mark.parametrize(("model_name", "objective_name"), PAIRS)
def test_loss_gives_every_parameter_a_finite_gradient(model_name, objective_name):
    model, objective, batch = build_pair(model_name, objective_name)
    assert isinstance(model(batch.x), model.output_type)
    check_gradients(model, objective, batch)


def test_the_gradient_check_fails_for_a_loss_without_its_reconstruction():
    """A planted bug: the summed terms still reach the decoder, `loss` does not."""
    model, objective, batch = build_pair("burgess", "beta_vae")
    compute = objective.compute

    def forgetful(*args):
        terms = compute(*args)
        return {**terms, "loss": objective.config.beta * terms["kl"]}

    objective.compute = forgetful
    with pytest.raises(AssertionError, match=r"decoder\..*gets no gradient from 'loss'"):
        check_gradients(model, objective, batch)


class _Initial(Callback):
    """Keeps a copy of the model's parameters as training starts."""

    def on_train_start(self, ctx):
        self.params = {n: p.detach().clone() for n, p in ctx.model.named_parameters()
                       if p.requires_grad}


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    """Three-step runs of each pair, made once per test process: the resume test checks them
    and the picture test draws from them (one `fit` less per picture row)."""
    runs = {}

    def get(model_name: str, objective_name: str):
        if (model_name, objective_name) not in runs:
            initial = _Initial()
            out = tmp_path_factory.mktemp(f"{model_name}-{objective_name}")
            run = fit(run_config_from_dict(_config(model_name, objective_name, 3)),
                      out / "a", callbacks=[initial])
            runs[model_name, objective_name] = out / "a", run, initial.params
        return runs[model_name, objective_name]

    return get


# Several fits per row: by default the covering pairs (every model and every objective at least
# once, objectives spread over the models), the slow run every pair.
FIT_PAIRS = [pytest.param(m, o, marks=() if (m, o) in COVERING else pytest.mark.slow)
             for m, o in PAIRS]


@pytest.mark.parametrize(("model_name", "objective_name"), FIT_PAIRS)
def test_three_fit_steps_train_every_parameter_and_resume_exactly(tmp_path, straight_runs,
                                                                   model_name, objective_name):
    _, straight, initial_params = straight_runs(model_name, objective_name)
    assert straight.step == 3 and len(straight.log["loss"]) == 3
    assert type(straight.model) is MODELS.get(model_name) and not straight.model.training
    trained = dict(straight.model.named_parameters())
    assert initial_params.keys() == trained.keys()
    for name, before in initial_params.items():
        assert not torch.equal(before, trained[name]), f"parameter {name} never moved"

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


# Pictures and metrics read only the model contract (and the log): each model once (its first
# covering pair, whose three-step run the resume test made) in the heavy run, the structured
# models and one plain Gaussian VAE in the default run, every pair in the slow run.
FIRST = {m: next(o for mm, o in COVERING if mm == m) for m in MODELS.names()}
#: one plain Gaussian VAE in the default run (the others draw the same kinds; heavy run)
GAUSSIAN_TWINS = {"conv", "dlib_conv", "nonsyn_burgess", "seed_vae"}


def _picture_marks(model: str, objective: str) -> tuple:
    if FIRST[model] != objective:
        return (pytest.mark.slow,)
    return (pytest.mark.heavy,) if model in GAUSSIAN_TWINS else ()


PICTURE_PAIRS = [pytest.param(m, o, marks=_picture_marks(m, o)) for m, o in PAIRS]


@pytest.mark.parametrize(("model_name", "objective_name"), PICTURE_PAIRS)
def test_every_applicable_plot_and_the_default_metrics(straight_runs, model_name,
                                                       objective_name):
    run_dir, run, _ = straight_runs(model_name, objective_name)
    options = PlotOptions(points=20, frames=2, cols=3, rows=2)
    written = {p.name for p in make_plots(run_dir, ["all"], options)}
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


def _preset_steps() -> list:
    """Every preset; those whose (model, objective) and (dataset, batches) an earlier preset
    already stepped are heavy (the study's and weak family's grids repeat them per dataset)."""
    seen, params = set(), []
    for preset in vaelab.list_names("presets"):
        config = build_run_config(preset, [])
        keys = {("pair", config.model.name, config.objective.name),
                ("data", config.data.name, getattr(config.data.config, "batches", ""))}
        params.append(pytest.param(preset, marks=() if keys - seen else pytest.mark.heavy))
        seen |= keys
    return params


@pytest.mark.parametrize("preset", vaelab.list_names("presets"))
def test_every_preset_builds_a_compatible_config(preset):
    config = build_run_config(preset, [])
    assert config.model.name in MODELS.names() and config.objective.name in OBJECTIVES.names()
    assert config.data.name in DATASETS.names()
    check_compatible(config.model.name, config.objective.name)


@pytest.mark.parametrize("preset", _preset_steps())
def test_every_preset_builds_and_takes_one_step(tmp_path, preset):
    overrides = ["train.steps=1", "train.log_every=1", "train.checkpoint_every=0",
                 "train.metrics=", "train.progress=false", "train.gif_every=0",
                 "train.batch_size=2", "train.valid_every=0", "train.early_stopping=0",
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
    listed = message.split("models for 'beta_tcvae': ")[1].split(", ")
    assert {"burgess", "conv", "nonsyn_burgess", "dlib_conv"} <= set(listed)
    assert "clusterer" not in listed and listed == sorted(listed)
    data = tiny()
    data["model"] = {"name": "clusterer"}
    with pytest.raises(ConfigError, match="cannot train model 'clusterer'"):
        vaelab.train(config=data, out=tmp_path, verbose=False)
    assert not (tmp_path / "tiny").exists()  # nothing was written
