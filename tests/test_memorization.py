"""Memorization scores (Feldman and Zhang 2020) and the memorization-stratified forget sets (Zhao et al. 2024).

References: the estimator as a Python loop over models, a loop of ``train.fit`` for the shadow
models, a sort by hand for the forget sets, and mislabelled canaries (which only memorization can
fit) for the direction of the scores.
"""

import numpy as np
import pytest
import torch

from mu_lib import data, mia, models, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("num_models", [2, 3, 10, 33])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.7, 0.95])
@pytest.mark.parametrize("num_examples", [1, 17, 200])
def test_subsample_masks_balance_examples_and_models(num_models, fraction, num_examples):
    masks = mia.subsample_masks(num_models, num_examples, fraction=fraction, seed=num_examples)
    k = min(max(round(fraction * num_models), 1), num_models - 1)
    assert masks.dtype == bool and masks.shape == (num_models, num_examples)
    assert (masks.sum(axis=0) == k).all()  # every example IN for k models, OUT for at least one
    sizes = masks.sum(axis=1)
    assert sizes.max() - sizes.min() <= 1


def test_subsample_masks_are_seeded_and_validated():
    a, b = mia.subsample_masks(8, 50, seed=1), mia.subsample_masks(8, 50, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, mia.subsample_masks(8, 50, seed=2))
    with pytest.raises(ValueError, match="fraction"):
        mia.subsample_masks(8, 50, fraction=1.0)
    with pytest.raises(ValueError, match="num_models"):
        mia.subsample_masks(1, 50)


def test_estimator_equals_the_loop():
    rng = np.random.default_rng(0)
    correct, masks = rng.random((9, 40)) < 0.7, mia.subsample_masks(9, 40, fraction=0.6, seed=0)
    scores, acc_in, acc_out = mia.memorization_from_correct(correct, masks)
    for j in range(40):
        ins = [correct[k, j] for k in range(9) if masks[k, j]]
        outs = [correct[k, j] for k in range(9) if not masks[k, j]]
        assert acc_in[j] == pytest.approx(sum(ins) / len(ins))
        assert acc_out[j] == pytest.approx(sum(outs) / len(outs))
        assert scores[j] == pytest.approx(sum(ins) / len(ins) - sum(outs) / len(outs))
    bad = masks.copy()
    bad[:, 3] = True
    with pytest.raises(ValueError, match=r"example\(s\) \[3\]"):
        mia.memorization_from_correct(correct, bad)


def _factory(seed):
    return models.make_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=seed)


def test_estimate_equals_a_loop_of_fit(digits_splits):
    x, y = digits_splits.xy("train")
    x, y = x[:120], y[:120]
    recipe = train.Recipe(epochs=2, batch_size=32, lr=0.1)
    mem = mia.estimate_memorization(_factory, x, y, recipe=recipe, num_models=4, fraction=0.5, seed=3)
    masks = mia.subsample_masks(4, 120, fraction=0.5, seed=3)
    seeds = [int(s) for s in np.random.SeedSequence([3, 7]).generate_state(4) >> 1]
    correct = []
    for k in range(4):
        rows = np.flatnonzero(masks[k])
        net = train.fit(_factory(seeds[k]), x[rows], y[rows], epochs=2, batch_size=32, lr=0.1, seed=seeds[k],
                        progress=False)
        correct.append(train.predict_logits(net, x).argmax(1).numpy() == y.numpy())
    expected = mia.memorization_from_correct(np.stack(correct), masks)[0]
    np.testing.assert_allclose(mem.scores, expected)
    assert mem.num_models == 4 and mem.fraction == 0.5
    np.testing.assert_array_equal(mem.indices, np.arange(120))


def test_mislabelled_canaries_score_higher_than_clean_examples():
    ds = data.load_dataset("digits")
    rng = np.random.default_rng(0)
    pool = rng.choice(len(ds), size=400, replace=False)
    canaries = pool[:20]
    noisy = data.mislabel(ds, canaries, seed=0)
    rows = torch.from_numpy(pool)
    mem = mia.estimate_memorization(_factory, noisy.x[rows], noisy.y[rows], num_models=8, fraction=0.5, seed=0,
                                    recipe=train.Recipe(epochs=30, batch_size=32, lr=0.1), indices=pool)
    # a wrong label is predicted only by models that trained on it: IN accuracy high, OUT accuracy ~0
    assert mem.scores[:20].mean() > 0.5
    assert mem.scores[20:].mean() < 0.15
    full = mem.full(len(ds))
    assert np.isnan(full).sum() == len(ds) - 400 and np.array_equal(full[pool], mem.scores)


# ---------------------------------------------------------------- forget sets by memorization level

def _scores(ds):
    return np.random.default_rng(5).choice([0.0, 0.1, 0.3, 0.5, 0.55, 0.9, 1.0], size=len(ds))


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.3])
def test_levels_pick_the_lowest_the_closest_to_half_and_the_highest(fraction):
    ds = data.load_dataset("digits")
    scores = _scores(ds)
    base = data.make_splits(ds, forget="random", forget_fraction=fraction, val_size=100, test_size=300, seed=1)
    k = len(base.forget)
    for level, key in (("low", scores), ("high", -scores), ("medium", np.abs(scores - 0.5))):
        s = data.make_splits(ds, forget="memorization", level=level, memorization=scores, forget_fraction=fraction,
                             val_size=100, test_size=300, seed=1)
        assert np.array_equal(s.train, base.train)  # the same training set as every other forget kind
        assert len(s.forget) == k and np.array_equal(np.sort(np.r_[s.forget, s.retain]), s.train)
        kept = np.sort(key[s.train])[k - 1]  # the k-th best key among training examples
        assert (key[s.forget] <= kept).all()
        assert (key[s.retain] >= kept).all()
        assert "memorization" in s.description


def test_the_hook_receives_the_training_set_and_ties_are_seeded():
    ds = data.load_dataset("digits")
    seen = []

    def hook(dataset, train_indices):
        seen.append(train_indices.copy())
        return np.zeros(len(train_indices))  # all tied

    a = data.make_splits(ds, forget="memorization", level="low", memorization=hook, forget_fraction=0.1,
                         val_size=100, test_size=300, seed=2)
    b = data.make_splits(ds, forget="memorization", level="low", memorization=hook, forget_fraction=0.1,
                         val_size=100, test_size=300, seed=2)
    assert np.array_equal(seen[0], a.train)
    assert np.array_equal(a.forget, b.forget)
    assert not np.array_equal(a.forget, a.train[:len(a.forget)])  # ties broken at random, not by index


def test_memorization_hook_estimates_on_the_training_set():
    store = {}
    hook = mia.memorization_hook(model="logreg", recipe=train.Recipe(epochs=1, batch_size=64, lr=0.1),
                                 num_models=4, store=store)
    s = data.make_splits("digits", forget="memorization", level="high", forget_fraction=0.05, train_size=200,
                         val_size=50, test_size=100, memorization=hook)
    mem = store["scores"]
    np.testing.assert_array_equal(mem.indices, s.train)
    assert mem.scores[np.isin(mem.indices, s.forget)].min() >= mem.scores[np.isin(mem.indices, s.retain)].max()


@pytest.mark.parametrize("kwargs, match", [
    ({"level": "extreme", "memorization": np.zeros(1797)}, "level"),
    ({"level": "low"}, "needs memorization"),
    ({"level": "low", "memorization": np.zeros(10)}, "one entry per example"),
    ({"level": "low", "memorization": np.full(1797, np.nan)}, "missing"),
    ({"level": "low", "memorization": lambda ds, idx: np.zeros(3)}, "one score per"),
])
def test_bad_memorization_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.make_splits("digits", forget="memorization", val_size=100, test_size=300, **kwargs)
