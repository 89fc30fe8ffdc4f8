"""The GMVAE objective: the negative ELBO of the VAE-GMVAE seed, with its mistakes fixed.

Dilokthanakul et al. (arXiv 1611.02648), eq. 4-6, and psanch21/VAE-GMVAE (its loss terms).
Per image, averaged over the batch and over the S = `samples` draws of (w, z):

    recon = -log p(x | z)                                         reconstruction
    cp    = E_pi[ log q(z|x) - log p(z | w, y) ]                  conditional prior
    kl_w  = KL( q(w|x) || N(0, I) )                               w-prior (closed form)
    kl_y  = KL( pi || Uniform(K) ) = sum_k pi_k log pi_k + log K  y-prior (the paper's z-prior)
    loss  = recon + cp + kl_w + max(kl_y, lambda)

with pi = p(y | w, z) from the model (a learned network, or Bayes' rule: `GMVAE.cluster_posterior`).

Choices and the seed's behaviour (each an option, each tested):

* `likelihood`: "gaussian" is N(x; sigmoid(logits), sigma) with `sigma` the **variance**, as the
  seed's `--sigma` (its name notwithstanding), including the normaliser D/2 log(2 pi sigma) that the
  seed drops (a constant: gradients are the seed's); "bernoulli" is the Bernoulli likelihood.
* `noisy_reconstruction=True` is the seed's reconstruction on a noisy sample
  x~ = mu + sqrt(sigma) eps: its expected value is higher by D/2 and its gradient noisier.
  The default uses the decoder mean.
* `cp_estimator`: "sample" is the seed's one-sample log-ratio at the sampled z (the Gaussian
  constants cancel as sum_k pi_k = 1), an unbiased estimate of the ELBO's term
  E_q(z|x)[sum_k pi_k(z) (log q(z|x) - log p(z|w, k))]. "analytic" is
  sum_k pi_k KL(q(z|x) || p(z|w, y=k)) with pi at the sampled z: Dilokthanakul et al.'s eq. 5
  and their code's `ExpectedKLDivergence`. It is **not** a lower-variance estimate of the same
  term: pi depends on the sampled z, so E_z[sum_k pi_k(z) KL_k] is another number than
  E_z[sum_k pi_k(z) log-ratio_k(z)], a different objective, not in general a bound. A 1-D case:
  q = N(0, 1), components N(-+2, 1), the Bayes-rule pi: E[cp + kl_y] is 0.943 nats sampled and
  2.402 analytic (tests/objectives/test_gmvae_oracles.py). With the Bayes-rule posterior and
  lambda = 0 the sampled form is, per row, exactly
  cp + kl_y = log q(z|x) - logsumexp_k log N(z; mu_k, v_k) + log K, the one-sample KL from
  q(z|x) to the mixture (1/K) sum_k p(z|w, k).
* `cp_pi_gradient`: "exact" (default) is autograd's gradient. "negated" is the gradient of
  Dilokthanakul et al.'s code (Nat-D/GMVAE, main.lua, `gradQz:add(...):mul(-1)`): whenever the
  thresholded y-prior term (kl_y, or the information I with `min_information_on="information"`)
  is above lambda, the gradient of cp with respect to pi is negated (the gradients of cp through
  q(z|x) and the component Gaussians, and the y-prior term's own, are autograd's). The loss value
  is unchanged. Below lambda the two agree (the y-prior gradient is then cut by the threshold in
  both). It follows no objective; it is offered to reproduce the code, not recommended.
* `y_prior`: "forward" is the KL above (the seed since 426e592); "reverse" is KL(Uniform || pi),
  the seed before that commit. The seed adds 1e-10 inside its logs; log-softmax is used here.
* `min_information` = lambda > 0 is the paper's minimum-information constraint against cluster
  degeneracy (a free-bits threshold on the batch-mean y-prior term); 0 (the seed): none.
* `min_information_on="information"` (vaelab's, not the paper's) splits the y-prior term exactly,
  E_x KL(pi_x || U) = KL(pi_bar || U) + I(x; y), with pi_bar the mean cluster posterior of the
  batch (a minibatch estimate of the aggregate, as beta-TCVAE's), and applies the threshold to the
  information I only: y_term = balance * KL(pi_bar || U) + max(I, lambda). With lambda = log K the
  clusters' information is free and only an unbalanced use of the K clusters is paid, at weight
  `balance` (1: the ELBO's own weight; lambda = 0 and balance = 1 give the ELBO exactly).
  The minibatch KL(pi_bar_B || U) is biased upward as an estimate of the aggregate's
  KL(pi_bar || U) (convexity): by about (1 / 2B) sum_k Var(pi_k) / pi_bar_k, which is (K - 1) / 2B
  for one-hot posteriors (the Bayes-rule pi): 0.07 nats at K = 30, B = 200. Its gradient pushes
  toward balance within each batch as well as across batches.
  Why: with the Bayes-rule posterior, pi is nearly one-hot from the start (kl_y ~ log K), so the
  paper's max(kl_y, lambda) never binds; the failure on MNIST here is not the uniform degeneracy
  the constraint targets but a few components taking every image (3-4 of 30 used after 5,000
  steps), which nothing in the ELBO penalises (kl_y = log K whichever component is picked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vaelab.distributions import (
    bernoulli_log_likelihood,
    expected_component_kl,
    gaussian_log_likelihood,
    kl_categorical_uniform,
    kl_normal_normal,
)
from vaelab.models.gmvae import GMVAEOutput
from vaelab.objectives.base import Objective
from vaelab.registry import OBJECTIVES

__all__ = ["GMVAEObjective", "GMVAEObjectiveConfig"]

LIKELIHOODS = ("gaussian", "bernoulli")
CP_ESTIMATORS = ("sample", "analytic")
CP_PI_GRADIENTS = ("exact", "negated")
Y_PRIORS = ("forward", "reverse")
MIN_INFORMATION_ON = ("kl", "information")


@dataclass(frozen=True, kw_only=True)
class GMVAEObjectiveConfig:
    """The GMVAE's negative ELBO; see the module docstring."""

    likelihood: str = "gaussian"  # "gaussian" (variance sigma, the seed) | "bernoulli"
    sigma: float = 0.1  # the Gaussian likelihood's VARIANCE (the seed's --sigma; its examples 0.001)
    noisy_reconstruction: bool = False  # the seed's recon on mu + sqrt(sigma) eps
    cp_estimator: str = "sample"  # "sample" (seed, the ELBO) | "analytic" (Dilokthanakul et al.)
    cp_pi_gradient: str = "exact"  # "exact" | "negated" (Nat-D/GMVAE's code; module docstring)
    samples: int = 1  # M Monte Carlo draws of (w, z) per image
    min_information: float = 0.0  # lambda of the minimum-information constraint (0: off)
    y_prior: str = "forward"  # "forward" KL(pi || U) | "reverse" KL(U || pi) (the seed < 2020)
    min_information_on: str = "kl"  # "kl" (the paper) | "information" (the MI part of kl_y only)
    balance: float = 1.0  # weight of KL(pi_bar || U) when min_information_on="information"

    def __post_init__(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.sigma <= 0:
            raise ValueError(f"sigma (a variance) must be > 0, got {self.sigma}")
        if self.cp_estimator not in CP_ESTIMATORS:
            raise ValueError(f"cp_estimator must be one of {CP_ESTIMATORS}, got "
                             f"{self.cp_estimator!r}")
        if self.cp_pi_gradient not in CP_PI_GRADIENTS:
            raise ValueError(f"cp_pi_gradient must be one of {CP_PI_GRADIENTS}, got "
                             f"{self.cp_pi_gradient!r}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.min_information < 0:
            raise ValueError(f"min_information must be >= 0, got {self.min_information}")
        if self.y_prior not in Y_PRIORS:
            raise ValueError(f"y_prior must be one of {Y_PRIORS}, got {self.y_prior!r}")
        if self.min_information_on not in MIN_INFORMATION_ON:
            raise ValueError(f"min_information_on must be one of {MIN_INFORMATION_ON}, got "
                             f"{self.min_information_on!r}")
        if self.min_information_on == "information" and self.y_prior != "forward":
            raise ValueError("min_information_on='information' splits the forward y-prior KL; "
                             "use y_prior='forward'")
        if self.balance < 0:
            raise ValueError(f"balance must be >= 0, got {self.balance}")
        if self.balance != 1.0 and self.min_information_on != "information":
            raise ValueError("balance weighs the marginal part of the split y-prior term; set "
                             "min_information_on='information' to use it")
        if self.noisy_reconstruction and self.likelihood != "gaussian":
            raise ValueError("noisy_reconstruction applies to the gaussian likelihood only")


def conditional_prior_term(out: GMVAEOutput, pi: Tensor, estimator: str) -> Tensor:
    """cp per draw, (S B,): E_pi[log q(z|x) - log p(z|w, y)] (see the module docstring)."""
    return expected_component_kl(out.mu_z.repeat(out.samples, 1),
                                 out.logvar_z.repeat(out.samples, 1), out.z, pi,
                                 out.prior_mu, out.prior_logvar, estimator)


@OBJECTIVES.register("gmvae")
class GMVAEObjective(Objective):
    """recon + cp + kl_w + max(kl_y, lambda), the GMVAE's negative ELBO (module docstring)."""

    config_class = GMVAEObjectiveConfig
    accepts = (GMVAEOutput,)

    def __init__(self, config: GMVAEObjectiveConfig = GMVAEObjectiveConfig()) -> None:
        super().__init__(config)

    def compute(self, model: nn.Module, batch: Any, step: Tensor) -> dict[str, Tensor]:
        """The terms at `samples` draws of (w, z), in train and eval mode alike: validation's
        `valid/loss` is then a Monte Carlo estimate of the training objective (the ELBO with
        lambda = 0), as both seeds compute it, not the plug-in at the posterior means."""
        return self(model(batch.x, samples=self.config.samples, sample=True), batch.x, step)

    def _log_likelihood(self, logits: Tensor, x: Tensor) -> Tensor:
        """log p(x | z) per draw, (S B,)."""
        config = self.config
        if config.likelihood == "bernoulli":
            return bernoulli_log_likelihood(logits, x, reduction="none")
        mean = torch.sigmoid(logits)
        if config.noisy_reconstruction:
            mean = mean + math.sqrt(config.sigma) * torch.randn_like(mean)
        return gaussian_log_likelihood(x, mean, config.sigma, reduction="none")

    def forward(self, out: GMVAEOutput, x: Tensor, step: Tensor) -> dict[str, Tensor]:
        config = self.config
        samples = out.samples
        x_rep = x.repeat(samples, *([1] * (x.dim() - 1)))  # (S B, C, H, W), sample-major
        recon = -self._log_likelihood(out.logits, x_rep).mean()
        log_pi = torch.log_softmax(out.cluster_logits, dim=-1)  # (S B, K)
        pi = log_pi.exp()
        kl_w = kl_normal_normal(out.mu_w, out.logvar_w)
        if config.y_prior == "forward":
            kl_y = kl_categorical_uniform(out.cluster_logits)
        else:  # KL(U || pi) = -log K - (1/K) sum_k log pi_k
            kl_y = (-math.log(log_pi.shape[-1]) - log_pi.mean(-1)).mean()
        if config.min_information_on == "information":
            # E_x KL(pi_x || U) = KL(pi_bar || U) + I(x; y), pi_bar the batch's mean posterior:
            # the threshold frees the information only; the marginal (cluster balance) is paid.
            log_bar = torch.logsumexp(log_pi, dim=0) - math.log(log_pi.shape[0])
            marginal = (log_bar.exp() * (log_bar + math.log(log_pi.shape[-1]))).sum()
            information = kl_y - marginal
            thresholded = information
            y_term = config.balance * marginal + torch.clamp(information, min=config.min_information)
        elif config.min_information:
            thresholded = kl_y
            y_term = torch.clamp(kl_y, min=config.min_information)
        else:
            thresholded = y_term = kl_y
        pi_cp = pi
        if config.cp_pi_gradient == "negated":
            # Nat-D/GMVAE: the value pi exactly (pi - pi is 0), the gradient -1 above lambda
            sign = torch.where(thresholded.detach() > config.min_information, -1.0, 1.0)
            pi_cp = pi.detach() + sign * (pi - pi.detach())
        cp = conditional_prior_term(out, pi_cp, config.cp_estimator).mean()
        loss = recon + cp + kl_w + y_term
        # utilised clusters in the batch: how many components receive an argmax (detached)
        used = torch.zeros(pi.shape[-1], device=pi.device).index_fill_(
            0, pi.argmax(-1), 1.0).sum()
        terms = {"loss": loss, "recon": recon, "cp": cp, "kl_w": kl_w, "kl_y": kl_y}
        if config.min_information_on == "information":
            terms["kl_y_marginal"] = marginal
        return {**terms, "clusters_used": used.detach()}
