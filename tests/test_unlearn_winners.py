"""The defining mechanism of each NeurIPS 2023 winner (the generic contract is tested elsewhere).

Each test compares a method with a slow, obviously correct reference: a sort instead of top-k,
a plain loop of SGD steps, a closed form, or a re-run of the mechanism alone.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mu_lib import data, models, train, unlearn
from mu_lib.data import Dataset, Splits
from mu_lib.unlearn import winners as w


@pytest.fixture(scope="module")
def setup():
    """Animal shapes (28x28): 300 training images (30 forgotten), 60 val; a small CNN trained 2 epochs."""
    s = data.make_splits("animal_shapes", train_size=300, val_size=60, test_size=100, seed=0)
    net = train.train_on(s, model="small_cnn", recipe=train.Recipe(epochs=2, batch_size=64, lr=0.05), seed=0)
    return s, net


def _changed(a: torch.nn.Module, b: torch.nn.Module) -> dict[str, bool]:
    pb = dict(b.named_parameters())
    return {n: not torch.equal(p, pb[n]) for n, p in a.named_parameters()}


def _poisoned(s: Splits, part: str) -> Splits:
    """The same splits over a copy of the data whose ``part`` images are NaN."""
    x = s.data.x.clone()
    x[torch.from_numpy(s.indices(part))] = float("nan")
    ds = Dataset(name="poisoned", x=x, y=s.data.y, classes=s.data.classes, mean=s.data.mean, std=s.data.std)
    return Splits(ds, retain=s.retain, forget=s.forget, val=s.val, test=s.test)


def test_family_and_declared_reads():
    assert sorted(unlearn.available("competition")) == sorted(
        ["fcs", "msg", "cfw", "prmq", "ct", "kde", "rni", "reinit_mse"])
    uses = {n: set(unlearn.info(n).uses) for n in unlearn.available("competition")}
    assert uses["reinit_mse"] == {"retain"} and uses["kde"] == {"retain", "val"}
    assert uses["fcs"] == uses["msg"] == {"retain", "forget"}


def test_layer_vocabulary_on_small_cnn_and_resnet18():
    cnn = models.make_model("small_cnn", num_classes=10, in_channels=1, image_size=28, seed=0)
    res = models.make_model("resnet18", num_classes=10, in_channels=3, image_size=32, seed=0)
    assert w.first_conv(cnn)[0] == "conv1" and w.first_conv(res)[0] == "conv1"
    assert w.classifier(cnn)[0] == "fc" and w.classifier(res)[0] == "fc"
    assert [n for n, _ in w.reinit_candidates(cnn)] == ["conv1", "conv2", "fc1"]
    names = [n for n, _ in w.reinit_candidates(res)]
    assert len(names) == 17 and not any("downsample" in n or n == "fc" for n in names)
    assert sum(w.is_projection_shortcut(m) for m in res.modules()) == 3


def test_ct_transposes_every_kernel_then_finetunes_from_it(setup):
    s, net = setup
    only = unlearn.get("ct", epochs=0)(net, s, device="cpu", seed=1)
    for (_, a), (_, b) in zip(w.conv_layers(only), w.conv_layers(net)):
        assert torch.equal(a.weight, b.weight.transpose(2, 3))
        assert torch.equal(a.bias, b.bias)
    assert torch.equal(only.fc.weight, net.fc.weight)
    # CT = the finetune method (same loop) started from the transposed model
    ct = unlearn.get("ct", epochs=1)(net, s, device="cpu", seed=1)
    ref = unlearn.get("finetune", epochs=1, lr=1e-3, momentum=0.9, weight_decay=5e-4, batch_size=64)(
        only, s, device="cpu", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(ct.parameters(), ref.parameters()))
    with pytest.raises(ValueError, match="non-square"):
        w.transpose_conv_kernels_(torch.nn.Sequential(torch.nn.Conv2d(1, 1, (1, 3))))


def test_msg_reinitialises_exactly_the_smallest_gradients(setup):
    s, net = setup
    grads = w.msg_gradients(copy.deepcopy(net), *s.xy("retain"), *s.xy("forget"), batch_size=64,
                            generator=torch.Generator().manual_seed(5))
    assert set(grads) == {"conv1.weight", "conv2.weight"}
    masks = w.small_gradient_masks(grads, fraction=0.3)
    for name, g in grads.items():
        m = masks[name]
        assert int(m.sum()) == round(0.3 * g.numel())
        assert g.abs()[m].max() <= g.abs()[~m].min()  # a sort-free check of "smallest"
    glob = w.small_gradient_masks(grads, fraction=0.3, selection="global")
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    chosen = torch.cat([glob[n].flatten() for n in grads])
    assert int(chosen.sum()) == round(0.3 * flat.numel()) and flat[chosen].max() <= flat[~chosen].min()
    # the method, without fine-tuning, changes exactly those entries (same seed -> same subset)
    out = unlearn.get("msg", epochs=0)(net, s, device="cpu", seed=5)
    params = dict(out.named_parameters())
    for name, p in net.named_parameters():
        if name in masks:
            assert torch.equal(p != params[name], masks[name])
        else:
            assert torch.equal(p, params[name])


@pytest.mark.parametrize("weight_decay, scale_decay", [(0.0, False), (5e-3, False), (5e-3, True)])
def test_msg_fine_tunes_kept_weights_ten_times_slower(setup, weight_decay, scale_decay):
    """Two epochs of MSG (momentum 0) against a plain loop: the team's gradient scaling
    ``p -= lr_t * (scale * grad + wd * p)`` by default, ``p -= lr_t * scale * (grad + wd * p)`` with
    ``scale_weight_decay``; ``lr_t`` follows the warm-up-and-decay triangle step by step."""
    s, net = setup
    kw = dict(lr=0.01, momentum=0.0, weight_decay=weight_decay, scale_weight_decay=scale_decay)
    out = unlearn.get("msg", epochs=2, **kw)(net, s, device="cpu", seed=2)
    ref = unlearn.get("msg", epochs=0)(net, s, device="cpu", seed=2).train()
    grads = w.msg_gradients(copy.deepcopy(net), *s.xy("retain"), *s.xy("forget"), batch_size=64,
                            generator=torch.Generator().manual_seed(2))
    scale = {n: torch.where(m, 1.0, 0.1) for n, m in w.small_gradient_masks(grads, fraction=0.3).items()}
    loader = s.loader("retain", batch_size=64, shuffle=True, seed=2)
    total, step = 2 * len(loader), 0
    for _ in range(2):
        for xb, yb in loader:
            x = 1 + 5 * step / total  # the triangle of Deep Unlearn's 5-epoch schedule, per step
            lr = kw["lr"] * min(x, 6 - x) / 3
            ref.zero_grad()
            F.cross_entropy(ref(xb), yb).backward()
            with torch.no_grad():
                for n, p in ref.named_parameters():
                    sc = scale.get(n, 1.0)
                    p -= lr * (sc * (p.grad + weight_decay * p) if scale_decay else sc * p.grad + weight_decay * p)
            step += 1
    for (n, p), q in zip(out.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_msg_lr_schedule_warms_up_then_decays():
    expected = [round(v, 6) for v in (1 / 3, 2 / 3, 1, 2 / 3, 1 / 3)]
    assert [round(w.msg_lr_factor(e / 5), 6) for e in range(5)] == expected
    assert w.msg_lr_factor(0.5) == pytest.approx(5 / 6) and w.msg_lr_factor(0.999) > 0


def test_prmq_prunes_the_requested_fraction_globally(setup):
    _, net = setup
    pruned = copy.deepcopy(net)
    masks = w.prune_and_reinit_(pruned, amount=0.9, generator=torch.Generator().manual_seed(0))
    old = dict(net.named_parameters())
    assert set(masks) == {n for n, _ in net.named_parameters()}
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.9 * total)
    mags = torch.cat([old[n].detach().abs().flatten() for n in masks])
    sel = torch.cat([masks[n].flatten() for n in masks])
    assert mags[sel].max() <= mags[~sel].min()  # the smallest magnitudes over all layers together
    for name, p in pruned.named_parameters():
        m = masks[name]
        assert torch.equal(p[~m], old[name][~m])  # kept entries untouched
        module = pruned.get_submodule(name.rsplit(".", 1)[0])
        bound = math.sqrt(1.0 / module.weight[0].numel())
        assert bool((p[m].abs() <= bound).all()) and bool((p[m] != 0).all())  # re-drawn, not zeroed


def test_prmq_entropy_term_and_quantize(setup):
    s, net = setup
    z = torch.randn(5, 7)
    p = z.softmax(1)
    assert torch.allclose(w.predictive_entropy(z), -(p * p.log()).sum(1), atol=1e-6)
    out = unlearn.get("prmq", epochs=0.5, quantize=True)(net, s, device="cpu", seed=0)
    assert all(torch.equal(p, p.half().float()) for p in out.parameters())


def test_kde_resets_conv1_and_fc_and_reads_val_never_forget(setup):
    s, net = setup
    out = unlearn.get("kde", warmup_epochs=0, epochs=0)(net, s, device="cpu", seed=0)
    ch = _changed(out, net)
    assert ch == {"conv1.weight": True, "conv1.bias": True, "conv2.weight": False, "conv2.bias": False,
                  "fc1.weight": False, "fc1.bias": False, "fc.weight": True, "fc.bias": True}
    kde = unlearn.get("kde", warmup_epochs=1, epochs=1)
    kde(net, _poisoned(s, "forget"), device="cpu", seed=0)  # never reads forget images
    with pytest.raises(FloatingPointError):
        kde(net, _poisoned(s, "val"), device="cpu", seed=0)  # distils on validation images
    empty = s.replace(val=s.val[:0])
    with pytest.raises(ValueError, match="validation split"):
        kde(net, empty, device="cpu", seed=0)


def test_reinit_mse_resets_whole_layers_and_never_reads_forget(setup):
    s, net = setup
    cnn = copy.deepcopy(net)
    names = w.reinit_random_layers_(cnn, count=1, generator=torch.Generator().manual_seed(3))
    assert len(names) == 1 and names[0] in {"conv1", "conv2", "fc1"}
    layer, old = cnn.get_submodule(names[0]), net.get_submodule(names[0])
    assert bool((layer.weight != old.weight).all()) and bool((layer.bias != old.bias).all())  # every entry
    bound = 1.0 / math.sqrt(layer.weight[0].numel())  # PyTorch's default init
    assert bool((layer.weight.abs() <= bound).all())
    assert [n for n, c in _changed(cnn, net).items() if c] == [f"{names[0]}.weight", f"{names[0]}.bias"]
    res = models.make_model("resnet18", num_classes=4, in_channels=1, image_size=8, seed=0)
    before = copy.deepcopy(res)
    drawn = w.reinit_random_layers_(res, count=40, generator=torch.Generator().manual_seed(0))
    touched = {n.rsplit(".", 1)[0] for n, c in _changed(res, before).items() if c}
    assert touched == set(drawn) and not any("downsample" in n or n == "fc" for n in touched)
    # the registry refuses it the forget set, and NaN forget images do not reach it
    out = unlearn.get("reinit_mse", cycle_epochs=(1,))(net, _poisoned(s, "forget"), device="cpu", seed=0)
    assert all(torch.isfinite(p).all() for p in out.parameters())


def test_reinit_mse_epoch_budget_scales_every_cycle():
    cfg = unlearn.get("reinit_mse", epoch_budget=2.5).config
    assert cfg.cycle_epochs == pytest.approx((2.5 / 4.5, 5 / 4.5, 5 / 4.5)) and cfg.budget_cost() == pytest.approx(2.5)
    assert cfg.cosine_period == pytest.approx(2 * 2.5 / 4.5)
    assert unlearn.get("reinit_mse", epoch_budget=100).config.cycle_epochs == (1, 2, 2)
    with pytest.raises(ValueError, match="cycle_epochs"):
        unlearn.get("reinit_mse", cycle_epochs=())


def test_rni_adds_noise_only_to_chosen_layers(setup):
    _, net = setup
    cnn = copy.deepcopy(net)
    chosen, noised = w.noise_round_(cnn, layers_per_epoch=3, noise_ratio=0.7, std=0.04,
                                      generator=torch.Generator().manual_seed(0))
    assert len(chosen) == 3 and len(noised) == 2 and set(noised) <= set(chosen)
    for name, layer in w.weight_layers(cnn):
        diff = torch.cat([(p - q).detach().flatten() for p, q in zip(layer.parameters(),
                                                                      net.get_submodule(name).parameters())])
        if name in noised:
            assert float(diff.std()) == pytest.approx(0.04, rel=0.2)
        else:
            assert torch.equal(diff, torch.zeros_like(diff))
    again = copy.deepcopy(net)
    _, none = w.noise_round_(again, layers_per_epoch=4, noise_ratio=1.0, std=0.04, exclude={"conv1", "conv2", "fc1",
                                                                                              "fc"},
                               generator=torch.Generator().manual_seed(0))
    assert none == [] and not any(_changed(again, net).values())


def test_rni_noise_epoch_changes_nothing_but_the_reset_and_the_noise(setup):
    """With a vanishing learning rate, one noise epoch equals: reset fc, then one noise round."""
    s, net = setup
    out = unlearn.get("rni", reset_epochs=0, noise_epochs=1, noise_rounds=1, fine_epochs=0, layers_per_epoch=2,
                      noise_ratio=0.5, lr=1e-30, weight_decay=0.0)(net, s, device="cpu", seed=4)
    ref = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(4)
    w.reset_layer_(ref.fc, generator=gen)
    _, noised = w.noise_round_(ref, layers_per_epoch=2, noise_ratio=0.5, std=0.04, generator=gen)
    assert len(noised) == 1
    assert all(torch.allclose(p, q, atol=1e-7) for p, q in zip(out.parameters(), ref.parameters()))


def test_fcs_stage1_minimises_kl_to_uniform(setup):
    s, net = setup
    z = torch.randn(6, 10)
    logp = z.log_softmax(1)
    assert torch.allclose(w.kl_to_uniform(z), (0.1 * (math.log(0.1) - logp)).sum(1).mean(), atol=1e-6)
    assert float(w.kl_to_uniform(torch.ones(3, 10))) == pytest.approx(0.0, abs=1e-7)
    zf, zr = torch.randn(3, 10), torch.randn(4, 10)
    loop = np.mean([-torch.log_softmax(torch.stack([zf[i] @ zr[k] / 1.15 for k in range(4)]), 0)[j].item()
                    for i in range(3) for j in range(4)])
    assert float(w.contrastive_forget_loss(zf, zr, temperature=1.15)) == pytest.approx(loop, rel=1e-5)
    # stage 1 alone (momentum 0) is plain gradient descent on kl_to_uniform over the forget batches
    method = unlearn.get("fcs", stage1_epochs=1, epochs=0, stage1_momentum=0.0, batch_size=16)
    out = method(net, s, device="cpu", seed=0)
    ref = copy.deepcopy(net).train()
    for xb, _ in s.loader("forget", batch_size=16, shuffle=True, seed=0):
        ref.zero_grad()
        w.kl_to_uniform(ref(xb)).backward()
        with torch.no_grad():
            for p in ref.parameters():
                p -= 5e-3 * p.grad
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(out.parameters(), ref.parameters()))
    x, _ = s.xy("forget")
    with torch.no_grad():
        assert float(w.kl_to_uniform(out(x))) < float(w.kl_to_uniform(net(x)))


def test_cfw_perturbation_has_the_configured_std(setup):
    s, net = setup
    out = unlearn.get("cfw", epochs=0, sigma=0.3, scope="all")(net, s, device="cpu", seed=0)
    diff = (out.conv2.weight - net.conv2.weight).detach()
    assert float(diff.std()) == pytest.approx(0.3, rel=0.05) and abs(float(diff.mean())) < 0.02
    assert {n for n, c in _changed(out, net).items() if c} == {"conv1.weight", "conv2.weight"}
    first = unlearn.get("cfw", epochs=0)(net, s, device="cpu", seed=0)  # default: the first conv, sigma 0.6
    diff = (first.conv1.weight - net.conv1.weight).detach()
    assert float(diff.std()) == pytest.approx(0.6, rel=0.15)
    assert {n for n, c in _changed(first, net).items() if c} == {"conv1.weight"}
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    assert w.cfw_class_weights(y, 4, mode="writeup").tolist() == pytest.approx([1.0, 0.05, 0.05, 0.05])
    from sklearn.utils.class_weight import compute_class_weight
    assert w.cfw_class_weights(y, 4, mode="balanced")[:3].tolist() == pytest.approx(
        compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=y.numpy()).tolist())


@pytest.mark.parametrize("name, field, value", [
    ("fcs", "forget_lr", -1.0), ("msg", "init_rate", 1.5), ("msg", "selection", "row"), ("cfw", "scope", "last"),
    ("cfw", "class_weighting", "inverse"), ("prmq", "prune_amount", -0.1), ("ct", "lr", 0.0),
    ("kde", "temperature", 0.0), ("rni", "fine_lrs", ()), ("rni", "noise_ratio", 2.0),
    ("reinit_mse", "cycle_epochs", (1, -1))])
def test_bad_hyperparameters_name_the_field(name, field, value):
    with pytest.raises(ValueError, match=field):
        unlearn.get(name, **{field: value})


@pytest.mark.parametrize("name", ["fcs", "msg", "cfw", "prmq", "ct", "kde", "rni", "reinit_mse"])
def test_runs_on_resnet18_with_batch_norm(name):
    g = torch.Generator().manual_seed(0)
    ds = Dataset(name="tiny_rgb", x=torch.randn(40, 3, 8, 8, generator=g), y=torch.arange(40) % 4,
                 classes=("a", "b", "c", "d"), mean=(0.5,) * 3, std=(0.25,) * 3)
    s = Splits(ds, retain=np.arange(0, 24), forget=np.arange(24, 32), val=np.arange(32, 36), test=np.arange(36, 40))
    net = models.make_model("resnet18", num_classes=4, in_channels=3, image_size=8, seed=0).eval()
    small = {"fcs": dict(batch_size=8), "prmq": dict(epochs=0.5), "reinit_mse": dict(cycle_epochs=(1,)),
             "rni": dict(reset_epochs=0, fine_epochs=0), "kde": dict(epochs=0)}.get(name, {})
    out = unlearn.get(name, epoch_budget=1, **small)(net, s, device="cpu", seed=0)
    assert type(out) is type(net) and any(_changed(out, net).values())
    assert all(torch.isfinite(v).all() for v in out.state_dict().values() if v.is_floating_point())


# ---------------------------------------------------------------- training loops against slow references

def _sgd(params, lr, momentum=0.9, wd=0.0):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)


def _cos(k, total):
    return 0.5 * (1 + math.cos(math.pi * min(k, total - 1) / total))


def _same(a, b, atol=1e-6):
    return all(torch.allclose(p, q, atol=atol) for p, q in zip(a.parameters(), b.parameters()))


def test_fcs_stage2_matches_a_loop(setup):
    """Forget rounds (contrastive loss against detached retain logits, per-step cosine to eta_min) alternating
    with cross-entropy retain rounds, three optimisers, train mode throughout."""
    s, net = setup
    kw = dict(stage1_epochs=0, epochs=2, batch_size=32, forget_lr=1e-2, eta_min=1e-4)
    out = unlearn.get("fcs", **kw)(net, s, device="cpu", seed=3)
    ref = copy.deepcopy(net).train()
    forget = s.loader("forget", batch_size=32, shuffle=True, seed=3)
    retain = s.loader("retain", batch_size=32, shuffle=True, seed=4)
    pairs = s.loader("retain", batch_size=32, shuffle=True, seed=5)
    opt_f = _sgd(ref.parameters(), 1e-2)
    opt_r = _sgd(ref.parameters(), 1e-3 * 32 / 64, wd=1e-2)
    total, k = 2 * len(forget), 0
    for _ in range(2):
        partner = iter(())
        for xf, _ in forget:
            try:
                xr, _ = next(partner)
            except StopIteration:
                partner = iter(pairs)
                xr, _ = next(partner)
            for g in opt_f.param_groups:  # CosineAnnealingLR's closed form, stepped after every forget step
                g["lr"] = 1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * k / total)) / 2
            with torch.no_grad():
                zr = ref(xr)
            loss = w.contrastive_forget_loss(ref(xf), zr, temperature=1.15)
            opt_f.zero_grad()
            loss.backward()
            opt_f.step()
            k += 1
        for xb, yb in retain:
            opt_r.zero_grad()
            F.cross_entropy(ref(xb), yb).backward()
            opt_r.step()
    assert _same(out, ref, atol=1e-5)


def test_kde_matches_a_loop(setup):
    s, net = setup
    out = unlearn.get("kde", warmup_epochs=1, epochs=2, batch_size=32)(net, s, device="cpu", seed=1)
    ref, teacher = copy.deepcopy(net), copy.deepcopy(net).eval()
    gen = torch.Generator().manual_seed(1)
    w.reset_layer_(ref.conv1, generator=gen)
    w.reset_layer_(ref.fc, generator=gen)
    ref.train()
    T = 5.0

    def kl(student, teacher_logits):
        p = torch.softmax(teacher_logits / T, 1)
        return (p * (p.log() - torch.log_softmax(student / T, 1))).sum(1).mean()

    opt = _sgd(ref.parameters(), 9e-4, wd=5e-4)
    for xb, _ in s.loader("val", batch_size=32, shuffle=True, seed=2):
        with torch.no_grad():
            t = teacher(xb)
        opt.zero_grad()
        kl(ref(xb), t).backward()
        opt.step()
    retain = s.loader("retain", batch_size=32, shuffle=True, seed=1)
    opt = _sgd(ref.parameters(), 1e-3, wd=5e-4)
    total, k = 2 * len(retain), 0
    for _ in range(2):
        for xb, yb in retain:
            for g in opt.param_groups:
                g["lr"] = 1e-3 * _cos(k, total)
            with torch.no_grad():
                t = teacher(xb)
            o = ref(xb)
            soft = -(torch.softmax(t / T, 1) * torch.log_softmax(o / T, 1)).sum(1).mean()
            opt.zero_grad()
            (F.cross_entropy(o, yb) + soft + kl(o, t)).backward()
            opt.step()
            k += 1
    assert _same(out, ref, atol=1e-5)


def test_reinit_mse_matches_a_loop(setup):
    s, net = setup
    out = unlearn.get("reinit_mse", cycle_epochs=(1.5,), layers_per_cycle=2, lr=0.01, cosine_period=1.0)(
        net, s, device="cpu", seed=7)
    ref, teacher = copy.deepcopy(net), copy.deepcopy(net).eval()
    gen = torch.Generator().manual_seed(7)
    loader = s.loader("retain", batch_size=64, shuffle=True, seed=7)
    w.reinit_random_layers_(ref, count=2, generator=gen)
    opt = _sgd(ref.parameters(), 0.01, wd=5e-4)
    ref.train()
    steps, k = round(1.5 * len(loader)), 0
    while k < steps:
        for xb, _ in loader:
            if k == steps:
                break
            for g in opt.param_groups:  # a cosine of period 1 epoch, flat at 0 after it
                g["lr"] = 0.01 * 0.5 * (1 + math.cos(math.pi * min(k / len(loader), 1.0)))
            xn = xb + 0.01 * torch.randn(xb.shape, generator=gen)
            with torch.no_grad():
                target = teacher(xn)
            opt.zero_grad()
            F.mse_loss(ref(xn), target).backward()
            opt.step()
            k += 1
    assert _same(out, ref, atol=1e-5)


def test_cfw_matches_a_loop(setup):
    s, net = setup
    out = unlearn.get("cfw", epochs=2, class_weighting="balanced", lr=0.01)(net, s, device="cpu", seed=2)
    ref = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        ref.conv1.weight.add_(0.6 * torch.randn(ref.conv1.weight.shape, generator=gen))
    x, y = s.xy("retain")
    counts = torch.bincount(y, minlength=10).double()
    weights = (counts.sum() / (10 * counts)).float()  # every class occurs: scikit-learn's balanced rule
    loader = data.TensorLoader(x, y, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(2))
    opt = _sgd(ref.parameters(), 0.01, wd=5e-4)
    ref.train()
    total, k = 2 * len(loader), 0
    for _ in range(2):
        for xb, yb in loader:
            for g in opt.param_groups:
                g["lr"] = 0.01 * _cos(k, total)
            opt.zero_grad()
            (weights[yb] * F.cross_entropy(ref(xb), yb, reduction="none")).mean().backward()
            opt.step()
            k += 1
            if k == round(0.75 * total):  # the light variation, after three quarters of the steps
                with torch.no_grad():
                    ref.conv1.weight.add_(0.005 * torch.randn(ref.conv1.weight.shape, generator=gen))
    assert _same(out, ref, atol=1e-5)


def test_prmq_matches_a_loop(setup):
    s, net = setup
    out = unlearn.get("prmq", epochs=1.5, prune_amount=0.5)(net, s, device="cpu", seed=3)
    ref, teacher = copy.deepcopy(net), copy.deepcopy(net).eval()
    gen = torch.Generator().manual_seed(3)
    w.prune_and_reinit_(ref, amount=0.5, generator=gen)
    x, y = s.xy("retain")
    weights = torch.bincount(y, minlength=10).clamp(min=1).float() ** -0.1
    loader = data.TensorLoader(x, y, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(3))
    opt = _sgd(ref.parameters(), 5e-4, wd=5e-4)
    ref.train()
    steps, k = int(len(loader) * 1.5), 0

    def entropy(z):
        p = torch.softmax(z, 1)
        return -(p * torch.log_softmax(z, 1)).sum(1)

    while k < steps:
        for xb, yb in loader:
            if k == steps:
                break
            with torch.no_grad():
                h0 = entropy(teacher(xb))
            o = ref(xb)
            opt.zero_grad()
            (F.cross_entropy(o, yb, weight=weights) + ((entropy(o) - h0) ** 2).mean()).backward()
            opt.step()
            k += 1
    assert _same(out, ref, atol=1e-5)
