"""One-line mutation testing of the formula lines: each mutant must fail at least one test.

    python tools/mutate.py [--only NAME_SUBSTRING] [--timeout 240]

Every entry of MUTANTS replaces one exact snippet of one file (a sign flip, a wrong constant,
a swapped argument, a dropped term), runs the targeted test files with `pytest -x -n 0` under a
timeout, restores the file, and reports "killed" (a test failed), "SURVIVED" or "timeout". The
snippet must occur exactly once, so a refactor that moves a formula makes the entry fail loudly
instead of silently testing nothing. Run from the repository root; it edits files in place and
always restores them (also on Ctrl-C). Exit status 1 when a mutant survives.

The list holds the planted bugs of issue 12 plus operator mutations of the other formula lines
of objectives/, metrics/ and the distribution terms. Add one when you add a formula.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJ = ["tests/objectives/test_factor.py", "tests/objectives/test_tc.py",
       "tests/objectives/test_nonsyn.py", "tests/objectives/test_elbo.py",
       "tests/objectives/test_terms.py"]
MET = ["tests/metrics/test_known_answers.py", "tests/metrics/test_info.py",
       "tests/metrics/test_mig_chen.py", "tests/metrics/test_metrics.py"]
DIST = ["tests/test_distributions.py", "tests/objectives/test_terms.py"]
GM = ["tests/objectives/test_gmvae.py", "tests/models/test_gmvae_model.py",
      "tests/metrics/test_clusters.py"]
CONTRACT_LOSS = ["tests/test_contract.py::test_loss_gives_every_parameter_a_finite_gradient"]
MODEL_CONTRACT = ["tests/models/test_model_contract.py"]
DIP = ["tests/objectives/test_dip.py"]
UDR = ["tests/metrics/test_udr.py"]
WEAK = ["tests/objectives/test_weak.py"]
PAIRS = ["tests/data/test_pairs.py"]
BENCH = ["tests/data/test_benchmark_datasets.py"]
VARIANTS = ["tests/data/test_dsprites_variants.py"]

# (name, file, original snippet, mutated snippet, test files)
MUTANTS: list[tuple[str, str, str, str, list[str]]] = [
    # -- objectives: the planted bugs
    ("factor: TC sign flipped", "vaelab/objectives/factor.py",
     "tc = (logits_joint[:, 0] - logits_joint[:, 1]).mean()",
     "tc = (logits_joint[:, 1] - logits_joint[:, 0]).mean()", OBJ),
    ("factor: permuted codes labelled joint", "vaelab/objectives/factor.py",
     "F.cross_entropy(logits_perm, joint_label + 1)",
     "F.cross_entropy(logits_perm, joint_label)", OBJ),
    ("factor: permute_dims removed", "vaelab/objectives/factor.py",
     "z_perm = permute_dims(out.z[half:2 * half].detach())",
     "z_perm = out.z[half:2 * half].detach()", OBJ),
    ("factor: permuted codes from the joint half", "vaelab/objectives/factor.py",
     "z_perm = permute_dims(out.z[half:2 * half].detach())",
     "z_perm = permute_dims(out.z[:half].detach())", OBJ),
    ("factor: VAE terms on the whole batch", "vaelab/objectives/factor.py",
     "terms = elbo_terms(first, x[:half], self.config.likelihood)",
     "terms = elbo_terms(out, x, self.config.likelihood)", OBJ),
    ("factor: discriminator loss factor 1", "vaelab/objectives/factor.py",
     "disc_loss = 0.5 * (F.cross_entropy", "disc_loss = 1.0 * (F.cross_entropy", OBJ),
    ("factor: gamma dropped", "vaelab/objectives/factor.py",
     "weight * self.config.gamma * tc", "weight * tc", OBJ),
    ("tc: estimator option ignored", "vaelab/objectives/tc.py",
     "self.dataset_size, estimator=config.estimator,",
     "self.dataset_size, estimator=\"mss\",", OBJ),
    ("tc: mws constant log N only", "vaelab/objectives/tc.py",
     "log_nb = math.log(dataset_size * batch_size)", "log_nb = math.log(dataset_size)", OBJ),
    ("tc: mss diagonal weight 1/M", "vaelab/objectives/tc.py",
     "weights[rows, rows] = 1.0 / n", "weights[rows, rows] = 1.0 / m", OBJ),
    ("tc: mss log W added D times", "vaelab/objectives/tc.py",
     "log_qz = torch.logsumexp(mat.sum(-1) + log_weights, dim=1)  # (B,), log W added once",
     "log_qz = torch.logsumexp(mat.sum(-1) + log_weights * z.shape[1], dim=1)", OBJ),
    ("tc: mi sign", "vaelab/objectives/tc.py",
     "mi = (log_qz_x - log_qz).mean()", "mi = (log_qz - log_qz_x).mean()", OBJ),
    ("tc: alpha and beta swapped", "vaelab/objectives/tc.py",
     "config.alpha * mi + config.beta * tc", "config.beta * mi + config.alpha * tc", OBJ),
    ("nonsyn: omega in the first round", "vaelab/objectives/nonsyn.py",
     "threshold = i_new if not best else omega * i_new", "threshold = omega * i_new", OBJ),
    ("nonsyn: omega never applied", "vaelab/objectives/nonsyn.py",
     "threshold = i_new if not best else omega * i_new", "threshold = i_new", OBJ),
    # -- distribution terms
    ("terms: gaussian KL without the -1", "vaelab/distributions.py",
     "0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)",
     "0.5 * (mu.pow(2) + logvar.exp() - 0.0 - logvar)", DIST),
    ("log_normal: variance instead of precision", "vaelab/distributions.py",
     "(x - mu).pow(2) * torch.exp(-logvar))", "(x - mu).pow(2) * torch.exp(logvar))", DIST),
    # -- run files and loggers (issue 31)
    ("merge_metrics: new scores replace the file", "vaelab/runs.py",
     "    content.update(scores)\n    proto = content", "    content = dict(scores)\n    proto = content",
     ["tests/test_eval_cli.py"]),
    ("csv log: resume drops the checkpoint's own row", "vaelab/io.py",
     "float(r[0]) <= resume_step", "float(r[0]) < resume_step", ["tests/test_run_files.py"]),
    ("dynamic binarisation rounds instead of drawing", "vaelab/data/base.py",
     "batch.x = torch.bernoulli(batch.x)", "batch.x = batch.x.round()",
     ["tests/test_run_files.py"]),
    ("mlflow: rows logged one step late", "vaelab/loggers.py",
     "float(v), now, step)", "float(v), now, step + 1)", ["tests/test_loggers.py"]),
    ("wandb: validation rows dropped", "vaelab/loggers.py",
     "    def on_validation(self, ctx: Any, step: int, row: dict[str, float]) -> None:\n"
     "        if self.run is not None:",
     "    def on_validation(self, ctx: Any, step: int, row: dict[str, float]) -> None:\n"
     "        if self.run is None:", ["tests/test_loggers.py"]),
    # -- metrics: the planted bugs
    ("wasserstein halved", "vaelab/metrics/unsupervised.py",
     "return float(2 * np.trace(cov) - 2 * np.real(np.trace(root)))",
     "return float(np.trace(cov) - np.real(np.trace(root)))", MET),
    ("mutual_info_score / D^2", "vaelab/metrics/unsupervised.py",
     "mi.sum() / (d * d - d)", "mi.sum() / (d * d)", MET),
    ("irs quantile ignored", "vaelab/metrics/irs.py",
     "np.quantile(np.abs(block - block.mean(axis=0)), diff_quantile, axis=0)",
     "np.abs(block - block.mean(axis=0)).max(axis=0)", MET),
    ("irs factors not binned", "vaelab/metrics/irs.py",
     "labels = discretize(labels, num_bins)", "labels = labels", MET),
    ("modularity without (K-1)", "vaelab/metrics/modularity.py",
     "(top * (f - 1))", "(top)", MET),
    ("dci entropy base D", "vaelab/metrics/dci.py",
     "scipy.stats.entropy(importance.T + 1e-11, base=f)",
     "scipy.stats.entropy(importance.T + 1e-11, base=d)", MET),
    ("dci completeness base F", "vaelab/metrics/dci.py",
     "scipy.stats.entropy(importance + 1e-11, base=d)",
     "scipy.stats.entropy(importance + 1e-11, base=f)", MET),
    ("factor_vae_score eval from training votes", "vaelab/metrics/factor_vae_score.py",
     "evaluation[rows, classifier].sum() / max(evaluation.sum(), 1)",
     "train[rows, classifier].sum() / max(train.sum(), 1)", MET),
    ("factor_vae_score local variance not normalised", "vaelab/metrics/factor_vae_score.py",
     "var(axis=1, ddof=1) / scale[active] ** 2", "var(axis=1, ddof=1)", MET),
    ("mig_chen by log|V|", "vaelab/metrics/mig_chen.py",
     "per_factor = (ordered[0] - second) / discrete_entropy(labels)",
     "per_factor = (ordered[0] - second) / np.log(labels.max(axis=0) + 1)", MET),
    ("mig by log|V|", "vaelab/metrics/mig.py",
     "entropy = discrete_entropy(factors)", "entropy = np.log(factors.max(axis=0) + 1.0)", MET),
    ("sap standardises by default", "vaelab/metrics/sap.py",
     'scaling: str = "none",', 'scaling: str = "standardize",', MET),
    ("beta_vae_score standardises by default", "vaelab/metrics/beta_vae_score.py",
     'scaling: str = "none",', 'scaling: str = "standardize",', MET),
    ("sap second-best dropped", "vaelab/metrics/sap.py",
     "return ordered[0] - (ordered[1] if len(ordered) > 1 else 0.0)", "return ordered[0]", MET),
    ("aam rest = second only", "vaelab/metrics/mig.py",
     "rest = ordered[1:].sum(axis=0)", "rest = ordered[1]", MET),
    # (Counting the edges from the right, np.minimum(np.digitize(x, edges[1:]), num_bins - 1),
    # is an equivalent mutant: the same bins for every x. Merging the last two bins is not.)
    ("discretize last two bins merged", "vaelab/metrics/_info.py",
     "out[:, j] = np.digitize(codes[:, j], edges[:-1]) - 1",
     "out[:, j] = np.digitize(codes[:, j], edges[:-2]) - 1", MET),
    ("discretize always float64", "vaelab/metrics/_info.py",
     "if codes.dtype not in (np.float32, np.float64):", "if True:", MET),
    ("gaussian TC sign", "vaelab/metrics/unsupervised.py",
     "0.5 * (np.sum(np.log(np.diag(cov))) - logdet)",
     "0.5 * (logdet - np.sum(np.log(np.diag(cov))))", MET),
    ("active units ddof / threshold >=", "vaelab/metrics/unsupervised.py",
     "codes.var(axis=0, ddof=1) > threshold", "codes.var(axis=0, ddof=1) > 10 * threshold", MET),
    # -- the distribution pieces
    ("kl normal-normal: prior variance not divided", "vaelab/distributions.py",
     "+ (logvar_q.exp() + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p) - 1.0)",
     "+ (logvar_q.exp() + (mu_q - mu_p).pow(2)) - 1.0)", DIST),
    ("kl categorical: log K dropped", "vaelab/distributions.py",
     "per_item = (log_pi.exp() * log_pi).sum(-1) + math.log(logits.shape[-1])",
     "per_item = (log_pi.exp() * log_pi).sum(-1)", DIST),
    ("gaussian ll: variance as std", "vaelab/distributions.py",
     "(x - mean).pow(2) / variance)", "(x - mean).pow(2) / variance.sqrt())", DIST),
    ("laplace ll: normaliser 2b -> b", "vaelab/distributions.py",
     "elementwise = -torch.log(2.0 * scale)", "elementwise = -torch.log(scale)", DIST),
    ("reduce_batch mean -> sum", "vaelab/distributions.py",
     'return per_item.sum() if reduction == "sum" else per_item.mean()',
     "return per_item.sum()", DIST),
    # -- the GMVAE objective and the clustering scores
    ("mixture kl sample: log q minus sign flipped", "vaelab/distributions.py",
     "return log_q - (pi * log_p).sum(-1)", "return log_q + (pi * log_p).sum(-1)",
     GM + ["tests/objectives/test_ugvae.py"]),
    ("mixture kl analytic: pi dropped", "vaelab/distributions.py",
     "return (pi * kl).sum(-1)", "return kl.mean(-1)", GM + ["tests/objectives/test_ugvae.py"]),
    ("gmvae: kl_w dropped from the loss", "vaelab/objectives/gmvae.py",
     "loss = recon + cp + kl_w + y_term", "loss = recon + cp + y_term", GM),
    ("gmvae: min information ignored", "vaelab/objectives/gmvae.py",
     "y_term = torch.clamp(kl_y, min=config.min_information)", "y_term = kl_y", GM),
    ("gmvae paper architecture: heads split as z, w, z, w", "vaelab/models/gmvae.py",
     "self.sizes = (z_dim, z_dim, w_dim, w_dim)", "self.sizes = (z_dim, w_dim, z_dim, w_dim)", GM),
    ("gmvae paper architecture: no BatchNorm in the trunk", "vaelab/models/gmvae.py",
     "nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU()",
     "nn.Linear(n_in, hidden), nn.Identity(), nn.ReLU()", GM),
    ("gmvae paper architecture: ReLU prior trunk", "vaelab/models/gmvae.py",
     "nn.Tanh() if paper else nn.ReLU()", "nn.ReLU()", GM),
    ("gmvae paper architecture: the seed's variance floor", "vaelab/models/gmvae.py",
     'logvar = raw if self.paper else _log_variance(raw, VARIANCE_FLOOR)',
     "logvar = _log_variance(raw, VARIANCE_FLOOR)", GM),
    ("gmvae paper architecture: a one-layer decoder", "vaelab/models/gmvae.py",
     "_DenseDecoder(config.z_dim, config.hidden_dim, self.image_shape, 2)",
     "_DenseDecoder(config.z_dim, config.hidden_dim, self.image_shape, 1)", GM),
    ("gmvae: noise with the variance, not the std", "vaelab/objectives/gmvae.py",
     "mean = mean + math.sqrt(config.sigma) * torch.randn_like(mean)",
     "mean = mean + config.sigma * torch.randn_like(mean)", GM),
    ("gmvae reverse y prior: mean -> sum", "vaelab/objectives/gmvae.py",
     "kl_y = (-math.log(log_pi.shape[-1]) - log_pi.mean(-1)).mean()",
     "kl_y = (-math.log(log_pi.shape[-1]) - log_pi.sum(-1)).mean()", GM),
    ("many-to-one: unseen cluster counted right", "vaelab/metrics/clusters.py",
     "predicted = [mapping.get(int(c), None) for c in np.asarray(clusters)]",
     "predicted = [mapping.get(int(c), y) for c, y in zip(np.asarray(clusters), labels)]", GM),
    # -- the oneDNN inference path of the encoders
    ("ugvae experiments: the pair scored on random vs A batches", "vaelab/experiments/ugvae.py",
     "_svm_scores(codes[kinds > 0], kinds[kinds > 0], seed)",
     "_svm_scores(codes[kinds < 2], kinds[kinds < 2], seed)", ["tests/test_experiments.py"]),
    ("ugvae experiments: grouped vs random against B batches", "vaelab/experiments/ugvae.py",
     "np.concatenate([grouped_codes, codes[:batches]])",
     "np.concatenate([grouped_codes, codes[-batches:]])", ["tests/test_experiments.py"]),
    ("ugvae experiments: experts' ESS without its square", "vaelab/experiments/ugvae.py",
     "(w.sum(0) ** 2 / (w ** 2).sum(0))", "(w.sum(0) / (w ** 2).sum(0))",
     ["tests/test_experiments.py"]),
    ("ugvae experiments: codes pooled by a plain mean", "vaelab/experiments/ugvae.py",
     "codes.append(pool_experts(mean, logvar)[0][0].float().cpu())",
     "codes.append(mean.mean(0).float().cpu())", ["tests/test_experiments.py"]),
    ("onednn: ReLU dropped", "vaelab/models/onednn.py",
     "                h = torch.relu_(h)", "                pass", ["tests/models/test_onednn.py"]),
    ("onednn: weights packed once, never refreshed", "vaelab/models/onednn.py",
     "if fingerprint != self._fingerprint:", "if not self._fingerprint:",
     ["tests/models/test_onednn.py"]),
    ("onednn: a replaced parameter's storage not seen", "vaelab/models/onednn.py",
     "(id(conv), p._version, p.data_ptr())", "(id(conv), p._version, 0)",
     ["tests/models/test_onednn.py"]),
    ("onednn: no eager fallback for a stack that stopped being packable",
     "vaelab/models/onednn.py", "                return self.encoder(x)",
     "                return self.encoder.head(self.features(x))",
     ["tests/models/test_onednn.py"]),
    ("onednn: the head outside bf16 autocast", "vaelab/models/onednn.py",
     "enabled=self.dtype == torch.bfloat16):\n            if not",
     "enabled=False):\n            if not", ["tests/models/test_onednn.py"]),
    # -- the contracts: each mutant must fail the registry-driven contract tests alone
    ("contract: beta-VAE loss without its reconstruction", "vaelab/objectives/elbo.py",
     'loss = terms["recon"] + weight * self.config.beta * terms["kl"]',
     'loss = weight * self.config.beta * terms["kl"]', CONTRACT_LOSS),
    ("contract: GMVAE loss without its reconstruction", "vaelab/objectives/gmvae.py",
     "loss = recon + cp + kl_w + y_term", "loss = cp + kl_w + y_term", CONTRACT_LOSS),
    ("contract: UG-VAE loss without its reconstruction", "vaelab/objectives/ugvae.py",
     'terms["loss"] = terms["recon"] + terms["kl_z"]', 'terms["loss"] = terms["kl_z"]',
     CONTRACT_LOSS),
    ("contract: FactorVAE's discriminator never trained", "vaelab/objectives/factor.py",
     'updater.minimize(model_loss, own_loss=terms["disc_loss"])',
     "updater.minimize(model_loss)", CONTRACT_LOSS),
    ("contract: GMVAE traverses its categorical latent", "vaelab/models/gmvae.py",
     'traversal_latent = "z"', 'traversal_latent = "y"', MODEL_CONTRACT),
    ("contract: UG-VAE represents its per-batch latent", "vaelab/models/ugvae.py",
     'represented = ("z",)', 'represented = ("z", "beta")', MODEL_CONTRACT),
    ("contract: UG-VAE's global latent declared per item", "vaelab/models/ugvae.py",
     'LatentSpec("beta", config.beta_dim, scope="batch")',
     'LatentSpec("beta", config.beta_dim, scope="item")', MODEL_CONTRACT),
    ("contract: UG-VAE prior draws one beta, not n", "vaelab/models/ugvae.py",
     '"beta": beta.expand(n, -1).clone()', '"beta": beta', MODEL_CONTRACT),
    ("contract: GMVAE clusters by the least likely component", "vaelab/models/gmvae.py",
     'return self.posterior(x)["y"].logits.argmax(dim=-1)',
     'return self.posterior(x)["y"].logits.argmin(dim=-1)', MODEL_CONTRACT),
    ("contract: the Gaussian VAE's codes centred on their batch", "vaelab/models/vae.py",
     '        mu, logvar = self.encoder(x)\n        return {"z": DiagonalGaussian(mu, logvar)}',
     '        mu, logvar = self.encoder(x)\n        return {"z": DiagonalGaussian(mu - mu.mean(0), '
     'logvar)}', MODEL_CONTRACT),
    ("fastconv: adjoint grad x with the wrong stride", "vaelab/models/fastconv.py",
     "grad_x = F.conv2d(grad, weight, None, stride, padding, dilation, groups) if",
     "grad_x = F.conv2d(grad, weight, None, 1, padding, dilation, groups) if", ["tests/models/test_fastconv.py"]),
    ("fastconv: adjoint grad weight with input and gradient swapped", "vaelab/models/fastconv.py",
     "        x, grad, weight, None, list(stride)",
     "        grad, x, weight, None, list(stride)", ["tests/models/test_fastconv.py"]),
    ("fastconv: bias gradient summed over the channels too", "vaelab/models/fastconv.py",
     "grad_b = grad.sum((0, 2, 3)) if needs[2]",
     "grad_b = grad.sum((0, 2, 3)).sum().expand(grad.shape[1]) if needs[2]", ["tests/models/test_fastconv.py"]),
    ("fastconv: the phase forward's row shift reversed", "vaelab/models/fastconv.py",
     "_SHIFT = (-1, 1)", "_SHIFT = (1, -1)", ["tests/models/test_fastconv.py"]),
    ("fastconv: the phase forward's kernel rows swapped", "vaelab/models/fastconv.py",
     "_SAME = (1, 2)", "_SAME = (2, 1)", ["tests/models/test_fastconv.py"]),
    ("fastconv: the diagonal tap dropped", "vaelab/models/fastconv.py",
     "            out[:, :, rows[0], cols[0]] += taps", "            out[:, :, rows[0], cols[0]] -= taps", ["tests/models/test_fastconv.py"]),
    ("fastconv: auto also replaces fp32 kernels", "vaelab/models/fastconv.py",
     "        if mode == \"auto\" and not torch.is_autocast_enabled(\"cpu\"):",
     "        if False:", ["tests/models/test_fastconv.py"]),
    # -- run directories (issue 36): claims, clean-up of only this process's files
    ("rundir: a shared lock lets two processes claim one run", "vaelab/rundir.py",
     "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
     "fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)", ["tests/test_rundir.py"]),
    ("rundir: a failed start removes files it did not write", "vaelab/rundir.py",
     "_files(root) - claim.before - {LOCK_NAME}", "_files(root) - {LOCK_NAME}",
     ["tests/test_rundir.py"]),
    ("rundir: a trained run is reused by a new one", "vaelab/rundir.py",
     "    if has_checkpoint(run_dir):\n", "    if False:\n", ["tests/test_rundir.py"]),
    ("outputs: eval computes before checking its output", "vaelab/metrics/evaluate.py",
     "    check_writable(path, f\"make {run.dir}", "    (path, f\"make {run.dir}",
     ["tests/test_outputs_first.py"]),
    ("outputs: encode loads before checking its output", "vaelab/runs.py",
     "    check_writable(out, \"choose another --out\")", "    pass",
     ["tests/test_outputs_first.py"]),
    ("encode --images: a folder's test share left out", "vaelab/encoding.py",
     "test_fraction=0.0, limit=limit)", "test_fraction=0.1, limit=limit)",
     ["tests/test_encode_images.py"]),
    ("versions: a newer run format accepted", "vaelab/rundir.py",
     "or written > FORMAT_VERSION):", "or written > FORMAT_VERSION + 1):",
     ["tests/test_run_versions.py"]),
    ("split recipe: the validation settings not turned off", "vaelab/workflow.py",
     "        values[key] = off\n", "        pass\n", ["tests/test_split_recipe.py"]),
    ("report headline: only the first score key tried", "vaelab/viz/report.py",
     "key = next((k for k in keys if", "key = next((k for k in keys[:1] if",
     ["tests/test_first_screen.py"]),
    ("eval: an interrupted metric called failed", "vaelab/metrics/evaluate.py",
     "isinstance(sys.exc_info()[1], KeyboardInterrupt)", "isinstance(sys.exc_info()[1], OSError)",
     ["tests/test_choose_checkpoint.py"]),
    # -- DIP-VAE (issue 33): the planted bugs
    ("dip: diagonal term dropped", "vaelab/objectives/dip.py",
     '"dip": lambda_od * off + lambda_d * diag', '"dip": lambda_od * off', DIP),
    ("dip: covariance of the sampled z instead of mu", "vaelab/objectives/dip.py",
     "cov = self.covariance(VAEOutput(mu=out.mu.float(),",
     "cov = self.covariance(VAEOutput(mu=out.z.float(),", DIP),
    ("dip: unbiased covariance (ddof 1)", "vaelab/objectives/dip.py",
     "return centered.T @ centered / mu.shape[0]",
     "return centered.T @ centered / (mu.shape[0] - 1)", DIP),
    ("dip: means not centred", "vaelab/objectives/dip.py",
     "centered = mu - mu.mean(dim=0, keepdim=True)", "centered = mu", DIP),
    ("dip-ii: E[sigma^2] dropped", "vaelab/objectives/dip.py",
     "return covariance_of_means(mu) + torch.diag(logvar.exp().mean(dim=0))",
     "return covariance_of_means(mu)", DIP),
    ("dip: diagonal pulled to 0 instead of 1", "vaelab/objectives/dip.py",
     "diag = (diagonal - 1.0).pow(2).sum()", "diag = diagonal.pow(2).sum()", DIP),
    # -- UDR (issue 33)
    ("udr: max not squared", "vaelab/metrics/udr.py",
     "columns = np.nan_to_num(matrix.max(axis=0) ** 2 / matrix.sum(axis=0))",
     "columns = np.nan_to_num(matrix.max(axis=0) / matrix.sum(axis=0))", UDR),
    ("udr: KL filter ignored", "vaelab/metrics/udr.py",
     "            mask &= np.asarray(active, dtype=bool)", "            mask &= True", UDR),
    ("udr: mean instead of median", "vaelab/metrics/udr.py",
     "np.median(np.delete(pairs[:, j], j))", "np.mean(np.delete(pairs[:, j], j))", UDR),
    ("udr: signed Spearman", "vaelab/metrics/udr.py",
     "return np.abs(ranks_a.T @ ranks_b / len(codes_a))",
     "return ranks_a.T @ ranks_b / len(codes_a)", UDR),
    ("udr: paper average over 2 d_b", "vaelab/metrics/udr.py",
     "(len(columns) + len(rows))", "(2 * len(columns))", UDR),
    ("udr: codes not standardised", "vaelab/metrics/udr.py",
     "a = _standardise(np.asarray(codes_a, dtype=np.float64)[:, masks[0]])",
     "a = np.asarray(codes_a, dtype=np.float64)[:, masks[0]]", UDR),
    # -- dlib_conv, vaelab score and bootstrap intervals (issue 33)
    ("dlib_conv: 4x4 kernels throughout by default", "vaelab/models/dlib.py",
     "encoder_kernels: tuple[int, int, int, int] = (4, 4, 2, 2)",
     "encoder_kernels: tuple[int, int, int, int] = (4, 4, 4, 4)", ["tests/models/test_dlib.py"]),
    ("dlib_conv: no padding (TF 'valid')", "vaelab/models/dlib.py",
     "stride=2, padding=(k - 2) // 2)", "stride=2, padding=0)", ["tests/models/test_dlib.py"]),
    ("score: codes split like arrays, not drawn as eval draws", "vaelab/metrics/scoring.py",
     "        return False", "        return True", ["tests/test_score.py"]),
    ("bootstrap: one-sided tail", "vaelab/metrics/scoring.py",
     "tail = 100 * (1 - level) / 2", "tail = 100 * (1 - level)", ["tests/test_score.py"]),
    # -- weak supervision (issue 34): the planted bugs, then operator mutations
    ("weak: threshold from the mean, not max/min", "vaelab/objectives/weak.py",
     "return 0.5 * (delta.max(dim=1).values + delta.min(dim=1).values)",
     "return delta.mean(dim=1)", WEAK),
    ("weak: ML-VAE as an arithmetic mean", "vaelab/objectives/weak.py",
     "mu = (mu1 * precision1 + mu2 * precision2) / precision", "mu = 0.5 * (mu1 + mu2)", WEAK),
    ("weak: GVAE mean not averaged (disent #32)", "vaelab/objectives/weak.py",
     "mu = 0.5 * (mu1 + mu2)", "mu = 0.5 * (mu1 + mu1)", WEAK),
    ("weak: KL scaled per pixel", "vaelab/objectives/weak.py",
     "kl = kl_per_dim.sum()", "kl = kl_per_dim.sum() / x[0].numel()", WEAK),
    ("weak: GVAE averages log-variances", "vaelab/objectives/weak.py",
     "logvar = torch.logaddexp(logvar1, logvar2) - torch.log(torch.tensor(2.0, dtype=mu.dtype))",
     "logvar = 0.5 * (logvar1 + logvar2)", WEAK),
    ("weak: latents above tau shared", "vaelab/objectives/weak.py",
     "return (delta < adaptive_threshold(delta)[:, None]) | flat[:, None]",
     "return (delta > adaptive_threshold(delta)[:, None]) | flat[:, None]", WEAK),
    ("weak: identical posteriors share nothing", "vaelab/objectives/weak.py",
     "return (delta < adaptive_threshold(delta)[:, None]) | flat[:, None]",
     "return delta < adaptive_threshold(delta)[:, None]", WEAK),
    ("weak: k latents shared instead of d - k", "vaelab/objectives/weak.py",
     "keep = (d - k.to(delta.device).long()).clamp(0, d)",
     "keep = k.to(delta.device).long().clamp(0, d)", WEAK),
    ("weak: KL(q2 || q1)", "vaelab/objectives/weak.py",
     "flat = kl_normal_normal(mu1.reshape(-1, 1), logvar1.reshape(-1, 1), mu2.reshape(-1, 1),\n"
     "                            logvar2.reshape(-1, 1), reduction=\"none\")",
     "flat = kl_normal_normal(mu2.reshape(-1, 1), logvar2.reshape(-1, 1), mu1.reshape(-1, 1),\n"
     "                            logvar1.reshape(-1, 1), reduction=\"none\")", WEAK),
    ("weak: geometric ML-VAE variance not doubled", "vaelab/objectives/weak.py",
     "logvar = logvar + torch.log(torch.tensor(2.0, dtype=mu.dtype))", "logvar = logvar", WEAK),
    ("weak: only the first image gets the shared posterior", "vaelab/objectives/weak.py",
     "both = torch.cat([shared, shared])", "both = torch.cat([shared, torch.zeros_like(shared)])",
     WEAK),
    ("weak: beta dropped", "vaelab/objectives/weak.py",
     "terms = {\"loss\": recon + self.config.beta * kl,", "terms = {\"loss\": recon + kl,", WEAK),
    ("pairs: exact sampler may keep the old value", "vaelab/data/pairs.py",
     "step = 1 + (u * (self.sizes - 1))", "step = 0 + (u * (self.sizes - 1))", PAIRS),
    ("pairs: simple_dynamics never takes 1", "vaelab/data/pairs.py",
     "one = torch.rand(n, generator=g, device=device) < 0.5",
     "one = torch.rand(n, generator=g, device=device) < 0.0", PAIRS),
    ("pairs: random k up to d", "vaelab/data/pairs.py",
     "k = torch.randint(1, self.varying, (n,), generator=g, device=device)",
     "k = torch.randint(1, self.varying + 1, (n,), generator=g, device=device)", PAIRS),
    ("pairs: constant factors resampled", "vaelab/data/pairs.py",
     "keys = torch.where(self.sizes > 1, keys, torch.full_like(keys, 2.0))", "keys = keys", PAIRS),
    ("pairs: partial grids pair an item with itself", "vaelab/data/pairs.py",
     "best = torch.where(found.any(0), found.float().argmax(0),",
     "best = torch.where(found.any(0), (~found).float().argmax(0),", PAIRS),
    # -- benchmark datasets (issue 32): layouts, factor orders, checksum checks
    ("data: grid factors in Fortran order", "vaelab/data/groundtruth.py",
     "np.unravel_index(np.arange(int(np.prod(sizes))), sizes)",
     "np.unravel_index(np.arange(int(np.prod(sizes))), sizes, order=\"F\")", BENCH),
    ("data: shapes3d height and width swapped", "vaelab/data/shapes3d.py",
     "out[start:start + len(block)] = block.transpose(0, 3, 1, 2)",
     "out[start:start + len(block)] = block.transpose(0, 3, 2, 1)", BENCH),
    ("data: shapes3d label order not checked", "vaelab/data/shapes3d.py",
     "if not np.allclose(labels[:, k], first[factors[:, k]]) or (np.diff(first) <= 0).any():",
     "if False:", BENCH),
    ("data: mpi3d height and width swapped", "vaelab/data/mpi3d.py",
     "out[start:stop] = block.transpose(0, 3, 1, 2)",
     "out[start:stop] = block.transpose(0, 3, 2, 1)", BENCH),
    ("data: NORB byte matrix read as int8", "vaelab/data/smallnorb.py",
     '0x1E3D4C55: np.dtype("u1"),', '0x1E3D4C55: np.dtype("i1"),', BENCH),
    ("data: smallnorb elevation and azimuth swapped", "vaelab/data/smallnorb.py",
     "np.stack([cat, info[:, 1], azimuth // 2, info[:, 3]], axis=1)",
     "np.stack([cat, azimuth // 2, info[:, 1], info[:, 3]], axis=1)", BENCH),
    ("data: smallnorb azimuth not halved", "vaelab/data/smallnorb.py",
     "np.stack([cat, info[:, 1], azimuth // 2, info[:, 3]], axis=1)",
     "np.stack([cat, info[:, 1], azimuth, info[:, 3]], axis=1)", BENCH),
    ("data: cars3d azimuth slowest", "vaelab/data/cars3d.py",
     "out[(e * azimuths + a) * objects + o]", "out[(a * elevations + e) * objects + o]", BENCH),
    ("data: memmap threshold inverted", "vaelab/data/groundtruth.py",
     "mapped.nbytes > memmap_mb * MEBIBYTE", "mapped.nbytes < memmap_mb * MEBIBYTE", BENCH),
    ("data: failed conversion leaves its temporary files", "vaelab/data/groundtruth.py",
     "            for path in (tmp_images, tmp_factors):\n                path.unlink(missing_ok=True)",
     "            pass", BENCH),
    ("data: download checksum never compared", "vaelab/data/download.py",
     "    if actual != expected:\n        return f\"{algorithm} {actual}, expected {expected}\"",
     "    if False:\n        return \"\"", BENCH),
    ("data: a mapped dataset copied to the device", "vaelab/data/groundtruth.py",
     "        if not self.mapped:\n            self._target = None\n            return super().to(device)",
     "        if True:\n            self._target = None\n            return super().to(device)", BENCH),
    ("data: a failed rebuild drops the old cache", "vaelab/data/groundtruth.py",
     "        images_path.parent.mkdir(parents=True, exist_ok=True)\n",
     "        images_path.parent.mkdir(parents=True, exist_ok=True)\n"
     "        sidecar.unlink(missing_ok=True)\n", BENCH),
    ("data: color dSprites colour in [0, 1]", "vaelab/data/dsprites_variants.py",
     "colour = torch.rand((b, 3, 1, 1), generator=g, device=device) * 0.5 + 0.5",
     "colour = torch.rand((b, 3, 1, 1), generator=g, device=device)", VARIANTS),
    ("data: noisy dSprites not clipped", "vaelab/data/dsprites_variants.py",
     "torch.clamp(rgb + noise, max=1.0)", "(rgb + noise)", VARIANTS),
    ("data: scream dSprites background inverted instead of the sprite",
     "vaelab/data/dsprites_variants.py",
     "torch.where(rgb > 0.5, 1 - background, background)",
     "torch.where(rgb > 0.5, background, 1 - background)", VARIANTS),
    ("data: scream dSprites colour shift not halved", "vaelab/data/dsprites_variants.py",
     "background = (patch + shift) / 2", "background = patch + shift / 2", VARIANTS),
]


def run_one(name, path, old, new, tests, timeout) -> str:
    file = ROOT / path
    source = file.read_text()
    count = source.count(old)
    if count != 1:
        return f"BAD ENTRY ({count} matches)"
    try:
        file.write_text(source.replace(old, new))
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
               "-p", "no:warnings", *tests]
        try:
            result = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout"
        return "killed" if result.returncode != 0 else "SURVIVED"
    finally:
        file.write_text(source)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the mutants whose name contains this")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per mutant")
    args = parser.parse_args()
    survived = 0
    chosen = [m for m in MUTANTS if args.only in m[0]]
    for name, path, old, new, tests in chosen:
        start = time.perf_counter()
        status = run_one(name, path, old, new, tests, args.timeout)
        survived += status != "killed"
        print(f"{status:<10s} {time.perf_counter() - start:6.1f} s  {name}", flush=True)
    print(f"{len(chosen) - survived}/{len(chosen)} mutants killed")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
