"""One fast path for every training loop: precision switch, autocast, gradient scaler, channels-last,
device-resident data, deterministic CPU results (fp32 numerically unchanged).

No GPU runs these tests: bf16 and fp16 autocast run on the CPU (the ``gpu_smoke`` profile's path),
and the CUDA-only decisions are checked with the capability query stubbed.
"""

import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import _vmap_sgd, data, fastpath, models, runtime, train
from mu_lib.unlearn import _loops

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def restore_precision():
    saved = list(fastpath._ACTIVE)
    yield
    fastpath._ACTIVE[:] = saved


@pytest.fixture(scope="module")
def tiny():
    ds = data.load_dataset("cifar10_like")
    return ds.x[:96], ds.y[:96]


def test_precision_switch_resolves_per_device(monkeypatch):
    assert fastpath.fast_path("cpu", precision="auto").name == "fp32"
    assert fastpath.fast_path("cpu", precision="fp32").channels_last is False
    for name in ("bf16", "fp16"):
        fp = fastpath.fast_path("cpu", precision=name)
        assert fp.name == name and fp.channels_last and fp.dtype == getattr(torch, {"bf16": "bfloat16",
                                                                                     "fp16": "float16"}[name])
    assert fastpath.fast_path("cpu", precision="fp16").grad_scaler() is not None
    assert fastpath.fast_path("cpu", precision="bf16").grad_scaler() is None
    # On CUDA, "auto" is bf16 on GPUs that have it (Ampere and later) and fp16 with a scaler on a T4.
    monkeypatch.setattr(fastpath, "_cuda_bf16", lambda dev: True)
    assert fastpath.fast_path("cuda", precision="auto").name == "bf16"
    monkeypatch.setattr(fastpath, "_cuda_bf16", lambda dev: False)
    assert fastpath.fast_path("cuda", precision="auto").name == "fp16"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: (7, 5))
    with pytest.raises(ValueError, match="'bf16' needs a GPU with native bfloat16.*Tesla T4.*'auto' or 'fp16'"):
        fastpath.fast_path("cuda", precision="bf16")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        fastpath.fast_path("cpu", precision="fp8")


def test_default_precision_comes_from_the_profile_then_the_environment(monkeypatch):
    fastpath._ACTIVE.clear()
    monkeypatch.delenv("MU_PRECISION", raising=False)
    assert fastpath.default_precision() == "auto"
    monkeypatch.setenv("MU_PRECISION", "bf16")
    assert fastpath.default_precision() == "bf16"
    prof = runtime.setup(chapter="t", profile="gpu_smoke", device="cpu", verbose=False)  # MU_PRECISION wins
    assert prof.precision == "bf16" and fastpath.default_precision() == "bf16"
    monkeypatch.delenv("MU_PRECISION")
    assert runtime.setup(chapter="t", profile="smoke", device="cpu", verbose=False).precision == "fp32"
    assert fastpath.default_precision() == "fp32"
    with fastpath.use_precision("fp16"):
        assert fastpath.fast_path("cpu").name == "fp16"
    assert fastpath.default_precision() == "fp32"
    assert runtime.setup(chapter="t", profile="gpu_smoke", device="cpu", verbose=False).precision == "bf16"
    assert runtime.setup(chapter="t", profile="gpu", device="cpu", verbose=False).precision == "fp32"  # auto on CPU


def _dtypes_seen(net):
    seen = []
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    return seen


def test_fit_in_fp32_on_the_cpu_is_plain_sgd(tiny):
    """The cpu profile's arithmetic is unchanged: fit equals torch.optim.SGD over the same batches."""
    x, y = tiny
    make = lambda: models.make_model("small_cnn", num_classes=10, in_channels=3, image_size=32, seed=0)
    net = train.fit(make(), x, y, epochs=2, batch_size=32, lr=0.05, seed=3, precision="fp32", progress=False)
    ref = make()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(3)
    total, step = 2 * 3, 0
    for _ in range(2):
        order = torch.randperm(96, generator=gen)
        for b in range(3):
            idx = order[32 * b:32 * (b + 1)]
            for g in opt.param_groups:
                g["lr"] = train.lr_at(step, total, lr=0.05, schedule="cosine")
            loss = F.cross_entropy(ref(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    for p, q in zip(net.parameters(), ref.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fit_runs_the_mixed_precision_path_deterministically(tiny, precision):
    n = 96 if precision == "bf16" else 32  # fp16 convolutions are emulated (slow) on a CPU
    x, y = tiny[0][:n], tiny[1][:n]
    make = lambda: models.make_model("resnet9_tiny", num_classes=10, in_channels=3, image_size=32, seed=0)
    net = make()
    seen = _dtypes_seen(net)
    layouts = []
    net.prep[0].register_forward_pre_hook(lambda m, inp: layouts.append(
        (inp[0].is_contiguous(memory_format=torch.channels_last),
         m.weight.is_contiguous(memory_format=torch.channels_last))))
    train.fit(net, x, y, epochs=1, batch_size=16, lr=0.05, augment="crop_flip", seed=1, precision=precision,
              progress=False)
    want = torch.bfloat16 if precision == "bf16" else torch.float16
    assert seen and set(seen) == {want}  # every conv and linear ran in the autocast dtype
    assert layouts and set(layouts) == {(True, True)}  # images and weights channels-last in the loop
    assert all(p.is_contiguous() for p in net.parameters())  # and the model comes back contiguous
    assert all(p.dtype == torch.float32 for p in net.parameters())  # master weights stay fp32
    again = train.fit(make(), x, y, epochs=1, batch_size=16, lr=0.05, augment="crop_flip", seed=1,
                      precision=precision, progress=False)
    for p, q in zip(net.parameters(), again.parameters()):
        assert torch.equal(p, q)
    fp32 = train.fit(make(), x, y, epochs=1, batch_size=16, lr=0.05, augment="crop_flip", seed=1, precision="fp32",
                     progress=False)
    assert not all(torch.equal(p, q) for p, q in zip(net.parameters(), fp32.parameters()))


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_halved():
    fp = fastpath.fast_path("cpu", precision="fp16")
    w = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    scaler = fp.grad_scaler()
    seen = []
    loss = (w * torch.tensor([1.0, float("inf"), 1.0])).sum()
    fp.step(loss, opt, scaler, before_step=lambda: seen.append(w.grad.clone()))
    assert torch.equal(w.detach(), torch.ones(3)) and scaler.get_scale() == 2.0 ** 15
    fp.step((w * 2).sum(), opt, scaler, before_step=lambda: seen.append(w.grad.clone()))
    assert torch.allclose(w.detach(), torch.full((3,), 0.8))
    assert torch.equal(seen[-1], torch.full((3,), 2.0))  # before_step sees unscaled gradients


def test_vectorised_fp16_scaling_equals_grad_scaler_model_by_model():
    """fit_many's per-model loss scale follows torch.amp.GradScaler's rule exactly, step for step."""
    torch.manual_seed(0)
    m, steps = 3, 6
    start = {"w": torch.randn(m, 4, 2), "b": torch.randn(m, 2)}
    raw = [{k: torch.randn_like(v) for k, v in start.items()} for _ in range(steps)]
    raw[1]["w"][1, 0, 0] = float("inf")  # model 1 overflows at step 1, model 2 at step 3
    raw[3]["b"][2, 1] = float("nan")
    params = {k: v.clone() for k, v in start.items()}
    bufs, scale = None, torch.full((m,), 2.0 ** 16)
    good, has_buf = torch.zeros(m, dtype=torch.long), torch.zeros(m, dtype=torch.bool)
    for g in raw:
        scaled = {k: v * scale.view(m, *([1] * (v.ndim - 1))) for k, v in g.items()}
        bufs = _vmap_sgd._scaled_update(params, scaled, bufs, scale, good, has_buf, lr=0.1, momentum=0.9,
                                        weight_decay=0.01)
    for i in range(m):
        w, b = (nn.Parameter(start[k][i].clone()) for k in ("w", "b"))
        opt = torch.optim.SGD([w, b], lr=0.1, momentum=0.9, weight_decay=0.01)
        scaler = torch.amp.GradScaler("cpu")
        for g in raw:
            loss = (w * g["w"][i]).sum() + (b * g["b"][i]).sum()
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        torch.testing.assert_close(params["w"][i], w.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(params["b"][i], b.detach(), rtol=1e-6, atol=1e-7)
        assert scale[i].item() == scaler.get_scale()
    assert scale.tolist() == [2.0 ** 16, 2.0 ** 15, 2.0 ** 15]


def test_fp16_steps_never_read_the_overflow_flag_on_the_host(monkeypatch):
    """The fused SGD of the fp16 path takes the scaler's flag on the device: no .item() per step."""
    fp = fastpath.fast_path("cpu", precision="fp16")
    w = nn.Parameter(torch.ones(3))
    opt, scaler = fp.sgd([w], lr=0.1, momentum=0.9), fp.grad_scaler()
    assert opt.defaults["fused"] and fastpath.fast_path("cpu", precision="bf16").sgd([w], lr=0.1).defaults[
        "fused"] is None
    calls = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: calls.append(1) or real_item(t))
    for bad in (False, True, False):
        loss = (w * torch.tensor([1.0, float("inf") if bad else 1.0, 1.0])).sum()
        fp.step(loss, opt, scaler)
    monkeypatch.undo()
    assert calls == []
    assert scaler.get_scale() == 2.0 ** 15  # the overflowing step was skipped and the scale halved
    assert torch.allclose(w.detach(), torch.full((3,), 1 - 0.1 - 0.1 * 1.9))  # two real steps with momentum


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fit_many_takes_the_same_fast_path_as_a_loop_of_fit(tiny, precision):
    x, y = tiny[0][:32], tiny[1][:32]
    make = lambda s: models.make_model("small_cnn", num_classes=10, in_channels=3, image_size=32, seed=s)
    nets = train.fit_many(make, x, y, seeds=[0, 1], epochs=1, batch_size=16, lr=0.05, precision=precision,
                          progress=False)
    for s, net in zip([0, 1], nets):
        ref = train.fit(make(s), x, y, epochs=1, batch_size=16, lr=0.05, seed=s, precision=precision,
                        progress=False)
        fp32 = train.fit(make(s), x, y, epochs=1, batch_size=16, lr=0.05, seed=s, precision="fp32", progress=False)
        for p, q in zip(net.parameters(), ref.parameters()):
            # same data order and arithmetic up to the autocast dtype's rounding (vmap batches the convs
            # differently), and visibly not the fp32 path
            torch.testing.assert_close(p, q, rtol=0.05, atol=0.02)
        assert any(not torch.equal(p, r) for p, r in zip(net.parameters(), fp32.parameters()))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_the_methods_loop_uses_the_fast_path(tiny, precision):
    x, y = tiny
    make = lambda: models.make_model("small_cnn", num_classes=10, in_channels=3, image_size=32, seed=0)
    net = make()
    seen = _dtypes_seen(net)
    masked = []
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    loader = data.TensorLoader(x, y, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    with fastpath.use_precision(precision):  # as the competition's units and the profile set it
        _loops.ce_epochs(net, loader, epochs=1, optimizer=opt, method="test",
                         before_step=lambda: masked.append(net.fc.weight.grad.abs().max().item()))
    want = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert set(seen) == {want}
    assert max(masked) < 100  # gradients reach before_step unscaled (an fp16 scale would be 65536x)
    if precision == "fp32":  # unchanged arithmetic: the same as fit's plain SGD without momentum
        ref = train.fit(make(), x, y, epochs=1, batch_size=32, lr=0.05, momentum=0.0, schedule="constant",
                        seed=0, precision="fp32", progress=False)
        for p, q in zip(net.parameters(), ref.parameters()):
            assert torch.equal(p, q)


def test_data_stay_on_the_device_and_device_copies_are_not_pickled():
    ds = data.load_dataset("digits")
    assert ds.on("cpu")[0] is ds.x  # the CPU copy is the dataset itself
    xm, ym = ds.on("meta")  # any other device: copied once, then cached
    assert xm.device.type == "meta" and ds.on("meta")[0] is xm
    splits = data.make_splits(ds, val_size=50, test_size=200, seed=0)
    xf, _ = splits.xy("forget", device="meta")
    assert xf.device.type == "meta" and xf.shape == (len(splits.forget), 1, 8, 8)
    clone = pickle.loads(pickle.dumps(ds))  # Ray ships datasets: device copies stay behind
    assert "_on_device" not in clone.__dict__ and torch.equal(clone.x, ds.x)
    loader = data.TensorLoader(ds.x[:10], ds.y[:10], batch_size=4, device="meta")
    assert loader.x.device.type == "meta"  # moved once, at construction


def test_cpu_loader_draws_are_unchanged(digits_splits):
    """On the CPU the loader's device generator is a CPU generator seeded as before."""
    loader = digits_splits.loader("retain", batch_size=50, shuffle=True, seed=7, augment=False)
    order = torch.randperm(len(digits_splits.retain), generator=torch.Generator().manual_seed(7))
    first = next(iter(loader))[1]
    assert torch.equal(first, digits_splits.data.y[torch.from_numpy(digits_splits.retain)][order[:50]])


def test_stopwatch_and_synchronize_on_the_cpu():
    with runtime.Stopwatch("cpu") as sw:
        torch.ones(10).sum()
    assert 0 <= sw.seconds < 5
    runtime.synchronize("cpu")  # nothing to wait for; must not touch CUDA


def test_fit_many_fp32_still_equals_the_loop_exactly_in_structure(digits_splits):
    x, y = digits_splits.xy("train")
    make = lambda s: models.make_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=s)
    nets = train.fit_many(make, x, y, seeds=[4], epochs=1, batch_size=64, lr=0.1, precision="fp32", progress=False)
    ref = train.fit(make(4), x, y, epochs=1, batch_size=64, lr=0.1, seed=4, precision="fp32", progress=False)
    for p, q in zip(nets[0].parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-6)
    assert copy.deepcopy(nets[0]) is not None
