"""The six methods added by issue 10, each against a slow, obviously correct reference: influence
(IU / WoodFisher), SFR-on, boundary expanding, UNSIR, SCAR and Amnesiac (with ``train``'s record)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mu_lib import data, models, train, unlearn
from mu_lib.unlearn import boundary, influence, scar, sfron, unsir


@pytest.fixture(scope="module")
def setup(one_thread):
    s = data.make_splits("digits", train_size=300, val_size=60, test_size=100, seed=0)
    net = train.train_on(s, model="small_cnn", recipe=train.Recipe(epochs=8, batch_size=32, lr=0.1), seed=0)
    return s, net


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


def _close(a, b, atol=1e-6, rtol=1e-5):
    return all(torch.allclose(p, q, atol=atol, rtol=rtol) for p, q in zip(_params(a), _params(b)))


def _flat_grad(model, loss):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


# ---------------------------------------------------------------- influence (IU)

def test_influence_matches_the_codes_loop(setup):
    s, net = setup
    out = unlearn.get("influence", alpha=0.5, woodfisher_n=20)(net, s, device="cpu")
    ref = copy.deepcopy(net).eval()
    g_f = sum(_flat_grad(ref, F.cross_entropy(ref(x[None]), y[None])) for x, y in zip(*s.xy("forget")))
    xr, yr = s.xy("retain")
    g_r = sum(_flat_grad(ref, F.cross_entropy(ref(x[None]), y[None])) for x, y in zip(xr, yr))
    n_f, n_r = len(s.forget), len(s.retain)
    v = g_f / (n_f + n_r) - g_r * n_f / ((n_f + n_r) * n_r)
    k, o = v.clone(), None
    for i in range(22):  # the code: batch size 1, unshuffled, stops after index N + 1
        g = _flat_grad(ref, F.cross_entropy(ref(xr[i:i + 1]), yr[i:i + 1]))
        if o is None:
            o = g.clone()
        else:
            t = o @ g
            k = k - (k @ g) / (20 + t) * o
            o = o - t / (20 + t) * o
    with torch.no_grad():
        start = 0
        for p in ref.parameters():
            p += 0.5 * k[start:start + p.numel()].view_as(p)
            start += p.numel()
    assert _close(out, ref, atol=1e-5, rtol=1e-4)
    assert not _close(out, net)


def test_woodfisher_recursion_is_exact_for_orthogonal_gradients():
    # o stays g_0; with g_1 orthogonal to g_0, k loses exactly its g_1 component along g_0 (none) ...
    v = torch.tensor([1.0, 1.0, 1.0])
    k = influence.woodfisher_recursion(v, [torch.tensor([1.0, 0, 0]), torch.tensor([0, 2.0, 0])], n=4)
    assert torch.allclose(k, torch.tensor([0.5, 1.0, 1.0]))  # (k . g) / (n + 0) = 2 / 4 of o removed


# ---------------------------------------------------------------- SFR-on

def test_adaptive_forget_loss_weights_low_loss_examples_more():
    z = torch.tensor([[4.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 0])
    ce = F.cross_entropy(z, y, reduction="none")
    w = (1 / ce.sqrt()) / (1 / ce.sqrt()).sum()
    assert float(sfron.adaptive_forget_loss(z, y, lambd=0.5)) == pytest.approx(float((w * ce).sum()))
    assert float(w[0]) > float(w[1])


def test_sfr_on_matches_a_loop(setup):
    s, net = setup
    kw = dict(epochs=2.0, batch_size=32, lr=0.05, forget_alpha=5.0, forget_freq=3, threshold=1.0)
    out = unlearn.get("sfr_on", **kw)(net, s, device="cpu", seed=1)
    ref = copy.deepcopy(net)
    forget = s.loader("forget", batch_size=32, shuffle=True, seed=2)
    retain = s.loader("retain", batch_size=32, shuffle=True, seed=1)
    # the mask: mean squared batch gradients, forget over retain, at least the threshold (eval mode)
    ref.eval()

    def fisher(loader):
        acc = [torch.zeros_like(p) for p in ref.parameters()]
        for x, y in loader:
            for a, g in zip(acc, torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))):
                a += g ** 2 / len(loader)
        return acc

    mask = [(a + 1e-15) / (b + 1e-15) >= 1.0 for a, b in zip(fisher(forget), fisher(retain))]
    assert 0 < sum(int(m.sum()) for m in mask) < sum(m.numel() for m in mask)
    ref.train()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    iterations = round(2.0 * len(retain))

    def forever(loader):
        while True:
            yield from loader

    f_it, r_it = forever(forget), forever(retain)
    for i in range(iterations):
        c = 0.5 * (1 + math.cos(math.pi * i / iterations))
        for g in opt.param_groups:
            g["lr"] = 0.05 * c
        if i % 3 == 0:
            x, y = next(f_it)
            ce = F.cross_entropy(ref(x), y, reduction="none")
            wts = 1 / (ce.detach() ** 0.5 + 1e-15)
            loss = -5.0 * c * (wts / wts.sum() * ce).sum()
            opt.zero_grad()
            loss.backward()
            for p, m in zip(ref.parameters(), mask):
                p.grad *= m
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 7.0)
            opt.step()
        x, y = next(r_it)
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
    assert _close(out, ref, atol=1e-5)


# ---------------------------------------------------------------- boundary expanding

def test_boundary_expanding_matches_a_loop_on_a_widened_model(setup):
    s, net = setup
    out = unlearn.get("boundary_expanding", epochs=3, lr=0.05, batch_size=16)(net, s, device="cpu", seed=4)
    wide = copy.deepcopy(net)
    shadow = torch.nn.Linear(64, 11)
    boundary._layers.reset_layer_(shadow, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        shadow.weight[:10] = net.fc.weight
        shadow.bias[:10] = net.fc.bias
    wide.fc = shadow
    opt = torch.optim.SGD(wide.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    wide.train()
    loader = s.loader("forget", batch_size=16, shuffle=True, seed=4)
    for _ in range(3):
        for x, _ in loader:
            opt.zero_grad()
            F.cross_entropy(wide(x), torch.full((x.shape[0],), 10)).backward()
            opt.step()
    assert out.fc.out_features == 10
    assert torch.allclose(out.fc.weight, wide.fc.weight[:10], atol=1e-6)
    assert torch.allclose(out.conv1.weight, wide.conv1.weight, atol=1e-6)
    xf, yf = s.xy("forget")
    assert train.evaluate(out, xf, yf).accuracy < train.evaluate(net, xf, yf).accuracy


# ---------------------------------------------------------------- UNSIR

def test_error_maximising_noise_matches_adam_on_the_penalised_loss(setup):
    _, net = setup
    gen = torch.Generator().manual_seed(0)
    noise = unsir.error_maximising_noise(net, 3, shape=(1, 8, 8), batch=6, steps=5, lr=0.1, l2=0.1, generator=gen)
    n = torch.randn((6, 1, 8, 8), generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    opt = torch.optim.Adam([n], lr=0.1)
    frozen = copy.deepcopy(net).eval()
    start = F.cross_entropy(frozen(n), torch.full((6,), 3)).item()
    for _ in range(5):
        loss = -F.cross_entropy(frozen(n), torch.full((6,), 3)) + 0.1 * (n ** 2).sum((1, 2, 3)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.allclose(noise, n.detach(), atol=1e-5)
    assert F.cross_entropy(frozen(noise), torch.full((6,), 3)).item() > start  # the error grew
    assert all(p.grad is None or True for p in net.parameters()) and not net.training


def test_unsir_impairs_then_repairs_a_forgotten_class():
    s = data.make_splits("digits", forget="class", forget_class=3, train_size=300, val_size=60, test_size=100,
                         seed=0)
    net = train.train_on(s, model="small_cnn", recipe=train.Recipe(epochs=8, batch_size=32, lr=0.1), seed=0)
    out = unlearn.get("unsir", noise_batch=32, noise_copies=4, impair_lr=0.02, repair_lr=0.005, batch_size=32)(
        net, s, device="cpu", seed=0)
    assert train.evaluate(out, *s.xy("forget")).accuracy < 0.2 < train.evaluate(net, *s.xy("forget")).accuracy
    assert train.evaluate(out, *s.xy("retain")).accuracy > 0.8
    assert unsir._retain_subset(torch.tensor([0, 1, 0, 1, 0]), 2).tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------- SCAR

def test_mahalanobis_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(5, 4, generator=g)
    means = torch.rand(3, 4, generator=g)
    a = torch.randn(3, 4, 4, generator=g)
    inv = a @ a.transpose(1, 2)
    fast = scar.mahalanobis(f, means, inv, delta=0.5)
    for i in range(5):
        for c in range(3):
            d = F.normalize(f[i].sqrt(), dim=0) - F.normalize(means[c], dim=0)
            assert float(fast[i, c]) == pytest.approx(float(d @ inv[c] @ d), rel=1e-4)


def test_class_distributions_are_shrunk_normalised_and_inverted():
    g = torch.Generator().manual_seed(1)
    feats, labels = torch.rand(40, 3, generator=g), torch.arange(40) % 2
    means, inverses = scar.class_distributions(feats, labels, [0, 1], delta=0.5, gamma1=3.0, gamma2=3.0)
    sample = feats[labels == 1].sqrt()
    cov = torch.cov(sample.T)
    for _ in range(2):
        cov = scar.shrink_covariance(cov, gamma1=3.0, gamma2=3.0)
    sd = cov.diagonal().sqrt()
    corr = cov / (sd[:, None] * sd[None])
    assert torch.allclose(means[1], sample.mean(0)) and torch.allclose(inverses[1] @ corr, torch.eye(3), atol=1e-4)


def test_scar_pulls_forget_features_away_and_stops_for_a_forgotten_class():
    s = data.make_splits("digits", forget="class", forget_class=3, train_size=300, val_size=60, test_size=100,
                         seed=0)
    net = train.train_on(s, model="small_cnn", recipe=train.Recipe(epochs=8, batch_size=32, lr=0.1), seed=0)
    method = unlearn.get("scar", epochs=30, lr=5e-3, batch_size=64)
    out = method(net, s, device="cpu", seed=0)
    assert train.evaluate(out, *s.xy("forget")).accuracy < 0.01  # the class-removal stopping target
    assert train.evaluate(out, *s.xy("retain")).accuracy > 0.7  # the distillation keeps most of the rest
    assert method.last_passes < 30 * 3 * 300  # it stopped before its 30 epochs


# ---------------------------------------------------------------- Amnesiac and train's record

def test_fit_records_updates_without_changing_training():
    s = data.make_splits("digits", train_size=200, val_size=0, test_size=100, seed=0)
    x, y = s.xy("train")

    def make():
        return models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0)

    plain = train.fit(make(), x, y, epochs=2, batch_size=32, lr=0.05, seed=3)
    logged = train.fit(make(), x, y, epochs=2, batch_size=32, lr=0.05, seed=3, record_updates=True)
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), logged.parameters()))
    log = logged.update_log
    assert log.steps == len(log.updates) == 2 * math.ceil(200 / 32) and log.examples == 200
    assert all(np.array_equal(np.sort(np.concatenate(log.rows[e * 7:(e + 1) * 7])), np.arange(200)) for e in (0, 1))
    init = dict(make().named_parameters())  # the final weights are the initial ones plus every update
    for name, p in logged.named_parameters():
        assert torch.allclose(p, init[name] + sum(u[name] for u in log.updates), atol=1e-5)
    some = train.fit(make(), x, y, epochs=2, batch_size=32, lr=0.05, seed=3, record_updates=[5, 17])
    assert 0 < len(some.update_log.updates) < log.steps
    assert all(np.isin(r, [5, 17]).any() for r in some.update_log.rows)
    with pytest.raises(ValueError, match="record_updates rows must lie in"):
        train.fit(make(), x, y, epochs=1, record_updates=[500])


def test_amnesiac_rolls_back_exactly_the_steps_that_held_forget_examples():
    s = data.make_splits("digits", train_size=200, val_size=0, test_size=100, forget_fraction=0.02, seed=0)
    net = train.train_on(s, model="small_cnn", recipe=train.Recipe(epochs=2, batch_size=16, lr=0.05), seed=0,
                         record_updates=True)
    log = net.update_log
    assert np.array_equal(log.index, s.train)
    rows = np.nonzero(np.isin(s.train, s.forget))[0]
    held = [i for i, r in enumerate(log.rows) if np.isin(r, rows).any()]
    assert 0 < len(held) < log.steps
    out = unlearn.get("amnesiac", epochs=0)(net, s, device="cpu")
    for name, p in net.named_parameters():
        expected = p - sum(log.updates[i][name] for i in held)
        assert torch.allclose(dict(out.named_parameters())[name], expected, atol=1e-6)
    assert not hasattr(out, "update_log") and hasattr(net, "update_log")  # the input keeps its log
    repaired = unlearn.get("amnesiac", epochs=1)(net, s, device="cpu", seed=0)
    assert not _close(repaired, out)


def test_amnesiac_refuses_models_without_a_usable_log():
    s = data.make_splits("digits", train_size=200, val_size=0, test_size=100, seed=0)
    recipe = train.Recipe(epochs=1, batch_size=32, lr=0.05)
    with pytest.raises(ValueError, match="record_updates=True"):
        unlearn.get("amnesiac")(train.train_on(s, model="small_cnn", recipe=recipe), s, device="cpu")
    other = data.make_splits("digits", train_size=150, val_size=0, test_size=100, seed=0)
    logged = train.train_on(other, model="small_cnn", recipe=recipe, record_updates=True)
    with pytest.raises(ValueError, match="were not in the recorded training run|covers 150 training rows"):
        unlearn.get("amnesiac")(logged, s, device="cpu")
    x, y = s.xy("train")
    partial = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=0)
    train.fit(partial, x, y, epochs=1, batch_size=32, record_updates=[0, 1])
    with pytest.raises(ValueError, match="cannot be rolled back"):
        unlearn.get("amnesiac")(partial, s, device="cpu")
