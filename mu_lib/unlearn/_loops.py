"""Training loops shared by the unlearning methods (private: methods call these, users do not)."""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import runtime


def sgd(params: nn.Module | Iterable, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
        ) -> torch.optim.SGD:
    """``torch.optim.SGD`` over a module's parameters (or an iterable of parameters/groups), on the
    fast path of their device (fused with fp16: no host synchronisation per step)."""
    if not lr > 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    ps = list(params.parameters() if isinstance(params, nn.Module) else params)
    first = next((p for g in ps for p in (g["params"] if isinstance(g, dict) else [g])), None)
    fast = runtime.fast_path(first.device if first is not None else None)
    return fast.sgd(ps, lr=lr, momentum=momentum, weight_decay=weight_decay)


def cosine(optimizer: torch.optim.Optimizer, steps: int, eta_min: float = 0.0
           ) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine annealing over ``steps`` calls of ``scheduler.step()``."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps), eta_min=eta_min)


def check_finite(loss: torch.Tensor, *, method: str, epoch: int) -> None:
    """Raise ``FloatingPointError`` naming the method and epoch when ``loss`` is NaN or infinite."""
    value = float(loss)
    if not math.isfinite(value):
        raise FloatingPointError(f"{method}: loss became {value} in epoch {epoch + 1}; lower the learning rate")


def cycle(loader: Iterable) -> Iterator:
    """Iterate over ``loader`` forever (a new pass, reshuffled, each time it is exhausted)."""
    while True:
        yield from loader


class Paired:
    """One pass over ``first``, each batch paired with the next batch of ``second``; ``second``
    restarts (reshuffled) whenever it runs out, and every pass starts it afresh.

    Example:
        >>> import torch
        >>> from mu_lib.data import TensorLoader
        >>> x = torch.arange(6.0).view(6, 1)
        >>> pairs = Paired(TensorLoader(x[:4], x[:4, 0], batch_size=2), TensorLoader(x, x[:, 0], batch_size=4))
        >>> [(tuple(a[1].tolist()), tuple(b[1].tolist())) for a, b in pairs]
        [((0.0, 1.0), (0.0, 1.0, 2.0, 3.0)), ((2.0, 3.0), (4.0, 5.0))]
    """

    def __init__(self, first: Iterable, second: Iterable) -> None:
        self.first, self.second = first, second

    def __iter__(self) -> Iterator:
        return zip(self.first, cycle(self.second))


def run_epochs(model: nn.Module, loader: Iterable, *, epochs: int, optimizer: torch.optim.Optimizer,
               loss_fn: Callable[..., torch.Tensor], method: str,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, per_step_scheduler: bool = False,
               before_epoch: Callable[[int], None] | None = None, after_epoch: Callable[[int], None] | None = None,
               before_step: Callable[[], None] | None = None, after_step: Callable[[], None] | None = None,
               max_steps: int | None = None, train_mode: bool = True, precision: str | None = None) -> nn.Module:
    """The one training loop of the methods: minimise ``loss_fn(*batch)`` over ``loader``, ``epochs`` times.

    Every batch the loader yields (a tuple such as ``(x, y)``, or pairs of batches) is passed to
    ``loss_fn`` unpacked. The losses are summed on the device and checked once per epoch, so a
    step never waits for the device; a NaN or infinite sum raises ``FloatingPointError`` naming
    the method and the epoch. The loop runs on the same :class:`~mu_lib.fastpath.FastPath` as
    :func:`mu_lib.train.fit` (the profile's precision on the model's device): ``loss_fn`` runs
    under its autocast, images are made channels-last, and fp16 steps go through a gradient
    scaler (the gradients are unscaled before ``before_step``).

    Args:
        model: trained in place.
        loader: re-iterable; one pass is one epoch.
        epochs: passes over ``loader``.
        optimizer: the optimiser.
        loss_fn: ``loss_fn(*batch) -> scalar loss``.
        method: name used in error messages and the progress bar.
        scheduler: stepped once per epoch (or per step with ``per_step_scheduler``).
        per_step_scheduler: step the scheduler after every optimiser step.
        before_epoch: called with the 0-based epoch before it starts (after the mode is set).
        after_epoch: called with the 0-based epoch after its scheduler step.
        before_step: called after ``backward()`` and before ``optimizer.step()`` (e.g. to mask
            gradients).
        after_step: called after ``optimizer.step()`` (e.g. to restore frozen weights).
        max_steps: stop after this many optimiser steps in all (fractional epochs).
        train_mode: put the model in train mode (``False``: eval mode, batch-norm frozen).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``; ``None`` takes the profile's.

    Returns:
        ``model``.
    """
    param = next(model.parameters(), None)
    fast = runtime.fast_path(param.device if param is not None else None, precision=precision)
    fast.prepare(model)
    scaler = fast.grad_scaler()
    step = 0
    for epoch in runtime.progress(range(epochs), desc=method, leave=False):
        if max_steps is not None and step >= max_steps:
            break
        model.train(train_mode)
        if before_epoch is not None:
            before_epoch(epoch)
        total = None
        for batch in loader:
            with fast.autocast():
                loss = loss_fn(*fast.inputs(batch))
            fast.step(loss, optimizer, scaler, before_step=before_step)
            if after_step is not None:
                after_step()
            if scheduler is not None and per_step_scheduler:
                scheduler.step()
            total = loss.detach().float() if total is None else total + loss.detach().float()
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        if total is not None:
            check_finite(total, method=method, epoch=epoch)
        if scheduler is not None and not per_step_scheduler:
            scheduler.step()
        if after_epoch is not None:
            after_epoch(epoch)
    return fast.release(model)


def ce_epochs(model: nn.Module, loader: Iterable, *, class_weights: torch.Tensor | None = None,
              label_smoothing: float = 0.0, **kwargs) -> nn.Module:
    """:func:`run_epochs` with the cross-entropy of ``(x, y)`` batches (optionally class-weighted)."""
    return run_epochs(model, loader, loss_fn=lambda xb, yb: F.cross_entropy(
        model(xb), yb, weight=class_weights, label_smoothing=label_smoothing), **kwargs)


def check_config(cfg: object, *, integer: Iterable[str] = (), positive: Iterable[str] = (),
                 nonnegative: Iterable[str] = (), fraction: Iterable[str] = (), below_one: Iterable[str] = (),
                 choices: Mapping[str, Iterable[object]] | None = None, boolean: Iterable[str] = ()) -> None:
    """Validate hyperparameters of a config, naming the offending field and value.

    Every numeric field must be a real number (not a bool or a string); the other checks follow.

    Args:
        cfg: the config instance.
        integer: fields that must be integers (not floats, not bools).
        positive: fields that must be finite and > 0.
        nonnegative: fields that must be finite and >= 0.
        fraction: fields that must lie in [0, 1].
        below_one: fields that must lie in [0, 1) (momentum).
        choices: fields mapped to the values they may take.
        boolean: fields that must be ``True`` or ``False``.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Cfg:
        ...     lr: float = -1.0
        >>> check_config(Cfg(), positive=("lr",))
        Traceback (most recent call last):
        ...
        ValueError: Cfg.lr must be positive, got -1.0
    """
    name = type(cfg).__name__
    for f in integer:
        v = getattr(cfg, f)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"{name}.{f} must be an integer, got {v!r}")
    for f in (*positive, *nonnegative, *fraction, *below_one):
        v = getattr(cfg, f)
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{name}.{f} must be a number, got {v!r}")
    for f in below_one:
        v = getattr(cfg, f)
        if not (math.isfinite(v) and 0 <= v < 1):
            raise ValueError(f"{name}.{f} must be in [0, 1), got {v!r}")
    for f in positive:
        v = getattr(cfg, f)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}.{f} must be positive, got {v!r}")
    for f in nonnegative:
        v = getattr(cfg, f)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name}.{f} must be >= 0, got {v!r}")
    for f in fraction:
        v = getattr(cfg, f)
        if not (math.isfinite(v) and 0 <= v <= 1):
            raise ValueError(f"{name}.{f} must be in [0, 1], got {v!r}")
    for f in boolean:
        v = getattr(cfg, f)
        if not isinstance(v, bool):
            raise ValueError(f"{name}.{f} must be True or False, got {v!r}")
    for f, valid in (choices or {}).items():
        v = getattr(cfg, f)
        if isinstance(v, bool) or v not in tuple(valid):
            raise ValueError(f"{name}.{f} must be one of {list(valid)}, got {v!r}")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with gradients switched off (a teacher or reference)."""
    import copy

    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def step_decay(epoch: int, epochs: int, *, decay: float, milestones: tuple[float, ...] = (0.5, 0.8, 0.9)) -> float:
    """Learning-rate factor of SCRUB's and Deep Unlearn's multi-step schedule at 1-based ``epoch``.

    The rate is multiplied by ``decay`` once for every milestone ``floor(f * epochs)`` that
    ``epoch`` has passed (``epoch > milestone``, as SCRUB's ``sgda_adjust_learning_rate``).

    Example:
        >>> [step_decay(e, 10, decay=0.1) for e in range(1, 11)]
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.010000000000000002, 0.0010000000000000002]
    """
    passed = sum(epoch > math.floor(f * epochs) for f in milestones)
    return decay ** passed


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def phase_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimiser steps of a phase of ``epochs`` (possibly fractional) passes over a loader of
    ``steps_per_epoch`` batches: ``round(epochs * steps_per_epoch)``, at least 1 when ``epochs > 0``.

    Example:
        >>> phase_steps(2, 10), phase_steps(0.25, 10), phase_steps(0.01, 10), phase_steps(0, 10)
        (20, 2, 1, 0)
    """
    if epochs <= 0:
        return 0
    return max(1, int(round(float(epochs) * steps_per_epoch)))


def run_phase(model: nn.Module, loader: Iterable, *, epochs: float, **kwargs) -> nn.Module:
    """:func:`run_epochs` for ``epochs`` passes, fractional ones included (the last pass stops after
    :func:`phase_steps` steps in all); a phase of 0 epochs does nothing."""
    steps = phase_steps(epochs, len(loader))  # type: ignore[arg-type]
    if steps == 0:
        return model
    return run_epochs(model, loader, epochs=math.ceil(steps / len(loader)), max_steps=steps,  # type: ignore[arg-type]
                      **kwargs)


def per_step(optimizer: torch.optim.Optimizer, factor: Callable[[float], float], steps: int | Sequence[int]
             ) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler (step it after every optimiser step) that multiplies each group's initial rate by
    ``factor(progress)``, where ``progress`` runs from 0 to just below 1.

    With ``steps`` an integer, ``progress = step / steps``. With ``steps`` the number of steps of
    each epoch (epochs of different lengths, e.g. SCRUB's), progress is counted in epochs:
    ``(epoch + fraction of that epoch done) / epochs``, so that a milestone at ``k / E`` falls
    exactly at the start of epoch ``k + 1``.

    Every schedule of the methods is written this way, as a function of the fraction of the phase
    done, so that it keeps its shape when an epoch budget shortens the phase.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = per_step(opt, lambda t: 1.0 - t, steps=4)
        >>> rates = []
        >>> for _ in range(4):
        ...     rates.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
        >>> rates
        [1.0, 0.75, 0.5, 0.25]
    """
    if isinstance(steps, Sequence):
        per_epoch = [max(1, int(n)) for n in steps] or [1]
        starts = [0]
        for n in per_epoch:
            starts.append(starts[-1] + n)

        def progress(s: int) -> float:
            s = min(s, starts[-1] - 1)
            e = bisect.bisect_right(starts, s) - 1
            return (e + (s - starts[e]) / per_epoch[e]) / len(per_epoch)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factor(progress(s)))
    total = max(1, int(steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factor(min(s, total - 1) / total))


def cosine_factor(progress: float) -> float:
    """Cosine annealing from 1 to 0 over the phase: ``(1 + cos(pi * progress)) / 2``."""
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def milestone_factor(progress: float, *, milestones: tuple[float, ...], decay: float) -> float:
    """Multi-step decay on the fraction of the phase done: ``decay`` to the number of milestones
    (fractions of the phase) that ``progress`` has reached.

    Example:
        >>> [milestone_factor(t / 10, milestones=(0.5, 0.8, 0.9), decay=0.1) for t in range(10)]
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.010000000000000002, 0.0010000000000000002]
    """
    return decay ** sum(progress >= m - 1e-12 for m in milestones)
