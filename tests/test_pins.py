"""Behaviour pins of issue 35 (point 5): sampling, sample layouts, resumed schedules, atomic
checkpoints and DDP shards, each against a hand-computed case or an oracle.

Every test here has a planted bug in `tools/mutate.py` (block "issue 35: behaviour pins").
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal

import pytest
import torch

from vaelab.distributions import DiagonalGaussian
from vaelab.factory import create_model, create_objective
from vaelab.models.gmvae import GMVAEOutput

# -- reparameterised samples -----------------------------------------------------------------


def test_diagonal_gaussian_samples_have_the_posterior_standard_deviation():
    # variances 0.25, 4, 9: standard deviations 0.5, 2, 3 (a draw scaled by the variance would
    # have 0.25, 4, 9). 40,000 draws: the sample sd is within 1 % of sigma (about 3 standard
    # errors).
    torch.manual_seed(0)
    mu = torch.tensor([[1.0, -2.0, 0.5]]).expand(40000, 3)
    logvar = torch.log(torch.tensor([[0.25, 4.0, 9.0]])).expand(40000, 3)
    z = DiagonalGaussian(mu, logvar).rsample()
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 2.0, 3.0]), rtol=0.01, atol=0)
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0, 0.5]), rtol=0, atol=0.05)


def _gmvae_with_fixed_posterior(B=3, S=4000):
    """A train-mode GMVAE whose encoder returns fixed posteriors: image b has mean 10 b (z) and
    -10 b (w), variance 4 (z) and 9 (w)."""
    torch.manual_seed(0)
    model = create_model("gmvae", image_height=2, image_width=2, z_dim=2, w_dim=2, K=3)
    means = 10.0 * torch.arange(B, dtype=torch.float32)[:, None].expand(B, 2)
    fixed = (means, torch.full((B, 2), math.log(4.0)), -means, torch.full((B, 2), math.log(9.0)))
    model.encode = lambda x: fixed
    return model.train(), fixed


def test_gmvae_samples_z_and_w_sample_major_with_the_posterior_sd():
    # Row s B + b is draw s of image b (GMVAEOutput): standardised by image b's own posterior,
    # every draw is N(0, 1); a draw of the wrong image is off by 10 / sd >= 3.3 sd, an unsampled
    # w has sd 0, a draw scaled by the variance sd 2 or 3.
    B, S = 3, 4000
    model, (mu_z, logvar_z, mu_w, logvar_w) = _gmvae_with_fixed_posterior(B, S)
    out = model(torch.rand(B, 1, 2, 2), samples=S)
    assert out.samples == S and out.z.shape == (S * B, 2) and out.w.shape == (S * B, 2)
    for draws, mu, sd in ((out.z, mu_z, 2.0), (out.w, mu_w, 3.0)):
        residual = (draws.view(S, B, 2) - mu[None]) / sd
        assert residual.mean().abs() < 0.05
        assert (residual.std(0) - 1).abs().max() < 0.05


def test_gmvae_conditional_prior_and_cluster_posterior_are_at_the_sampled_w():
    B, S = 3, 5
    model, (mu_z, logvar_z, mu_w, logvar_w) = _gmvae_with_fixed_posterior(B, S)
    out = model(torch.rand(B, 1, 2, 2), samples=S)
    assert not torch.allclose(out.w, mu_w.repeat(S, 1), atol=0.1)  # w is drawn, not the mean
    # p(z | w, y) from the prior networks written out at each drawn w
    h = torch.relu(model.prior_trunk[0](out.w))
    torch.testing.assert_close(out.prior_mu, model.prior_mean(h).view(S * B, 3, 2))
    variance = torch.nn.functional.softplus(model.prior_variance(h)) + 0.1  # the floor
    torch.testing.assert_close(out.prior_logvar.exp(), variance.view(S * B, 3, 2))
    expected = model.y_net(torch.cat([out.w, out.z], -1))  # the network posterior, w first
    torch.testing.assert_close(out.cluster_logits, expected)


def _two_sample_output(mu_z, z, prior_mu, logits) -> GMVAEOutput:
    """A GMVAEOutput of B = 2 images and S = 2 draws (rows s0b0, s0b1, s1b0, s1b1), K = 1,
    unit variances, w at its mean."""
    rows = z.shape[0]
    return GMVAEOutput(mu_z=mu_z, logvar_z=torch.zeros_like(mu_z), mu_w=torch.zeros(2, 1),
                       logvar_w=torch.zeros(2, 1), z=z, w=torch.zeros(rows, 1),
                       cluster_logits=torch.zeros(rows, 1), prior_mu=prior_mu,
                       prior_logvar=torch.zeros(rows, 1, 1), logits=logits, samples=2)


def test_gmvae_objective_pairs_each_draw_with_its_own_image():
    # Image 0 is a white pixel, image 1 a black one; draw s of image b is row s B + b. The logits
    # +log 3 (p = 3/4) for image 0's rows and -log 3 for image 1's: every row predicts its own
    # image with p = 3/4, recon = log(4/3). Rows matched image-major would pair two rows with the
    # wrong image (p = 1/4): recon = (log(4/3) + log 4) / 2.
    x = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    logit = math.log(3.0)
    logits = torch.tensor([logit, -logit, logit, -logit]).view(4, 1, 1, 1)
    # z_b = mu_b for each draw and the prior at z: the conditional-prior term is 0 for both
    # estimators when each draw meets its own posterior; image-major, rows 1 and 2 meet the other
    # image's posterior (distance 3): sample estimator -9/2, analytic 9/2 on those rows.
    mu_z = torch.tensor([[0.0], [3.0]])
    z = mu_z.repeat(2, 1)
    out = _two_sample_output(mu_z, z, z[:, None, :], logits)
    for estimator in ("sample", "analytic"):
        objective = create_objective("gmvae", likelihood="bernoulli", samples=2,
                                     cp_estimator=estimator)
        terms = objective(out, x, torch.tensor(1))
        assert terms["recon"].item() == pytest.approx(math.log(4 / 3), abs=1e-6)
        assert terms["cp"].item() == pytest.approx(0.0, abs=1e-6), estimator


# -- the domain-alignment experiment scores the batches it names ------------------------------


def test_domain_alignment_scores_pure_a_vs_pure_b_and_the_three_kinds(monkeypatch):
    """Codes that are each batch's fraction of domain-1 images: pure A batches code 0, pure B
    batches 1, mixed ones 1/2. The 2-class SVM must see exactly the pure batches labelled by
    their domain, the 3-class one every batch labelled by its kind."""
    import types

    import numpy as np

    import vaelab.experiments.ugvae as ug

    domains = np.repeat([0, 1], 40)
    dataset = types.SimpleNamespace(domains=domains, name="two_domains")
    run = types.SimpleNamespace(dataset=lambda: dataset, model=None,
                                config=types.SimpleNamespace(train=types.SimpleNamespace(
                                    batch_size=8)))
    seen = []

    def svm_scores(codes, labels, seed):
        seen.append((codes.copy(), labels.copy()))
        return {"linear_svm": 1.0, "rbf_svm": 1.0}

    def features(run_, data, batches, bn, ess=None, untrained=None):
        assert data is dataset and all(len(b) == 8 for b in batches)
        share = np.array([[np.mean(domains[b])] for b in batches])
        # the baselines' features are shifted copies, so the global code's calls can be told
        return {"global": share, **{name: share + 10.0 * (i + 1)
                                    for i, name in enumerate(ug.BASELINES)}}

    monkeypatch.setattr(ug, "_features", features)
    monkeypatch.setattr(ug, "_svm_scores", svm_scores)
    monkeypatch.setattr(ug, "_alignment_figures", lambda *args: {})
    scores, _ = ug.domain_alignment(run, batches=6, batch_size=8)
    assert {k for k in scores if "baseline" not in k and "margin" not in k} == {
        "pure.linear_svm", "pure.rbf_svm", "three.linear_svm", "three.rbf_svm"}
    on_global = [(c, y) for c, y in seen if c.max() <= 1.0]
    assert len(seen) == 2 * (1 + len(ug.BASELINES)) and len(on_global) == 2
    (pure_codes, pure_labels), (all_codes, kinds) = on_global
    assert sorted(pure_labels.tolist()) == [0] * 6 + [1] * 6
    np.testing.assert_array_equal(pure_codes[:, 0], pure_labels)  # A batches all 0, B all 1
    assert sorted(kinds.tolist()) == [0] * 6 + [1] * 6 + [2] * 6
    np.testing.assert_array_equal(all_codes[:, 0], np.array([0, 1, 0.5])[kinds])


# -- a resumed run continues its schedules from the resumed step ------------------------------


@pytest.mark.parametrize(("objective", "column", "per_step"), [
    ({"name": "beta_vae", "beta": 4.0, "warmup_steps": 10}, "warmup", 0.1),  # w_t = t / 10
    ({"name": "annealed_vae", "c_init": 0.0, "c_final": 10.0, "capacity_steps": 10},
     "capacity", 1.0),  # C_t = 10 t / 10
])
def test_a_resumed_run_continues_warmup_and_annealing_from_its_step(tmp_path, tiny, objective,
                                                                    column, per_step):
    from vaelab.engine import fit
    from vaelab.factory import run_config_from_dict
    from vaelab.io import read_csv_columns

    config = tiny(steps=3, log_every=1, batch_size=8, loggers=[])  # no TensorBoard: faster
    config["model"]["latent_dim"] = 2
    config["objective"] = objective
    fit(run_config_from_dict(config), tmp_path / "run")
    config["train"]["steps"] = 5
    fit(run_config_from_dict(config), tmp_path / "run", resume=True)
    log = read_csv_columns(tmp_path / "run" / "train_log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4, 5]
    # steps 4 and 5 are the schedule's 4th and 5th steps (restarted at 0: 0.1 and 0.2)
    torch.testing.assert_close(torch.tensor(log[column]),
                               per_step * torch.arange(1.0, 6.0, dtype=torch.float64))


# -- a checkpoint is written atomically ---------------------------------------------------------


class _StallingFile:
    """A file whose large writes stop half way: the first half is written and flushed, then the
    process reports "stalled" on `pipe` and sleeps until it is killed."""

    def __init__(self, handle, pipe):
        self._handle, self._pipe = handle, pipe

    def write(self, data):
        if len(data) < 4096:
            return self._handle.write(data)
        half = len(data) // 2
        self._handle.write(data[:half])
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._pipe.send("stalled")
        while True:
            signal.pause()

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)


def _write_and_stall(path, pipe):
    """The child: writes checkpoint step 2 with every Python file opener stalling half way."""
    import builtins
    import io

    from vaelab.runs import save_checkpoint

    def stalling(opener):
        def wrapped(*args, **kwargs):
            return _StallingFile(opener(*args, **kwargs), pipe)
        return wrapped

    builtins.open = io.open = stalling(builtins.open)
    os.fdopen = stalling(os.fdopen)
    save_checkpoint(path, {"step": 2, "weights": torch.ones(10000)})
    pipe.send("finished")  # the write never stalled


def test_a_checkpoint_killed_mid_write_leaves_the_previous_one_loadable(tmp_path):
    """kill -9 in the middle of writing a checkpoint (half its bytes on disk): the previous
    checkpoint is still there and loads, unchanged."""
    from vaelab.runs import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoints" / "last.ckpt"
    save_checkpoint(path, {"step": 1, "weights": torch.zeros(10000)})
    context = multiprocessing.get_context("fork")  # the parent's imports: a fast child
    parent_end, child_end = context.Pipe()
    child = context.Process(target=_write_and_stall, args=(path, child_end))
    child.start()
    try:
        assert parent_end.poll(30), "the child neither stalled nor finished"
        assert parent_end.recv() == "stalled", "the checkpoint was written without a Python " \
            "file write to stall (this test needs one)"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert child.exitcode == -signal.SIGKILL
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["weights"], torch.zeros(10000))


# -- every DDP rank draws its own shard of domain and group batches ---------------------------


def _sources(kind, batch_size, rank=0, world_size=1):
    """A batch source of `kind` through its dataset's `batch_source`, seed 7."""
    import numpy as np

    import vaelab
    from vaelab.data.mixed import CelebAFaces, MixedConfig
    from vaelab.data.toy import ToySquaresConfig

    generator = torch.Generator().manual_seed(7)
    if kind == "group":
        data = vaelab.load_dataset("toy_squares")
        config = ToySquaresConfig(batches="group", group_factors=("size", "pos_x"))
    else:
        data = CelebAFaces(torch.zeros(40, 3, 8, 8, dtype=torch.uint8),
                           np.array([0] * 25 + [1] * 15), name="celeba_faces")
        config = MixedConfig(batches=kind, proportion=0.5, image_size=8)
    return data.batch_source(config, batch_size, generator, rank, world_size)


@pytest.mark.parametrize("kind", ["random", "pure", "group"])
def test_ranks_take_their_own_shards_of_the_drawn_batch(kind):
    """With world size 2 each step draws one batch of 2 x 6 for both ranks: rank 0 takes its
    first 6 items, rank 1 the last 6, so their two batches side by side are the batch of 12 that
    a single process draws from the same seed; the two ranks' batches differ."""
    single = _sources(kind, 12)
    ranks = [_sources(kind, 6, rank, 2) for rank in (0, 1)]
    differ = 0
    for _ in range(5):
        first, second = ranks[0].next(), ranks[1].next()
        assert first.shape == second.shape == (6,)
        torch.testing.assert_close(torch.cat([first, second]), single.next())
        differ += not torch.equal(first, second)
    assert differ == 5
    assert ranks[1].epochs == single.epochs  # images seen by all ranks together
