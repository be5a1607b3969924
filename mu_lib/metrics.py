"""Evaluation of an unlearned model on three axes: utility, forgetting and cost.

* utility: retain, validation and test accuracy;
* forgetting: forget accuracy (to be compared with a retrained model's, not driven to 0) and the
  starting kit's membership attack on forget vs test (:func:`mu_lib.mia.simple_mia`), with its
  indiscernibility ``1 - |2 MIA - 1|``;
* cost: wall time, and its ratio to the time of retraining from scratch.

Example:
    >>> from mu_lib import data, train, unlearn
    >>> s = data.make_splits("digits", val_size=100, test_size=300, seed=0)
    >>> net = train.train_on(s, model="logreg", recipe=train.Recipe(epochs=2, batch_size=64, lr=0.1))
    >>> rep = evaluate_unlearning(net, s, method="original")
    >>> 0.8 < rep.test_acc <= 1.0 and 0.0 <= rep.indiscernibility <= 1.0
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mu_lib import mia, runtime, train
from mu_lib.data import Splits

__all__ = ["UnlearningReport", "evaluate_unlearning", "compare_methods"]


@dataclass(frozen=True)
class UnlearningReport:
    """Accuracies (fractions), membership attack and cost of one model.

    Attributes:
        method: name of the method that produced the model.
        retain_acc: accuracy on the retain set.
        forget_acc: accuracy on the forget set.
        val_acc: accuracy on the validation set (``nan`` when there is none).
        test_acc: accuracy on the test set.
        mia: the starting-kit attack's accuracy, forget vs test (0.5 = chance).
        indiscernibility: ``1 - |2 mia - 1|`` (1 = indistinguishable).
        seconds: wall time of the unlearning run (``None`` if not timed).
        cost_ratio: ``seconds`` divided by the retraining time (``None`` if either is unknown).
    """

    method: str
    retain_acc: float
    forget_acc: float
    val_acc: float
    test_acc: float
    mia: float
    indiscernibility: float
    seconds: float | None = None
    cost_ratio: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_unlearning(model: nn.Module, splits: Splits, *, method: str = "", seconds: float | None = None,
                        retrain_seconds: float | None = None, device: str | torch.device | None = None,
                        seed: int = 0) -> UnlearningReport:
    """Evaluate ``model`` on every part of ``splits``, attack it, and record its cost.

    Args:
        model: the (unlearned) model.
        splits: the data it was unlearned on.
        method: a label for the report.
        seconds: wall time of the unlearning run.
        retrain_seconds: wall time of retraining, for :attr:`UnlearningReport.cost_ratio`.
        device: where to evaluate.
        seed: seed of the attack's subsampling.

    Returns:
        An :class:`UnlearningReport`.
    """
    ev = {p: train.evaluate(model, *splits.xy(p), device=device) for p in ("retain", "forget", "test")}
    val_acc = train.evaluate(model, *splits.xy("val"), device=device).accuracy if len(splits.val) else float("nan")
    attack = mia.simple_mia(ev["forget"].losses, ev["test"].losses, seed=seed)
    ratio = seconds / retrain_seconds if seconds is not None and retrain_seconds else None
    return UnlearningReport(method=method, retain_acc=ev["retain"].accuracy, forget_acc=ev["forget"].accuracy,
                            val_acc=val_acc, test_acc=ev["test"].accuracy, mia=attack,
                            indiscernibility=float(mia.indiscernibility(attack)), seconds=seconds,
                            cost_ratio=ratio)


def compare_methods(model: nn.Module, splits: Splits, methods: Sequence[str] | Mapping[str, object], *,
                    retrain_seconds: float | None = None, device: str | torch.device | None = None,
                    seed: int = 0, epoch_budget: float | None = None) -> list[UnlearningReport]:
    """Run several unlearning methods from the same original model and evaluate each.

    Args:
        model: the original model (never modified).
        splits: the data.
        methods: method names (configured with the reference defaults and ``epoch_budget``), or a
            mapping from label to a configured :class:`mu_lib.unlearn.Method`.
        retrain_seconds: wall time of retraining, for the cost ratios.
        device: where to run.
        seed: seed of every run.
        epoch_budget: passed to :func:`mu_lib.unlearn.get` for methods given by name.

    Returns:
        One :class:`UnlearningReport` per method, in order.
    """
    from mu_lib import unlearn

    if isinstance(methods, Mapping):
        configured = dict(methods)
    else:
        configured = {name: unlearn.get(name, epoch_budget=epoch_budget) for name in methods}
    reports = []
    for label, method in runtime.progress(configured.items(), desc="methods", total=len(configured)):
        out = method(model, splits, device=device, seed=seed)
        reports.append(evaluate_unlearning(out, splits, method=label, seconds=method.last_seconds,
                                           retrain_seconds=retrain_seconds, device=device, seed=seed))
    return reports
