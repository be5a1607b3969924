"""SISA: partitions, stage epochs, and exact unlearning checked against retraining from scratch."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from mu_lib import cost, data, models, runtime, sisa, train

RECIPE = runtime.Recipe(epochs=3, batch_size=16, lr=0.1)


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


@pytest.fixture(scope="module")
def fitted(digits, one_thread):
    """A 3-shard, 3-slice MLP ensemble on 240 digits."""
    return sisa.SISA(shards=3, slices=3, model="mlp", recipe=RECIPE, seed=7).fit(digits, np.arange(240))


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _from_scratch(ds, partition, k, *, seed, model="mlp", recipe=RECIPE):
    """The slow, obvious reference: a fresh constituent trained through every stage of shard k."""
    net = models.make_model(model, num_classes=ds.num_classes, in_channels=ds.in_channels,
                            image_size=ds.image_size, seed=sisa.stage_seed(seed, k, -1))
    for r, ep in enumerate(sisa.slice_epochs(recipe.epochs, partition.num_slices)):
        ids = np.concatenate(partition.slices[k][:r + 1])
        if ep and ids.size:
            idx = torch.from_numpy(ids)
            train.fit(net, ds.x[idx], ds.y[idx], epochs=ep, batch_size=recipe.batch_size, lr=recipe.lr,
                      momentum=recipe.momentum, weight_decay=recipe.weight_decay, schedule=recipe.schedule,
                      seed=sisa.stage_seed(seed, k, r))
    return net


@pytest.mark.parametrize("n,shards,slices", [(10, 1, 1), (37, 3, 4), (100, 7, 2), (12, 4, 3)])
def test_partition_is_a_seeded_near_equal_split(n, shards, slices):
    ids = np.arange(1000, 1000 + n)
    p = sisa.make_partition(ids, shards=shards, slices=slices, seed=3)
    assert np.array_equal(p.ids, ids)  # covers every id once
    shard_sizes = [p.shard(k).size for k in range(shards)]
    assert max(shard_sizes) - min(shard_sizes) <= 1
    for sizes in p.sizes():
        assert len(sizes) == slices and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    q = sisa.make_partition(ids, shards=shards, slices=slices, seed=3)
    assert all(np.array_equal(a, b) for sa, sb in zip(p.slices, q.slices) for a, b in zip(sa, sb))
    assert p.locate([ids[-1]])[0] == next((k, r) for k, sh in enumerate(p.slices) for r, s in enumerate(sh)
                                          if ids[-1] in s)


def test_partition_without_keeps_every_other_id_in_place():
    p = sisa.make_partition(np.arange(50), shards=3, slices=2, seed=0)
    drop = [p.slices[1][0][2], p.slices[2][1][0]]
    q = p.without(drop)
    for sp, sq in zip(p.slices, q.slices):
        for a, b in zip(sp, sq):
            assert np.array_equal(a[~np.isin(a, drop)], b)
    with pytest.raises(ValueError, match=r"not in the partition.*\[1000\]"):
        p.without([1000])
    with pytest.raises(ValueError, match="duplicated"):
        p.locate([1, 1])


@pytest.mark.parametrize("slices", [1, 2, 3, 4, 5, 8, 16])
def test_slice_epochs_follow_the_official_rule(slices):
    for epochs in range(0, 61):
        _check_slice_epochs(epochs, slices)


def _check_slice_epochs(epochs, slices):
    got = sisa.slice_epochs(epochs, slices)
    # The official sisa.py: avg = 2 R / (R + 1) * e / R and int((r + 1) avg) - int(r avg), in
    # floating point; here in exact rational arithmetic.
    avg = Fraction(2 * slices, slices + 1) * Fraction(epochs, slices)
    assert got == [math.floor((r + 1) * avg) - math.floor(r * avg) for r in range(slices)]
    assert sum(got) == math.floor(slices * avg) and min(got) >= 0
    # Equal slices: the examples seen sum to about `epochs` passes over the shard.
    seen = sum(e * (r + 1) / slices for r, e in enumerate(got))
    assert abs(seen - epochs) <= slices  # rounding moves at most one epoch per stage


def test_bad_arguments_are_refused_with_their_value(digits):
    with pytest.raises(ValueError, match="shards must be an integer >= 1, got 0"):
        sisa.SISA(shards=0, slices=1, model="mlp", recipe=RECIPE)
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        sisa.SISA(shards=1, slices=1, model="mlp", recipe=RECIPE, aggregation="median")
    with pytest.raises(ValueError, match="cannot fill 4 shards x 3 slices"):
        sisa.make_partition(np.arange(11), shards=4, slices=3)
    with pytest.raises(RuntimeError, match="fit the ensemble"):
        sisa.SISA(shards=1, slices=1, model="mlp", recipe=RECIPE).unlearn([0])
    with pytest.raises(ValueError, match="out of range"):
        sisa.SISA(shards=1, slices=1, model="mlp", recipe=RECIPE).fit(digits, [len(digits)])


def test_each_constituent_equals_training_its_shard_from_scratch(digits, fitted):
    for k in range(fitted.shards):
        assert _equal(fitted.models[k], _from_scratch(digits, fitted.partition, k, seed=7))


def test_unlearning_equals_retraining_the_affected_shard_from_scratch(digits, one_thread):
    ens = sisa.SISA(shards=3, slices=3, model="mlp", recipe=RECIPE, seed=7).fit(digits, np.arange(240))
    before = [{k: v.clone() for k, v in net.state_dict().items()} for net in ens.models]
    p = ens.partition
    # Forget two ids of shard 0 (slices 2 and 1) and one of shard 2 (its last slice).
    forget = [p.slices[0][2][0], p.slices[0][1][3], p.slices[2][2][1]]
    report = ens.unlearn(forget)
    assert report.retrained == {0: 1, 2: 2} and report.removed == 3
    reduced = p.without(forget)
    for k in range(3):
        assert _equal(ens.models[k], _from_scratch(digits, reduced, k, seed=7)), f"shard {k}"
    # The untouched shard kept its model bit for bit, and the whole ensemble equals SISA trained
    # on the remaining data from the start.
    assert all(torch.equal(before[1][n], v) for n, v in ens.models[1].state_dict().items())
    fresh = sisa.SISA(shards=3, slices=3, model="mlp", recipe=RECIPE, seed=7).fit_partition(digits, reduced)
    assert all(_equal(a, b) for a, b in zip(ens.models, fresh.models))
    # A copy forgets on its own and shares the data.
    twin = ens.copy()
    twin.unlearn([reduced.slices[1][0][0]])
    assert twin._data is ens._data and all(torch.equal(before[1][n], v) for n, v in ens.models[1].state_dict().items())
    # Forgetting again what is gone is an error that names the ids.
    with pytest.raises(ValueError, match="already"):
        ens.unlearn(forget[:1])


def test_unlearning_costs_only_the_repeated_stages(digits, fitted):
    def stage_passes(partition, k, r):
        ids = np.concatenate(partition.slices[k][:r + 1])
        return cost.training_passes(epochs=sisa.slice_epochs(RECIPE.epochs, 3)[r], examples=ids.size)

    p = fitted.partition
    assert fitted.fit_passes == sum(stage_passes(p, k, r) for k in range(3) for r in range(3))
    ens = sisa.SISA(shards=3, slices=3, model="mlp", recipe=RECIPE, seed=7).fit(digits, np.arange(240))
    one = [ens.partition.slices[1][1][0]]
    report = ens.unlearn(one)
    reduced = ens.partition
    assert report.passes == ens.last_passes == stage_passes(reduced, 1, 1) + stage_passes(reduced, 1, 2)
    assert report.passes < fitted.fit_passes / 3
    # The prediction without training agrees with what unlearning measured, for batches too.
    assert sisa.forgetting_passes(p, one, epochs=ens.epochs) == report.passes
    batch = [p.slices[0][0][0], p.slices[0][2][0], p.slices[2][1][1], p.slices[2][1][2]]
    predicted = fitted.forgetting_passes(batch)
    again = sisa.SISA(shards=3, slices=3, model="mlp", recipe=RECIPE, seed=7).fit(digits, np.arange(240))
    assert again.unlearn(batch).passes == predicted
    assert predicted == sum(stage_passes(p.without(batch), k, r) for k, r0 in ((0, 0), (2, 1))
                            for r in range(r0, 3))


def test_a_shard_that_loses_everything_stops_voting(digits, one_thread):
    ens = sisa.SISA(shards=2, slices=1, model="logreg", recipe=RECIPE, seed=1).fit(digits, np.arange(20))
    ens.unlearn(ens.partition.shard(0))
    assert ens.active == [1]
    x = digits.x[500:600]
    assert np.array_equal(ens.predict(x), train.predict_logits(ens.models[1], x).argmax(1).numpy())
    with pytest.raises(ValueError, match="not in the partition"):
        ens.unlearn([ens.partition.shard(0).size + 1000])


@pytest.mark.parametrize("aggregation", sisa.AGGREGATIONS)
def test_aggregation_matches_a_python_loop(digits, fitted, aggregation):
    fitted.aggregation = aggregation
    x, y = digits.x[1000:1200], digits.y[1000:1200]
    logits = [train.predict_logits(net, x).numpy() for net in fitted.models]
    expected = []
    for i in range(x.shape[0]):
        if aggregation == "vote":
            votes = [0] * digits.num_classes
            for z in logits:
                votes[int(np.argmax(z[i]))] += 1
            expected.append(votes.index(max(votes)))  # ties: the lowest class
        else:
            probs = [np.exp(z[i] - z[i].max()) / np.exp(z[i] - z[i].max()).sum() for z in logits]
            expected.append(int(np.argmax(np.mean(probs, axis=0))))
    assert np.array_equal(fitted.predict(x), np.array(expected))
    assert fitted.accuracy(x, y) == pytest.approx(float(np.mean(np.array(expected) == y.numpy())))
    fitted.aggregation = "vote"
