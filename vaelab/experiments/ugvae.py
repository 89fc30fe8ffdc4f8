"""UG-VAE's experiments (Peis et al., 2020, §4; ipeis/UG-VAE's `experiments/`) on the global code.

* `interpolation` (§4.1): the posterior grid of two random batches (rows: the global code from
  batch 1's to batch 2's, columns: the local code of their first images), the same path on a
  t-SNE map of 100 batches' global codes, and the prior interpolation of each component (rows:
  beta from +1.5 to -1.5 in every coordinate, columns: z from mu_d(beta) - 3 to + 3);
* `domain_alignment` (§4.2, the exp2 form): pure batches of domain A, of domain B and mixed
  batches are encoded; the global code of each batch is its pooled posterior mean. Linear and RBF
  SVMs (scikit-learn, 5-fold cross-validation) classify pure A vs pure B batches from it, and the
  three batch types; a PCA map shows the codes with the straight path between two pure batches'
  own codes, beside the seed's alignment grid (`alignment_grid`): the same local codes decoded
  with every global code on that path, from domain A's (top) to domain B's (bottom).
* `global_structure` (§4.3, offline form): on factor data the seed's protocol with two values of a
  factor in place of Male and Female (all squares / all hearts, all small / all large, ...):
  2-class SVM of value A vs value B batches (the paper's 85 % figure is this form on CelebA) and
  3-class with random batches; and vaelab's own "grouped vs random" (batches sharing any value
  against random batches, `data.batches=group` semantics) and which group; on labelled data
  (CelebA with `attribute="Male"`) the seed's form: random, Male and Female batches, 3-class and
  2-class SVMs;
* `mnist_series` (§4.3(b)): batches of MNIST digits following a series (even, odd, Fibonacci,
  primes; `vaelab.data.series`) encoded by a model trained on random batches: the global and local
  maps, and the 4-way SVM accuracy of the series type from the global code (chance 0.25), a number
  the seed never gave.

Null baselines: every SVM score `S` is written beside the same score with three other
per-batch features in place of the trained model's global code, on the same batches, labels,
folds and `bn`: `S.baseline.untrained` (the global code of the untrained, step-0 model,
`untrained_model`), `S.baseline.mean_pixels` (the batch's mean image), `S.baseline.mean_local`
(the mean of the trained model's local codes over the batch), and `S.margin` = S minus the best
of the three. A score whose margin is not above 0 says nothing about the global code: pure
dSprites domains (as is / inverted) differ in mean intensity, a batch's digit histogram alone
tells the MNIST series apart.

BatchNorm (`bn`): "train" uses batch statistics as the seed's scripts did (they never call
`eval()`), on a copy of the model so its running statistics are untouched; "eval" uses the
running statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vaelab.errors import VaelabError
from vaelab.registry import Registry
from vaelab.viz.losses import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BASELINES", "EXPERIMENTS", "alignment_grid", "batch_features", "domain_alignment",
           "experts_ess", "global_codes", "global_structure", "interpolation", "mnist_series",
           "run_experiment", "untrained_model"]

EXPERIMENTS: Registry = Registry("experiment")
BN_MODES = ("train", "eval")


def _batch_latent(model: Any) -> str:
    names = [s.name for s in model.latents if s.scope == "batch"]
    if not names:
        raise VaelabError(f"the experiment needs a model with a batch-level (global) latent, "
                          f"such as UG-VAE's; {type(model).__name__} has none")
    return names[0]


def _encoder(model: Any, bn: str) -> Any:
    """The model to encode with: a train-mode copy (batch statistics, the model's running ones
    untouched) for bn="train", the model itself in eval mode for bn="eval"."""
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    return copy.deepcopy(model).train() if bn == "train" else model.eval()


@torch.no_grad()
def batch_features(model: Any, dataset: Any, batches: list[np.ndarray], bn: str = "train",
                   ess: list[float] | None = None) -> dict[str, np.ndarray]:
    """Per index batch, in one encoding pass (`bn` as in `global_codes`):

    * "global": the pooled posterior mean of the global latent, (n, D_beta);
    * "mean_local": the mean over the batch's images of their local posterior means
      (`model.traversal_latent`, UG-VAE's z), (n, D_z);
    * "mean_pixels": the batch's mean image, flattened, (n, C*H*W).

    With a list `ess` and a model with per-image `experts` (UG-VAE), appends each batch's
    effective number of experts, `experts_ess`."""
    from vaelab.models.ugvae import pool_experts

    name = _batch_latent(model)
    encoder = _encoder(model, bn)
    device = next(model.parameters()).device
    codes, local, pixels = [], [], []
    for index in batches:
        x = dataset.batch(index).to(device)
        if ess is not None and hasattr(encoder, "experts"):
            # UG-VAE's experts and local means in one pass (pooled: its posterior, bit for bit)
            m, _, _, _, mean, logvar = encoder._experts(x, sample=False)
            ess.append(experts_ess(logvar))
            codes.append(pool_experts(mean, logvar)[0][0].float().cpu())
        else:
            posterior = encoder.posterior(x)
            codes.append(posterior[name].mean[0].float().cpu())
            m = posterior[model.traversal_latent].mean
        local.append(m.float().mean(0).cpu())
        pixels.append(x.float().mean(0).flatten().cpu())
    return {"global": torch.stack(codes).numpy(), "mean_local": torch.stack(local).numpy(),
            "mean_pixels": torch.stack(pixels).numpy()}


def global_codes(model: Any, dataset: Any, batches: list[np.ndarray], bn: str = "train",
                 ess: list[float] | None = None) -> np.ndarray:
    """The pooled posterior mean of the global latent of each index batch: (n, D_beta).

    `bn="train"` encodes with batch statistics (a train-mode copy), "eval" with the running
    ones. With a list `ess` and a model with per-image `experts` (UG-VAE), appends each batch's
    effective number of experts, `experts_ess`."""
    return batch_features(model, dataset, batches, bn, ess)["global"]


def untrained_model(run: Any) -> Any:
    """The run's architecture freshly initialised from the run's seed: its step-0 weights.

    Training seeds torch with `config.seed` and builds the model before drawing anything else
    from torch's generator, so this is the model training started from (tested against a run
    trained one step at lr 1e-30); BatchNorm running statistics are at their initial values
    (mean 0, variance 1). torch's global generator is left as it was."""
    from vaelab.factory import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.config.seed)
        model = build_model(run.config.model)
    return model.to(next(run.model.parameters()).device).eval()


# The null baselines of every experiment score: the same classifier on the same batches with
# another per-batch feature in place of the trained model's global code.
BASELINES = ("untrained", "mean_pixels", "mean_local")


def _features(run: Any, dataset: Any, batches: list[np.ndarray], bn: str,
              ess: list[float] | None = None, untrained: Any = None) -> dict[str, np.ndarray]:
    """The global code of each batch ("global") and its baselines' features: "untrained", the
    global code of the untrained model (`untrained_model`, same `bn`); "mean_pixels", the
    batch's mean image; "mean_local", the mean of the trained model's local codes."""
    features = batch_features(run.model, dataset, batches, bn, ess)
    model = untrained if untrained is not None else untrained_model(run)
    features["untrained"] = batch_features(model, dataset, batches, bn)["global"]
    return features


def _join(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _scored(features: dict[str, np.ndarray], labels: np.ndarray, seed: int,
            rows: Any = slice(None)) -> dict[str, float]:
    """`_svm_scores` of the global code and, beside each score `S`, the same score of each
    baseline feature (`S.baseline.<name>`) and `S.margin` = S - the best baseline's score."""
    main = _svm_scores(features["global"][rows], labels, seed)
    baselines = {name: _svm_scores(features[name][rows], labels, seed) for name in BASELINES}
    scores: dict[str, float] = {}
    for key, value in main.items():
        scores[key] = value
        for name in BASELINES:
            scores[f"{key}.baseline.{name}"] = baselines[name][key]
        scores[f"{key}.margin"] = value - max(baselines[name][key] for name in BASELINES)
    return scores


def experts_ess(logvar: torch.Tensor) -> float:
    """The effective number of experts in a product of Gaussian experts of log-variances
    `logvar` (B, D): (sum_i w_i)^2 / sum_i w_i^2 with precisions w_i = exp(-logvar_i), averaged
    over the D coordinates. B for equal precisions, 1 when one expert dominates: the pooled
    mean is then one image's, however large the batch."""
    w = torch.exp(-(logvar - logvar.min(0).values).double())  # scale-free: shift per coordinate
    return float((w.sum(0) ** 2 / (w ** 2).sum(0)).mean())


def _svm_scores(codes: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    counts = np.unique(labels, return_counts=True)[1]
    if counts.min() < 5:
        raise VaelabError(f"5-fold cross-validation needs at least 5 batches of each kind; the "
                          f"smallest kind has {counts.min()} of {len(labels)} batches: pass more "
                          f"--batches (mnist_series: 4 series, so at least 20)")
    # cross_val_score(make_pipeline(StandardScaler(), SVC(kernel)), cv=folds), unrolled: the
    # same folds and fits, the scaling shared by both kernels (a third less time; the baselines
    # run four of these per score)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(codes, labels)
    accuracy: dict[str, list[float]] = {"linear": [], "rbf": []}
    for train, test in folds:
        scaler = StandardScaler().fit(codes[train])
        fit, held = scaler.transform(codes[train]), scaler.transform(codes[test])
        for kernel, values in accuracy.items():
            values.append(SVC(kernel=kernel).fit(fit, labels[train]).score(held, labels[test]))
    return {f"{kernel}_svm": float(np.mean(values)) for kernel, values in accuracy.items()}


def _domain_pools(dataset: Any) -> list[np.ndarray]:
    domains = getattr(dataset, "domains", None)
    if domains is None:
        raise VaelabError(f"domain alignment needs a two-domain dataset (celeba_faces, "
                          f"cars_chairs, dsprites_domains); {dataset.name!r} has no domains")
    return [np.flatnonzero(np.asarray(domains) == k) for k in (0, 1)]


def domain_alignment(run: Any, batches: int = 100, batch_size: int = 0, bn: str = "train",
                     seed: int = 0) -> tuple[dict[str, float], dict[str, Any]]:
    """Scores and figures of the domain-alignment experiment (module docstring)."""
    dataset = run.dataset()
    pools = _domain_pools(dataset)
    size = batch_size or run.config.train.batch_size
    rng = np.random.default_rng(seed)
    pure = [[rng.choice(pool, size) for _ in range(batches)] for pool in pools]
    mixed = [np.concatenate([rng.choice(pools[0], size // 2), rng.choice(pools[1],
                                                                         size - size // 2)])
             for _ in range(batches)]
    features = _features(run, dataset, [*pure[0], *pure[1], *mixed], bn)
    kinds = np.repeat(np.arange(3), batches)  # 0: pure A, 1: pure B, 2: mixed
    pure_scores = _scored(features, kinds[kinds < 2], seed, kinds < 2)
    three = _scored(features, kinds, seed)
    scores = {**{f"pure.{k}": v for k, v in pure_scores.items()},
              **{f"three.{k}": v for k, v in three.items()}}
    return scores, _alignment_figures(run, features["global"], kinds, pure, dataset, bn)


ALIGNMENT_STEPS = 5  # rows of the alignment grid: the global path from pure A to pure B
ALIGNMENT_COLUMNS = 3  # local codes taken from each pure batch


@torch.no_grad()
def alignment_grid(model: Any, dataset: Any, pure_a: np.ndarray, pure_b: np.ndarray,
                   code_a: np.ndarray, code_b: np.ndarray, bn: str = "train",
                   steps: int = ALIGNMENT_STEPS, cols: int = ALIGNMENT_COLUMNS) -> torch.Tensor:
    """The seed's domain-alignment picture (Peis et al. §4.2; ipeis/UG-VAE
    `Interpolation.map_interpolation`): the same local codes decoded with domain A's and domain
    B's global code. Columns: the local posterior means of the first `cols` images of the pure
    batch `pure_a` and of `pure_b` (each batch encoded whole, as its global code was); rows: the
    global code on the straight path from `code_a` (pure batch A's own code, first row) to
    `code_b` (pure batch B's, last row). Returns (steps * 2 cols, C, H, W) images in (0, 1),
    row by row; a column is one local code under every global code of the path."""
    name = _batch_latent(model)
    encoder = _encoder(model, bn)
    device = next(model.parameters()).device
    z = torch.cat([encoder.posterior(dataset.batch(b).to(device))[model.traversal_latent]
                   .mean[:cols] for b in (pure_a, pure_b)])
    ends = [torch.as_tensor(np.asarray(c), dtype=z.dtype, device=device).reshape(1, -1)
            for c in (code_a, code_b)]
    lam = torch.linspace(0, 1, steps, device=device, dtype=z.dtype)[:, None]
    path = (1 - lam) * ends[0] + lam * ends[1]  # (steps, Db)
    return torch.cat([model.generate({model.traversal_latent: z,
                                      name: beta[None].expand(len(z), -1)}).float().cpu()
                      for beta in path])


def _alignment_figures(run: Any, codes: np.ndarray, kinds: np.ndarray, pure: list,
                       dataset: Any, bn: str) -> dict[str, Any]:
    """The PCA map of the global codes with the path between the first pure A and pure B
    batches (its ends are their own codes), beside `alignment_grid` on that path; the grid also
    as its own picture."""
    from sklearn.decomposition import PCA

    from vaelab.viz.grid import image_grid, to_pil

    a, b = int(np.flatnonzero(kinds == 0)[0]), int(np.flatnonzero(kinds == 1)[0])
    images = alignment_grid(run.model, dataset, pure[0][0], pure[1][0], codes[a], codes[b], bn)
    cols = len(images) // ALIGNMENT_STEPS
    grid = image_grid(images, ALIGNMENT_STEPS, cols)
    pca = PCA(n_components=2, random_state=0).fit(codes)
    points = pca.transform(codes)
    lam = np.linspace(0, 1, ALIGNMENT_STEPS)[:, None]
    path = pca.transform((1 - lam) * codes[a] + lam * codes[b])
    names = getattr(dataset, "domain_names", ("domain 0", "domain 1"))
    figure = new_figure(figsize=(10, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1.2, 1])
    for kind, label, colour in ((0, f"pure {names[0]}", "#1f77b4"),
                                (1, f"pure {names[1]}", "#d62728"), (2, "mixed", "#7f7f7f")):
        where = kinds == kind
        left.scatter(points[where, 0], points[where, 1], s=12, color=colour, label=label,
                     alpha=0.8)
    left.plot(path[:, 0], path[:, 1], "k--o", ms=3, lw=1, label="path between two pure batches")
    left.set_title("global code of each batch (PCA)")
    left.set_xlabel("PC 1")
    left.set_ylabel("PC 2")
    left.legend(fontsize=7)
    right.imshow(grid, cmap="gray", vmin=0, vmax=255)
    right.set_title(f"local codes of {cols // 2} {names[0]} and {cols - cols // 2} {names[1]} "
                    f"images (columns),\nglobal code from the pure {names[0]} batch's (top) to "
                    f"the pure {names[1]} batch's (bottom)", fontsize=8)
    right.set_axis_off()
    return {"experiment_domain_alignment.png": figure,
            "experiment_domain_alignment_grid.png": to_pil(grid)}


def _embed(codes: np.ndarray, reduction: str, seed: int) -> np.ndarray:
    """2-D map of codes: t-SNE (the seed's default) or PCA (its linear KernelPCA)."""
    if reduction == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(codes)
    if reduction != "tsne":
        raise ValueError(f"reduction must be 'tsne' or 'pca', got {reduction!r}")
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, init="pca", random_state=seed,
                perplexity=float(min(30, max(2, (len(codes) - 1) / 3)))).fit_transform(codes)


def _map(points: np.ndarray, kinds: np.ndarray, styles: list[tuple[str, str, str]], title: str
         ) -> Figure:
    """Scatter of `points` with one (label, colour, marker) style per kind value."""
    figure = new_figure(figsize=(6, 5.5), layout="constrained")
    axis = figure.subplots()
    for kind, (label, colour, marker) in enumerate(styles):
        where = kinds == kind
        if where.any():
            axis.scatter(points[where, 0], points[where, 1], s=14, color=colour, marker=marker,
                         label=f"{label} ({int(where.sum())})", alpha=0.75)
    axis.set_title(title, fontsize=10)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.legend(fontsize=8)
    return figure


RANDOM_STYLE = ("random batches", "#1b2e68", ".")
GROUP_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                 "#17becf", "#bcbd22", "#7f7f7f")


def global_structure(run: Any, batches: int = 100, batch_size: int = 0, bn: str = "train",
                     seed: int = 0, attribute: str = "", reduction: str = "tsne",
                     factors: str | tuple[str, ...] = (), values: str | tuple[int, int] = ()
                     ) -> tuple[dict[str, float], dict[str, Any]]:
    """Grouped vs random batches from the global code (module docstring).

    Two forms: on factor data (`_factor_structure`), batches sharing a value of `factors` (a
    name, a comma-separated list or a tuple; default: the run's `data.group_factors`, else
    shape), in the seed's protocol for two `values` of the first factor, and against random
    batches; on labelled data (CelebA with `attribute`, e.g. "Male", or the run's
    `data.attribute`), the seed's form: 3 x `batches` random batches and `batches` of each label value, a 3-class SVM
    (random / attribute / not attribute, the seed's final protocol) and a 2-class one (attribute
    vs not, the seed's dead code, scored here). Scores are 5-fold cross-validated (the seed used
    one 80/20 split).
    """
    from vaelab.data.base import FactorDataset

    dataset = run.dataset(attribute=attribute) if attribute else run.dataset()
    size = batch_size or run.config.train.batch_size
    rng = np.random.default_rng(seed)
    if isinstance(dataset, FactorDataset) and not attribute:
        return _factor_structure(run, dataset, batches, size, bn, seed, reduction, factors,
                                 values, rng)
    labels = getattr(dataset, "labels", None)
    if labels is None or len(np.unique(labels)) < 2:
        raise VaelabError(f"global structure needs factor groups or labels; {dataset.name!r} has "
                          "neither (for CelebA pass attribute='Male', `--attribute Male` on the "
                          "command line)")
    values = np.unique(labels)
    if len(values) != 2:
        raise VaelabError(f"the attribute form needs two label values (attribute / not); "
                          f"{dataset.name!r} has {len(values)}")
    pools = [np.flatnonzero(labels == v) for v in values[::-1]]  # attribute (1) first
    random = [rng.integers(0, len(dataset), size) for _ in range(3 * batches)]
    grouped = [rng.choice(pool, size) for pool in pools for _ in range(batches)]
    name = attribute or getattr(run.config.data.config, "attribute", "") or "label"
    grouped = [grouped[:batches], grouped[batches:]]
    _, scores, figures = _seed_protocol(run, dataset, random, grouped, "attribute",
                                        (name, f"not {name}"), bn, seed, reduction)
    return scores, figures


def _seed_protocol(run: Any, dataset: Any, random: list, grouped: list[list], key: str,
                   names: tuple[str, str], bn: str, seed: int, reduction: str,
                   untrained: Any = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, Any]]:
    """The seed's celeba_attributes protocol on drawn index batches: `random` (3 x n) and the
    two kinds in `grouped` (n each, e.g. Male and Female). Scores: `<key>.*` (2-class, the
    seed's 85 % form), `three.*` (random / first / second, its 66 % form), `experts_ess`; the
    map of all codes and the first 5 images of each kind's first batch; every SVM score with
    its baselines (`_scored`). Returns the features too (`_features`, random batches first)."""
    ess: list[float] = []
    features = _features(run, dataset, [*random, *grouped[0], *grouped[1]], bn, ess=ess,
                         untrained=untrained)
    codes = features["global"]
    kinds = np.concatenate([np.zeros(len(random), dtype=int), np.ones(len(grouped[0]), int),
                            np.full(len(grouped[1]), 2)])
    scores = {f"{key}.{k}": v for k, v in
              _scored(features, kinds[kinds > 0], seed, kinds > 0).items()}
    if ess:
        scores["experts_ess"] = float(np.mean(ess))
    scores.update({f"three.{k}": v for k, v in _scored(features, kinds, seed).items()})
    styles = [RANDOM_STYLE, (names[0], "#106da5", "o"), (names[1], "#7c39bb", "o")]
    figures: dict[str, Any] = {"experiment_global_structure.png": _map(
        _embed(codes, reduction, seed), kinds, styles,
        f"global code per batch ({reduction}): {names[0]} / {names[1]} / random")}
    from vaelab.viz.grid import image_grid, to_pil

    cols = min(5, len(grouped[0][0]))  # the seed saved the first 5 images of each kind
    with torch.no_grad():
        firsts = torch.cat([dataset.batch(grouped[0][0][:cols]),
                            dataset.batch(grouped[1][0][:cols])])
    figures["experiment_global_structure_examples.png"] = to_pil(
        image_grid(firsts.float().cpu(), 2, cols))
    return features, scores, figures


def _pair_values(name: str, count: int, values: str | tuple[int, int]) -> tuple[int, int]:
    """The two value indices of the seed-form comparison: `values` ("A,B" or a pair) or the
    default, the factor's first and last value (smallest / largest, leftmost / rightmost, square
    / heart), and for orientation, which is circular (its last value is next to its first), 0
    and 45 degrees: a square repeats every 90 degrees and an ellipse every 180."""
    if isinstance(values, str):
        try:
            values = tuple(int(v) for v in values.split(",") if v.strip())
        except ValueError:
            raise VaelabError(f"values must be two value indices 'A,B', got {values!r}") from None
    if count < 2:
        raise VaelabError(f"the seed-form comparison needs two values of {name}; this dataset "
                          f"has {count} (choose another factor with --factors)")
    if not values:
        return (0, round(count / 8)) if name == "orientation" else (0, count - 1)
    if len(values) != 2 or values[0] == values[1] or not all(0 <= v < count for v in values):
        raise VaelabError(f"values must be two different value indices of {name} in 0..{count - 1}"
                          f", got {values!r}")
    return int(values[0]), int(values[1])


def _factor_structure(run: Any, dataset: Any, batches: int, size: int, bn: str, seed: int,
                      reduction: str, factors: str | tuple[str, ...],
                      values: str | tuple[int, int], rng: np.random.Generator
                      ) -> tuple[dict[str, float], dict[str, Any]]:
    """The factor-data form of `global_structure`. Scores (5-fold cross-validated SVMs on the
    global codes):

    * `pair.*`: the seed's 2-class protocol with two values A and B of the first factor in place
      of Male and Female: `batches` batches all at value A against `batches` all at value B (the
      seed's CelebA Male/Female figure is 85 %);
    * `three.*`: the seed's final 3-class protocol: 3 x `batches` random batches, A and B;
    * `grouped_vs_random.*`: `batches` batches each sharing one value (any value of `factors`,
      drawn at random) against `batches` random batches, and `which_group.*`, which value.

    A linear classifier is bounded on `grouped_vs_random` for a factor of few values, whatever
    the model learns: under `bn="eval"` the global code is a precision-weighted mean of per-image
    experts, so a random batch's code is exactly the weighted mean of the codes its images of
    each value would get as batches of their own. With few values those sub-batches are large,
    their codes near the group codes, and the random code lies inside the hull of the group
    codes, which no half-space holds without it: with the three shapes equally likely a linear
    SVM gets at most 1/2 + 1/2 x 2/3 = 0.83 up to batch noise. The RBF kernel is not bounded so,
    nor are factors of many values (32 positions leave ~2 images of each value in a random
    batch of 64, whose pooled code can differ from a full group's).
    """
    if isinstance(factors, str):
        factors = tuple(f.strip() for f in factors.split(",") if f.strip())
    factors = tuple(factors) or run.config.data.config.group_factors or ("shape",)
    groups = dataset.group_index(factors)
    first = dataset.group_index(factors[:1])
    a, b = _pair_values(factors[0], len(first), values)
    value_names = _value_names(dataset, factors[0], len(first))
    pairs = [[rng.choice(first[v], size) for _ in range(batches)] for v in (a, b)]
    random = [rng.integers(0, len(dataset), size) for _ in range(3 * batches)]
    untrained = untrained_model(run)
    features, scores, figures = _seed_protocol(
        run, dataset, random, pairs, "pair",
        (f"{factors[0]} = {value_names[a]}", f"{factors[0]} = {value_names[b]}"), bn, seed,
        reduction, untrained)
    which = rng.integers(0, len(groups), batches)
    grouped = [rng.choice(groups[g], size) for g in which]
    grouped_features = _features(run, dataset, grouped, bn, untrained=untrained)
    # the grouped batches and the first `batches` random ones
    mixed = _join(grouped_features, {k: v[:batches] for k, v in features.items()})
    is_grouped = np.repeat([1, 0], batches)
    scores.update({f"grouped_vs_random.{k}": v for k, v in
                   _scored(mixed, is_grouped, seed).items()})
    counts = np.bincount(which, minlength=len(groups))
    if (counts[counts > 0] >= 5).all() and (counts > 0).sum() >= 2:
        scores.update({f"which_group.{k}": v for k, v in
                       _scored(grouped_features, which, seed).items()})
    styles = [("batches sharing " + "+".join(factors), GROUP_COLOURS[0], "o"), RANDOM_STYLE]
    figures["experiment_global_structure_grouped.png"] = _map(
        _embed(mixed["global"], reduction, seed), 1 - is_grouped, styles,
        f"global code per batch ({reduction}): grouped vs random")
    return scores, figures


def _value_names(dataset: Any, factor: str, count: int) -> list[str]:
    """Readable names of a factor's values: dSprites' shape names, else the value indices."""
    named = getattr(dataset, "shape_names", None) if factor == "shape" else None
    return list(named) if named and len(named) == count else [str(v) for v in range(count)]


def mnist_series(run: Any, batches: int = 200, batch_size: int = 0, bn: str = "train",
                 seed: int = 0, random_batches: int = 0, local_points: int = 1000,
                 reduction: str = "tsne", balanced: bool = True
                 ) -> tuple[dict[str, float], dict[str, Any]]:
    """§4.3(b): series batches (even, odd, Fibonacci, primes digits; `vaelab.data.series`) of
    a model trained on random MNIST batches. Scores (the seed gave none): 4-way SVM accuracy of
    the series from the global code (chance 0.25 with `balanced` series), series vs random
    batches, and `experts_ess`, the series batches' mean effective number of experts (a global
    code pooled from a few images of the batch cannot tell the series apart). Figures: the
    global map (`random_batches`, default 2 x `batches`, random batches and the series batches,
    one joint map) and the local map of the first `local_points` local means coloured by
    digit."""
    from vaelab.data.series import SERIES, SeriesBatches

    model, dataset = run.model, run.dataset()
    size = batch_size or run.config.train.batch_size
    sampler = SeriesBatches(getattr(dataset, "labels", None), size, seed, balanced)
    series, kinds = sampler.draw(batches)
    rng = np.random.default_rng(seed + 1)
    random = [rng.integers(0, len(dataset), size) for _ in range(random_batches or 2 * batches)]
    ess: list[float] = []
    untrained = untrained_model(run)
    features = _join(_features(run, dataset, series, bn, ess=ess, untrained=untrained),
                     _features(run, dataset, random, bn, untrained=untrained))
    codes = features["global"]
    scores = {f"series.{k}": v for k, v in
              _scored(features, kinds, seed, slice(0, batches)).items()}
    if ess:
        scores["experts_ess"] = float(np.mean(ess))
    scores["series.chance"] = float(np.bincount(kinds).max() / batches)
    is_series = np.concatenate([np.ones(batches, dtype=int), np.zeros(len(random), dtype=int)])
    scores.update({f"series_vs_random.{k}": v for k, v in
                   _scored(features, is_series, seed).items()})
    all_kinds = np.concatenate([kinds, np.full(len(random), len(SERIES))])
    styles = [(name, GROUP_COLOURS[i], "o") for i, name in enumerate(SERIES)] + [RANDOM_STYLE]
    figures: dict[str, Any] = {"experiment_mnist_series_global.png": _map(
        _embed(codes, reduction, seed), all_kinds, styles, f"Global space ({reduction})")}
    # The local map: the local means of the series batches' first images, coloured by digit.
    encoder = _encoder(model, bn)
    device = next(model.parameters()).device
    means, digits = [], []
    with torch.no_grad():
        for index in series:
            if sum(len(m) for m in means) >= local_points:
                break
            means.append(encoder.posterior(dataset.batch(index).to(device))[
                model.traversal_latent].mean.float().cpu().numpy())
            digits.append(np.asarray(dataset.labels)[index])
    local = np.concatenate(means)[:local_points]
    digit = np.concatenate(digits)[:local_points]
    figures["experiment_mnist_series_local.png"] = _map(
        _embed(local, reduction, seed), digit,
        [(str(d), GROUP_COLOURS[d], "o") for d in range(10)], f"Local space ({reduction})")
    return scores, figures


@torch.no_grad()
def interpolation(run: Any, batches: int = 100, batch_size: int = 0, bn: str = "train",
                  seed: int = 0, steps: int = 7) -> tuple[dict[str, float], dict[str, Any]]:
    """The three interpolation figures (module docstring); no scores."""
    from sklearn.manifold import TSNE

    from vaelab.viz.grid import image_grid, to_pil

    model, dataset = run.model, run.dataset()
    name = _batch_latent(model)
    size = batch_size or run.config.train.batch_size
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    encoder = _encoder(model, bn)
    pair = [rng.integers(0, len(dataset), size) for _ in range(2)]
    posteriors = [encoder.posterior(dataset.batch(b).to(device)) for b in pair]
    betas = [p[name].mean[:1] for p in posteriors]  # (1, Db) each
    locals_ = [p[model.traversal_latent].mean[:1] for p in posteriors]  # first images
    lam = torch.linspace(0, 1, steps, device=device)[:, None]
    beta_path = (1 - lam) * betas[0] + lam * betas[1]  # (steps, Db)
    z_path = (1 - lam) * locals_[0] + lam * locals_[1]  # (steps, Dz)
    rows = [model.generate({model.traversal_latent: z_path,
                            name: beta.expand(steps, -1)}).float().cpu() for beta in beta_path]
    figures: dict[str, Any] = {
        "experiment_interpolation.png": to_pil(image_grid(torch.cat(rows), steps, steps))}
    # The path on a t-SNE map of many batches' global codes.
    others = [rng.integers(0, len(dataset), size) for _ in range(batches)]
    codes = global_codes(model, dataset, others, bn)
    points = TSNE(n_components=2, init="pca", random_state=seed,
                  perplexity=float(min(30, max(2, (batches + steps - 1) / 3)))).fit_transform(
        np.concatenate([codes, beta_path.float().cpu().numpy()]))
    figure = new_figure(figsize=(6, 5.5), layout="constrained")
    axis = figure.subplots()
    domains = getattr(dataset, "domains", None)
    colours = None if domains is None else np.asarray(domains)[[b[0] for b in others]]
    axis.scatter(points[:batches, 0], points[:batches, 1], s=10,
                 c=colours if colours is not None else "#1f3a68", cmap="coolwarm")
    path = points[batches:]
    axis.plot(path[:, 0], path[:, 1], "k-o", ms=3, lw=1)
    axis.plot(*path[0], "ko", ms=8)
    axis.plot(*path[-1], "k>", ms=8)
    axis.set_title("global codes of random batches (t-SNE) and the interpolation path")
    axis.set_xticks([])
    axis.set_yticks([])
    figures["experiment_interpolation_map.png"] = figure
    # Prior interpolation per component.
    Db = model.spec(name).dim
    betas_prior = torch.linspace(1.5, -1.5, steps, device=device)[:, None].expand(steps, Db)
    shifts = torch.linspace(-3, 3, steps, device=device)[:, None]
    grids = []
    for k in range(model.num_clusters or 1):
        cells = []
        for beta in betas_prior:
            mean = model.prior_heads(beta[None])[0][k]  # (Dz,)
            z = mean[None] + shifts  # (steps, Dz): every coordinate shifted together
            cells.append(model.generate({model.traversal_latent: z,
                                         name: beta[None].expand(steps, -1)}).float().cpu())
        grids.append(image_grid(torch.cat(cells), steps, steps))
    for k, grid in enumerate(grids):  # every component
        figures[f"experiment_prior_interpolation_{k}.png"] = to_pil(grid)
    return {}, figures


def _save(filename: str, content: Any) -> bytes:
    from PIL import Image

    from vaelab.viz.losses import figure_to_png
    from vaelab.viz.summary import pil_to_png

    return pil_to_png(content) if isinstance(content, Image.Image) else figure_to_png(content)


EXPERIMENTS.register("interpolation")(interpolation)
EXPERIMENTS.register("domain_alignment")(domain_alignment)
EXPERIMENTS.register("global_structure")(global_structure)
EXPERIMENTS.register("mnist_series")(mnist_series)


def run_experiment(name: str, run_dir: str | Path, device: str = "cpu",
                   **options: Any) -> dict[str, float]:
    """Runs experiment `name` on a run: figures into RUN/plots, scores into metrics.json."""
    from vaelab.io import atomic_write_bytes
    from vaelab.runs import load_run, merge_metrics

    func: Callable = EXPERIMENTS.get(name)
    size = options.get("batch_size", 0)
    if not isinstance(size, int) or size == 1 or size < 0:
        raise VaelabError(f"the global code pools over a batch, so the experiments need batches "
                          f"of >= 2 images; got batch_size={size!r} (--batch-size; 0 or none: "
                          "the run's training batch size)")
    run = load_run(run_dir, device=device)
    _batch_latent(run.model)  # a clear error before any work
    scores, figures = func(run, **options)
    scores = {f"experiment.{name}.{k}": v for k, v in scores.items()}
    for filename, figure in figures.items():
        atomic_write_bytes(run.dir / "plots" / filename, _save(filename, figure))
    merge_metrics(run.dir, scores, section="experiments", name=name, entry={
        **options, "svm": "5-fold cross-validated, standardised codes",
        "codes": "pooled posterior mean of the global latent per batch",
        "baselines": "same SVM on: untrained = the step-0 model's global code (the run's seed), "
                     "mean_pixels = the batch's mean image, mean_local = the batch's mean local "
                     "code; margin = score - the best baseline"})
    return scores
