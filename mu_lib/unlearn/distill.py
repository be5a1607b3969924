"""Distillation: SCRUB (with rewinding) and Bad Teacher.

* ``scrub`` (Kurmanji et al. 2023): a student, initialised from the original model (the teacher),
  alternates *max-steps* that push its outputs on the forget set away from the teacher's
  (``-KL``) and *min-steps* that keep it close to the teacher on the retain set while fitting the
  labels (``gamma CE + alpha KL``). SCRUB+R then *rewinds*: of the checkpoints saved after every
  epoch it keeps the one whose forget error is closest to the final student's error on
  "forget-validation" data (validation examples of the classes in the forget set), a proxy for
  the forget error a retrained model would have.
* ``bad_teacher`` (Chundawat et al. 2023): the student distils the original model on (part of)
  the retain set and a randomly initialised "incompetent" teacher on the forget set.

Example:
    >>> import torch
    >>> kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), temperature=4.0).item()
    0.0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mu_lib.data import TensorLoader
from mu_lib.models import reinitialize
from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, UnlearnConfig, register

__all__ = ["ScrubConfig", "BadTeacherConfig", "Checkpoint", "kd_loss", "scrub_checkpoints", "rewind_target",
           "scrub", "bad_teacher"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Hinton's distillation loss as SCRUB's ``DistillKL``: ``T^2 * KL(p_T(teacher) || p_T(student))``,
    summed over classes and averaged over the batch (``p_T`` = softmax at temperature ``T``)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature ** 2


@dataclass(frozen=True)
class ScrubConfig(UnlearnConfig):
    """SCRUB's ``MIA_experiments.ipynb`` setting (the notebook that defines SCRUB+R):
    5 epochs of which the first 3 have a max-step, ``gamma`` 1, ``alpha`` 0.5, ``kd_T`` 4,
    SGD lr 5e-4, momentum 0.9, wd 5e-4, retain batch 32, forget batch 16, decay 0.1.

    The notebook multiplies the rate by ``lr_decay`` once for every milestone of
    ``lr_decay_epochs = [3, 5, 9]`` that the epoch has passed: over 5 epochs, once, for epochs 4
    and 5. Here the milestones are the same fractions of the run, ``lr_milestones = (0.6, 1.0,
    1.8)``, applied step by step: identical at 5 epochs, and the same shape at any other length
    (Deep Unlearn's ``floor(f * epochs)`` milestones at f = 0.5, 0.8, 0.9 decay a three-epoch run
    twice and a one-epoch run three times, from its first step). Its ``beta`` term (other
    distillation losses) is 0 for plain KD and its SGDA ``smoothing`` term is always 0 (see Deep
    Unlearn), so neither is a field here.

    Budget rule: a min-step epoch passes over the retain set (weight 0.9) and a max-step over the
    forget set (weight 0.1); ``epochs`` and ``msteps`` scale together (so 3 of 5 max-step epochs
    become 2 of 3 at a budget of 3), and ``msteps`` never exceeds ``epochs``.

    Attributes:
        msteps: epochs (the first ones) that start with a max-step over the forget set.
        gamma: weight of the retain cross-entropy.
        alpha: weight of the retain distillation KL.
        kd_T: distillation temperature.
        rewind: SCRUB+R: return the checkpoint whose forget error is closest to the
            forget-validation error (False: the last epoch's student, plain SCRUB).
    """

    epoch_fields = ("epochs", "msteps")
    epoch_weights = (NOMINAL_FRACTIONS["retain"], NOMINAL_FRACTIONS["forget"])
    epochs: int = 5
    msteps: int = 3
    gamma: float = 1.0
    alpha: float = 0.5
    kd_T: float = 4.0
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay: float = 0.1
    lr_milestones: tuple[float, ...] = (0.6, 1.0, 1.8)
    retain_batch_size: int = 32
    forget_batch_size: int = 16
    rewind: bool = True

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("epochs", "msteps", "retain_batch_size", "forget_batch_size"),
                            positive=("lr", "kd_T", "retain_batch_size", "forget_batch_size"),
                            nonnegative=("epochs", "msteps", "gamma", "alpha", "weight_decay", "lr_decay"),
                            below_one=("momentum",), boolean=("rewind",))
        if not isinstance(self.lr_milestones, tuple) or not all(
                isinstance(m, (int, float)) and not isinstance(m, bool) and m >= 0 for m in self.lr_milestones):
            raise ValueError(f"ScrubConfig.lr_milestones must be a tuple of fractions >= 0, got {self.lr_milestones!r}")

    def _scaled_epochs(self, scale: float) -> ScrubConfig:
        out = super()._scaled_epochs(scale)
        return dataclasses.replace(out, msteps=min(out.msteps, out.epochs))


@dataclass(frozen=True)
class Checkpoint:
    """The student after one SCRUB epoch.

    Attributes:
        epoch: 1-based epoch after which it was saved.
        forget_error: its error on the forget set.
        state: its ``state_dict`` (cloned tensors).
    """

    epoch: int
    forget_error: float
    state: dict[str, torch.Tensor]


@torch.no_grad()
def _error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    was_training = model.training
    model.eval()
    wrong = sum(int((model(x[i:i + batch_size]).argmax(1) != y[i:i + batch_size]).sum())
                for i in range(0, x.shape[0], batch_size))
    model.train(was_training)
    return wrong / max(x.shape[0], 1)


def scrub_checkpoints(model: nn.Module, splits: RestrictedSplits, cfg: ScrubConfig, *, device,
                      seed: int) -> list[Checkpoint]:
    """Train ``model`` in place with SCRUB and return the checkpoint saved after every epoch.

    Each epoch ``e = 1..E`` runs a max-step over the forget set if ``e <= msteps`` (loss ``-KL``),
    then a min-step over
    the retain set (``gamma CE + alpha KL``); the student is in train mode, the teacher (a frozen
    copy of the original) in eval mode.
    """
    teacher = _loops.frozen_copy(model)
    retain = splits.loader("retain", batch_size=cfg.retain_batch_size, shuffle=True, seed=seed, device=device)
    forget = splits.loader("forget", batch_size=cfg.forget_batch_size, shuffle=True, seed=seed + 1, device=device)
    xf, yf = splits.xy("forget", device=device)
    opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    passes = _ScrubPasses(forget, retain, msteps=cfg.msteps)
    steps = [len(retain) + (len(forget) if e < cfg.msteps else 0) for e in range(cfg.epochs)]
    sched = _loops.per_step(opt, lambda t: _loops.milestone_factor(t, milestones=cfg.lr_milestones,
                                                                   decay=cfg.lr_decay), steps)
    checkpoints = []

    def start(epoch: int) -> None:  # 0-based; SCRUB counts epochs from 1
        passes.epoch = epoch + 1

    def save(epoch: int) -> None:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        checkpoints.append(Checkpoint(epoch=epoch + 1, forget_error=_error(model, xf, yf), state=state))

    def loss_fn(max_step: bool, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(xb)
        out = model(xb)
        if max_step:
            return -kd_loss(out, target, temperature=cfg.kd_T)
        return cfg.gamma * F.cross_entropy(out, yb) + cfg.alpha * kd_loss(out, target, temperature=cfg.kd_T)

    _loops.run_epochs(model, passes, epochs=cfg.epochs, optimizer=opt, loss_fn=loss_fn, method="scrub",
                      before_epoch=start, after_epoch=save, scheduler=sched, per_step_scheduler=True)
    return checkpoints


class _ScrubPasses:
    """One SCRUB epoch: a max-step over the forget set (in the first ``msteps`` epochs), then a
    min-step over the retain set; batches come tagged ``(is_max_step, x, y)``."""

    def __init__(self, forget: TensorLoader, retain: TensorLoader, *, msteps: int) -> None:
        self.forget, self.retain, self.msteps = forget, retain, msteps
        self.epoch = 1

    def __iter__(self):
        if self.epoch <= self.msteps:
            for xb, yb in self.forget:
                yield True, xb, yb
        for xb, yb in self.retain:
            yield False, xb, yb


def rewind_target(model: nn.Module, splits: RestrictedSplits, *, device) -> float | None:
    """SCRUB+R's target: ``model``'s error on the validation examples whose class occurs in the
    forget set (``None`` when there are none: then there is nothing to rewind to)."""
    _, yf = splits.xy("forget")
    xv, yv = splits.xy("val")
    keep = torch.isin(yv, torch.unique(yf))
    if not bool(keep.any()):
        return None
    return _error(model, xv[keep].to(device), yv[keep].to(device))


@register("scrub", config=ScrubConfig, family="distillation", uses=("retain", "forget", "val"),
          summary="teacher-student min-max distillation, rewound to the checkpoint whose forget error "
                  "matches the validation error (SCRUB+R)",
          reference="Kurmanji et al. 2023 (SCRUB, SCRUB+R)")
def scrub(model: nn.Module, splits: RestrictedSplits, cfg: ScrubConfig, *, device, seed: int) -> nn.Module:
    """SCRUB, then (with ``rewind``) SCRUB+R's choice among the per-epoch checkpoints (the first of
    equally close ones). Reads the validation set only to rewind."""
    checkpoints = scrub_checkpoints(model, splits, cfg, device=device, seed=seed)
    if not cfg.rewind or not checkpoints:
        return model
    target = rewind_target(model, splits, device=device)
    if target is None:
        return model
    best = int(np.argmin([abs(c.forget_error - target) for c in checkpoints]))
    model.load_state_dict(checkpoints[best].state)
    return model


@dataclass(frozen=True)
class BadTeacherConfig(UnlearnConfig):
    """The official Bad Teacher setting (also SSD's reimplementation): one epoch of Adam at lr 1e-4,
    batch 256, temperature 1, on the forget set plus a random 30 % of the retain set.

    (Deep Unlearn instead uses the full retain set, Adam lr 0.01 and 10 epochs.)

    Budget rule: an epoch passes over the forget set and 30 % of the retain set (weight 0.37 at
    the default fraction); the rate is constant.

    Attributes:
        retain_fraction: fraction of the retain set drawn (at random) for the competent teacher.
        temperature: softmax temperature of the teachers and the student.
    """

    epoch_weights = (NOMINAL_FRACTIONS["forget"] + 0.3 * NOMINAL_FRACTIONS["retain"],)
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 256
    temperature: float = 1.0
    retain_fraction: float = 0.3

    def __post_init__(self) -> None:
        _loops.check_config(self, integer=("epochs", "batch_size"),
                            positive=("lr", "batch_size", "temperature", "retain_fraction"),
                            nonnegative=("epochs",), fraction=("retain_fraction",))

    def budget_cost(self) -> float:
        """Epochs weighted by the part of the data an epoch reads: the forget set and ``retain_fraction``
        of the retain set."""
        return self.epochs * (NOMINAL_FRACTIONS["forget"] + self.retain_fraction * NOMINAL_FRACTIONS["retain"])


@register("bad_teacher", config=BadTeacherConfig, family="distillation", uses=("retain", "forget"),
          summary="distil the original model on retain and a random network on forget",
          reference="Chundawat et al. 2023 (Bad Teacher)")
def bad_teacher(model: nn.Module, splits: RestrictedSplits, cfg: BadTeacherConfig, *, device,
                seed: int) -> nn.Module:
    """Bad Teacher: the student minimises ``KL(target || student)`` at temperature ``T``, where the
    target is the incompetent teacher's softmax on forget examples and the original model's on
    retain examples. The incompetent teacher is the same architecture, freshly initialised with
    ``seed``.

    The KL is the true one (summed over classes, averaged over the batch); the official code's
    ``F.kl_div(..., reduction="mean")`` also divides by the number of classes, a constant factor
    that Adam's scale invariance makes immaterial (up to its epsilon).
    """
    good = _loops.frozen_copy(model)
    bad = _loops.frozen_copy(reinitialize(_loops.frozen_copy(model), seed=seed))
    xf, _ = splits.xy("forget")
    xr, _ = splits.xy("retain")
    gen = torch.Generator().manual_seed(int(seed))
    keep = max(1, int(round(cfg.retain_fraction * xr.shape[0])))
    xr = xr[torch.randperm(xr.shape[0], generator=gen)[:keep]]
    flags = torch.cat([torch.ones(xf.shape[0], dtype=torch.long), torch.zeros(xr.shape[0], dtype=torch.long)])
    loader = TensorLoader(torch.cat([xf, xr]), flags, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                          device=device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    T = cfg.temperature

    def loss_fn(xb: torch.Tensor, is_forget: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            forget_rows = is_forget.bool().unsqueeze(1)
            target = torch.where(forget_rows, F.softmax(bad(xb) / T, dim=1), F.softmax(good(xb) / T, dim=1))
        return F.kl_div(F.log_softmax(model(xb) / T, dim=1), target, reduction="batchmean")

    return _loops.run_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, loss_fn=loss_fn, method="bad_teacher")
