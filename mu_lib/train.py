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

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mu_lib import cost, runtime
from mu_lib.data import Splits, TensorLoader
from mu_lib.models import has_batchnorm, make_model
from mu_lib.runtime import SCHEDULES, Recipe

__all__ = ["Evaluation", "Recipe", "SCHEDULES", "lr_at", "fit", "fit_many", "train_on", "evaluate", "predict_logits",
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


def _amp_dtype(device: torch.device, amp: bool | None) -> torch.dtype | None:
    if device.type != "cuda" or amp is False:
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int = 128,
        lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0, schedule: str = "cosine",
        label_smoothing: float = 0.0, augment: str | None = None, seed: int = 0,
        device: str | torch.device | None = None, amp: bool | None = None, progress: bool | None = None,
        desc: str = "fit") -> nn.Module:
    """Train ``model`` in place with mini-batch SGD on cross-entropy, and return it in eval mode.

    Each epoch visits the examples in a fresh random order drawn from a generator seeded with
    ``seed`` (the last batch may be smaller). The learning rate follows ``schedule`` per step.
    On CUDA, ``amp=None`` turns on mixed precision (bfloat16 where supported, else float16 with
    loss scaling) and channels-last memory.

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
        amp: mixed precision on CUDA (``None``: automatic).
        progress: show a progress bar (``None``: :func:`mu_lib.runtime.progress_enabled`).
        desc: label of the progress bar.

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
    dev = runtime.resolve_device(device)
    amp_dtype = _amp_dtype(dev, amp)
    channels_last = dev.type == "cuda" and x.ndim == 4
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x, y = x.to(dev), y.to(dev)
    gen = torch.Generator().manual_seed(int(seed))
    loader = TensorLoader(x, y, batch_size=batch_size, shuffle=True, generator=gen, augment=augment)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    total = epochs * len(loader)
    step = 0
    model.train()
    bar = runtime.progress(range(epochs), enabled=progress, desc=desc, leave=False)
    for epoch in bar:
        running = torch.zeros((), device=dev)
        for xb, yb in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, lr=lr, schedule=schedule)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            running += loss.detach().float()
            step += 1
        mean_loss = float(running) / max(len(loader), 1)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss became {mean_loss} in epoch {epoch + 1} of {desc!r}; "
                                     f"try a smaller learning rate than {lr}")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{mean_loss:.3f}")
    model.eval()
    return model


def train_on(splits: Splits, part: str = "train", *, model: str | nn.Module, recipe: Recipe, seed: int = 0,
             device: str | torch.device | None = None, progress: bool | None = None) -> nn.Module:
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
    x, y = splits.xy(part)
    return fit(model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
               momentum=recipe.momentum, weight_decay=recipe.weight_decay, schedule=recipe.schedule,
               augment=ds.augment if recipe.augment else None, seed=seed, device=device, progress=progress,
               desc=f"train on {part}")


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

    The model's train/eval mode is restored afterwards.
    """
    dev = runtime.resolve_device(device)
    was_training = model.training
    model.to(dev).eval()
    outs = [model(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(outs)


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
             progress: bool | None = None, desc: str = "fit_many") -> list[nn.Module]:
    """Train one model per seed, many at once, with ``torch.func.vmap`` over stacked parameters.

    Model ``i`` is initialised by ``factory(seeds[i])``, trains on the rows ``indices[i]`` of
    ``(x, y)`` (all rows when ``indices`` is ``None``) and draws its data order from a generator
    seeded with ``seeds[i]``, exactly as ``fit(factory(seeds[i]), x[indices[i]], y[indices[i]],
    seed=seeds[i])`` would. Models are processed in chunks of ``chunk_size`` to bound memory.
    Models with batch norm cannot be vmapped (their running statistics are updated in place);
    for them the function falls back to a loop of :func:`fit` with the same result.

    Args:
        factory: ``seed -> freshly initialised model``.
        x: inputs ``[N, ...]``.
        y: integer labels ``[N]``.
        seeds: one seed per model.
        indices: optional ``[M, n]`` training rows per model (equal counts, e.g. LiRA's IN halves).
        epochs, batch_size, lr, momentum, weight_decay, schedule, label_smoothing: as in :func:`fit`.
        chunk_size: models trained together.
        device: where to train.
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
    probe = factory(seeds[0])
    if has_batchnorm(probe):
        return [fit(factory(s), x[idx_all[i]], y[idx_all[i]], epochs=epochs, batch_size=batch_size, lr=lr,
                    momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                    label_smoothing=label_smoothing, seed=s, device=dev, progress=progress, desc=desc)
                for i, s in enumerate(seeds)]
    xd, yd = x.to(dev), y.to(dev)
    trained: list[nn.Module] = []
    for start in range(0, len(seeds), chunk_size):
        chunk = seeds[start:start + chunk_size]
        nets = [factory(s).to(dev) for s in chunk]
        trained += _fit_chunk(nets, xd, yd, idx_all[start:start + chunk_size].to(dev), chunk, epochs=epochs,
                              batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                              schedule=schedule, label_smoothing=label_smoothing, progress=progress,
                              desc=f"{desc} {start + 1}-{start + len(chunk)}/{len(seeds)}")
    return trained


def _fit_chunk(nets: list[nn.Module], x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, seeds: list[int], *,
               epochs: int, batch_size: int, lr: float, momentum: float, weight_decay: float, schedule: str,
               label_smoothing: float, progress: bool | None, desc: str) -> list[nn.Module]:
    from torch.func import functional_call, grad, stack_module_state, vmap

    params, buffers = stack_module_state(nets)
    params = {k: v.detach().clone() for k, v in params.items()}
    base = copy.deepcopy(nets[0]).to("meta")
    base.train()

    def loss_one(p: dict, b: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb, label_smoothing=label_smoothing)

    grad_all = vmap(grad(loss_one))
    loss_all = vmap(loss_one)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    m, n = idx.shape
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    bufs: dict[str, torch.Tensor] | None = None
    step = 0
    for epoch in runtime.progress(range(epochs), enabled=progress, desc=desc, leave=False):
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(idx.device)
        order = torch.gather(idx, 1, perms)
        for b in range(steps_per_epoch):
            rows = order[:, b * batch_size:(b + 1) * batch_size]
            xb, yb = x[rows], y[rows]
            grads = grad_all(params, buffers, xb, yb)
            cost.record(rows.numel(), backward=True)  # vmap hides the per-model passes from the hooks
            step_lr = lr_at(step, total, lr=lr, schedule=schedule)
            # The update mirrors torch.optim.SGD (dampening 0, no Nesterov) op for op.
            new_bufs = {}
            for k, p in params.items():
                d_p = grads[k]
                if weight_decay != 0:
                    d_p = d_p.add(p, alpha=weight_decay)
                if momentum != 0:
                    d_p = d_p.clone() if bufs is None else bufs[k].mul_(momentum).add_(d_p)
                    new_bufs[k] = d_p
                p.add_(d_p, alpha=-step_lr)
            bufs = new_bufs if momentum != 0 else None
            step += 1
        if epoch == epochs - 1 or epoch == 0:
            with torch.no_grad():
                last = loss_all(params, buffers, xb, yb)
            if not torch.isfinite(last).all():
                bad = torch.nonzero(~torch.isfinite(last)).flatten().tolist()
                raise FloatingPointError(f"training loss became non-finite for seeds {[seeds[i] for i in bad]} "
                                         f"in epoch {epoch + 1}; try a smaller learning rate than {lr}")
    out = []
    for i, net in enumerate(nets):
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(params[name][i])
        out.append(net.eval())
    return out
