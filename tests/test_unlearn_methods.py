"""The defining mechanism of each deep-net unlearning method, checked against slow references
(plain Python loops over ``torch.optim.SGD``, per-example gradient loops) or exact properties."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mu_lib import data, models, train, unlearn
from mu_lib.unlearn.boundary import boundary_labels, fgsm
from mu_lib.unlearn.dampen import dampen, fisher_variances, importances, retain_fisher
from mu_lib.unlearn.distill import kd_loss, rewind_target, scrub_checkpoints
from mu_lib.unlearn.partial import blocks, reinit_blocks, trainable_blocks
from mu_lib.unlearn.relabel import RandomLabelEpochs, saliency_mask
from mu_lib.unlearn.sparse import l1_weight


@pytest.fixture(scope="module")
def setup():
    s = data.make_splits("digits", train_size=300, val_size=60, test_size=100, seed=0)
    net = train.train_on(s, model="small_cnn", recipe=train.Recipe(epochs=15, batch_size=32, lr=0.1), seed=0)
    return s, net


def _params(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def _close(a, b, **kw):
    return all(torch.allclose(a[k], b[k], **kw) for k in a)


def _state_equal(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


# ---------------------------------------------------------------- gradient ascent, NegGrad+

def test_gradient_ascent_increases_the_forget_loss(setup):
    s, net = setup
    out = unlearn.get("gradient_ascent", epochs=5, batch_size=8, lr=0.01)(net, s, device="cpu", seed=0)
    xf, yf = s.xy("forget")
    before, after = train.evaluate(net, xf, yf), train.evaluate(out, xf, yf)
    assert after.loss > 10 * before.loss and after.accuracy < before.accuracy


def _neggrad_reference(net, s, *, alpha, proximal, lr, epochs, batch_size, seed):
    """NegGrad+ written out: eval mode, retain batches paired with the next (cycled) forget batch."""
    ref = copy.deepcopy(net).eval()
    theta0 = [p.detach().clone() for p in ref.parameters()]
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    retain = s.loader("retain", batch_size=batch_size, shuffle=True, seed=seed)
    forget = s.loader("forget", batch_size=batch_size, shuffle=True, seed=seed + 1)
    forget_batches = iter(())
    for _ in range(epochs):
        for xr, yr in retain:
            try:
                xf, yf = next(forget_batches)
            except StopIteration:
                forget_batches = iter(forget)
                xf, yf = next(forget_batches)
            prox = sum(((p - p0) ** 2).sum() for p, p0 in zip(ref.parameters(), theta0))
            loss = alpha * (F.cross_entropy(ref(xr), yr) + proximal / 2 * prox)
            if alpha < 1:
                loss = loss - (1 - alpha) * F.cross_entropy(ref(xf), yf)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return ref


@pytest.mark.parametrize("alpha, proximal", [(1.0, 0.0), (0.8, 0.5)])
def test_neggrad_plus_matches_its_loss_and_is_finetuning_at_alpha_one(setup, alpha, proximal):
    s, net = setup
    kw = dict(alpha=alpha, proximal=proximal, lr=0.02, epochs=2, batch_size=64)
    out = unlearn.get("neggrad_plus", **kw)(net, s, device="cpu", seed=4)
    ref = _neggrad_reference(net, s, seed=4, **kw)
    assert _close(_params(out), _params(ref), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- relabelling

def test_random_labels_relabel_only_the_forget_set(setup):
    s, _ = setup
    k = s.data.num_classes
    epochs = RandomLabelEpochs(s.loader("forget", batch_size=16), s.loader("retain", batch_size=64),
                               num_classes=k, generator=torch.Generator().manual_seed(0))
    yf_true, yr_true = s.xy("forget")[1], s.xy("retain")[1]
    draws = []
    for _ in range(20):
        batches = list(epochs)
        assert len(batches) == len(epochs)
        forget_labels = torch.cat([yb for _, yb in batches[:len(epochs.forget)]])
        retain_labels = torch.cat([yb for _, yb in batches[len(epochs.forget):]])
        assert torch.equal(retain_labels, yr_true)  # retain labels are never touched
        draws.append(forget_labels)
    draws = torch.stack(draws)
    assert not torch.equal(draws[0], draws[1])  # fresh labels every epoch
    assert abs(float((draws == yf_true).float().mean()) - 1 / k) < 0.04  # uniform, true class included
    from scipy.stats import chisquare

    assert chisquare(torch.bincount(draws.flatten(), minlength=k).numpy()).pvalue > 1e-3


def test_random_labels_is_sequential_forget_then_retain_sgd(setup):
    s, net = setup
    out = unlearn.get("random_labels", epochs=2, batch_size=64, lr=0.02)(net, s, device="cpu", seed=1)
    ref = copy.deepcopy(net).train()
    opt = torch.optim.SGD(ref.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(1 + 2)
    forget = s.loader("forget", batch_size=64, shuffle=True, seed=2)
    retain = s.loader("retain", batch_size=64, shuffle=True, seed=1)
    for _ in range(2):
        batches = [(x, torch.randint(0, 10, y.shape, generator=gen)) for x, y in forget] + list(retain)
        for x, y in batches:
            opt.zero_grad()
            F.cross_entropy(ref(x), y).backward()
            opt.step()
    assert _close(_params(out), _params(ref), rtol=1e-5, atol=1e-6)


def test_salun_mask_keeps_the_top_fraction_and_masked_weights_never_move(setup):
    s, net = setup
    # slow reference of the saliency: accumulate .grad of -CE over forget batches
    ref = copy.deepcopy(net).eval()
    ref.zero_grad()
    for x, y in s.loader("forget", batch_size=256):
        (-F.cross_entropy(ref(x), y)).backward()
    sal = {n: p.grad.abs() for n, p in ref.named_parameters()}
    mask = saliency_mask(net, s.loader("forget", batch_size=256), threshold=0.3)
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == round(0.3 * total)
    kept = torch.cat([sal[n][mask[n]] for n in mask])
    dropped = torch.cat([sal[n][~mask[n]] for n in mask])
    assert float(kept.min()) >= float(dropped.max()) - 1e-7
    before = _params(net)
    out = _params(unlearn.get("salun", threshold=0.3, epochs=2, batch_size=64, lr=0.05)(net, s, device="cpu", seed=0))
    for n in before:
        assert torch.equal(out[n][~mask[n]], before[n][~mask[n]]), f"masked-out weights of {n} moved"
    assert sum(int((out[n] != before[n]).sum()) for n in before) > 0.5 * round(0.3 * total)


def _fgsm_one_by_one(model, x, y, eps, mean, std):
    """FGSM written per example in pixel space (the slow reference)."""
    m, sd = mean[0], std[0]
    advs = []
    for i in range(x.shape[0]):
        pix = (x[i:i + 1] * sd + m).clone().requires_grad_(True)
        F.cross_entropy(model((pix - m) / sd), y[i:i + 1]).backward()
        adv = torch.round(torch.clamp(pix.detach() + eps * pix.grad.sign(), 0, 1) * 255) / 255
        advs.append((adv - m) / sd)
    return torch.cat(advs)


def test_boundary_labels_are_the_frozen_models_predictions_on_fgsm_examples(setup):
    s, net = setup
    frozen = copy.deepcopy(net).eval()
    x, y = s.xy("forget")
    ds = s.data
    adv = fgsm(frozen, x, y, eps=0.1, mean=ds.mean, std=ds.std)
    slow = _fgsm_one_by_one(frozen, x, y, 0.1, ds.mean, ds.std)
    assert float((adv - slow).abs().gt(1e-4).float().mean()) < 0.01
    moved = (ds.to_pixels(adv) - ds.to_pixels(x)).abs().max()
    assert 0.09 < float(moved) <= 0.1 + 1 / 255 + 1e-5
    labels = boundary_labels(frozen, x, y, eps=0.1, mean=ds.mean, std=ds.std)
    with torch.no_grad():
        assert torch.equal(labels, frozen(slow).argmax(1))
    assert float((labels != y).float().mean()) > 0.2  # FGSM pushes many across the boundary

    # the method trains towards those labels, always from the frozen original, never the live model
    out = unlearn.get("boundary_shrink", epochs=3, batch_size=8, lr=0.05)(net, s, device="cpu", seed=0)
    ref = copy.deepcopy(net).train()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = s.loader("forget", batch_size=8, shuffle=True, seed=0)
    for _ in range(3):
        for xb, yb in loader:
            target = boundary_labels(frozen, xb, yb, eps=0.1, mean=ds.mean, std=ds.std)
            opt.zero_grad()
            F.cross_entropy(ref(xb), target).backward()
            opt.step()
    assert _close(_params(out), _params(ref), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- distillation

def test_kd_loss_is_hintons_scaled_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    T = 3.0
    pt = torch.softmax(t / T, 1)
    slow = (pt * (pt.log() - torch.log_softmax(s / T, 1))).sum(1).mean() * T ** 2
    assert torch.allclose(kd_loss(s, t, temperature=T), slow, atol=1e-6)
    assert float(kd_loss(t, t, temperature=T)) == pytest.approx(0.0, abs=1e-6)


def test_scrub_returns_the_rewound_checkpoint(setup):
    s, net = setup
    kw = dict(epochs=4, msteps=3, lr=0.05, forget_batch_size=4, kd_T=1.0)
    method = unlearn.get("scrub", **kw)
    checkpoints = scrub_checkpoints(copy.deepcopy(net), s, method.config, device="cpu", seed=2)
    assert [c.epoch for c in checkpoints] == [1, 2, 3, 4]
    probe = copy.deepcopy(net)
    errors = []
    for c in checkpoints:  # forget errors, recomputed independently
        probe.load_state_dict(c.state)
        errors.append(1 - train.evaluate(probe, *s.xy("forget")).accuracy)
    assert np.allclose(errors, [c.forget_error for c in checkpoints])
    assert max(errors) > 0  # the max-steps did push the forget set away
    # target: the final student's error on the validation examples of the forget set's classes
    xv, yv = s.xy("val")
    keep = np.isin(yv.numpy(), np.unique(s.xy("forget")[1].numpy()))
    target = 1 - train.evaluate(probe, xv[keep], yv[keep]).accuracy
    expected = int(np.argmin([abs(e - target) for e in errors]))
    assert expected != len(errors) - 1  # so that rewinding is visible
    out = method(net, s, device="cpu", seed=2)
    assert _state_equal(out.state_dict(), checkpoints[expected].state, checkpoints[expected].state)
    plain = unlearn.get("scrub", rewind=False, **kw)(net, s, device="cpu", seed=2)
    assert _state_equal(plain.state_dict(), checkpoints[-1].state, checkpoints[-1].state)


def test_scrub_forget_validation_is_the_forgotten_class_for_class_forgetting(setup):
    _, net = setup
    s = data.make_splits("digits", forget="class", forget_class=3, train_size=300, val_size=60, test_size=100,
                         seed=0)
    xv, yv = s.xy("val")
    expected = 1 - train.evaluate(net, xv[yv == 3], yv[yv == 3]).accuracy
    assert rewind_target(net, s, device="cpu") == pytest.approx(expected)


def test_bad_teacher_pulls_the_forget_set_towards_the_incompetent_teacher(setup):
    s, net = setup
    out = unlearn.get("bad_teacher", epochs=5, lr=1e-3, batch_size=32)(net, s, device="cpu", seed=0)
    bad = models.reinitialize(copy.deepcopy(net), seed=0).eval()
    xf, _ = s.xy("forget")
    xr, yr = s.xy("retain")

    def kl_to_bad(model):
        with torch.no_grad():
            return float(F.kl_div(torch.log_softmax(model.eval()(xf), 1), torch.softmax(bad(xf), 1),
                                  reduction="batchmean"))

    assert kl_to_bad(out) < 0.5 * kl_to_bad(net)
    agree = (train.evaluate(out, xr, yr).predictions == train.evaluate(net, xr, yr).predictions).mean()
    assert agree > 0.9  # the competent teacher keeps the retain set


# ---------------------------------------------------------------- dampening

def test_ssd_importances_match_a_loop_and_dampening_never_grows(setup):
    s, net = setup
    ref = copy.deepcopy(net).eval()
    slow = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    batches = list(s.loader("forget", batch_size=16))
    for x, y in batches:
        ref.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        for n, p in ref.named_parameters():
            slow[n] += p.grad ** 2 / len(batches)
    fast = importances(net, s.loader("forget", batch_size=16))
    assert _close(fast, slow, rtol=1e-4, atol=1e-10)

    alpha, lam = 2.0, 1.0
    before = _params(net)
    out = _params(unlearn.get("ssd", alpha=alpha, lam=lam)(net, s, device="cpu"))
    i_f = importances(net, s.loader("forget", batch_size=128))
    i_d = importances(net, s.loader("train", batch_size=128))
    selected = 0
    for n in before:
        sel = i_f[n] > alpha * i_d[n]
        selected += int(sel.sum())
        assert torch.equal(out[n][~sel], before[n][~sel])  # untouched below the selection threshold
        assert bool((out[n].abs() <= before[n].abs()).all())  # never grows
        beta = torch.clamp(lam * i_d[n][sel] / i_f[n][sel], max=1.0)
        assert torch.allclose(out[n][sel], before[n][sel] * beta, rtol=1e-5, atol=1e-8)
    assert selected > 0


def test_dampen_closed_form_on_a_toy():
    lin = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -2.0, 2.0]]))
    dampen(lin, {"weight": torch.tensor([[1.0, 1.0, 1.0]])}, {"weight": torch.tensor([[4.0, 0.5, 1.5]])},
           alpha=1.0, lam=0.5)
    assert torch.allclose(lin.weight, torch.tensor([[0.25, -2.0, 2.0 / 3.0]]))


def test_retain_fisher_matches_golatkars_per_example_loop(setup):
    s, net = setup
    x, y = s.xy("retain")
    x, y = x[:12], y[:12]
    ref = copy.deepcopy(net).eval()
    slow = {n: torch.zeros_like(p) for n, p in ref.named_parameters()}
    for i in range(x.shape[0]):  # Golatkar's hessian(): batch size 1, every class weighted by p(y|x)
        with torch.no_grad():
            prob = torch.softmax(ref(x[i:i + 1]), 1)[0]
        for c in range(10):
            ref.zero_grad()
            F.cross_entropy(ref(x[i:i + 1]), torch.tensor([c])).backward()
            for n, p in ref.named_parameters():
                slow[n] += prob[c] * p.grad ** 2 / x.shape[0]
    from mu_lib.data import TensorLoader

    fast = retain_fisher(net, TensorLoader(x, y, batch_size=5))
    assert _close(fast, slow, rtol=1e-4, atol=1e-12)


def test_fisher_variances_follow_golatkars_rules(setup):
    _, net = setup
    fim = {n: torch.full_like(p, 1e-6) for n, p in net.named_parameters()}
    fim["conv1.weight"][0] = 1e4  # a well-determined output channel
    dist = fisher_variances(net, fim, alpha=1e-3, forget_classes=[3])
    mu, var = dist["conv1.weight"]
    assert torch.equal(mu, net.conv1.weight)
    # clamp 1/F at 1e3, times alpha, averaged over the input dimension (dim 1): channel 0 is tiny
    assert torch.allclose(var[1], torch.full_like(var[1], 1e-3 * 1e3))
    assert float(var[0].max()) < 1e-6
    _, var_b = dist["conv1.bias"]  # one-dimensional: times 10
    assert torch.allclose(var_b, torch.full_like(var_b, 10 * 1e-3 * 1e3))
    mu_fc, var_fc = dist["fc.weight"]  # classifier: clamp 1e2, times 10; the forgotten row zeroed
    assert torch.allclose(var_fc[0], torch.full_like(var_fc[0], 10 * 1e-3 * 1e2))
    assert bool((mu_fc[3] == 0).all()) and torch.allclose(var_fc[3], torch.full_like(var_fc[3], 1e-3))
    assert torch.equal(mu_fc[0], net.fc.weight[0])


def test_fisher_forgetting_with_tiny_noise_is_the_original_and_zeroes_forgotten_classes(setup):
    s, net = setup
    out = unlearn.get("fisher", alpha=1e-16)(net, s, device="cpu", seed=0)
    assert _close(_params(out), _params(net), atol=1e-4)
    sc = data.make_splits("digits", forget="class", forget_class=3, train_size=300, val_size=60, test_size=100,
                          seed=0)
    out = unlearn.get("fisher", alpha=1e-16)(net, sc, device="cpu", seed=0)
    assert float(out.fc.weight[3].detach().abs().max()) < 0.2 and float(out.fc.bias[3].detach().abs()) < 0.2
    assert train.evaluate(out, *sc.xy("forget")).accuracy < 0.05


# ---------------------------------------------------------------- sparsity

def test_l1_weight_decays_linearly_then_stops():
    assert [l1_weight(t, epochs=5, alpha=2.0) for t in range(5)] == pytest.approx([2.0, 1.6, 1.2, 0.8, 0.4])
    assert l1_weight(2.5, epochs=5, alpha=2.0) == pytest.approx(1.0)  # continuous in time
    assert [l1_weight(t, epochs=5, alpha=2.0, no_l1_epochs=3) for t in range(5)] == [2.0, 1.0, 0.0, 0.0, 0.0]
    assert [l1_weight(t, epochs=2, alpha=2.0, no_l1_epochs=2) for t in range(2)] == [2.0, 2.0]
    with pytest.raises(ValueError, match="no_l1_epochs"):
        unlearn.get("l1_sparse", epochs=2, no_l1_epochs=3)


def test_l1_sparse_matches_a_loop_with_the_decaying_penalty(setup):
    s, net = setup
    kw = dict(alpha=1e-3, epochs=3, no_l1_epochs=1, lr=0.02, batch_size=64)
    out = unlearn.get("l1_sparse", **kw)(net, s, device="cpu", seed=0)
    ref = copy.deepcopy(net).train()
    opt = torch.optim.SGD(ref.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    loader = s.loader("retain", batch_size=64, shuffle=True, seed=0)
    step = 0
    for _epoch in range(3):
        for x, y in loader:
            t = step / len(loader)  # time in epochs; the penalty fades over the first 2 of them
            gamma = 1e-3 * (1 - t / 2) if t < 2 else 0.0
            l1 = sum(p.abs().sum() for p in ref.parameters())
            opt.zero_grad()
            (F.cross_entropy(ref(x), y) + gamma * l1).backward()
            opt.step()
            step += 1
    assert _close(_params(out), _params(ref), rtol=1e-5, atol=1e-6)
    l1 = [sum(float(p.detach().abs().sum()) for p in m.parameters()) for m in (out, net)]
    assert l1[0] < l1[1]


# ---------------------------------------------------------------- partial retraining

@pytest.fixture(scope="module")
def tiny_resnet():
    g = torch.Generator().manual_seed(0)
    ds = data.Dataset(name="tiny_rgb", x=torch.randn(40, 3, 8, 8, generator=g), y=torch.arange(40) % 4,
                      classes=("a", "b", "c", "d"), mean=(0.5,) * 3, std=(0.25,) * 3, augment="crop_flip")
    s = data.Splits(ds, retain=np.arange(24), forget=np.arange(24, 32), val=np.arange(32, 36),
                    test=np.arange(36, 40))
    net = models.make_model("resnet18", num_classes=4, in_channels=3, image_size=8, seed=0)
    train.fit(net, *s.xy("train"), epochs=1, batch_size=16, lr=0.01, seed=0)
    return s, net


def test_blocks_of_the_books_models():
    cnn = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8)
    assert blocks(cnn) == [("conv1",), ("conv2",), ("fc1",), ("fc",)]
    assert trainable_blocks(cnn, k=2) == [("conv2",), ("fc1",), ("fc",)]
    res = models.make_model("resnet18", num_classes=4, in_channels=3, image_size=8)
    assert blocks(res)[0] == ("conv1", "bn1") and blocks(res)[-1] == ("fc",)
    with pytest.raises(ValueError, match=r"k must be in \[0, 3\]"):
        trainable_blocks(cnn, k=4)


def test_cf_k_leaves_the_first_blocks_bitwise_unchanged(setup, tiny_resnet):
    s, net = setup
    out = unlearn.get("cf_k", k=1, epochs=2, batch_size=64, lr=0.05)(net, s, device="cpu", seed=0)
    before, after = net.state_dict(), out.state_dict()
    assert _state_equal(before, after, [k for k in before if k.startswith(("conv1.", "conv2."))])
    assert not torch.equal(before["fc1.weight"], after["fc1.weight"])
    assert not torch.equal(before["fc.weight"], after["fc.weight"])

    s, net = tiny_resnet  # batch norm: frozen blocks keep their running statistics too
    out = unlearn.get("cf_k", k=1, epochs=1, batch_size=8, lr=0.05)(net, s, device="cpu", seed=0)
    before, after = net.state_dict(), out.state_dict()
    frozen = [k for k in before if not k.startswith(("layer4.", "fc."))]
    assert any("running_mean" in k for k in frozen)
    assert _state_equal(before, after, frozen)
    assert not torch.equal(before["layer4.1.bn2.running_mean"], after["layer4.1.bn2.running_mean"])


def test_eu_k_reinitialises_the_last_blocks(setup):
    s, net = setup
    fresh = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=8, seed=5)
    re = reinit_blocks(copy.deepcopy(net), k=1, seed=5).state_dict()
    assert _state_equal(re, fresh.state_dict(), ["fc1.weight", "fc1.bias", "fc.weight", "fc.bias"])
    assert _state_equal(re, net.state_dict(), ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"])
    # two originals that differ only in the re-initialised blocks give the same unlearned model
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.fc1.weight.mul_(-3.0)
        other.fc.bias.add_(1.0)
    method = unlearn.get("eu_k", k=1, epochs=2, batch_size=64, lr=0.05)
    a, b = method(net, s, device="cpu", seed=5), method(other, s, device="cpu", seed=5)
    assert _state_equal(a.state_dict(), b.state_dict(), a.state_dict())
    assert _state_equal(a.state_dict(), net.state_dict(), ["conv1.weight", "conv2.weight"])
