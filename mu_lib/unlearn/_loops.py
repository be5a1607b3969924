"""Training loops shared by the unlearning methods (private: methods call these, users do not)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import runtime


def sgd(params: nn.Module | Iterable, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
        ) -> torch.optim.SGD:
    """``torch.optim.SGD`` over a module's parameters (or an iterable of parameters/groups)."""
    if not lr > 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    ps = params.parameters() if isinstance(params, nn.Module) else params
    return torch.optim.SGD(ps, lr=lr, momentum=momentum, weight_decay=weight_decay)


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


def ce_epochs(model: nn.Module, loader: Iterable, *, epochs: int, optimizer: torch.optim.Optimizer,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, per_step_scheduler: bool = False,
              method: str, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
              before_step: Callable[[], None] | None = None, after_step: Callable[[], None] | None = None,
              ) -> nn.Module:
    """Minimise cross-entropy on ``loader`` for ``epochs`` epochs, in train mode.

    Args:
        model: trained in place.
        loader: batches ``(x, y)`` already on the model's device.
        epochs: passes over ``loader``.
        optimizer: the optimiser.
        scheduler: stepped once per epoch (or per step with ``per_step_scheduler``).
        per_step_scheduler: step the scheduler after every optimiser step.
        method: name used in error messages and the progress bar.
        class_weights: optional weights of the cross-entropy.
        label_smoothing: passed to the cross-entropy.
        before_step: called after ``backward()`` and before ``optimizer.step()`` (e.g. to mask
            gradients).
        after_step: called after ``optimizer.step()`` (e.g. to restore frozen weights).

    Returns:
        ``model``.
    """
    model.train()
    for epoch in runtime.progress(range(epochs), desc=method, leave=False):
        total = 0.0
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb, weight=class_weights, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            if after_step is not None:
                after_step()
            if scheduler is not None and per_step_scheduler:
                scheduler.step()
            total += float(loss.detach())
        check_finite(torch.tensor(total), method=method, epoch=epoch)
        if scheduler is not None and not per_step_scheduler:
            scheduler.step()
    return model


def check_config(cfg: object, *, positive: Iterable[str] = (), nonnegative: Iterable[str] = (),
                 fraction: Iterable[str] = (), choices: Mapping[str, Iterable[object]] | None = None) -> None:
    """Validate numeric hyperparameters of a config, naming the offending field and value.

    Args:
        cfg: the config instance.
        positive: fields that must be finite and > 0.
        nonnegative: fields that must be finite and >= 0.
        fraction: fields that must lie in [0, 1].
        choices: fields mapped to the values they may take.

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
    for f, valid in (choices or {}).items():
        v = getattr(cfg, f)
        if v not in tuple(valid):
            raise ValueError(f"{name}.{f} must be one of {list(valid)}, got {v!r}")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with gradients switched off (a teacher or reference)."""
    import copy

    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def blocks(model: nn.Module) -> list[tuple[str, ...]]:
    """The model's blocks: its top-level children that hold parameters, in order.

    A top-level normalisation layer (batch, group or layer norm) joins the block before it, so
    that a stem ``conv1`` + ``bn1`` counts as one block. The last block is the classifier.

    * ``small_cnn``: ``(conv1,) (conv2,) (fc1,) (fc,)``;
    * ``resnet18``: ``(conv1, bn1) (layer1,) (layer2,) (layer3,) (layer4,) (fc,)``.

    Returns:
        One tuple of child names per block.

    Example:
        >>> from mu_lib.models import make_model
        >>> blocks(make_model("small_cnn", num_classes=10, in_channels=1, image_size=8))
        [('conv1',), ('conv2',), ('fc1',), ('fc',)]
    """
    out: list[list[str]] = []
    for name, child in model.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, _NORM_LAYERS) and out:
            out[-1].append(name)
        else:
            out.append([name])
    if not out:
        raise ValueError(f"{type(model).__name__} has no child module with parameters")
    return [tuple(b) for b in out]


def block_parameters(model: nn.Module, names: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` pairs of the top-level children called ``names`` (full dotted names)."""
    wanted = tuple(names)
    return [(n, p) for n, p in model.named_parameters() if n.split(".", 1)[0] in wanted]


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
