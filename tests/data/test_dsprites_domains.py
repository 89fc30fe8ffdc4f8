"""The offline two-domain dSprites and factor-group batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vaelab
from vaelab.data.batches import GroupBatches
from vaelab.data.toy import ToySquaresConfig
from vaelab.engine import Callback, fit
from vaelab.factory import run_config_from_dict


def test_two_domains_share_the_grid_and_differ_in_rendering():
    data = vaelab.load_dataset("dsprites_domains", limit=64)
    assert len(data) == 128 and data.factor_names[0] == "domain"
    assert data.domains.tolist() == [0] * 64 + [1] * 64
    x = data.batch(torch.tensor([3, 64 + 3]))
    assert torch.equal(x[1], 1 - x[0])  # inverted
    assert np.array_equal(data.factors[3, 1:], data.factors[64 + 3, 1:])
    textured = vaelab.load_dataset("dsprites_domains", limit=64, second_domain="textured")
    y = textured.batch(torch.tensor([3, 64 + 3]))
    assert torch.equal(y[0], x[0]) and set(y[1].unique().tolist()) == {0.0, 0.5, 1.0}
    assert (y[1] >= y[0]).all()  # the sprite stays white over the stripes
    assert textured.uint8(torch.tensor([67])).dtype == torch.uint8


def test_group_batches_share_one_factor_value():
    data = vaelab.load_dataset("toy_squares")
    config = ToySquaresConfig(batches="group", group_factors=("size", "pos_x"))
    source = data.batch_source(config, 8, torch.Generator().manual_seed(0))
    assert isinstance(source, GroupBatches) and len(source.lengths) == 3 + 8
    seen = set()
    for _ in range(200):
        index = source.next().numpy()
        rows = data.factors[index]
        shared = [k for k in (0, 1) if len(np.unique(rows[:, k])) == 1]
        assert shared, "a batch must share the size or the x position"
        seen.add((shared[0], int(rows[0, shared[0]])))
    assert len(seen) == 11  # every group is drawn
    with pytest.raises(vaelab.DataError, match="unknown factor 'colour'"):
        data.batch_source(ToySquaresConfig(batches="group", group_factors=("colour",)), 8,
                          torch.Generator())


def _config(data: dict, steps: int = 6) -> dict:
    return {"name": "d", "seed": 2, "model": {"name": "burgess", "latent_dim": 3},
            "objective": {"name": "vae"}, "data": data,
            "train": {"steps": steps, "batch_size": 8, "log_every": 2, "metrics": [],
                      "progress": False, "checkpoint_every": 0}}


def test_pure_domain_batches_reach_training(tmp_path, monkeypatch):
    from vaelab.objectives.elbo import ELBO

    recorded = []
    original = ELBO.compute

    def compute(self, model, batch, step):
        recorded.append(batch.domains.clone())
        return original(self, model, batch, step)

    monkeypatch.setattr(ELBO, "compute", compute)
    data = {"name": "dsprites_domains", "limit": 64, "batches": "pure", "proportion": 0.5}
    fit(run_config_from_dict(_config(data, steps=20)), tmp_path / "r")
    assert len(recorded) == 20 and all(len(d.unique()) == 1 for d in recorded)
    assert {int(d[0]) for d in recorded} == {0, 1}  # P(no domain-1 batch in 20) = 1e-6


def test_group_batches_resume_exactly(tmp_path):
    import signal

    data = {"name": "toy_squares", "batches": "group", "group_factors": ["size"]}
    fit(run_config_from_dict(_config(data, 8)), tmp_path / "a")

    class CtrlC(Callback):
        def on_step_end(self, ctx, step):
            if step == 3:
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit(run_config_from_dict(_config(data, 8)), tmp_path / "b", callbacks=[CtrlC()])
    b = fit(run_config_from_dict(_config(data, 8)), tmp_path / "b", resume=True)
    a = vaelab.load_run(tmp_path / "a")
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_group_batches_draw_uniformly_within_a_group():
    # 1000 batches of 8 over 11 groups: ~730 draws per group, ~30 per item of a 24-item group;
    # the chance that some item of some group is never drawn is below 1e-10
    data = vaelab.load_dataset("toy_squares")
    config = ToySquaresConfig(batches="group", group_factors=("size", "pos_x"))
    source = data.batch_source(config, 8, torch.Generator().manual_seed(1))
    drawn = np.concatenate([source.next().numpy() for _ in range(1000)])
    counts = np.bincount(drawn, minlength=len(data))
    assert (counts > 0).all()
    assert counts.max() < 4 * counts.mean()  # and none is favoured beyond sampling noise
