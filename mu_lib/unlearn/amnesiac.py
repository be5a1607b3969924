"""Amnesiac unlearning (Graves, Nagisetty and Ganesh, AAAI 2021): roll back the recorded updates.

During training the model owner keeps, for every batch, the parameter update it caused and which
examples it held. To forget, ``amnesiac`` subtracts every update whose batch held a forget example,

.. math:: \\theta \\leftarrow \\theta - \\sum_{b \\,:\\, B_b \\cap D_f \\neq \\emptyset} \\Delta\\theta_b ,

and then repairs the damage with a short fine-tuning on the retain set (the paper's "small amount
of additional training"). The rollback is exact only if no later update depended on the removed
ones, which is never quite true; and when the forget set is spread over most batches (a random
tenth of the data with batches of 64 touches nearly all of them), the rollback removes most of
training and the repair becomes retraining. This is the amnesiac method as its authors define it,
distinct from the random relabelling registered as ``random_labels``.

It needs the record from training time: train the original model with
``train.train_on(..., record_updates=True)`` (or ``train.fit(..., record_updates=...)``); a model
trained without it is refused with an error saying so.

Example:
    >>> from mu_lib import data, models, train, unlearn
    >>> s = data.make_splits("digits", train_size=200, val_size=0, test_size=100, seed=0)
    >>> recipe = train.Recipe(epochs=1, batch_size=64, lr=0.05)
    >>> plain = train.train_on(s, model="small_cnn", recipe=recipe)
    >>> unlearn.get("amnesiac")(plain, s, device="cpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: amnesiac unlearning needs the update log recorded during training, and this model has none: ...
    >>> logged = train.train_on(s, model="small_cnn", recipe=recipe, record_updates=True)
    >>> unlearn.get("amnesiac", epochs=0)(logged, s, device="cpu").fc.out_features
    10
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mu_lib.unlearn import _loops
from mu_lib.unlearn.base import NOMINAL_FRACTIONS, RestrictedSplits, SGDConfig, register

__all__ = ["AmnesiacConfig", "forget_steps", "roll_back_", "amnesiac"]


def forget_steps(log, forget_rows: np.ndarray) -> list[int]:
    """Indices of the recorded steps whose batch held at least one of ``forget_rows``.

    Raises:
        ValueError: when the log recorded only some rows and a forget row is not among them.
    """
    forget_rows = np.asarray(forget_rows, dtype=np.int64)
    if log.recorded is not None:
        missing = np.setdiff1d(forget_rows, log.recorded)
        if missing.size:
            raise ValueError(f"the update log recorded only the steps of {log.recorded.size} rows, and "
                             f"{missing.size} forget example(s) are not among them (e.g. row {int(missing[0])}): "
                             "their updates cannot be rolled back")
    return [i for i, rows in enumerate(log.rows) if np.isin(rows, forget_rows).any()]


@torch.no_grad()
def roll_back_(model: nn.Module, log, steps: list[int]) -> nn.Module:
    """Subtract the recorded updates of ``steps`` from the model's parameters, in place."""
    params = dict(model.named_parameters())
    for i in steps:
        for name, delta in log.updates[i].items():
            params[name].sub_(delta.to(device=params[name].device, dtype=params[name].dtype))
    return model


@dataclass(frozen=True)
class AmnesiacConfig(SGDConfig):
    """Amnesiac unlearning: the rollback, then ``epochs`` of fine-tuning on the retain set.

    The paper repairs with "a small amount of additional training" without fixing its length or
    rate; the defaults here are one epoch of SGD at lr 0.01 (momentum 0.9, wd 5e-4, batch 64, the
    book's training batch size), to be tuned like any other setting.

    Budget rule: an epoch passes over the retain set (weight 0.9); the rollback costs no pass.
    """

    epoch_weights = (NOMINAL_FRACTIONS["retain"],)
    epochs: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64


@register("amnesiac", config=AmnesiacConfig, family="update rollback", uses=("retain", "forget"),
          needs=("update_log",),
          summary="subtract the recorded training updates of every batch that held a forget example, then repair",
          reference="Graves et al. 2021 (amnesiac unlearning)")
def amnesiac(model: nn.Module, splits: RestrictedSplits, cfg: AmnesiacConfig, *, device, seed: int) -> nn.Module:
    """Map the forget set to rows of the training run (the log's ``index``, or else the sorted
    training indices, the rows of ``splits.xy("train")``), :func:`forget_steps`,
    :func:`roll_back_`, then CE fine-tuning on the retain set (train mode, constant rate)."""
    log = getattr(model, "update_log", None)
    if log is None:
        raise ValueError("amnesiac unlearning needs the update log recorded during training, and this model has "
                         "none: train the original model with train.train_on(..., record_updates=True) or "
                         "train.fit(..., record_updates=...)")
    index = log.index if log.index is not None else splits.indices("train")
    if len(index) != log.examples:
        raise ValueError(f"the update log covers {log.examples} training rows but the splits' training set has "
                         f"{len(index)} examples: was the model trained on these splits?")
    forget = splits.indices("forget")
    rows = np.nonzero(np.isin(index, forget))[0]
    if rows.size != forget.size:
        raise ValueError(f"{forget.size - rows.size} forget example(s) were not in the recorded training run")
    roll_back_(model, log, forget_steps(log, rows))
    if cfg.epochs:
        loader = splits.loader("retain", batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
        opt = _loops.sgd(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        _loops.ce_epochs(model, loader, epochs=cfg.epochs, optimizer=opt, method="amnesiac repair")
    del model.update_log  # the returned model no longer matches the log
    return model
