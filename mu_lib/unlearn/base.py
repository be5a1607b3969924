"""The unlearning protocol and the registry of methods.

An unlearning method is registered by name with a frozen dataclass of hyperparameters (the
reference defaults) and the parts of the data its authors allow it to read. :func:`get` returns a
:class:`Method`, a callable ``(model, splits, *, device, seed) -> nn.Module`` that

* never modifies the input model (it works on a deep copy),
* sees the data only through :class:`RestrictedSplits`, which raises ``PermissionError`` when the
  method touches a part it declared it does not use (the test split is never readable),
* runs under its own seeded random state, so that a seed gives the same model on the CPU,
* checks that the returned parameters are finite.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class NothingConfig(UnlearnConfig):
    ...     pass
    >>> @register("do_nothing_demo", config=NothingConfig, family="reference", uses=("retain",),
    ...           summary="returns the original model", reference="-")
    ... def _do_nothing(model, splits, cfg, *, device, seed):
    ...     return model
    >>> "do_nothing_demo" in available()
    True
    >>> get("do_nothing_demo").name
    'do_nothing_demo'
    >>> _ = _REGISTRY.pop("do_nothing_demo")
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mu_lib import cost, runtime
from mu_lib.data import PARTS, Splits, TensorLoader
from mu_lib.unlearn._fit import check_model_fits
from mu_lib.unlearn._loops import check_config

__all__ = [
    "NOMINAL_FRACTIONS",
    "UnlearnConfig",
    "SGDConfig",
    "Method",
    "MethodInfo",
    "RestrictedSplits",
    "register",
    "available",
    "get",
    "info",
    "check_model_fits",
]


NOMINAL_FRACTIONS: dict[str, float] = {"retain": 0.9, "forget": 0.1, "train": 1.0, "val": 0.15}
"""Nominal size of each part of the data, as a fraction of the training set (retain plus forget),
used to weigh the epochs of a method's phases against the epoch budget: the forget set is a tenth
of the training set in the book's requests and in Deep Unlearn's, and Deep Unlearn holds out 15 %
of the data for validation. An epoch that reads only the forget set thus costs a tenth of an
epoch over the training set, and one that pairs every retain batch with a forget batch costs 1.8."""


@dataclass(frozen=True)
class UnlearnConfig:
    """Base class of the hyperparameter dataclasses, and the rule that fits them to an epoch budget.

    **The budget rule.** An epoch budget ``B`` (20 % of the original training's epochs in the
    book) bounds the *cost* of a method, counted in epochs over the training set. A subclass lists
    its epoch-like fields (the lengths of its phases) in ``epoch_fields`` and, in
    ``epoch_weights``, what one epoch of each phase costs in training-set epochs (the part of the
    data it trains on, at the sizes of :data:`NOMINAL_FRACTIONS`; forward passes of teachers and
    attacks are not counted). When the weighted sum exceeds ``B``, *every* epoch-like field and
    every other schedule-shaped field listed in ``scaled_fields`` (a number of epochs inside a
    phase, a period) is multiplied by the same factor ``B / cost``: integer fields are rounded
    (at least 1 when they were at least 1; 0 stays 0), float fields stay fractional. Inside a
    phase every method runs its schedule (learning-rate decay, warm-up, milestones, penalties)
    as a function of the *fraction* of the phase done, step by step, so that a shorter run has
    the same shape, only fewer steps. Each method documents its own rule.

    The reference defaults were chosen for CIFAR-10 models trained for 182 epochs; a smaller
    profile trains its original model for fewer epochs and gives unlearning proportionally fewer.
    """

    epoch_fields: ClassVar[tuple[str, ...]] = ("epochs",)
    epoch_weights: ClassVar[tuple[float, ...] | None] = None
    scaled_fields: ClassVar[tuple[str, ...]] = ()

    def total_epochs(self) -> float:
        """Sum of the epoch-like fields (0 for methods that do not train)."""
        return float(sum(_as_total(getattr(self, f)) for f in self.epoch_fields if hasattr(self, f)))

    def budget_cost(self) -> float:
        """The cost that the epoch budget bounds: the epoch-like fields weighted by ``epoch_weights``.

        Example:
            >>> @dataclass(frozen=True)
            ... class C(UnlearnConfig):
            ...     epoch_fields = ("forget_epochs", "epochs")
            ...     epoch_weights = (NOMINAL_FRACTIONS["forget"], NOMINAL_FRACTIONS["retain"])
            ...     forget_epochs: int = 10
            ...     epochs: int = 5
            >>> round(C().budget_cost(), 2)
            5.5
        """
        weights = self.epoch_weights or (1.0,) * len(self.epoch_fields)
        if len(weights) != len(self.epoch_fields):
            raise TypeError(f"{type(self).__name__}.epoch_weights must have one weight per epoch field "
                            f"{self.epoch_fields}, got {weights}")
        return float(sum(w * _as_total(getattr(self, f)) for f, w in zip(self.epoch_fields, weights)
                         if hasattr(self, f)))

    def with_epoch_budget(self, budget: float) -> UnlearnConfig:
        """A copy whose :meth:`budget_cost` is about ``budget`` when it was more (see the class docstring).

        Example:
            >>> @dataclass(frozen=True)
            ... class C(UnlearnConfig):
            ...     epochs: int = 10
            >>> C().with_epoch_budget(4).epochs, C().with_epoch_budget(40).epochs
            (4, 10)
        """
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) \
                or budget <= 0:
            raise ValueError(f"epoch budget must be a positive number, got {budget!r}")
        cost = self.budget_cost()
        if cost <= budget:
            return self
        return self._scaled_epochs(budget / cost)

    def _scaled_epochs(self, scale: float) -> UnlearnConfig:
        """A copy with every epoch-like and schedule-shaped field multiplied by ``scale`` < 1."""
        changes: dict[str, Any] = {}
        for f in self.epoch_fields:
            if hasattr(self, f):
                changes[f] = _scale_value(getattr(self, f), scale, keep_one=True)
        for f in self.scaled_fields:
            if hasattr(self, f):
                changes[f] = _scale_value(getattr(self, f), scale, keep_one=False)
        return dataclasses.replace(self, **changes)


def _as_total(v: Any) -> float:
    return float(sum(v)) if isinstance(v, tuple) else float(v)


def _scale_value(v: Any, scale: float, *, keep_one: bool) -> Any:
    """Scale one value: integers rounded (phases keep at least 1 epoch unless they had 0), floats kept
    fractional, tuples elementwise."""
    if isinstance(v, tuple):
        return tuple(_scale_value(e, scale, keep_one=keep_one) for e in v)
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return 0 if v == 0 else max(1 if keep_one else 0, int(round(v * scale)))
    return float(v) * scale


@dataclass(frozen=True)
class SGDConfig(UnlearnConfig):
    """Base of the configs of methods trained with one SGD optimiser: the five fields they share and
    one set of checks (subclasses redeclare a field to change its reference default).

    Attributes:
        epochs: passes of the method's main loop (an integer >= 0).
        lr: learning rate (> 0).
        momentum: SGD momentum, in [0, 1).
        weight_decay: L2 penalty (>= 0).
        batch_size: examples per step (an integer >= 1).

    Example:
        >>> SGDConfig(lr=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: SGDConfig.lr must be positive, got -1.0
    """

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_config(self, integer=("epochs", "batch_size"), positive=("lr", "batch_size"),
                     nonnegative=("epochs", "weight_decay"), below_one=("momentum",))


class RestrictedSplits:
    """A read-only view of :class:`~mu_lib.data.Splits` that lets a method read only some parts.

    Reading a part that is not allowed (through ``xy``, ``loader``, ``indices`` or the attribute
    of the same name) raises ``PermissionError`` naming the method and the part. ``sizes()`` is
    always allowed: knowing how many examples must be forgotten is not reading them.

    Example:
        >>> from mu_lib import data
        >>> s = data.make_splits("digits", val_size=50, test_size=300, seed=0)
        >>> view = RestrictedSplits(s, allowed=("retain",), owner="demo")
        >>> view.xy("retain")[0].shape[0] == len(s.retain)
        True
        >>> view.xy("forget")
        Traceback (most recent call last):
        ...
        PermissionError: method 'demo' declared that it does not read the 'forget' split
    """

    def __init__(self, splits: Splits, *, allowed: Iterable[str], owner: str) -> None:
        allowed = frozenset(allowed)
        bad = sorted(allowed - {"retain", "forget", "val"})
        if bad:
            raise ValueError(f"an unlearning method may read retain, forget and val only, not {bad}")
        if {"retain", "forget"} <= allowed:
            allowed = allowed | {"train"}
        self._splits = splits
        self._allowed = allowed
        self._owner = owner

    def _check(self, part: str) -> None:
        if part not in PARTS:
            raise ValueError(f"unknown split part {part!r}; valid parts are {list(PARTS)}")
        if part not in self._allowed:
            raise PermissionError(f"method {self._owner!r} declared that it does not read the {part!r} split")

    @property
    def data(self):
        """The dataset's metadata (classes, shapes); its tensors must not be read directly."""
        return self._splits.data

    @property
    def allowed(self) -> frozenset[str]:
        return self._allowed

    def sizes(self) -> dict[str, int]:
        return self._splits.sizes()

    def indices(self, part: str) -> np.ndarray:
        self._check(part)
        return self._splits.indices(part)

    def xy(self, part: str, *, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(part)
        return self._splits.xy(part, device=device)

    def loader(self, part: str, **kwargs: Any) -> TensorLoader:
        self._check(part)
        return self._splits.loader(part, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in PARTS:
            self._check(name)
            return self._splits.indices(name)
        raise AttributeError(name)


UnlearnFn = Callable[..., nn.Module]


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows about a method (without its hyperparameters).

    Attributes:
        name: registry name.
        family: a short family label (``"reference"``, ``"fine-tuning"``, ``"competition"``, ...).
        summary: one line on what it does.
        reference: the paper or write-up it follows.
        uses: the data parts it reads.
        config_cls: its hyperparameter dataclass.
        needs: what the original model must carry from its training (``"update_log"`` for
            Amnesiac unlearning); empty for a method that works on any trained model.
    """

    name: str
    family: str
    summary: str
    reference: str
    uses: frozenset[str]
    config_cls: type[UnlearnConfig]
    fn: UnlearnFn
    needs: frozenset[str] = frozenset()


_REGISTRY: dict[str, MethodInfo] = {}


def register(name: str, *, config: type[UnlearnConfig], family: str, summary: str, reference: str,
             uses: Iterable[str], needs: Iterable[str] = ()) -> Callable[[UnlearnFn], UnlearnFn]:
    """Register ``fn(model, splits, cfg, *, device, seed) -> nn.Module`` under ``name``.

    ``needs`` names what the original model must carry from training (see :class:`MethodInfo`).

    ``fn`` receives a deep copy of the model (already on ``device``), a :class:`RestrictedSplits`
    and the config instance; it may modify the copy in place and return it (or a new module).
    """
    if not dataclasses.is_dataclass(config) or not issubclass(config, UnlearnConfig):
        raise TypeError(f"config of {name!r} must be a dataclass subclassing UnlearnConfig")
    if not config.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"config of {name!r} must be a frozen dataclass")

    def deco(fn: UnlearnFn) -> UnlearnFn:
        if name in _REGISTRY:
            raise ValueError(f"unlearning method {name!r} is already registered")
        _REGISTRY[name] = MethodInfo(name=name, family=family, summary=summary, reference=reference,
                                     uses=frozenset(uses), config_cls=config, fn=fn,
                                     needs=frozenset(needs))
        return fn

    return deco


def available(family: str | None = None, *, model_has: Iterable[str] | None = None) -> list[str]:
    """Registered method names, in the book's order (optionally one family only).

    :mod:`mu_lib.unlearn` imports its method modules explicitly in that order: the references
    (retraining, the original model, fine-tuning), then the families, then the competition's
    winners by rank. Methods registered later (your own) come after them.

    Args:
        family: keep only this family.
        model_has: keep only the methods whose :attr:`MethodInfo.needs` the original model
            carries; ``model_has=()`` lists the methods that run on a plainly trained model
            (all but ``amnesiac``, which needs the training-time ``"update_log"``).

    Example:
        >>> "amnesiac" in available(), "amnesiac" in available(model_has=())
        (True, False)
    """
    has = None if model_has is None else frozenset(model_has)
    return [n for n, m in _REGISTRY.items()
            if (family is None or m.family == family) and (has is None or m.needs <= has)]


def info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown unlearning method {name!r}; available methods are {list(_REGISTRY)}")
    return _REGISTRY[name]


class Method:
    """A configured unlearning method: call it as ``method(model, splits, device=..., seed=...)``.

    Attributes:
        name: registry name.
        config: the hyperparameters (a frozen dataclass).
        info: the registry entry.
        last_seconds: wall time of the last call (the unlearning itself, not the copying).
        last_passes: cost of the last call in example passes (:mod:`mu_lib.cost`), the
            machine-independent unit: divide by :func:`mu_lib.cost.training_passes` of
            retraining for the relative cost.
    """

    def __init__(self, info_: MethodInfo, config: UnlearnConfig) -> None:
        self.info = info_
        self.name = info_.name
        self.config = config
        self.last_seconds: float | None = None
        self.last_passes: int | None = None

    def __repr__(self) -> str:
        return f"Method({self.name!r}, {self.config})"

    def __call__(self, model: nn.Module, splits: Splits, *, device: str | torch.device | None = None,
                 seed: int = 0) -> nn.Module:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(splits, Splits):
            raise TypeError(f"splits must be a mu_lib.data.Splits, got {type(splits).__name__}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        check_model_fits(model, splits.data)
        dev = runtime.resolve_device(device)
        net = copy.deepcopy(model).to(dev)
        view = RestrictedSplits(splits, allowed=self.info.uses, owner=self.name)
        devices = [dev.index or 0] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), cost.count_passes() as passes:
            torch.manual_seed(int(seed))
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            out = self.info.fn(net, view, self.config, device=dev, seed=int(seed))
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            self.last_seconds = time.perf_counter() - start
        self.last_passes = passes.passes
        if not isinstance(out, nn.Module):
            raise TypeError(f"method {self.name!r} returned {type(out).__name__}, not an nn.Module")
        for pname, p in out.named_parameters():
            if not torch.isfinite(p).all():
                raise FloatingPointError(f"method {self.name!r} produced non-finite values in parameter "
                                         f"{pname!r}; lower its learning rate (config: {self.config})")
        return out.eval()


def get(name: str, *, epoch_budget: float | None = None, **overrides: Any) -> Method:
    """A configured unlearning method.

    Args:
        name: one of :func:`available`.
        epoch_budget: fit the reference setting to this many epochs of cost (the rule of
            :class:`UnlearnConfig`: every phase and schedule-shaped field scaled together);
            ``None`` keeps the reference defaults. Explicit overrides are applied after it and
            kept as given.
        **overrides: hyperparameters to change.

    Returns:
        The :class:`Method`.

    Raises:
        ValueError: for an unknown name or unknown hyperparameter names (the message lists the
            valid ones), and for a value of the wrong kind or out of range (the message names
            the field and the value), all before anything runs.

    Example:
        >>> get("finetune", epochs=2.5)
        Traceback (most recent call last):
        ...
        ValueError: FinetuneConfig.epochs must be an integer, got 2.5
    """
    entry = info(name)
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for {name!r}; valid ones are {sorted(fields)}")
    cfg = entry.config_cls()
    if epoch_budget is not None:
        cfg = cfg.with_epoch_budget(epoch_budget)
    cfg = dataclasses.replace(cfg, **overrides)
    return Method(entry, cfg)
