"""What each registered metric claims, for users and for the property tests.

No metric needs a full factorial grid: every one draws points with `sample_factors`,
`index_of_factors` and `resample_with_fixed_factor`, and `mig_chen` groups by factor labels.
"""

from __future__ import annotations

__all__ = [
    "BOUNDED_0_1",
    "HEADLINE",
    "describe_score",
    "NEEDS_GRID",
    "NEEDS_POSTERIOR",
    "PERMUTATION_INVARIANT",
    "RESCALING_INVARIANT",
    "SUPERVISED",
    "UNSUPERVISED",
]

# Metrics that need ground-truth factors (or, for clustering, labels).
SUPERVISED = frozenset({
    "mig", "mig_chen", "aam", "factor_vae_score", "beta_vae_score", "dci", "dci_fast", "sap",
    "modularity_explicitness", "irs",
})
UNSUPERVISED = frozenset({
    "gaussian_total_correlation", "gaussian_wasserstein_correlation", "mutual_info_score",
    "active_units", "kl_decomposition",
})
# Metrics that need the posterior (mu, logvar), not codes alone.
NEEDS_POSTERIOR = frozenset({"mig_chen", "kl_decomposition"})
NEEDS_GRID: frozenset[str] = frozenset()

# Same scores after permuting the latent dimensions (kl_decomposition: with its posterior; it
# draws posterior samples, so its test lives in test_decomposition.py).
PERMUTATION_INVARIANT = frozenset(SUPERVISED | UNSUPERVISED)
# Same scores after multiplying any latent by a positive constant (mig_chen: together with its
# posterior; factor_vae_score: for latents that stay above the pruning threshold). sap and
# beta_vae_score are, as in disentanglement_lib, not: only with their scaling="standardize".
RESCALING_INVARIANT = frozenset({
    "mig", "mig_chen", "aam", "factor_vae_score", "dci", "dci_fast",
    "modularity_explicitness", "gaussian_total_correlation", "mutual_info_score",
})
# Score keys that lie in [0, 1], per metric.
BOUNDED_0_1 = {
    "mig": ("mig",),
    "mig_chen": ("mig_chen", "aam_chen"),
    "aam": ("aam",),
    "factor_vae_score": ("factor_vae_score.train_accuracy", "factor_vae_score.eval_accuracy"),
    "beta_vae_score": ("beta_vae_score.train_accuracy", "beta_vae_score.eval_accuracy"),
    "dci": ("dci.disentanglement", "dci.completeness", "dci.informativeness_test"),
    "dci_fast": ("dci_fast.disentanglement", "dci_fast.completeness",
                 "dci_fast.informativeness_test"),
    "sap": ("sap",),
    "modularity_explicitness": ("modularity", "explicitness_test"),
    "irs": ("irs",),
    "clustering": ("clustering.nmi", "clustering.accuracy"),
}
# The score a one-line summary shows for each metric.
HEADLINE = {
    "mig": "mig", "mig_chen": "mig_chen", "aam": "aam",
    "factor_vae_score": "factor_vae_score.eval_accuracy",
    "beta_vae_score": "beta_vae_score.eval_accuracy",
    "dci": "dci.disentanglement", "dci_fast": "dci_fast.disentanglement", "sap": "sap",
    "modularity_explicitness": "modularity", "irs": "irs",
    "gaussian_total_correlation": "gaussian_total_correlation",
    "gaussian_wasserstein_correlation": "gaussian_wasserstein_correlation",
    "mutual_info_score": "mutual_info_score", "active_units": "active_units",
    "kl_decomposition": "kl_decomposition.tc",
    "clustering": "clustering.nmi",
}

# One line per score key: what it measures and which way is better (+1 higher, -1 lower, 0
# neither). Per-factor keys ("mig.shape") and unknown keys fall back in `describe_score`.
_HIGHER, _LOWER, _NEITHER = 1, -1, 0
SCORE_MEANINGS: dict[str, tuple[str, int]] = {
    "mig": ("gap in normalised mutual information between the two latents that best explain "
            "each factor, averaged over factors (0-1)", _HIGHER),
    "aam": ("axis alignment: share of each factor's information held by its best latent (0-1)",
            _HIGHER),
    "mig_chen": ("MIG from the posterior's mutual information (Chen et al. 2018; 0-1)", _HIGHER),
    "aam_chen": ("axis alignment from the posterior's mutual information (0-1)", _HIGHER),
    "factor_vae_score.eval_accuracy": ("held-out accuracy of guessing which factor was held "
                                       "fixed from the least-varying latent (0-1)", _HIGHER),
    "factor_vae_score.train_accuracy": ("the same on the classifier's training points",
                                        _HIGHER),
    "beta_vae_score.eval_accuracy": ("held-out accuracy of a linear classifier guessing the "
                                     "fixed factor from code differences (0-1)", _HIGHER),
    "beta_vae_score.train_accuracy": ("the same on the classifier's training points", _HIGHER),
    "disentanglement": ("DCI: each latent predicts at most one factor (0-1)", _HIGHER),
    "completeness": ("DCI: each factor is predicted by a single latent (0-1)", _HIGHER),
    "informativeness_test": ("DCI: held-out accuracy of predicting the factors from the codes",
                             _HIGHER),
    "informativeness_train": ("DCI: the same on the training points", _HIGHER),
    "sap": ("gap in linear predictability between the two best latents per factor (0-1)",
            _HIGHER),
    "modularity": ("each latent depends on one factor only (0-1)", _HIGHER),
    "explicitness_test": ("held-out AUC of a linear classifier recovering each factor value",
                          _HIGHER),
    "explicitness_train": ("the same AUC on the training points", _HIGHER),
    "irs": ("interventional robustness: latents stay put when nuisance factors change (0-1)",
            _HIGHER),
    "gaussian_total_correlation": ("total correlation of a Gaussian fitted to the codes, nats "
                                   "(0: independent latents)", _LOWER),
    "gaussian_wasserstein_correlation": ("Wasserstein distance of the codes' covariance from a "
                                         "diagonal one", _LOWER),
    "gaussian_wasserstein_correlation_norm": ("the same, normalised by the variances", _LOWER),
    "mutual_info_score": ("average mutual information between pairs of latents", _LOWER),
    "active_units": ("latents whose posterior mean varies over the data (more is not better)",
                     _NEITHER),
    "active_units.fraction": ("the same as a fraction of all latents", _NEITHER),
    "kl_decomposition.mi": ("index-code mutual information of the KL, nats", _NEITHER),
    "kl_decomposition.tc": ("total correlation of the aggregate posterior, nats", _LOWER),
    "kl_decomposition.dw_kl": ("dimension-wise KL of the aggregate posterior, nats", _LOWER),
    "nmi": ("normalised mutual information between clusters and labels (0-1)", _HIGHER),
    "ari": ("adjusted Rand index of clusters against labels (1: identical)", _HIGHER),
    "accuracy": ("accuracy of the best cluster-to-label matching (0-1)", _HIGHER),
    "hungarian_accuracy": ("accuracy of the best one-to-one cluster-to-label matching (0-1)",
                           _HIGHER),
}


# `vaelab experiment` scores: "experiment.<name>.<form>.<kernel>_svm" (the batches the SVM tells
# apart from their global codes) and a few plain ones.
EXPERIMENT_FORMS: dict[str, str] = {
    "domain_alignment.pure": "pure domain A vs pure domain B batches",
    "domain_alignment.three": "pure A, pure B and mixed batches",
    "global_structure.pair": "batches all at value A vs all at value B of a factor (the seed's "
                             "Male/Female form)",
    "global_structure.three": "random, value-A and value-B (or attribute / not) batches (the "
                              "seed's 3-class form)",
    "global_structure.attribute": "attribute vs not-attribute batches (the seed's Male/Female "
                                  "form)",
    "global_structure.grouped_vs_random": "batches sharing a factor value vs random batches "
                                          "(bounded for a linear SVM)",
    "global_structure.which_group": "which value a grouped batch shares",
    "mnist_series.series": "the digit series of a batch (even, odd, Fibonacci, primes)",
    "mnist_series.series_vs_random": "series batches vs random batches",
}
KERNELS = {"linear_svm": "linear", "rbf_svm": "RBF"}


EXPERIMENT_BASELINES = {
    "untrained": "the untrained (step-0) model's global code",
    "mean_pixels": "the batch's mean image",
    "mean_local": "the mean of the batch's local codes",
}


def _describe_experiment(key: str) -> tuple[str, int]:
    rest = key.removeprefix("experiment.")
    head, _, baseline = rest.rpartition(".baseline.")
    if head and baseline in EXPERIMENT_BASELINES:
        meaning = _describe_experiment("experiment." + head)[0]
        if meaning:
            return (f"null baseline: the same score from {EXPERIMENT_BASELINES[baseline]} in "
                    "place of the global code", _NEITHER)
    if rest.endswith(".margin") and _describe_experiment(key.removesuffix(".margin"))[0]:
        return ("the score minus its best null baseline (untrained model, mean image, mean "
                "local code): <= 0 says nothing about the global code", _HIGHER)
    if rest.endswith(".experts_ess"):
        return ("effective number of images pooled into each batch's global code (1: one image "
                "decides it; the batch size: all count alike)", _NEITHER)
    if rest.endswith(".series.chance"):
        return "chance accuracy of the series task (its largest class share)", _NEITHER
    form, _, kernel = rest.rpartition(".")
    if form in EXPERIMENT_FORMS and kernel in KERNELS:
        return (f"{KERNELS[kernel]} SVM accuracy (5-fold cross-validated) of telling "
                f"{EXPERIMENT_FORMS[form]} from the global code (0-1)", _HIGHER)
    return "", _NEITHER


def describe_score(key: str) -> tuple[str, int]:
    """(one-line meaning, direction) of a score key of metrics.json: direction +1 when higher is
    better, -1 when lower is better, 0 when neither (counts, sizes, unknown keys)."""
    if key in SCORE_MEANINGS:
        return SCORE_MEANINGS[key]
    if key.startswith("experiment."):
        return _describe_experiment(key)
    head, _, tail = key.rpartition(".")
    if tail in SCORE_MEANINGS and head.split(".")[0] in ("dci", "dci_fast", "clustering",
                                                         "clusters"):
        return SCORE_MEANINGS[tail]
    if head in SCORE_MEANINGS and tail:  # a per-factor value: "mig.shape"
        return f"{head} of factor {tail} alone", SCORE_MEANINGS[head][1]
    if tail in ("num_active_dims", "num_dims", "batch_size", "used"):
        return {"used": "clusters used"}.get(tail, tail.replace("_", " ")), _NEITHER
    return "", _NEITHER
