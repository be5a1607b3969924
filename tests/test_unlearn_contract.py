"""The contract every registered unlearning method keeps (parametrised over ``unlearn.available()``).

Each method, on smoke-sized data (200 digits, ``small_cnn`` at 8x8, one epoch):
returns a new model of the same architecture, leaves its input untouched (parameters and
buffers bitwise), changes its weights (all but ``original``), is deterministic for a seed on the
CPU, reads exactly the data parts it declares, and rejects bad input with messages that name the
problem. Most methods also run on ResNet-18 (batch norm) for one step. (The original model is
trained with Amnesiac's update log, which the other methods ignore.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mu_lib import data, models, train, unlearn
from mu_lib.data import Splits

ALL = unlearn.available()
# ``retrain`` has no epoch budget (it is the reference); give it a tiny recipe instead.
OVERRIDES = {"retrain": {"epochs": 1, "batch_size": 64}, "unsir": {"noise_batch": 8, "noise_copies": 2},
             "influence": {"woodfisher_n": 16}, "scar": {"epochs": 2}}


def _method(name: str) -> unlearn.Method:
    return unlearn.get(name, epoch_budget=1, **OVERRIDES.get(name, {}))


class RecordingSplits(Splits):
    """Splits that remember which parts were read (every read goes through ``indices``; ``sizes``,
    which only counts, is allowed to every method and is not recorded)."""

    def indices(self, part):  # noqa: D102 - same contract as Splits.indices
        self.__dict__.setdefault("seen", set()).add(part)
        return super().indices(part)

    def sizes(self):  # noqa: D102 - same contract as Splits.sizes
        return {p: int(len(Splits.indices(self, p))) for p in data.PARTS}

    def parts_read(self) -> set[str]:
        seen = set(self.__dict__.get("seen", set()))
        if "train" in seen:
            seen = (seen - {"train"}) | {"retain", "forget"}
        return seen


@pytest.fixture(scope="module")
def tiny():
    s = data.make_splits("digits", train_size=200, val_size=40, test_size=60, seed=1)
    net = train.train_on(s, model="small_cnn", recipe=train.Recipe(epochs=2, batch_size=32, lr=0.05), seed=0,
                         record_updates=True)
    return s, net


def _recording(s: Splits) -> RecordingSplits:
    return RecordingSplits(s.data, retain=s.retain, forget=s.forget, val=s.val, test=s.test,
                           description=s.description)


def _snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name", ALL)
def test_new_model_input_untouched_deterministic_and_declared_reads(name, tiny):
    s, net = tiny
    before = _snapshot(net)
    rec = _recording(s)
    method = _method(name)
    out1 = method(net, rec, device="cpu", seed=3)
    out2 = method(net, s, device="cpu", seed=3)

    # a new model of the same architecture, with changed weights (doing nothing is only ``original``)
    assert out1 is not net and type(out1) is type(net)
    changed = any(not torch.equal(p, q) for p, q in zip(out1.parameters(), net.parameters()))
    assert changed == (name != "original"), f"{name} {'left the weights unchanged' if not changed else 'changed'}"
    sd1, sd2 = out1.state_dict(), out2.state_dict()
    assert list(sd1) == list(before)
    assert all(sd1[k].shape == before[k].shape and sd1[k].dtype == before[k].dtype for k in before)
    assert not out1.training
    # the input is untouched, parameters and buffers, bitwise
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # the same seed gives the same model on the CPU
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1), f"{name} is not deterministic for a seed"
    # it reads exactly what it declares (no more: enforced; no less: declarations are precise)
    assert rec.parts_read() == set(unlearn.info(name).uses), (
        f"{name} declares {sorted(unlearn.info(name).uses)} but read {sorted(rec.parts_read())}")


@pytest.mark.parametrize("name", ALL)
def test_bad_input_is_rejected_with_clear_messages(name, tiny):
    s, net = tiny
    method = _method(name)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        method({"weight": torch.zeros(1)}, s, device="cpu")
    with pytest.raises(TypeError, match="Splits"):
        method(net, (s.retain, s.forget), device="cpu")
    with pytest.raises(ValueError, match="non-negative"):
        method(net, s, device="cpu", seed=-1)
    fields = [f.name for f in dataclasses.fields(unlearn.info(name).config_cls)]
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['no_such_knob'\].*valid ones are") as err:
        unlearn.get(name, no_such_knob=1)
    assert all(repr(f) in str(err.value) for f in fields)


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="unknown unlearning method 'forget_it_all'") as err:
        unlearn.get("forget_it_all")
    assert all(repr(n) in str(err.value) for n in ALL)


def test_registry_enforces_declared_reads(tiny):
    """A method that declares it does not read the forget set cannot read it (RestrictedSplits)."""
    s, net = tiny

    @dataclasses.dataclass(frozen=True)
    class _Cfg(unlearn.UnlearnConfig):
        pass

    @unlearn.register("_sneaky_test_method", config=_Cfg, family="test", uses=("retain",), summary="-",
                      reference="-")
    def _sneaky(model, splits, cfg, *, device, seed):
        splits.xy("retain")
        splits.xy("forget")
        return model

    from mu_lib.unlearn import base

    try:
        with pytest.raises(PermissionError, match="'_sneaky_test_method' declared that it does not read the "
                                                  "'forget' split"):
            unlearn.get("_sneaky_test_method")(net, s, device="cpu")
        rec = _recording(s)
        with pytest.raises(PermissionError):
            unlearn.get("_sneaky_test_method")(net, rec, device="cpu")
        assert rec.parts_read() == {"retain"}  # the forget set was never touched
    finally:
        base._REGISTRY.pop("_sneaky_test_method")


@pytest.fixture(scope="module")
def tiny_rgb():
    """40 random 3x8x8 images in 4 classes with crop-and-flip augmentation, and a ResNet-18."""
    g = torch.Generator().manual_seed(0)
    ds = data.Dataset(name="tiny_rgb", x=torch.randn(40, 3, 8, 8, generator=g), y=torch.arange(40) % 4,
                      classes=("a", "b", "c", "d"), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                      augment="crop_flip")
    s = Splits(ds, retain=np.arange(0, 24), forget=np.arange(24, 32), val=np.arange(32, 36), test=np.arange(36, 40))
    net = models.make_model("resnet18", num_classes=4, in_channels=3, image_size=8, seed=0)
    train.fit(net, *s.xy("train"), epochs=1, batch_size=16, lr=0.01, seed=0, record_updates=True)
    return s, net


BN_METHODS = {
    "neggrad_plus": {"batch_size": 16}, "salun": {"batch_size": 16}, "scrub": {"msteps": 1},
    "bad_teacher": {}, "ssd": {}, "fisher": {"batch_size": 1, "num_examples": 8}, "cf_k": {"k": 2}, "eu_k": {"k": 2},
    "boundary_shrink": {}, "boundary_expanding": {"lr": 0.01}, "sfr_on": {"batch_size": 8},
    "influence": {"woodfisher_n": 4, "per_example_batch": 4}, "scar": {"epochs": 1},
    "unsir": {"noise_batch": 4, "noise_copies": 2, "noise_steps": 2}, "amnesiac": {"batch_size": 8},
}


@pytest.mark.parametrize("name", sorted(BN_METHODS))
def test_batchnorm_models_work(name, tiny_rgb):
    s, net = tiny_rgb
    before = _snapshot(net)
    out = unlearn.get(name, epoch_budget=1, **BN_METHODS[name])(net, s, device="cpu", seed=0)
    assert type(out) is type(net) and not out.training
    assert all(torch.isfinite(v).all() for v in out.state_dict().values() if v.is_floating_point())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in out.state_dict().items()), f"{name} changed nothing"
    assert train.evaluate(out, *s.xy("test")).logits.shape == (4, 4)
