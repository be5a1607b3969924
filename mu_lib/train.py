"""Training and evaluation: :func:`fit`, :func:`evaluate`, and :func:`fit_many` for many seeds at once.

:func:`fit` is plain mini-batch SGD with momentum, weight decay and a per-step learning-rate
schedule, on in-memory tensors. :func:`fit_many` trains ``M`` copies of a small model (different
seeds, optionally different training subsets) in one vectorised loop: the parameters are stacked
and the per-model loss is mapped with ``torch.func.vmap``. It follows exactly the same arithmetic
as :func:`fit`, so that ``fit_many(factory, x, y, seeds=s)`` equals
``[fit(factory(k), x, y, seed=k) for k in s]`` up to floating-point reassociation (tested).

Example:
    >>> from mu_lib import data, models, train
    >>> s = data.make_splits("digits", val_size=0, test_size=300, seed=0)
    >>> x, y = s.xy("train")
    >>> net = models.make_model("logreg", num_classes=10, in_channels=1, image_size=8, seed=0)
    >>> net = train.fit(net, x, y, epochs=3, batch_size=64, lr=0.1, seed=0)
    >>> train.evaluate(net, *s.xy("test")).accuracy > 0.85
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import runtime
from mu_lib._vmap_sgd import fit_chunk
from mu_lib.data import Splits, TensorLoader
from mu_lib.models import has_batchnorm, make_model
from mu_lib.runtime import SCHEDULES, Recipe

__all__ = ["Evaluation", "Recipe", "SCHEDULES", "UpdateLog", "lr_at", "fit", "fit_many", "train_on", "evaluate",
           "predict_logits",
           "check_xy"]



def lr_at(step: int, total: int, *, lr: float, schedule: str) -> float:
    """Learning rate at ``step`` (0-based) of ``total`` steps.

    ``cosine`` anneals from ``lr`` to 0, ``linear`` decays linearly to 0, ``onecycle`` rises
    linearly to ``lr`` over the first quarter and falls linearly to 0, ``constant`` stays at ``lr``.

    Example:
        >>> lr_at(0, 10, lr=0.1, schedule="cosine"), round(lr_at(5, 10, lr=0.1, schedule="cosine"), 4)
        (0.1, 0.05)
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid schedules are {list(SCHEDULES)}")
    frac = step / max(total, 1)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "linear":
        return lr * (1.0 - frac)
    peak = 0.25
    return lr * (frac / peak if frac < peak else (1.0 - frac) / (1.0 - peak))


def check_xy(x: torch.Tensor, y: torch.Tensor, *, num_classes: int | None = None) -> None:
    """Validate a batch of inputs and integer labels; raise ``ValueError`` naming the problem.

    Example:
        >>> check_xy(torch.zeros(3, 2), torch.tensor([0, 1]))
        Traceback (most recent call last):
        ...
        ValueError: x and y disagree in length: x has 3 rows, y has 2
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be torch tensors, got {type(x).__name__} and {type(y).__name__}")
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y disagree in length: x has {x.shape[0]} rows, y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("x and y are empty")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    if num_classes is not None and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int = 128,
        lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, schedule: str = "cosine",
        label_smoothing: float = 0.0, augment: str | None = None, seed: int = 0,
        device: str | torch.device | None = None, precision: str | None = None, progress: bool | None = None,
        desc: str = "fit", record_updates: bool | Sequence[int] | np.ndarray = False) -> nn.Module:
    """Train ``model`` in place with mini-batch SGD on cross-entropy, and return it in eval mode.

    Each epoch visits the examples in a fresh random order drawn from a generator seeded with
    ``seed`` (the last batch may be smaller). The learning rate follows ``schedule`` per step.
    The loop runs on the :class:`~mu_lib.fastpath.FastPath` of ``precision``: the data stay on the
    device, the random draws come from a generator there, the losses are summed there and read
    once per epoch; ``"bf16"``/``"fp16"`` add autocast (fp16 with a gradient scaler) and
    channels-last memory. In fp32 on the CPU (the cpu profile) the arithmetic is plain SGD.

    Args:
        model: the network; it is moved to ``device``.
        x: inputs ``[N, ...]``.
        y: integer labels ``[N]``.
        epochs: passes over the data.
        batch_size: examples per step.
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty added to the gradient (as ``torch.optim.SGD`` does).
        schedule: one of :data:`SCHEDULES`.
        label_smoothing: passed to the cross-entropy.
        augment: ``"crop_flip"`` or ``None``.
        seed: seed of the data order and augmentation (the initialisation is the model's own).
        device: where to train; ``None`` follows :func:`mu_lib.runtime.default_device`.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``; ``None`` takes the profile's
            (:func:`mu_lib.fastpath.default_precision`).
        progress: show a progress bar (``None``: :func:`mu_lib.runtime.progress_enabled`).
        desc: label of the progress bar.
        record_updates: Amnesiac unlearning's training-time record (:class:`UpdateLog`): ``True``
            stores every step's parameter update and the rows of ``x`` its batch held; rows of
            ``x`` (an array) store only the steps whose batch held one of them (Graves et al.
            record the batches with sensitive data). The log is attached to the model as
            ``model.update_log``; such a run takes the plain fp32 loop (no mixed precision).

    Returns:
        The same ``model`` object, trained, in eval mode.

    Raises:
        ValueError: for bad inputs or hyperparameters.
        FloatingPointError: if the training loss becomes NaN or infinite.

    Example:
        >>> from mu_lib import models
        >>> net = models.make_model("mlp", num_classes=2, in_channels=1, image_size=2, seed=0)
        >>> x, y = torch.randn(64, 1, 2, 2), torch.randint(0, 2, (64,))
        >>> fit(net, x, y, epochs=1, batch_size=16, seed=0) is net
        True
    """
    check_xy(x, y)
    runtime.check_hparams(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                          schedule=schedule)
    if not (isinstance(record_updates, bool) and not record_updates):  # Amnesiac's record: see _fit_recording
        return _fit_recording(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                              weight_decay=weight_decay, schedule=schedule, label_smoothing=label_smoothing,
                              augment=augment, seed=seed, device=device, record=record_updates)
    dev = runtime.resolve_device(device)
    fast = runtime.fast_path(dev, precision=precision)
    fast.prepare(model)
    x, y = x.to(dev), y.to(dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    loader = TensorLoader(x, y, batch_size=batch_size, shuffle=True, generator=gen, augment=augment)
    opt = fast.sgd(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scaler = fast.grad_scaler()
    total = epochs * len(loader)
    step = 0
    model.train()
    bar = runtime.progress(range(epochs), enabled=progress, desc=desc, leave=False)
    for epoch in bar:
        running = torch.zeros((), device=dev)
        for xb, yb in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, lr=lr, schedule=schedule)
            with fast.autocast():
                loss = F.cross_entropy(model(fast.inputs(xb)), yb, label_smoothing=label_smoothing)
            fast.step(loss, opt, scaler)
            running += loss.detach().float()
            step += 1
        mean_loss = float(running) / max(len(loader), 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss became {mean_loss} in epoch {epoch + 1} of {desc!r}; "
                                     f"try a smaller learning rate than {lr}")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{mean_loss:.3f}")
    fast.release(model)
    model.eval()
    return model


def train_on(splits: Splits, part: str = "train", *, model: str | nn.Module, recipe: Recipe, seed: int = 0,
             device: str | torch.device | None = None, progress: bool | None = None,
             record_updates: bool = False, precision: str | None = None) -> nn.Module:
    """Train a model from scratch on one part of ``splits`` with ``recipe``.

    This is how the book trains its *original* model (``part="train"``) and the gold-standard
    *retrained* model (``part="retain"``).

    Args:
        splits: the data.
        part: which examples to train on (``"train"`` = retain ∪ forget, or ``"retain"``).
        model: a model name for :func:`mu_lib.models.make_model` (initialised with ``seed``), or a
            freshly initialised module, which is trained in place.
        recipe: the training recipe.
        seed: seed of the initialisation (for a name) and of the data order.
        device: where to train.
        progress: show a progress bar.
        record_updates: record every step's parameter update for Amnesiac unlearning
            (:func:`fit`'s option; the log's ``index`` holds the dataset indices of ``part``).
        precision: as in :func:`fit` (``None``: the profile's).

    Returns:
        The trained model, in eval mode.

    Example:
        >>> from mu_lib import data
        >>> s = data.make_splits("digits", val_size=0, test_size=300, seed=0)
        >>> net = train_on(s, "retain", model="logreg", recipe=Recipe(epochs=2, batch_size=64, lr=0.1))
        >>> evaluate(net, *s.xy("test")).accuracy > 0.8
        True
    """
    ds = splits.data
    if isinstance(model, str):
        model = make_model(model, num_classes=ds.num_classes, in_channels=ds.in_channels,
                           image_size=ds.image_size, seed=seed)
    x, y = splits.xy(part, device=runtime.resolve_device(device))  # indexed on the device-resident dataset
    net = fit(model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
               momentum=recipe.momentum, weight_decay=recipe.weight_decay, schedule=recipe.schedule,
               augment=ds.augment if recipe.augment else None, seed=seed, device=device, progress=progress,
               precision=precision, desc=f"train on {part}",
               **({"record_updates": True} if record_updates else {}))
    if record_updates:
        net.update_log.index = splits.indices(part).copy()
    return net


@dataclass(frozen=True)
class Evaluation:
    """What a model does on a set of examples.

    Attributes:
        accuracy: fraction of correct predictions.
        loss: mean cross-entropy.
        losses: per-example cross-entropy ``[N]`` (float64).
        logits: outputs ``[N, K]`` (float32).
        correct: per-example correctness ``[N]``.
    """

    accuracy: float
    loss: float
    losses: np.ndarray
    logits: np.ndarray
    correct: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """Predicted classes ``[N]``."""
        return self.logits.argmax(axis=1)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """Logits of ``model`` in eval mode on ``x``, as a float32 CPU tensor ``[N, K]``.

    Evaluation runs in float32 whatever the training precision (the scores of the book are
    computed from these logits). ``x`` is copied to the device once and the logits come back in
    one transfer. The model's train/eval mode is restored afterwards.
    """
    dev = runtime.resolve_device(device)
    was_training = model.training
    model.to(dev).eval()
    xd = x.to(dev)
    outs = [model(xd[i:i + batch_size]).float() for i in range(0, xd.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(outs).cpu()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024,
             device: str | torch.device | None = None) -> Evaluation:
    """Accuracy, per-example losses and logits of ``model`` on ``(x, y)``, in eval mode.

    Args:
        model: the network.
        x: inputs ``[N, ...]``.
        y: integer labels ``[N]``.
        batch_size: examples per forward pass.
        device: where to run.

    Returns:
        An :class:`Evaluation`.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> ev = evaluate(net, torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1]))
        >>> ev.losses.shape, ev.logits.shape
        ((5,), (5, 3))
    """
    check_xy(x, y)
    logits = predict_logits(model, x, batch_size=batch_size, device=device)
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError(f"model output must have shape [{y.shape[0]}, K], got {tuple(logits.shape)}")
    yc = y.cpu().long()
    losses = F.cross_entropy(logits.double(), yc, reduction="none").numpy()
    correct = (logits.argmax(1) == yc).numpy()
    return Evaluation(accuracy=float(correct.mean()), loss=float(losses.mean()), losses=losses,
                      logits=logits.numpy(), correct=correct)


def fit_many(factory: Callable[[int], nn.Module], x: torch.Tensor, y: torch.Tensor, *, seeds: Sequence[int],
             indices: torch.Tensor | np.ndarray | None = None, epochs: int, batch_size: int = 128,
             lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, schedule: str = "cosine",
             label_smoothing: float = 0.0, chunk_size: int = 64, device: str | torch.device | None = None,
             precision: str | None = None, progress: bool | None = None, desc: str = "fit_many") -> list[nn.Module]:
    """Train one model per seed, many at once, with ``torch.func.vmap`` over stacked parameters.

    Model ``i`` is initialised by ``factory(seeds[i])``, trains on the rows ``indices[i]`` of
    ``(x, y)`` (all rows when ``indices`` is ``None``) and draws its data order from a generator
    seeded with ``seeds[i]``, exactly as ``fit(factory(seeds[i]), x[indices[i]], y[indices[i]],
    seed=seeds[i])`` would. Models are processed in chunks of ``chunk_size`` to bound memory.
    Models with batch norm cannot be vmapped (their running statistics are updated in place);
    for them the function falls back to a loop of :func:`fit` with the same result. The
    vectorised loop runs on the same fast path as :func:`fit` (autocast, and for fp16 a loss
    scale per model; see ``mu_lib._vmap_sgd``).

    Args:
        factory: ``seed -> freshly initialised model``.
        x: inputs ``[N, ...]``.
        y: integer labels ``[N]``.
        seeds: one seed per model.
        indices: optional ``[M, n]`` training rows per model (equal counts, e.g. LiRA's IN halves).
        epochs, batch_size, lr, momentum, weight_decay, schedule, label_smoothing: as in :func:`fit`.
        chunk_size: models trained together.
        device: where to train.
        precision: as in :func:`fit` (``None``: the profile's).
        progress: show a progress bar over epochs of each chunk.
        desc: label of the progress bar.

    Returns:
        The trained models, in eval mode, in the order of ``seeds``.

    Example:
        >>> from mu_lib import models
        >>> make = lambda s: models.make_model("logreg", num_classes=3, in_channels=1, image_size=2, seed=s)
        >>> x, y = torch.randn(40, 1, 2, 2), torch.randint(0, 3, (40,))
        >>> nets = fit_many(make, x, y, seeds=[0, 1], epochs=2, batch_size=8, lr=0.1)
        >>> ref = fit(make(1), x, y, epochs=2, batch_size=8, lr=0.1, seed=1)
        >>> torch.allclose(nets[1][1].weight, ref[1].weight, atol=1e-6)
        True
    """
    check_xy(x, y)
    runtime.check_hparams(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                          schedule=schedule)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: nothing to train")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_all = x.shape[0]
    if indices is None:
        idx_all = torch.arange(n_all).expand(len(seeds), n_all)
    else:
        idx_all = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        if idx_all.ndim != 2 or idx_all.shape[0] != len(seeds):
            raise ValueError(f"indices must have shape [{len(seeds)}, n], got {tuple(idx_all.shape)}")
        if idx_all.numel() and (int(idx_all.min()) < 0 or int(idx_all.max()) >= n_all):
            raise ValueError(f"indices out of range [0, {n_all})")
        if idx_all.shape[1] == 0:
            raise ValueError("indices select no training rows")
        idx_all = idx_all.long()
    dev = runtime.resolve_device(device)
    fast = runtime.fast_path(dev, precision=precision)
    xd, yd = x.to(dev), y.to(dev)
    idx_all = idx_all.to(dev)
    probe = factory(seeds[0])
    if has_batchnorm(probe):
        return [fit(factory(s), xd[idx_all[i]], yd[idx_all[i]], epochs=epochs, batch_size=batch_size, lr=lr,
                    momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                    label_smoothing=label_smoothing, seed=s, device=dev, precision=fast.name, progress=progress,
                    desc=desc)
                for i, s in enumerate(seeds)]
    trained: list[nn.Module] = []
    for start in range(0, len(seeds), chunk_size):
        chunk = seeds[start:start + chunk_size]
        nets = [factory(s).to(dev) for s in chunk]
        trained += fit_chunk(nets, xd, yd, idx_all[start:start + chunk_size], chunk, epochs=epochs,
                             batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                             rate=lambda step, total: lr_at(step, total, lr=lr, schedule=schedule),
                             label_smoothing=label_smoothing, fast=fast, progress=progress,
                             desc=f"{desc} {start + 1}-{start + len(chunk)}/{len(seeds)}")
    return trained




# --------------------------------------------------------------------------------------------
# Amnesiac unlearning's training-time record (Graves et al. 2021), behind fit(record_updates=...)
# --------------------------------------------------------------------------------------------

@dataclass
class UpdateLog:
    """The parameter updates of a training run, step by step, for Amnesiac unlearning.

    Attributes:
        rows: for each recorded step, the rows of the training ``x`` that its batch held.
        updates: for each recorded step, ``{parameter name: theta after - theta before}`` (CPU).
        steps: optimiser steps of the whole run (recorded or not).
        examples: rows of the training ``x``.
        recorded: ``None`` when every step was recorded, else the rows whose steps were.
        index: dataset indices of the rows of ``x`` (:func:`train_on` sets them), or ``None``.
    """

    rows: list[np.ndarray]
    updates: list[dict[str, torch.Tensor]]
    steps: int
    examples: int
    recorded: np.ndarray | None = None
    index: np.ndarray | None = None


def _fit_recording(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
                   momentum: float, weight_decay: float, schedule: str, label_smoothing: float, augment: str | None,
                   seed: int, device: str | torch.device | None, record: bool | Sequence[int] | np.ndarray
                   ) -> nn.Module:
    """:func:`fit`'s arithmetic in fp32 (the same data order, augmentation and schedule for a seed),
    storing each recorded step's update and rows in an :class:`UpdateLog` on ``model.update_log``."""
    n = int(x.shape[0])
    only = None if isinstance(record, bool) else np.unique(np.asarray(record, dtype=np.int64))
    if only is not None and only.size and (only.min() < 0 or only.max() >= n):
        raise ValueError(f"record_updates rows must lie in [0, {n}), got range [{only.min()}, {only.max()}]")
    dev = runtime.resolve_device(device)
    model.to(dev)
    x, y = x.to(dev), y.to(dev)
    positions = torch.arange(n, device=dev)
    loader = TensorLoader(x, positions, batch_size=batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(int(seed)), augment=augment)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    total, step = epochs * len(loader), 0
    log = UpdateLog(rows=[], updates=[], steps=total, examples=n, recorded=only)
    named = list(model.named_parameters())
    model.train()
    for epoch in range(epochs):
        running = torch.zeros((), device=dev)
        for xb, pos in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, lr=lr, schedule=schedule)
            loss = F.cross_entropy(model(xb), y[pos], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            rows = pos.cpu().numpy()
            keep = only is None or bool(np.isin(rows, only).any())
            before = [p.detach().clone() for _, p in named] if keep else None
            opt.step()
            if before is not None:
                log.rows.append(rows)
                log.updates.append({name: (p.detach() - b).cpu() for (name, p), b in zip(named, before)})
            running += loss.detach().float()
            step += 1
        mean_loss = float(running) / max(len(loader), 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss became {mean_loss} in epoch {epoch + 1}; "
                                     f"try a smaller learning rate than {lr}")
    model.update_log = log
    return model.eval()
