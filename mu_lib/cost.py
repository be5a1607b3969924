"""Cost in a unit that does not depend on the machine: example passes.

Wall time depends on the machine and on what else it is doing; the same retraining can take 9 s
or 18 s. The book therefore reports cost first in **example passes**: every example that goes
forward through a network counts 1, and every example whose forward pass records a graph for
back-propagation counts 3 (its forward pass plus a backward pass, which costs about twice a
forward pass). Retraining for ``E`` epochs on ``n`` examples costs ``3 E n`` passes
(:func:`training_passes`), so a method's passes divided by that number is its cost relative to
retraining, the same on every machine and on every run.

:func:`count_passes` counts, while it is active, every call of a *top-level* module (a module
called from outside any other module's ``forward``): a model, a teacher, a frozen copy. Calls
inside ``torch.func.vmap`` are counted once per call, not once per mapped example; code that
vectorises examples that way reports them with :func:`record`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> with count_passes() as c:
    ...     net(torch.zeros(5, 4)).sum().backward()   # 5 examples, forward and backward
    ...     with torch.no_grad():
    ...         _ = net(torch.zeros(10, 4))            # 10 examples, forward only
    >>> c.trained, c.forward_only, c.passes
    (5, 10, 25)
    >>> training_passes(epochs=2, examples=100)
    600
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["BACKWARD_COST", "PassCount", "count_passes", "record", "training_passes", "unlearning_epochs"]

BACKWARD_COST = 2
"""Cost of one example's backward pass in forward passes (the usual estimate: the backward pass
computes gradients with respect to both the activations and the weights)."""


@dataclass
class PassCount:
    """Examples counted by :func:`count_passes`.

    Attributes:
        trained: examples that went forward with a graph recorded (forward and backward).
        forward_only: examples that went forward without a graph (evaluation, teachers).
    """

    trained: int = 0
    forward_only: int = 0

    @property
    def passes(self) -> int:
        """The cost in forward-pass equivalents: ``forward_only + (1 + BACKWARD_COST) * trained``."""
        return self.forward_only + (1 + BACKWARD_COST) * self.trained

    def add(self, examples: int, *, backward: bool) -> None:
        """Count ``examples`` that the hooks cannot see (e.g. examples mapped by ``vmap``)."""
        if examples < 0:
            raise ValueError(f"examples must be >= 0, got {examples}")
        if backward:
            self.trained += int(examples)
        else:
            self.forward_only += int(examples)


_ACTIVE: list[PassCount] = []
_STATE = {"depth": 0}
_HANDLES: list[Any] = []


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        return _first_tensor(list(obj.values()))
    return None


def _enter(module: nn.Module, args: tuple) -> None:
    _STATE["depth"] += 1


def _leave(module: nn.Module, args: tuple, output: Any) -> None:
    _STATE["depth"] -= 1
    if _STATE["depth"] != 0 or output is None:
        return
    x, out = _first_tensor(args), _first_tensor(output)
    if x is None or x.ndim == 0:
        return
    backward = out is not None and out.requires_grad
    for counter in _ACTIVE:
        counter.add(int(x.shape[0]), backward=backward)


@contextlib.contextmanager
def count_passes() -> Iterator[PassCount]:
    """Count example passes through every top-level module called inside the ``with`` block.

    Counters nest: an outer counter also counts what an inner one counts.

    Yields:
        The :class:`PassCount`, updated as modules run.
    """
    counter = PassCount()
    if not _ACTIVE:
        _STATE["depth"] = 0
        _HANDLES.append(nn.modules.module.register_module_forward_pre_hook(_enter))
        _HANDLES.append(nn.modules.module.register_module_forward_hook(_leave, always_call=True))
    _ACTIVE.append(counter)
    try:
        yield counter
    finally:
        _ACTIVE.remove(counter)
        if not _ACTIVE:
            while _HANDLES:
                _HANDLES.pop().remove()


def record(examples: int, *, backward: bool) -> None:
    """Add ``examples`` to every active counter (for passes the hooks cannot see, e.g. under ``vmap``).

    Does nothing when no counter is active.
    """
    for counter in _ACTIVE:
        counter.add(examples, backward=backward)


def training_passes(*, epochs: float, examples: int) -> int:
    """Passes of training on ``examples`` examples for ``epochs`` epochs: ``3 · epochs · examples``.

    This is what retraining costs, the denominator of a method's relative cost.
    """
    if epochs < 0 or examples < 0:
        raise ValueError(f"epochs and examples must be >= 0, got {epochs} and {examples}")
    return int(round((1 + BACKWARD_COST) * epochs * examples))


def unlearning_epochs(*, retrain_passes: float, train_examples: int, fraction: float = 0.2) -> int:
    """The most whole epochs over the training set whose passes fit in ``fraction`` of retraining's.

    Retraining passes over the retain set only, so ``fraction`` of its epochs over the *training*
    set would cost more than ``fraction`` of its passes. At least 1.

    Example:
        >>> unlearning_epochs(retrain_passes=training_passes(epochs=30, examples=3600),
        ...                   train_examples=4000)
        5
    """
    if retrain_passes <= 0 or train_examples < 1 or not 0 < fraction <= 1:
        raise ValueError(f"need retrain_passes > 0, train_examples >= 1 and fraction in (0, 1], got "
                         f"{retrain_passes}, {train_examples} and {fraction}")
    return max(1, int(fraction * retrain_passes / training_passes(epochs=1, examples=train_examples)))
