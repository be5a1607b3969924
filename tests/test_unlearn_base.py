"""The registry and the protocol (every method's own behaviour is tested in the other unlearn tests)."""

import dataclasses

import pytest
import torch

from mu_lib import train, unlearn
from mu_lib.unlearn.base import RestrictedSplits, UnlearnConfig


@dataclasses.dataclass(frozen=True)
class _Cfg(UnlearnConfig):
    epoch_fields = ("warmup", "epochs")
    warmup: int = 2
    epochs: int = 8
    lr: float = 0.1


def test_epoch_budget_scales_all_epoch_fields_together():
    cfg = _Cfg().with_epoch_budget(5)
    assert (cfg.warmup, cfg.epochs, cfg.lr) == (1, 4, 0.1)
    assert _Cfg().with_epoch_budget(10) == _Cfg()
    with pytest.raises(ValueError, match="positive"):
        _Cfg().with_epoch_budget(0)


def test_get_errors_list_valid_names():
    with pytest.raises(ValueError, match=r"unknown unlearning method 'forget_everything'.*finetune"):
        unlearn.get("forget_everything")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['learning_rate'\].*'lr'"):
        unlearn.get("finetune", learning_rate=0.1)


def test_overrides_win_over_budget():
    m = unlearn.get("finetune", epoch_budget=2, epochs=4)
    assert m.config.epochs == 4
    assert unlearn.get("finetune", epoch_budget=2).config.epochs == 2


def test_restricted_view_blocks_undeclared_parts(digits_splits):
    view = RestrictedSplits(digits_splits, allowed=("retain", "forget"), owner="demo")
    assert len(view.train) == len(digits_splits.train)
    for part in ("val", "test"):
        with pytest.raises(PermissionError, match=part):
            view.loader(part, batch_size=8)
    with pytest.raises(PermissionError):
        _ = view.test
    with pytest.raises(ValueError, match="retain, forget and val only"):
        RestrictedSplits(digits_splits, allowed=("test",), owner="demo")
    assert view.sizes()["forget"] == len(digits_splits.forget)


def test_method_times_itself_and_never_touches_the_input(digits_splits):
    net = train.train_on(digits_splits, model="mlp", recipe=train.Recipe(epochs=1, batch_size=64, lr=0.1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    method = unlearn.get("finetune", epochs=1)
    out = method(net, digits_splits, device="cpu", seed=0)
    assert out is not net and method.last_seconds > 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(TypeError, match="Splits"):
        method(net, "not splits", seed=0)
