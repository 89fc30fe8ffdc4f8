"""`vaelab experiment`: UG-VAE's domain-alignment and global-structure experiments."""

from __future__ import annotations

import json

import pytest

import vaelab
from vaelab.cli import main
from vaelab.errors import VaelabError


@pytest.fixture(scope="module")
def ugvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ug")
    config = {"name": "u", "seed": 1,
              "model": {"name": "ugvae", "K": 3, "z_dim": 4, "beta_dim": 3},
              "objective": {"name": "ugvae", "reduction": "mean"},
              "data": {"name": "dsprites_domains", "limit": 64, "batches": "random"},
              "train": {"steps": 6, "batch_size": 16, "log_every": 3, "metrics": [],
                        "progress": False, "checkpoint_every": 0}}
    vaelab.train(config=config, out=out, verbose=False, pictures=False)
    return out / "u"


def test_domain_alignment_from_the_cli(ugvae_run, capsys):
    assert main(["experiment", "domain_alignment", str(ugvae_run), "--batches", "10",
                 "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "experiment.domain_alignment.pure.linear_svm" in out
    scores = json.loads((ugvae_run / "metrics.json").read_text())
    # present and saved (the cross-validated SVM accuracy itself: test_grouped_vs_random_...)
    assert {f"experiment.domain_alignment.{key}" for key in (
        "pure.linear_svm", "pure.rbf_svm", "three.linear_svm")} <= set(scores)
    assert (ugvae_run / "plots" / "experiment_domain_alignment.png").is_file()
    assert scores["protocol"]["experiments"]["domain_alignment"]["bn"] == "train"


def test_global_structure_and_bn_modes(ugvae_run):
    from vaelab.experiments import run_experiment

    scores = run_experiment("global_structure", ugvae_run, batches=10, batch_size=8, bn="eval",
                            factors="pos_y")
    assert "experiment.global_structure.grouped_vs_random.linear_svm" in scores
    import numpy as np
    import torch

    from vaelab.experiments.ugvae import global_codes

    run = vaelab.load_run(ugvae_run)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    batches = [np.arange(8), np.arange(64, 72)]
    train_mode = global_codes(run.model, run.dataset(), batches, bn="train")
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    eval_mode = global_codes(run.model, run.dataset(), batches, bn="eval")
    assert train_mode.shape == eval_mode.shape == (2, 3)
    assert not np.allclose(train_mode, eval_mode)  # batch statistics differ from running ones
    ess: list[float] = []  # the experts' path gives the posterior's codes, bit for bit
    assert np.array_equal(global_codes(run.model, run.dataset(), batches, "eval", ess=ess),
                          eval_mode)
    assert len(ess) == 2 and all(1.0 <= e <= 8.0 for e in ess)


def test_experiments_need_a_global_latent(tmp_path, tiny, capsys):
    from vaelab.experiments import run_experiment

    vaelab.train(config=tiny(), out=tmp_path, verbose=False, pictures=False)
    with pytest.raises(VaelabError, match="batch-level \\(global\\) latent"):
        run_experiment("domain_alignment", tmp_path / "tiny")
    assert main(["experiment", "nope", str(tmp_path / "tiny")]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_interpolation_figures(ugvae_run):
    from PIL import Image

    from vaelab.experiments import run_experiment

    assert run_experiment("interpolation", ugvae_run, batches=10, batch_size=8) == {}
    plots = ugvae_run / "plots"
    grid = Image.open(plots / "experiment_interpolation.png")
    assert grid.size == (7 * 66 + 2, 7 * 66 + 2)  # 7 x 7 cells of 64 px with 2-px borders
    assert (plots / "experiment_interpolation_map.png").is_file()
    assert sorted(p.name for p in plots.glob("experiment_prior_interpolation_*.png")) == [
        f"experiment_prior_interpolation_{k}.png" for k in range(3)]  # K = 3


# MNIST series (§4.3(b)) and the CelebA-attribute form of global structure.

def test_series_digits_are_the_decimal_digits_of_each_series():
    from vaelab.data.series import series_digits

    assert series_digits("even", 12).tolist() == [0, 2, 4, 6, 8, 1, 0, 1, 2, 1, 4, 1]
    assert series_digits("odd", 8).tolist() == [1, 3, 5, 7, 9, 1, 1, 1]
    assert series_digits("fibonacci", 12).tolist() == [0, 1, 1, 2, 3, 5, 8, 1, 3, 2, 1, 3]
    assert series_digits("primes", 12).tolist() == [2, 3, 5, 7, 1, 1, 1, 3, 1, 7, 1, 9]
    assert all(len(series_digits(s)) == 256 for s in ("even", "odd", "fibonacci", "primes"))
    # The 256th digit of the primes: brute force over the primes written out.
    primes = [n for n in range(2, 2000) if all(n % d for d in range(2, int(n**0.5) + 1))]
    assert series_digits("primes").tolist() == [int(c) for c in "".join(map(str, primes))][:256]


def test_series_batches_follow_the_stream_and_cycle_each_class():
    import numpy as np

    from vaelab.data.base import DataError
    from vaelab.data.series import SERIES, SeriesBatches, series_digits

    labels = np.tile(np.arange(10), 3)  # 3 images per digit, so the classes must cycle
    sampler = SeriesBatches(labels, batch_size=40, seed=3)
    batches, kinds = sampler.draw(8)
    assert np.bincount(kinds, minlength=4).tolist() == [2, 2, 2, 2]  # balanced
    for index, kind in zip(batches, kinds):
        digits = labels[index]
        stream = series_digits(SERIES[kind])
        starts = [s for s in range(256) if (stream[(s + np.arange(40)) % 256] == digits).all()]
        assert starts, "a batch's digits are consecutive digits of its series (wrapping)"
    # Per-class iterators in dataset order, cycled: the images of digit 1 are taken 0, 1, 2, 0...
    taken = np.concatenate(batches)
    ones = taken[labels[taken] == 1]
    assert ones.tolist()[:6] == [1, 11, 21, 1, 11, 21]
    unbalanced = SeriesBatches(labels, 4, seed=0, balanced=False).draw(40)[1]
    assert len(set(np.bincount(unbalanced, minlength=4).tolist())) > 1
    with pytest.raises(DataError, match=r"none labelled \[7\]"):
        SeriesBatches(labels[labels != 7], 4)
    with pytest.raises(DataError, match="no labels"):
        SeriesBatches(None, 4)


@pytest.fixture(scope="module")
def mnist_ugvae(tmp_path_factory):
    import shutil
    from pathlib import Path

    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-test"
    if not source.is_dir():
        pytest.skip("../shared/data/mnist-test is not present beside the checkout")
    home = tmp_path_factory.mktemp("mnist_home")
    shutil.copytree(source, home / "mnist")
    out = tmp_path_factory.mktemp("ugm")
    config = {"name": "m", "seed": 1,
              "model": {"name": "ugvae", "architecture": "k_vae", "K": 3, "z_dim": 4,
                        "beta_dim": 3},
              "objective": {"name": "ugvae", "reduction": "mean"},
              "data": {"name": "mnist", "split": "test", "limit": 600, "root": str(home)},
              "train": {"steps": 4, "batch_size": 16, "log_every": 2, "metrics": [],
                        "progress": False, "checkpoint_every": 0}}
    vaelab.train(config=config, out=out, verbose=False, pictures=False)
    return out / "m"


def test_mnist_series_experiment_from_the_cli(mnist_ugvae, capsys):
    assert main(["experiment", "mnist_series", str(mnist_ugvae), "--batches", "20",
                 "--batch-size", "8", "--reduction", "pca"]) == 0
    out = capsys.readouterr().out
    assert "experiment.mnist_series.series.linear_svm" in out
    scores = json.loads((mnist_ugvae / "metrics.json").read_text())
    assert scores["experiment.mnist_series.series.chance"] == 0.25
    assert {f"experiment.mnist_series.{key}" for key in (
        "series.linear_svm", "series.rbf_svm", "series_vs_random.linear_svm")} <= set(scores)
    assert 1.0 <= scores["experiment.mnist_series.experts_ess"] <= 8.0  # of 8 per batch
    for name in ("experiment_mnist_series_global.png", "experiment_mnist_series_local.png"):
        assert (mnist_ugvae / "plots" / name).is_file()
    assert scores["protocol"]["experiments"]["mnist_series"]["reduction"] == "pca"


def test_mnist_series_needs_digit_labels_and_attribute_only_for_global_structure(
        ugvae_run, mnist_ugvae, capsys):
    from vaelab.data.base import DataError
    from vaelab.experiments import run_experiment

    with pytest.raises(DataError, match="every digit 0-9"):
        run_experiment("mnist_series", ugvae_run, batches=8, batch_size=8)
    assert main(["experiment", "mnist_series", str(mnist_ugvae), "--attribute", "Male"]) == 2
    assert "--attribute belongs to global_structure" in capsys.readouterr().err
    with pytest.raises(VaelabError, match="two label values"):
        run_experiment("global_structure", mnist_ugvae, batches=5, batch_size=8)


def test_global_structure_attribute_form_on_a_small_celeba(tmp_path):
    import numpy as np
    from PIL import Image

    from vaelab.experiments import run_experiment

    folder = tmp_path / "data" / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    signs = [1 if i % 2 else -1 for i in range(24)]
    for i, sign in enumerate(signs):
        colour = (200, 60, 60) if sign > 0 else (60, 60, 200)
        picture = np.clip(rng.normal(colour, 20, (72, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(picture).save(folder / f"{i + 1:06d}.png")
    rows = [f"{i + 1:06d}.png {s:2d} {-s:2d}" for i, s in enumerate(signs)]
    (folder.parent / "list_attr_celeba.txt").write_text("24\nMale Smiling\n" + "\n".join(rows))
    config = {"name": "c", "seed": 1,
              "model": {"name": "ugvae", "K": 2, "z_dim": 3, "beta_dim": 2},
              "objective": {"name": "ugvae", "reduction": "mean"},
              "data": {"name": "celeba", "root": str(tmp_path / "data"), "test_fraction": 0.0},
              "train": {"steps": 2, "batch_size": 8, "log_every": 1, "metrics": [],
                        "progress": False, "checkpoint_every": 0}}
    vaelab.train(config=config, out=tmp_path / "runs", verbose=False, pictures=False)
    run_dir = tmp_path / "runs" / "c"
    with pytest.raises(VaelabError, match="attribute='Male'"):
        run_experiment("global_structure", run_dir, batches=5, batch_size=4)
    scores = run_experiment("global_structure", run_dir, batches=5, batch_size=4,
                            attribute="Male", reduction="pca", bn="eval")
    assert {f"experiment.global_structure.{key}" for key in (
        "three.linear_svm", "three.rbf_svm", "attribute.linear_svm")} <= set(scores)
    # Red (Male) and blue batches differ in their mean colour: even after 2 steps the global
    # code tells them apart, with BatchNorm on its running statistics (batch statistics would
    # normalise a pure batch's mean colour away).
    assert scores["experiment.global_structure.attribute.linear_svm"] >= 0.8
    plots = run_dir / "plots"
    assert (plots / "experiment_global_structure.png").is_file()
    assert (plots / "experiment_global_structure_examples.png").is_file()


def test_global_structure_groups_by_the_factor_asked(ugvae_run, capsys):
    from vaelab.data.base import DataError
    from vaelab.experiments.ugvae import global_structure

    run = vaelab.load_run(ugvae_run)
    seen = []
    original = run.dataset().group_index

    def spy(factors):
        seen.append(tuple(factors))
        return original(factors)

    run.dataset().group_index = spy
    global_structure(run, batches=10, batch_size=8, factors="pos_x, scale", reduction="pca")
    with pytest.raises(VaelabError, match="two values of shape; this dataset has 1"):
        global_structure(run, batches=10, batch_size=8, reduction="pca")  # the default: shape
    # The grouped batches share a value of any factor asked; the seed-form pair is two values
    # of the first one.
    assert seen == [("pos_x", "scale"), ("pos_x",), ("shape",), ("shape",)]
    with pytest.raises(DataError, match="unknown factor 'hue'"):
        global_structure(run, batches=10, batch_size=8, factors="hue")
    assert main(["experiment", "interpolation", str(ugvae_run), "--factors", "shape"]) == 2
    assert "--factors belongs to global_structure" in capsys.readouterr().err


def test_experts_ess_known_answers():
    import torch

    from vaelab.experiments.ugvae import experts_ess

    assert experts_ess(torch.zeros(8, 3)) == pytest.approx(8.0)  # equal precisions: B
    # precisions 1, 1, 2 in one coordinate: (1 + 1 + 2)^2 / (1 + 1 + 4) = 16 / 6
    logvar = -torch.log(torch.tensor([[1.0, 1.0], [1.0, 1.0], [2.0, 1.0]]))
    assert experts_ess(logvar) == pytest.approx((16 / 6 + 3) / 2)
    dominant = torch.tensor([[-30.0], [0.0], [0.0], [0.0]])  # one expert 1e13 times as sure
    assert experts_ess(dominant) == pytest.approx(1.0)
    assert experts_ess(torch.full((4, 2), 500.0)) == pytest.approx(4.0)  # no underflow


def test_ugvae_experts_pool_to_the_posterior(ugvae_run):
    import torch

    from vaelab.models.ugvae import pool_experts

    run = vaelab.load_run(ugvae_run)
    x = run.dataset().batch(list(range(8)))
    with torch.no_grad():
        mean, logvar = run.model.eval().experts(x)
        pooled = pool_experts(mean, logvar)
        beta = run.model.posterior(x)["beta"]
    assert mean.shape == logvar.shape == (8, 3)
    assert torch.equal(pooled[0], beta.mean) and torch.equal(pooled[1], beta.logvar)


def test_factor_structure_follows_the_seed_protocol(ugvae_run, monkeypatch):
    """The pair batches are all at value A or all at value B of the first factor, the random
    ones are 3 x batches, and the codes are classified as the seed did (random / A / B)."""
    import numpy as np

    import vaelab.experiments.ugvae as ug

    run = vaelab.load_run(ugvae_run)
    dataset = run.dataset()
    calls = []
    real = ug.batch_features

    def spy(model, data, batches, bn="train", ess=None):
        if model is run.model:  # not the untrained baseline's encoding of the same batches
            calls.append([np.asarray(b) for b in batches])
        return real(model, data, batches, bn, ess)

    monkeypatch.setattr(ug, "batch_features", spy)
    scores, figures = ug.global_structure(run, batches=10, batch_size=8, factors="pos_y",
                                          reduction="pca", bn="eval")
    column = dataset.factors[:, list(dataset.factor_names).index("pos_y")]
    seed_form = calls[0]
    assert len(seed_form) == 50  # 30 random, 10 at A, 10 at B
    low, high = np.unique(column)[[0, -1]]
    assert all((column[b] == low).all() for b in seed_form[30:40])
    assert all((column[b] == high).all() for b in seed_form[40:])
    assert not all(len(set(column[b])) == 1 for b in seed_form[:30])  # random batches mix
    assert all(len(set(column[b])) == 1 for b in calls[1])  # grouped batches share a value
    assert {"pair.linear_svm", "pair.rbf_svm", "three.linear_svm", "grouped_vs_random."
            "linear_svm", "grouped_vs_random.rbf_svm"} <= set(scores)
    assert 1.0 <= scores["experts_ess"] <= 8.0
    assert set(figures) == {"experiment_global_structure.png",
                            "experiment_global_structure_grouped.png",
                            "experiment_global_structure_examples.png"}


def test_pair_values_defaults_and_errors():
    from vaelab.experiments.ugvae import _pair_values

    assert _pair_values("scale", 6, ()) == (0, 5)
    assert _pair_values("shape", 3, "") == (0, 2)  # square vs heart
    assert _pair_values("orientation", 40, ()) == (0, 5)  # 0 and 45 degrees, not 0 and 351
    assert _pair_values("pos_x", 32, "3, 7") == (3, 7)
    for bad in ("0,32", "2,2", "1", "a,b"):
        with pytest.raises(VaelabError, match="values must be two"):
            _pair_values("pos_x", 32, bad)
    with pytest.raises(VaelabError, match="needs two values of scale; this dataset has 1"):
        _pair_values("scale", 1, ())


def test_grouped_vs_random_is_bounded_for_a_linear_svm():
    """The docstring's claim, on synthetic codes: random batches' codes are convex
    combinations of three group codes (each random batch a mix of the three values, each code the
    precision-weighted mean of its sub-batches), so a linear SVM cannot pass 1/2 + 1/2 x 2/3,
    while the RBF kernel separates them."""
    import numpy as np

    from vaelab.experiments.ugvae import _svm_scores

    rng = np.random.default_rng(0)
    corners = np.array([[1.0, 0.0], [-0.5, 0.87], [-0.5, -0.87]]) * 3
    which = rng.integers(0, 3, 150)
    grouped = corners[which] + rng.normal(0, 0.1, (150, 2))
    shares = rng.dirichlet([30, 30, 30], 150)  # a random batch's value proportions
    random = shares @ corners + rng.normal(0, 0.1, (150, 2))
    codes = np.concatenate([grouped, random])
    labels = np.repeat([1, 0], 150)
    scores = _svm_scores(codes, labels, 0)
    assert scores["linear_svm"] <= 0.5 + 0.5 * 2 / 3 + 0.02
    assert scores["rbf_svm"] >= 0.95


def test_global_structure_values_from_the_cli(ugvae_run, capsys):
    args = ["experiment", "global_structure", str(ugvae_run), "--factors", "pos_y", "--batches",
            "5", "--batch-size", "8", "--bn", "eval", "--reduction", "pca"]
    assert main([*args, "--values", "2,9"]) == 0
    assert "experiment.global_structure.pair.linear_svm" in capsys.readouterr().out
    scores = json.loads((ugvae_run / "metrics.json").read_text())
    assert scores["protocol"]["experiments"]["global_structure"]["values"] == "2,9"
    assert main([*args, "--values", "0,32"]) == 2
    assert "two different value indices of pos_y in 0..31" in capsys.readouterr().err
    assert main(["experiment", "domain_alignment", str(ugvae_run), "--values", "0,1"]) == 2
    assert "--values belongs to global_structure" in capsys.readouterr().err


def test_every_experiment_score_has_a_meaning_in_the_report(ugvae_run, mnist_ugvae):
    from vaelab.experiments import run_experiment
    from vaelab.metrics.properties import describe_score

    run_experiment("domain_alignment", ugvae_run, batches=5, batch_size=8)
    run_experiment("global_structure", ugvae_run, batches=5, batch_size=8, factors="pos_y",
                   reduction="pca")
    with pytest.raises(VaelabError, match="smallest kind has 2 of 8 batches: pass more"):
        run_experiment("mnist_series", mnist_ugvae, batches=8, batch_size=8, reduction="pca")
    run_experiment("mnist_series", mnist_ugvae, batches=20, batch_size=8, reduction="pca")
    keys = [k for run in (ugvae_run, mnist_ugvae)
            for k in json.loads((run / "metrics.json").read_text()) if k.startswith("experiment.")]
    assert len(keys) >= 16
    for key in keys:
        meaning, direction = describe_score(key)
        assert meaning, key
        assert direction == (0 if key.endswith(("experts_ess", "chance")) or ".baseline." in key
                             else 1), key
    assert "RBF SVM accuracy" in describe_score(
        "experiment.global_structure.pair.rbf_svm")[0]
    assert main(["report", str(ugvae_run)]) == 0
    page = (ugvae_run / "report.html").read_text()
    assert ("linear SVM accuracy (5-fold cross-validated) of telling pure domain A vs pure "
            "domain B batches from the global code") in page


def test_a_batch_of_one_is_refused_before_any_work(ugvae_run, capsys):
    for size in ("1", "-3"):
        assert main(["experiment", "domain_alignment", str(ugvae_run), "--batch-size", size]) == 2
        assert "batches of >= 2 images" in capsys.readouterr().err


def test_seed_protocol_scores_the_right_batches(ugvae_run, monkeypatch):
    """Codes that only say "this batch is all at y = 31": value B batches are told from value A
    ones perfectly, while random batches (at most a few images at 31) look like A batches. So
    `pair` (A vs B) is 1, `three` (random / A / B) is not, and an SVM fed the wrong subset fails."""
    import numpy as np

    import vaelab.experiments.ugvae as ug

    run = vaelab.load_run(ugvae_run)
    column = run.dataset().factors[:, list(run.dataset().factor_names).index("pos_y")]
    rng = np.random.default_rng(0)

    def codes(model, data, batches, bn="train", ess=None):
        planted = np.array([[np.mean(column[b] == 31), rng.normal(0, 1e-3)] for b in batches])
        return {"global": planted, "mean_local": planted, "mean_pixels": planted}

    monkeypatch.setattr(ug, "batch_features", codes)
    scores, _ = ug.global_structure(run, batches=20, batch_size=8, factors="pos_y",
                                    reduction="pca")
    assert scores["pair.linear_svm"] == 1.0
    assert scores["three.linear_svm"] < 0.85  # random and A batches overlap
    assert scores["grouped_vs_random.linear_svm"] < 0.75  # only the y = 31 groups stand out
    assert "experts_ess" not in scores  # no experts behind these codes
