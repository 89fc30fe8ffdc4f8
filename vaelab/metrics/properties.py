"""What each registered metric claims, for users and for the property tests.

No metric needs a full factorial grid: every one draws points with `sample_factors`,
`index_of_factors` and `resample_with_fixed_factor`, and `mig_chen` groups by factor labels.
"""

from __future__ import annotations

__all__ = [
    "BOUNDED_0_1",
    "HEADLINE",
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
