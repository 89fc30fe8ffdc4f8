"""Pair batches (`data.batches = "pairs"`): how many factors differ, the layout, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

import vaelab
from vaelab.config import ConfigError
from vaelab.data.base import Batch, DataConfig, DataError, FactorDataset
from vaelab.data.pairs import PairBatches, pair_differences
from vaelab.data.toy import ToySquaresConfig
from vaelab.engine import Callback, fit
from vaelab.factory import run_config_from_dict
from vaelab.runs import load_run


def _grid_dataset(sizes=(3, 1, 4, 5)) -> FactorDataset:
    """A full grid with a constant factor (size 1), tiny images that encode the item index."""
    rows = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)
    images = torch.zeros(len(rows), 1, 2, 2, dtype=torch.uint8)
    return FactorDataset(images, rows, [f"f{i}" for i in range(len(sizes))], sizes, name="grid")


def _differences(dataset, k, sampler, n=2048, seed=0, subset=None) -> tuple[Tensor, Batch]:
    config = DataConfig(batches="pairs", pair_k=k, pair_sampler=sampler)
    source = dataset.batch_source(config, n, torch.Generator().manual_seed(seed), subset=subset)
    batch = dataset.batch_of(source.next())
    return pair_differences(batch), batch



@pytest.mark.parametrize("k", [1, 2])
def test_exact_sampler_changes_exactly_k_factors_and_never_a_constant_one(k):
    data = _grid_dataset()
    differ, batch = _differences(data, k, "exact")
    assert batch.pairs == 2048 and batch.x.shape == (4096, 1, 2, 2)
    assert (differ.sum(1) == k).all()
    assert not differ[:, 1].any()  # the constant factor is never among the k
    # the k factors are spread over the three that vary
    assert (differ[:, [0, 2, 3]].float().mean(0) > 0.2).all()
    # the layout: first every x1, then every x2; factors read back through the index
    factors = torch.as_tensor(data.factors)[batch.index]
    assert torch.equal(factors[:2048] != factors[2048:], differ)


def test_paper_sampler_changes_at_most_k_with_fresh_uniform_values():
    data = _grid_dataset()
    differ, _ = _differences(data, 2, "paper")
    counts = torch.bincount(differ.sum(1), minlength=4)
    assert counts[3] == 0 and counts[2] > counts[1] > counts[0] > 0
    # A factor chosen for resampling keeps its value with probability 1/size: of the pairs in
    # which factor 0 (3 values) was chosen, a third keep it. P(chosen) = 2/3, so P(differs) =
    # 2/3 * 2/3 = 4/9 for factor 0 and 2/3 * 4/5 = 8/15 for factor 3.
    rate = differ.float().mean(0)
    assert abs(rate[0] - 4 / 9) < 0.04 and abs(rate[3] - 8 / 15) < 0.04


def test_random_k_is_uniform_over_one_to_d_minus_one():
    data = _grid_dataset()  # d = 3 varying factors: k in {1, 2}
    differ, _ = _differences(data, 0, "exact")
    counts = torch.bincount(differ.sum(1), minlength=4)
    assert counts[0] == 0 and counts[3] == 0
    assert abs(counts[1].item() / 2048 - 0.5) < 0.05


def test_simple_dynamics_resamples_one_factor_half_of_the_time():
    """disentanglement_lib's choice([1, k]): with k = 2, half the pairs resample one factor."""
    data = _grid_dataset(sizes=(50, 60, 70))  # values rarely repeat
    differ, _ = _differences(data, 2, "simple_dynamics")
    counts = torch.bincount(differ.sum(1), minlength=4) / 2048
    assert counts[3] == 0 and abs(counts[1] - 0.5) < 0.05 and abs(counts[2] - 0.5) < 0.05
    paper, _ = _differences(data, 2, "paper")
    assert (paper.sum(1) == 2).float().mean() > 0.9


def test_pairs_on_a_partial_grid_stay_in_the_subset_and_within_k():
    data = vaelab.load_dataset(name="toy_squares")
    subset = torch.arange(0, len(data), 3)  # a third of the grid
    differ, batch = _differences(data, 1, "exact", n=512, subset=subset)
    assert np.isin(batch.index.numpy(), subset.numpy()).all()
    assert (differ.sum(1) <= 1).all() and (differ.sum(1) == 1).float().mean() > 0.95
    repeated = vaelab.load_dataset(name="toy_squares", repeat=2)  # not a grid: duplicates
    assert not repeated.is_grid
    differ, batch = _differences(repeated, 2, "exact", n=512)
    assert (differ.sum(1) == 2).all() and batch.index.max() >= 192  # both copies drawn


def test_bad_pair_options_are_refused_with_the_range():
    data = _grid_dataset()
    with pytest.raises(DataError, match=r"grid \(factors f0, f1, f2, f3\): data.pair_k must be "
                       r"in 1\.\.2"):
        _differences(data, 3, "paper")
    with pytest.raises(ValueError, match="pair_sampler must be one of"):
        DataConfig(batches="pairs", pair_sampler="dlib")
    with pytest.raises(ValueError, match="pair_k must be >= 0"):
        DataConfig(batches="pairs", pair_k=-1)
    with pytest.raises(ConfigError, match="data.batches=pairs"):
        run_config_from_dict({"objective": {"name": "ada_gvae"}, "data": {"name": "toy_squares"}})
    with pytest.raises(ValueError, match="pair batch"):
        pair_differences(data.batch_of(torch.arange(4)))


def test_source_state_round_trips_and_refuses_other_options():
    data = vaelab.load_dataset(name="toy_squares")
    config = ToySquaresConfig(batches="pairs", pair_k=2)
    a = data.batch_source(config, 8, torch.Generator().manual_seed(5))
    a.next()
    state = a.state_dict()
    expected = [a.next() for _ in range(3)]
    b = data.batch_source(config, 8, torch.Generator().manual_seed(99))
    b.load_state_dict(state)
    assert all(torch.equal(x, b.next()) for x in expected)
    other = data.batch_source(ToySquaresConfig(batches="pairs", pair_k=1), 8,
                              torch.Generator())
    with pytest.raises(ValueError, match="pair_k=2"):
        other.load_state_dict(state)
    assert isinstance(a, PairBatches) and a.epochs == pytest.approx(4 * 8 / 192)


def test_ranks_draw_their_own_columns_of_one_batch():
    data = vaelab.load_dataset(name="toy_squares")
    config = ToySquaresConfig(batches="pairs")
    whole = data.batch_source(config, 8, torch.Generator().manual_seed(1), world_size=1)
    parts = [data.batch_source(config, 4, torch.Generator().manual_seed(1), rank=r,
                               world_size=2) for r in range(2)]
    assert torch.equal(whole.next(), torch.cat([p.next() for p in parts], dim=1))


def test_interrupted_and_resumed_pair_run_matches_uninterrupted(tmp_path, tiny):
    import signal

    base = tiny(steps=8, batch_size=8, log_every=1)
    base["objective"] = {"name": "ada_gvae"}
    base["data"] = {"name": "toy_squares", "batches": "pairs", "pair_k": 0}

    class CtrlC(Callback):
        def on_step_end(self, ctx, step):
            if step == 5:
                signal.raise_signal(signal.SIGINT)

    fit(run_config_from_dict(base), tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        fit(run_config_from_dict(base), tmp_path / "cut", callbacks=[CtrlC()])
    fit(run_config_from_dict(base), tmp_path / "cut", resume=True)
    a, b = load_run(tmp_path / "straight"), load_run(tmp_path / "cut")
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(a.log["loss"], b.log["loss"])
    np.testing.assert_array_equal(a.log["shared"], b.log["shared"])


def test_pairs_with_a_held_out_validation_split(tmp_path, tiny):
    """Training pairs come from the training part only; validation batches (no pairs) are
    scored as the beta-VAE ELBO of each image, nothing shared."""
    base = tiny(steps=4, batch_size=8, log_every=2, valid_every=2, valid_holdout=0.25)
    base["objective"] = {"name": "group_vae"}
    base["data"] = {"name": "toy_squares", "batches": "pairs", "pair_sampler": "exact"}
    run = fit(run_config_from_dict(base), tmp_path / "r")
    valid = (tmp_path / "r" / "valid_log.csv").read_text().splitlines()
    header = valid[0].split(",")
    assert len(valid) == 3 and float(valid[1].split(",")[header.index("valid/shared")]) == 0.0
    assert np.isfinite(run.log["loss"]).all() and (run.log["shared"] == 3.0).all()
