"""Issue 35: the null baselines beside every `vaelab experiment` score (untrained model, mean
image, mean local code), the domain-alignment grid and the interpolation figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli import main

BASELINE_KEYS = ("baseline.untrained", "baseline.mean_pixels", "baseline.mean_local")


@pytest.fixture(scope="module")
def step_one_run(tmp_path_factory):
    """A UG-VAE trained one step at lr 1e-30: its weights are its step-0 weights to ~1e-30 (its
    BatchNorm running statistics have moved once). K = 10 > 8 components."""
    out = tmp_path_factory.mktemp("base")
    config = {"name": "b", "seed": 3,
              "model": {"name": "ugvae", "K": 10, "z_dim": 4, "beta_dim": 3},
              "objective": {"name": "ugvae", "reduction": "mean"},
              "data": {"name": "dsprites_domains", "limit": 64, "batches": "random"},
              "train": {"steps": 1, "lr": 1e-30, "batch_size": 16, "log_every": 1,
                        "metrics": [], "progress": False, "checkpoint_every": 0}}
    vaelab.train(config=config, out=out, verbose=False, pictures=False)
    return out / "b"


def test_scored_writes_each_baseline_and_the_margin_beside_the_score():
    """Planted features: the mean image separates the two kinds perfectly, the global code and
    the other baselines are noise. The mean-pixel baseline is then 1.0 and the margin negative;
    a baseline computed from the global code would be at chance."""
    from vaelab.experiments.ugvae import _scored

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    noise = rng.normal(size=(40, 3))
    pixels = labels[:, None] + rng.normal(0, 0.05, (40, 4))
    features = {"global": noise, "untrained": rng.normal(size=(40, 3)), "mean_pixels": pixels,
                "mean_local": rng.normal(size=(40, 2))}
    scores = _scored(features, labels, 0)
    assert list(scores)[:5] == ["linear_svm", *(f"linear_svm.{k}" for k in BASELINE_KEYS),
                                "linear_svm.margin"][:5]
    for kernel in ("linear_svm", "rbf_svm"):
        assert scores[f"{kernel}.baseline.mean_pixels"] == 1.0
        assert scores[kernel] < 0.8 and scores[f"{kernel}.baseline.untrained"] < 0.8
        assert scores[f"{kernel}.margin"] == pytest.approx(scores[kernel] - 1.0)
    # The global code separating and the baselines not: the margin is over the best baseline.
    features["global"] = pixels
    features["mean_pixels"] = noise
    scores = _scored(features, labels, 0, rows=slice(None))
    best = max(scores[f"linear_svm.{k}"] for k in BASELINE_KEYS)
    assert scores["linear_svm"] == 1.0
    assert scores["linear_svm.margin"] == pytest.approx(1.0 - best) and best < 0.8


def test_untrained_model_is_the_step_0_model(step_one_run):
    from vaelab.experiments.ugvae import untrained_model

    run = vaelab.load_run(step_one_run)
    state = torch.get_rng_state()
    model = untrained_model(run)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator untouched
    for (name, fresh), trained in zip(model.named_parameters(), run.model.parameters()):
        assert torch.allclose(fresh, trained, rtol=0, atol=1e-20), name
    assert not model.training
    running = [m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert running and all(torch.equal(r, torch.zeros_like(r)) for r in running)


def test_batch_features_are_the_global_code_mean_image_and_mean_local_code(step_one_run):
    from vaelab.experiments.ugvae import batch_features

    run = vaelab.load_run(step_one_run)
    dataset = run.dataset()
    batches = [np.arange(8), np.array([3, 40, 41, 50, 60])]
    for ess in (None, []):
        features = batch_features(run.model, dataset, batches, bn="eval", ess=ess)
        for row, index in enumerate(batches):
            x = dataset.batch(index)
            with torch.no_grad():
                posterior = run.model.eval().posterior(x)
            assert np.allclose(features["mean_pixels"][row], x.mean(0).flatten().numpy())
            assert features["mean_pixels"].shape == (2, 64 * 64)
            assert np.allclose(features["mean_local"][row], posterior["z"].mean.mean(0).numpy(),
                               atol=1e-6)
            assert np.allclose(features["global"][row], posterior["beta"].mean[0].numpy(),
                               atol=1e-6)
    # The untrained baseline is the fresh model's global code, not the run's (moved away here).
    from vaelab.experiments.ugvae import _features, untrained_model

    with torch.no_grad():
        run.model.expert.weight.add_(1.0)
    both = _features(run, dataset, batches, bn="eval")
    fresh = batch_features(untrained_model(run), dataset, batches, bn="eval")["global"]
    assert np.array_equal(both["untrained"], fresh)
    assert not np.allclose(both["global"], fresh, atol=1e-3)


def test_domain_alignment_mean_pixel_baseline_separates_pure_domains(step_one_run,
                                                                    monkeypatch):
    """Pure dSprites batches as is and inverted differ in their mean image: the mean-pixel
    baseline tells them apart perfectly even when the global code (here replaced by noise) and
    the untrained model's code cannot."""
    import vaelab.experiments.ugvae as ug

    run = vaelab.load_run(step_one_run)
    real = ug.batch_features
    rng = np.random.default_rng(1)

    def noisy_global(model, data, batches, bn="train", ess=None):
        features = real(model, data, batches, bn, ess)
        features["global"] = rng.normal(size=features["global"].shape)
        return features

    monkeypatch.setattr(ug, "batch_features", noisy_global)
    monkeypatch.setattr(ug, "_alignment_figures", lambda *args: {})  # not under test: time
    scores, _ = ug.domain_alignment(run, batches=10, batch_size=8, bn="eval")
    assert scores["pure.linear_svm.baseline.mean_pixels"] == 1.0
    assert scores["pure.linear_svm"] < 0.9
    assert scores["pure.linear_svm.baseline.untrained"] < 0.9
    assert scores["pure.linear_svm.margin"] == pytest.approx(scores["pure.linear_svm"] - 1.0)


def test_experiment_writes_baselines_to_metrics_and_report(step_one_run, capsys):
    assert main(["experiment", "domain_alignment", str(step_one_run), "--batches", "5",
                 "--batch-size", "8"]) == 0
    assert "experiment.domain_alignment.pure.linear_svm.margin" in capsys.readouterr().out
    metrics = json.loads((step_one_run / "metrics.json").read_text())
    for form in ("pure", "three"):
        for kernel in ("linear_svm", "rbf_svm"):
            score = f"experiment.domain_alignment.{form}.{kernel}"
            for key in (*BASELINE_KEYS, "margin"):
                value = metrics[f"{score}.{key}"]
                assert math.isfinite(value), (score, key)
            assert 0.0 <= metrics[f"{score}.baseline.untrained"] <= 1.0
    assert "mean_pixels" in metrics["protocol"]["experiments"]["domain_alignment"]["baselines"]
    # metrics.json in another order (a rerun keeps old keys where they were): the report still
    # puts each score's baselines and margin right after it
    reordered = dict(reversed(list(metrics.items())))
    (step_one_run / "metrics.json").write_text(json.dumps(reordered))
    assert main(["report", str(step_one_run)]) == 0
    page = (step_one_run / "report.html").read_text()
    score = "experiment.domain_alignment.pure.linear_svm"
    rows = [page.index(f"<th>{score}{suffix}</th>") for suffix in
            ("", *(f".{k}" for k in BASELINE_KEYS), ".margin")]
    assert rows == sorted(rows)  # the baselines and margin follow their score
    assert not rows[0] < page.index("<th>experiment.domain_alignment.pure.rbf_svm</th>") < rows[-1]
    assert "null baseline: the same score from the batch&#x27;s mean image" in page


def _cells(picture, rows: int, cols: int, size: int = 64, pad: int = 2) -> np.ndarray:
    grid = np.asarray(picture, dtype=np.float64) / 255.0
    return np.stack([[grid[pad + r * (size + pad):pad + r * (size + pad) + size,
                           pad + c * (size + pad):pad + c * (size + pad) + size]
                      for c in range(cols)] for r in range(rows)])  # (rows, cols, H, W)


def _sharpened(run):
    """The run's model with its code heads scaled up and a one-layer decoder of large weights:
    at initialisation every image gets nearly the same codes and the conv decoder gives nearly
    the same grey for all, so cells would not differ enough to tell rows from columns."""
    model = run.model
    with torch.no_grad():
        for layer in (model.q_z, model.expert):
            layer.weight.mul_(30)
        generator = torch.Generator().manual_seed(0)
        linear = torch.nn.Linear(model.config.z_dim + model.config.beta_dim, 64 * 64)
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator))
    model.decoder = torch.nn.Sequential(linear, torch.nn.Unflatten(1, (1, 64, 64))).eval()
    return run


def test_domain_alignment_grid_decodes_one_local_code_with_each_domains_code(step_one_run,
                                                                              monkeypatch):
    """The grid's corners, decoded by hand: columns are local codes (pure A's first images,
    then pure B's), the top row uses pure batch A's own global code, the bottom row B's."""
    import vaelab.experiments.ugvae as ug

    run = _sharpened(vaelab.load_run(step_one_run))
    dataset = run.dataset()
    real = ug.batch_features
    seen = []

    def spy(model, data, batches, bn="train", ess=None):
        features = real(model, data, batches, bn, ess)
        if model is run.model:
            seen.append((batches, features["global"]))
        return features

    monkeypatch.setattr(ug, "batch_features", spy)
    monkeypatch.setattr(ug, "_scored", lambda *args: {})  # not under test here: time
    _, figures = ug.domain_alignment(run, batches=5, batch_size=8, bn="eval")
    (batches, codes), = seen
    cols = 2 * ug.ALIGNMENT_COLUMNS
    cells = _cells(figures["experiment_domain_alignment_grid.png"], ug.ALIGNMENT_STEPS, cols)
    domains = np.asarray(dataset.domains)
    assert (domains[batches[0]] == 0).all() and (domains[batches[5]] == 1).all()
    with torch.no_grad():
        z_a = run.model.posterior(dataset.batch(batches[0]))["z"].mean[:1]
        z_b = run.model.posterior(dataset.batch(batches[5]))["z"].mean[:1]
        beta_a, beta_b = (torch.as_tensor(codes[k:k + 1]) for k in (0, 5))

    @torch.no_grad()
    def decoded(z, beta):
        return run.model.generate({"z": z, "beta": beta})[0, 0].numpy()

    corners = {(0, 0): decoded(z_a, beta_a), (0, cols // 2): decoded(z_b, beta_a),
               (-1, 0): decoded(z_a, beta_b), (-1, cols // 2): decoded(z_b, beta_b)}
    for (row, col), image in corners.items():
        assert np.abs(cells[row, col] - image).max() <= 1 / 255 + 1e-6, (row, col)
    assert np.abs(corners[(0, cols // 2)] - corners[(-1, 0)]).max() > 0.1  # rows != columns


def test_interpolation_grid_corners_and_every_component(step_one_run):
    """Posterior grid: rows move the global code from batch 1's to batch 2's, columns the local
    code from batch 1's first image to batch 2's; one prior grid per component (K = 10)."""
    from vaelab.experiments.ugvae import interpolation

    run = _sharpened(vaelab.load_run(step_one_run))
    dataset = run.dataset()
    _, figures = interpolation(run, batches=10, batch_size=8, bn="eval", seed=4, steps=5)
    assert sorted(k for k in figures if k.startswith("experiment_prior_interpolation_")) == \
        sorted(f"experiment_prior_interpolation_{k}.png" for k in range(10))
    rng = np.random.default_rng(4)
    pair = [rng.integers(0, len(dataset), 8) for _ in range(2)]
    with torch.no_grad():
        posteriors = [run.model.posterior(dataset.batch(b)) for b in pair]
        z = [p["z"].mean[:1] for p in posteriors]
        beta = [p["beta"].mean for p in posteriors]

    @torch.no_grad()
    def decoded(i, j):  # global code of batch i, local code of batch j
        return run.model.generate({"z": z[j], "beta": beta[i]})[0, 0].numpy()

    cells = _cells(figures["experiment_interpolation.png"], 5, 5)
    for row, col, i, j in ((0, 0, 0, 0), (0, -1, 0, 1), (-1, 0, 1, 0), (-1, -1, 1, 1)):
        assert np.abs(cells[row, col] - decoded(i, j)).max() <= 1 / 255 + 1e-6, (row, col)
    assert np.abs(decoded(0, 1) - decoded(1, 0)).max() > 0.1  # rows and columns differ


def test_report_puts_baselines_and_margin_right_after_their_score():
    from vaelab.viz.report import _beside_their_scores

    score = "experiment.domain_alignment.pure.linear_svm"
    keys = [f"{score}.margin", "mig", f"{score}.baseline.mean_local", score, "dci",
            f"{score}.baseline.untrained", "experiment.x.y.rbf_svm.margin"]
    assert _beside_their_scores(keys) == [
        "mig", score, f"{score}.baseline.untrained", f"{score}.baseline.mean_local",
        f"{score}.margin", "dci", "experiment.x.y.rbf_svm.margin"]  # an orphan stays
