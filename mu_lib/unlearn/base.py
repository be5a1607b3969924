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
from mu_lib.unlearn._loops import check_config

__all__ = [
    "UnlearnConfig",
    "SGDConfig",
    "Method",
    "MethodInfo",
    "RestrictedSplits",
    "register",
    "available",
    "get",
    "info",
]


@dataclass(frozen=True)
class UnlearnConfig:
    """Base class of the hyperparameter dataclasses.

    Subclasses list their epoch-like fields in ``epoch_fields``; :meth:`with_epoch_budget` scales
    them down together when their sum exceeds a budget (the reference defaults were chosen for
    CIFAR-10 models trained for 182 epochs; a smaller profile trains its original model for
    fewer epochs and gives unlearning proportionally fewer).
    """

    epoch_fields: ClassVar[tuple[str, ...]] = ("epochs",)

    def total_epochs(self) -> float:
        """Sum of the epoch-like fields (0 for methods that do not train)."""
        return float(sum(getattr(self, f) for f in self.epoch_fields if hasattr(self, f)))

    def with_epoch_budget(self, budget: float) -> UnlearnConfig:
        """A copy whose epoch-like fields sum to at most about ``budget`` (each keeps at least 1).

        Example:
            >>> @dataclass(frozen=True)
            ... class C(UnlearnConfig):
            ...     epochs: int = 10
            >>> C().with_epoch_budget(4).epochs, C().with_epoch_budget(40).epochs
            (4, 10)
        """
        if budget <= 0:
            raise ValueError(f"epoch budget must be positive, got {budget}")
        total = self.total_epochs()
        if total <= budget:
            return self
        return self._scaled_epochs(budget / total)

    def _scaled_epochs(self, scale: float) -> UnlearnConfig:
        """A copy with every epoch-like field multiplied by ``scale`` < 1 (integers floored, at least 1)."""
        changes: dict[str, Any] = {}
        for f in self.epoch_fields:
            if not hasattr(self, f):
                continue
            v = getattr(self, f)
            if isinstance(v, int):
                changes[f] = max(1, int(math.floor(v * scale)))
            else:
                changes[f] = max(min(v, 1.0), v * scale)
        return dataclasses.replace(self, **changes)


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
    """

    name: str
    family: str
    summary: str
    reference: str
    uses: frozenset[str]
    config_cls: type[UnlearnConfig]
    fn: UnlearnFn


_REGISTRY: dict[str, MethodInfo] = {}


def register(name: str, *, config: type[UnlearnConfig], family: str, summary: str, reference: str,
             uses: Iterable[str]) -> Callable[[UnlearnFn], UnlearnFn]:
    """Register ``fn(model, splits, cfg, *, device, seed) -> nn.Module`` under ``name``.

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
                                     uses=frozenset(uses), config_cls=config, fn=fn)
        return fn

    return deco


def available(family: str | None = None) -> list[str]:
    """Registered method names, in the book's order (optionally one family only).

    :mod:`mu_lib.unlearn` imports its method modules explicitly in that order: the references
    (retraining, the original model, fine-tuning), then the families, then the competition's
    winners by rank. Methods registered later (your own) come after them.
    """
    return [n for n, m in _REGISTRY.items() if family is None or m.family == family]


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
        epoch_budget: scale the method's epochs down to at most this many (see
            :meth:`UnlearnConfig.with_epoch_budget`); ``None`` keeps the reference defaults.
            Explicit overrides of epoch fields are kept as given.
        **overrides: hyperparameters to change.

    Returns:
        The :class:`Method`.

    Raises:
        ValueError: for an unknown name or unknown hyperparameter names (the message lists the
            valid ones).
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
