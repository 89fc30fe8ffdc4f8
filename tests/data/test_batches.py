"""Batch sources: the epoch permutation, DDP shards, domain batches with a real proportion, and
exact state round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.data.base import Batch, DataConfig, ImageDataset
from vaelab.data.batches import DomainBatches, EpochPermutation
from vaelab.data.mixed import CelebAFaces, MixedConfig


def _generator(seed=5):
    return torch.Generator().manual_seed(seed)


def test_epoch_permutation_is_a_permutation_cut_in_full_batches():
    source = EpochPermutation(10, 3, _generator())
    expected = torch.randperm(10, generator=_generator())
    first = torch.cat([source.next() for _ in range(3)])  # 3 full batches; item 10 is dropped
    assert torch.equal(first, expected[:9])
    assert source.epochs == 1.0
    second = source.next()  # a new epoch, a new permutation
    g = _generator()
    torch.randperm(10, generator=g)
    assert torch.equal(second, torch.randperm(10, generator=g)[:3])
    assert source.epoch == 1 and source.position == 1


def test_ranks_take_disjoint_shards_of_the_same_permutation():
    shards = [EpochPermutation(12, 2, _generator(), rank=r, world_size=3) for r in range(3)]
    taken = torch.cat([s.next() for _ in range(2) for s in shards])
    assert sorted(taken.tolist()) == list(range(12))


def test_subset_draws_only_its_items():
    subset = torch.tensor([1, 4, 6, 9])
    source = EpochPermutation(4, 2, _generator(), subset=subset)
    drawn = torch.cat([source.next(), source.next()])
    assert sorted(drawn.tolist()) == [1, 4, 6, 9]


@pytest.mark.parametrize("make", [
    lambda: EpochPermutation(10, 3, _generator()),
    lambda: DomainBatches([torch.arange(5), torch.arange(5, 10)], "random", 0.3, 4, _generator()),
])
def test_state_round_trip_continues_exactly(make):
    straight = make()
    for _ in range(4):
        straight.next()
    rest = [straight.next() for _ in range(5)]
    cut = make()
    for _ in range(4):
        cut.next()
    state = cut.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert all(torch.equal(a, resumed.next()) for a in rest)


def test_state_of_another_kind_is_refused():
    state = EpochPermutation(10, 3, _generator()).state_dict()
    other = DomainBatches([torch.arange(5), torch.arange(5, 10)], "pure", 0.5, 4, _generator())
    with pytest.raises(ValueError, match="'shuffle'.*'pure'"):
        other.load_state_dict(state)


def test_random_batches_mix_with_the_asked_proportion():
    # 2000 batches of 32 items: the share of domain 0 has standard error
    # sqrt(0.2 * 0.8 / 64000) ~ 0.0016; 0.01 is six of them.
    pools = [torch.arange(0, 100), torch.arange(100, 150)]
    source = DomainBatches(pools, "random", 0.2, 32, _generator())
    drawn = torch.cat([source.next() for _ in range(2000)])
    assert abs((drawn < 100).float().mean().item() - 0.2) < 0.01
    assert set(drawn[drawn < 100].unique().tolist()) == set(range(100))  # every item reachable


def test_pure_batches_hold_one_domain_with_the_asked_proportion():
    # 2000 batches: the share of domain-0 batches has standard error 0.0089; 0.04 is 4.5 of them.
    pools = [torch.arange(0, 10), torch.arange(10, 20)]
    source = DomainBatches(pools, "pure", 0.7, 8, _generator())
    batches = [source.next() for _ in range(2000)]
    kinds = [int((b < 10).all()) - int((b >= 10).all()) for b in batches]
    assert 0 not in kinds  # never mixed
    assert abs(kinds.count(1) / 2000 - 0.7) < 0.04


def test_domain_batches_refuse_an_empty_domain_that_is_drawn():
    with pytest.raises(ValueError, match="domain 1 has no items"):
        DomainBatches([torch.arange(5), torch.arange(0)], "random", 0.5, 4, _generator())
    DomainBatches([torch.arange(5), torch.arange(0)], "random", 1.0, 4, _generator())  # fine


def _mixed(n0=6, n1=4):
    images = torch.zeros(n0 + n1, 3, 8, 8, dtype=torch.uint8)
    domains = np.array([0] * n0 + [1] * n1)
    return CelebAFaces(images, domains, name="celeba_faces")


def test_mixed_dataset_sources_and_batches_carry_domains():
    dataset = _mixed()
    config = MixedConfig(batches="pure", proportion=0.0, image_size=8)
    source = dataset.batch_source(config, 3, _generator())
    batch = dataset.batch_of(source.next())
    assert batch.domains.tolist() == [1, 1, 1] and batch.labels.tolist() == [1, 1, 1]
    shuffled = dataset.batch_source(MixedConfig(image_size=8), 5, _generator())
    assert isinstance(shuffled, EpochPermutation)


def test_plain_datasets_offer_only_shuffled_batches():
    from vaelab.data.base import DataError

    dataset = ImageDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), labels=np.arange(4))
    with pytest.raises(DataError, match="'shuffle'"):
        dataset.batch_source(DataConfig(batches="random"), 2, _generator())
    batch = dataset.batch_of(torch.tensor([3, 1]))
    assert batch.labels.tolist() == [3, 1] and batch.domains is None
    assert Batch(torch.zeros(1, 1, 2, 2)).labels is None


def test_stand_in_has_the_shape_a_config_would_load():
    from vaelab.data.frey import Frey, FreyConfig
    from vaelab.data.mnist import MNIST, MNISTConfig

    assert MNIST.stand_in(MNISTConfig(image_size=28), n=5).data.shape == (5, 1, 28, 28)
    assert Frey.stand_in(FreyConfig(), n=3).image_shape == (1, 28, 20)
    assert CelebAFaces.expected_shape(MixedConfig(image_size=32)) == (3, 32, 32)
