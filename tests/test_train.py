import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mu_lib import models, train


def _mlp(seed: int) -> torch.nn.Module:
    return models.make_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=seed)


def test_fit_learns_and_is_deterministic(digits_splits):
    x, y = digits_splits.xy("train")
    kw = dict(epochs=3, batch_size=64, lr=0.1, seed=4)
    a = train.fit(_mlp(0), x, y, **kw)
    b = train.fit(_mlp(0), x, y, **kw)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert train.evaluate(a, *digits_splits.xy("test")).accuracy > 0.85
    assert not a.training


def test_fit_equals_handwritten_sgd_loop(digits_splits):
    """`fit` is plain SGD with momentum and weight decay over a seeded permutation."""
    x, y = digits_splits.xy("train")
    net = train.fit(_mlp(1), x, y, epochs=2, batch_size=100, lr=0.05, momentum=0.9, weight_decay=1e-3,
                    schedule="linear", seed=2)
    ref = _mlp(1)
    params = list(ref.parameters())
    bufs = [None] * len(params)
    gen = torch.Generator().manual_seed(2)
    n = len(y)
    steps = 2 * math.ceil(n / 100)
    step = 0
    for _ in range(2):
        perm = torch.randperm(n, generator=gen)
        for b in range(0, n, 100):
            idx = perm[b:b + 100]
            ref.zero_grad()
            F.cross_entropy(ref(x[idx]), y[idx]).backward()
            lr = 0.05 * (1 - step / steps)
            with torch.no_grad():
                for i, p in enumerate(params):
                    g = p.grad + 1e-3 * p
                    bufs[i] = g.clone() if bufs[i] is None else 0.9 * bufs[i] + g
                    p -= lr * bufs[i]
            step += 1
    for p, q in zip(net.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_fit_many_equals_loop_of_fit(digits_splits):
    x, y = digits_splits.xy("train")
    kw = dict(epochs=2, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-4)
    seeds = [3, 7, 11, 19]
    many = train.fit_many(_mlp, x, y, seeds=seeds, chunk_size=3, **kw)  # two chunks
    loop = [train.fit(_mlp(s), x, y, seed=s, **kw) for s in seeds]
    for a, b in zip(many, loop):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.allclose(p, q, atol=1e-5), (p - q).abs().max()
        np.testing.assert_array_equal(train.evaluate(a, x, y).predictions, train.evaluate(b, x, y).predictions)


def test_fit_many_with_subsets_equals_loop(digits_splits):
    x, y = digits_splits.xy("train")
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(len(y), 300, replace=False) for _ in range(3)])
    kw = dict(epochs=2, batch_size=50, lr=0.1)
    cnn = lambda s: models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=s)  # noqa: E731
    many = train.fit_many(cnn, x, y, seeds=[0, 1, 2], indices=idx, **kw)
    for i, net in enumerate(many):
        ref = train.fit(cnn(i), x[idx[i]], y[idx[i]], seed=i, **kw)
        for p, q in zip(net.parameters(), ref.parameters()):
            assert torch.allclose(p, q, atol=1e-5)


def test_fit_many_falls_back_for_batchnorm():
    x, y = torch.randn(24, 3, 8, 8), torch.randint(0, 3, (24,))
    make = lambda s: models.make_model("resnet9", num_classes=3, in_channels=3, image_size=8, seed=s)  # noqa: E731
    nets = train.fit_many(make, x, y, seeds=[0, 1], epochs=1, batch_size=12, lr=0.01)
    ref = train.fit(make(1), x, y, epochs=1, batch_size=12, lr=0.01, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(nets[1].parameters(), ref.parameters()))


def test_divergence_raises_clear_error(digits_splits):
    x, y = digits_splits.xy("train")
    with pytest.raises(FloatingPointError, match="learning rate"):
        train.fit(_mlp(0), x * 1e6, y, epochs=1, lr=1e6, momentum=0.0, batch_size=512)
    with pytest.raises(FloatingPointError, match="seeds"):
        train.fit_many(_mlp, x * 1e6, y, seeds=[0, 1], epochs=1, lr=1e6, momentum=0.0, batch_size=512)


def test_bad_inputs(digits_splits):
    x, y = digits_splits.xy("train")
    with pytest.raises(ValueError, match="disagree in length"):
        train.fit(_mlp(0), x, y[:-1], epochs=1)
    with pytest.raises(ValueError, match="NaN"):
        train.fit(_mlp(0), torch.full_like(x, float("nan")), y, epochs=1)
    with pytest.raises(ValueError, match="integer class labels"):
        train.fit(_mlp(0), x, y.float(), epochs=1)
    with pytest.raises(ValueError, match="unknown schedule"):
        train.fit(_mlp(0), x, y, epochs=1, schedule="exponential")
    with pytest.raises(ValueError, match="lr must be"):
        train.fit(_mlp(0), x, y, epochs=1, lr=-1.0)
    with pytest.raises(ValueError, match="seeds is empty"):
        train.fit_many(_mlp, x, y, seeds=[], epochs=1)
    with pytest.raises(ValueError, match="indices must have shape"):
        train.fit_many(_mlp, x, y, seeds=[0, 1], indices=np.zeros((3, 5), dtype=int), epochs=1)


def test_evaluate_matches_direct_computation(digits_splits):
    x, y = digits_splits.xy("test")
    net = _mlp(0).eval()
    ev = train.evaluate(net, x, y, batch_size=37)
    with torch.no_grad():
        logits = net(x)
    np.testing.assert_allclose(ev.logits, logits.numpy(), atol=1e-6)
    np.testing.assert_allclose(ev.losses, F.cross_entropy(logits.double(), y, reduction="none").numpy(), atol=1e-6)
    assert ev.accuracy == pytest.approx(float((logits.argmax(1) == y).float().mean()))


def test_schedules():
    assert train.lr_at(0, 100, lr=1.0, schedule="cosine") == 1.0
    assert train.lr_at(100, 100, lr=1.0, schedule="cosine") == pytest.approx(0.0)
    assert train.lr_at(25, 100, lr=1.0, schedule="onecycle") == pytest.approx(1.0)
    assert train.lr_at(50, 100, lr=1.0, schedule="linear") == pytest.approx(0.5)
    assert train.lr_at(7, 100, lr=0.3, schedule="constant") == 0.3


def test_train_on_retain_matches_fit(digits_splits):
    recipe = train.Recipe(epochs=2, batch_size=64, lr=0.1)
    a = train.train_on(digits_splits, "retain", model="mlp", recipe=recipe, seed=5)
    b = train.fit(_mlp(5), *digits_splits.xy("retain"), epochs=2, batch_size=64, lr=0.1, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="epochs"):
        train.Recipe(epochs=-1, batch_size=64, lr=0.1)
