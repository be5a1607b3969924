"""One fast path for every training loop: autocast dtype, gradient scaler, memory format, timing.

A :class:`FastPath` says how a loop trains on one device:

=========  ===================================================================================
precision  what the loop does
=========  ===================================================================================
fp32       plain float32, contiguous (NCHW) tensors: the CPU profiles, bit for bit as before
bf16       bfloat16 autocast (on CUDA where the GPU supports it natively, and on the CPU, where
           the ``gpu_smoke`` profile exercises this path), channels-last images
fp16       float16 autocast with a gradient scaler (dynamic loss scaling), channels-last: the
           path of GPUs without bfloat16, such as Colab's T4
auto       ``bf16`` on a CUDA GPU that supports it, ``fp16`` on one that does not, ``fp32``
           elsewhere
=========  ===================================================================================

The same object serves :func:`mu_lib.train.fit`, :func:`mu_lib.train.fit_many` and the methods'
loop ``mu_lib.unlearn._loops.run_epochs``, so retraining and unlearning run alike and their cost
ratios compare like with like. The loops keep data on the device, accumulate losses there and
check them once per epoch, so that no step waits for the host. With fp16 the optimiser is the
fused SGD (:meth:`FastPath.sgd`), which takes the gradient scaler's overflow flag on the device:
``GradScaler.step`` would otherwise read it on the host at every step.
:class:`Stopwatch` times with CUDA synchronised before and after.

The default precision of every loop is the profile's (set by :func:`mu_lib.runtime.setup`),
overridden by ``MU_PRECISION``, by :func:`use_precision` or by a loop's ``precision=`` argument.

Example:
    >>> import torch
    >>> fp = fast_path("cpu", precision="bf16")
    >>> fp.name, fp.channels_last, fp.grad_scaler() is None
    ('bf16', True, True)
    >>> net = fp.prepare(torch.nn.Conv2d(3, 4, 3))  # inside a loop: channels-last
    >>> net.weight.is_contiguous(), fp.release(net).weight.is_contiguous()
    (False, True)
    >>> with fp.autocast():
    ...     out = torch.nn.Linear(4, 2)(torch.zeros(3, 4))
    >>> out.dtype
    torch.bfloat16
    >>> fast_path("cpu", precision="auto").name
    'fp32'
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["PRECISIONS", "FastPath", "fast_path", "default_precision", "use_precision", "Stopwatch", "synchronize"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""Values of the precision switch (``Profile.precision``, ``MU_PRECISION``, ``precision=``)."""

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_ACTIVE: list[str] = []  # stack of precisions set by setup() and use_precision()


def _check(precision: str) -> str:
    if not isinstance(precision, str) or precision.strip().lower() not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid precisions are {list(PRECISIONS)}")
    return precision.strip().lower()


def default_precision() -> str:
    """The precision a loop uses when given none: :func:`use_precision`'s (or the profile's, set by
    :func:`mu_lib.runtime.setup`), else ``MU_PRECISION``, else ``"auto"``.

    Example:
        >>> with use_precision("fp16"):
        ...     default_precision()
        'fp16'
    """
    if _ACTIVE:
        return _ACTIVE[-1]
    env = os.environ.get("MU_PRECISION")
    return _check(env) if env else "auto"


def set_default_precision(precision: str) -> None:
    """Make ``precision`` the default of every loop in this process (what ``setup`` does)."""
    precision = _check(precision)
    _ACTIVE.clear()
    _ACTIVE.append(precision)


@contextlib.contextmanager
def use_precision(precision: str | None) -> Iterator[str]:
    """Run the ``with`` block with ``precision`` as the default of every loop (``None``: unchanged).

    Example:
        >>> with use_precision("bf16") as p:
        ...     p, fast_path("cpu").name
        ('bf16', 'bf16')
    """
    if precision is None:
        yield default_precision()
        return
    _ACTIVE.append(_check(precision))
    try:
        yield _ACTIVE[-1]
    finally:
        _ACTIVE.pop()


def _cuda_bf16(device: torch.device) -> bool:
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8  # Ampere and later compute in bfloat16 natively; a T4 (7.5) does not


@dataclass(frozen=True)
class FastPath:
    """How a training loop runs on one device (build it with :func:`fast_path`).

    Attributes:
        device: where the loop runs.
        name: the resolved precision, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (never ``"auto"``).
        channels_last: images (4-D tensors) and models in channels-last memory format.
    """

    device: torch.device
    name: str
    channels_last: bool

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or ``None`` for float32."""
        return _DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of the forward pass (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh gradient scaler for fp16 (dynamic loss scaling), ``None`` otherwise."""
        return torch.amp.GradScaler(self.device.type) if self.name == "fp16" else None

    def sgd(self, params: Any, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.SGD:
        """``torch.optim.SGD`` for this path: the fused implementation with fp16, so that a skipped
        (overflowing) step is decided on the device, without a host synchronisation.

        Example:
            >>> w = torch.nn.Parameter(torch.zeros(2))
            >>> fast_path("cpu", precision="fp16").sgd([w], lr=0.1).defaults["fused"]
            True
        """
        fused = {"fused": True} if self.name == "fp16" else {}
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **fused)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (and to channels-last when the path uses it), in place."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def release(self, model: nn.Module) -> nn.Module:
        """Give ``model`` back in the default (contiguous) memory format, in place: channels-last
        is the loop's business, and code outside it (pruning utilities, ``view``) may expect
        contiguous parameters."""
        if self.channels_last:
            model.to(memory_format=torch.contiguous_format)
        return model

    def inputs(self, batch: Any) -> Any:
        """``batch`` (a tensor, or tuples/lists of them) with every 4-D tensor made channels-last."""
        if not self.channels_last:
            return batch
        if isinstance(batch, torch.Tensor):
            return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 else batch
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.inputs(b) for b in batch)
        return batch

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, *,
             before_step: Callable[[], None] | None = None) -> None:
        """Back-propagate ``loss`` and take one optimiser step (scaled for fp16).

        With a scaler the gradients are unscaled before ``before_step`` (e.g. a gradient mask),
        and a step whose gradients overflowed is skipped, as ``torch.amp.GradScaler`` does.
        """
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            return
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if before_step is not None:
            before_step()
        scaler.step(optimizer)
        scaler.update()


def fast_path(device: str | torch.device | None = None, *, precision: str | None = None) -> FastPath:
    """The :class:`FastPath` of a loop on ``device`` with ``precision``.

    Args:
        device: where the loop runs (``None``: the CPU).
        precision: one of :data:`PRECISIONS`; ``None`` takes :func:`default_precision`.

    Returns:
        The fast path, with ``"auto"`` resolved for this device.

    Raises:
        ValueError: for an unknown precision, or ``"bf16"`` on a CUDA GPU without native
            bfloat16 (use ``"auto"``, which takes fp16 there).

    Example:
        >>> fast_path("cpu", precision="fp16").grad_scaler() is not None
        True
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    name = _check(precision) if precision is not None else default_precision()
    if name == "auto":
        name = ("bf16" if _cuda_bf16(dev) else "fp16") if dev.type == "cuda" else "fp32"
    if name == "bf16" and dev.type == "cuda" and not _cuda_bf16(dev):
        raise ValueError(f"precision 'bf16' needs a GPU with native bfloat16 (compute capability 8.0 or later); "
                         f"{torch.cuda.get_device_name(dev)} has {torch.cuda.get_device_capability(dev)}: "
                         f"use precision 'auto' or 'fp16'")
    return FastPath(device=dev, name=name, channels_last=name != "fp32")


def synchronize(device: str | torch.device | None = None) -> None:
    """Wait for every queued CUDA kernel of ``device`` (nothing to wait for on the CPU)."""
    dev = torch.device(device) if device is not None else None
    if (dev is None or dev.type == "cuda") and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize(dev)


class Stopwatch:
    """Wall time of a ``with`` block, with CUDA synchronised before and after.

    Example:
        >>> with Stopwatch("cpu") as sw:
        ...     _ = sum(range(1000))
        >>> sw.seconds >= 0
        True
    """

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = device
        self.seconds = float("nan")
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start
