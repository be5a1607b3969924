"""A chapter's compute arithmetic: models x epochs x measured seconds per epoch.

A chapter's "compute" note states what its profile costs and where the number comes from. The
seconds per epoch are *measured* on the machine that runs the chapter (a few optimiser steps of
the profile's model, data shape, batch size, augmentation and precision, timed with CUDA
synchronised), and multiplied out:

    >>> note = ComputeNote(models=3, epochs=12, seconds_per_epoch=4.1, what="ResNet-9 on CIFAR-10")
    >>> note.text()
    '3 models x 12 epochs x 4.1 s per epoch = 2.5 min (ResNet-9 on CIFAR-10)'
    >>> (note + ComputeNote(models=64, epochs=0.5, seconds_per_epoch=4.1)).text()
    '3 models x 12 epochs x 4.1 s per epoch + 64 models x 0.5 epochs x 4.1 s per epoch = 4.6 min'

:func:`profile_note` measures and builds the note for a profile in one call; a chapter glues its
``text()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mu_lib import runtime, train
from mu_lib.data import Dataset, load_dataset
from mu_lib.models import make_model

__all__ = ["ComputeNote", "epoch_seconds", "profile_note", "fmt_seconds"]


def fmt_seconds(seconds: float) -> str:
    """``42.0 -> "42 s"``, ``150 -> "2.5 min"``, ``7200 -> "2.0 h"``.

    Example:
        >>> fmt_seconds(42.0), fmt_seconds(150), fmt_seconds(7200)
        ('42 s', '2.5 min', '2.0 h')
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be finite and >= 0, got {seconds}")
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _num(x: float) -> str:
    return f"{x:.3g}" if float(x) != int(x) else str(int(x))


@dataclass(frozen=True)
class ComputeNote:
    """Models x epochs x seconds per epoch, and sums of such terms.

    Attributes:
        models: models trained.
        epochs: epochs per model (fractions allowed: a method that trains a fifth of an epoch).
        seconds_per_epoch: measured seconds of one epoch of one model.
        what: what is trained (optional, printed in brackets).
    """

    models: int
    epochs: float
    seconds_per_epoch: float
    what: str = ""
    terms: tuple[ComputeNote, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for name in ("models", "epochs", "seconds_per_epoch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")

    @property
    def seconds(self) -> float:
        """The total: the product, or the sum of the terms."""
        if self.terms:
            return float(sum(t.seconds for t in self.terms))
        return float(self.models * self.epochs * self.seconds_per_epoch)

    def __add__(self, other: ComputeNote) -> ComputeNote:
        terms = (self.terms or (self,)) + (other.terms or (other,))
        return ComputeNote(models=0, epochs=0, seconds_per_epoch=0, terms=terms)

    def arithmetic(self) -> str:
        """The product(s) without the total: ``"3 models x 12 epochs x 4.1 s per epoch"``."""
        if self.terms:
            return " + ".join(t.arithmetic() for t in self.terms)
        models = f"{self.models} model{'' if self.models == 1 else 's'}"
        epochs = f"{_num(self.epochs)} epoch{'' if self.epochs == 1 else 's'}"
        return f"{models} x {epochs} x {self.seconds_per_epoch:.2g} s per epoch"

    def text(self) -> str:
        """The arithmetic and its total, for a chapter's compute note."""
        what = f" ({self.what})" if self.what and not self.terms else ""
        return f"{self.arithmetic()} = {fmt_seconds(self.seconds)}{what}"

    def __str__(self) -> str:
        return self.text()


def epoch_seconds(model: str, *, dataset: Dataset | str, examples: int, batch_size: int, augment: bool = False,
                  device: str | torch.device | None = None, precision: str | None = None, steps: int = 8,
                  warmup: int = 2) -> float:
    """Measured seconds of one training epoch of ``model`` over ``examples`` examples of ``dataset``.

    Times ``steps`` optimiser steps of :func:`mu_lib.train.fit` (after ``warmup`` untimed ones,
    which pay for kernel selection and first allocations) with CUDA synchronised before and after,
    and scales to ``ceil(examples / batch_size)`` steps.

    Args:
        model: a model name (:func:`mu_lib.models.make_model`).
        dataset: the dataset (or its name) whose image shape and classes the model takes.
        examples: examples in one epoch.
        batch_size: examples per step.
        augment: use the dataset's training augmentation.
        device: where to train.
        precision: the fast path's precision (``None``: the profile's).
        steps: timed steps.
        warmup: untimed steps before.

    Returns:
        Seconds per epoch.

    Example:
        >>> s = epoch_seconds("logreg", dataset="digits", examples=1000, batch_size=100, steps=2)
        >>> 0 < s < 10
        True
    """
    if examples < 1 or batch_size < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"examples, batch_size and steps must be >= 1 and warmup >= 0, got {examples}, "
                         f"{batch_size}, {steps}, {warmup}")
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    dev = runtime.resolve_device(device)
    n = min(len(ds), batch_size * max(steps, warmup, 1))
    x, y = ds.on(dev)
    x, y = x[:n], y[:n]
    net = make_model(model, num_classes=ds.num_classes, in_channels=ds.in_channels, image_size=ds.image_size, seed=0)
    kw = dict(batch_size=batch_size, lr=0.01, augment=ds.augment if augment else None, device=dev,
              precision=precision, progress=False)
    per_pass = -(-n // batch_size)
    if warmup:
        train.fit(net, x[:batch_size * warmup], y[:batch_size * warmup], epochs=1, **kw)
    passes = max(1, math.ceil(steps / per_pass))
    with runtime.Stopwatch(dev) as watch:
        train.fit(net, x, y, epochs=passes, **kw)
    return watch.seconds / (passes * per_pass) * math.ceil(examples / batch_size)


def profile_note(prof: runtime.Profile, *, models: int, epochs: float | None = None, examples: int | None = None,
                 what: str | None = None, steps: int = 8) -> ComputeNote:
    """The compute note of a chapter in profile ``prof``: ``models`` x ``epochs`` x the measured
    seconds per epoch of the profile's model on ``examples`` examples of its dataset.

    Args:
        prof: the profile (after :func:`mu_lib.runtime.setup`: its device and precision are used).
        models: models trained with the profile's recipe.
        epochs: epochs per model (``None``: the profile's).
        examples: examples per epoch (``None``: the profile's ``train_size``, or 45,000 for the
            whole CIFAR-10 training set less the validation set).
        what: description (``None``: "<model> on <dataset>, <precision>").
        steps: timed optimiser steps.

    Example:
        >>> prof = runtime.get_profile("smoke")
        >>> note = profile_note(prof, models=2, epochs=1, examples=64, steps=1)
        >>> note.models, note.text().startswith("2 models x 1 epoch x")
        (2, True)
    """
    ds = load_dataset(prof.dataset)
    if examples is None:
        examples = prof.train_size if prof.train_size is not None else len(ds) - (
            len(ds.official_test) if ds.official_test is not None else 0) - prof.val_size
    sec = epoch_seconds(prof.model, dataset=ds, examples=int(examples), batch_size=prof.batch_size,
                        augment=prof.augment, device=prof.device, precision=prof.precision, steps=steps)
    label = what if what is not None else f"{prof.model} on {prof.dataset}, {prof.precision}"
    return ComputeNote(models=int(models), epochs=float(prof.epochs if epochs is None else epochs),
                       seconds_per_epoch=sec, what=label)
