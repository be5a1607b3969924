"""Configs checked at ``get()`` time, and data that does not fit the model refused before training
(issue 10, section 3).

Every field of every registered method's config is given a value of the wrong kind or out of its
range; ``unlearn.get`` must raise ``ValueError`` naming the field and the value, before anything
runs. A model that cannot take the data, or whose outputs do not cover the labels, is refused by
the method call before the first optimiser step, with a message naming both shapes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from mu_lib import data, models, unlearn


def _bad_values(default):
    """Values of the wrong kind or out of range for a field whose default is ``default``."""
    if isinstance(default, bool):
        return ["yes", 1]
    if isinstance(default, int):
        return [1.5, -1, "3", math.nan]
    if isinstance(default, float):
        return [-1.0, math.nan, math.inf, "0.1"]
    if isinstance(default, str):
        return ["no_such_choice", 3]
    if isinstance(default, tuple):
        return [("a",), (-1.0,), [1.0]]
    if default is None:
        return [-1, 1.5]
    raise AssertionError(f"no bad values defined for a default of type {type(default).__name__}")


CASES = [(name, f.name, bad) for name in unlearn.available()
         for f in dataclasses.fields(unlearn.info(name).config_cls)
         for bad in _bad_values(getattr(unlearn.info(name).config_cls(), f.name))]


@pytest.mark.parametrize("name, field, bad", CASES, ids=[f"{n}.{f}={b!r}" for n, f, b in CASES])
def test_every_field_rejects_bad_values_naming_field_and_value(name, field, bad):
    with pytest.raises(ValueError) as err:
        unlearn.get(name, **{field: bad})
    msg = str(err.value)
    assert field in msg, msg
    assert repr(bad) in msg or str(bad) in msg, msg


def test_the_issues_examples():
    for kw, field in [({"lr": -1}, "lr"), ({"epochs": -2}, "epochs"), ({"epochs": 2.5}, "epochs"),
                      ({"momentum": 1.5}, "momentum")]:
        with pytest.raises(ValueError, match=f"FinetuneConfig.{field}"):
            unlearn.get("finetune", **kw)
    with pytest.raises(ValueError, match=r"PartialConfig.k must be an integer, got 1.5"):
        unlearn.get("cf_k", k=1.5)
    with pytest.raises(ValueError, match="epoch budget must be a positive number"):
        unlearn.get("finetune", epoch_budget=0)


def test_defaults_and_budgets_pass_the_checks():
    for name in unlearn.available():
        for budget in (None, 0.3, 1, 3, 30):
            unlearn.get(name, epoch_budget=budget)


@pytest.fixture(scope="module")
def digits():
    return data.make_splits("digits", train_size=200, val_size=40, test_size=60, seed=0)


def _no_step_taken():
    steps = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: steps.append(1))
    return steps, handle


@pytest.mark.parametrize("name", [n for n in unlearn.available() if n != "original"])
def test_a_model_for_other_data_is_refused_before_training(name, digits):
    rgb = models.make_model("small_cnn", num_classes=10, in_channels=3, image_size=8, seed=0)
    steps, handle = _no_step_taken()
    try:
        with pytest.raises(ValueError, match=r"examples have shape \(1, 8, 8\).*3 input channels"):
            unlearn.get(name)(rgb, digits, device="cpu")
        five = models.make_model("small_cnn", num_classes=5, in_channels=1, image_size=8, seed=0)
        with pytest.raises(ValueError, match=r"labels run from 0 to 9 \(10 classes\).*output shape \(1, 5\)"):
            unlearn.get(name)(five, digits, device="cpu")
    finally:
        handle.remove()
    assert steps == []


def test_labels_outside_the_models_classes_are_refused(digits):
    ds = digits.data
    y = ds.y.clone()
    y[int(digits.forget[0])] = 12
    wide = data.Dataset(name="digits+12", x=ds.x, y=y, classes=tuple(str(c) for c in range(13)), mean=ds.mean,
                        std=ds.std)
    s = data.Splits(wide, retain=digits.retain, forget=digits.forget, val=digits.val, test=digits.test)
    net = models.make_model("mlp", num_classes=10, in_channels=1, image_size=8, seed=0)
    with pytest.raises(ValueError, match=r"labels run from 0 to 12 \(13 classes\) but the model outputs 10"):
        unlearn.get("finetune")(net, s, device="cpu")
    flat = models.make_model("mlp", num_classes=10, in_channels=1, image_size=4, seed=0)
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\).*Linear layer with 16 input features"):
        unlearn.check_model_fits(flat, ds)
    assert unlearn.check_model_fits(models.make_model("mlp", num_classes=12, in_channels=1, image_size=8), ds) == 12
    assert np.array_equal(digits.data.y.numpy(), ds.y.numpy())  # nothing was modified
    assert torch.equal(digits.data.x, ds.x)
