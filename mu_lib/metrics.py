"""Evaluation of an unlearned model on three axes: utility, forgetting and cost.

* utility: retain, validation and test accuracy;
* forgetting: forget accuracy (to be compared with a retrained model's, not driven to 0) and the
  starting kit's membership attack on forget vs test (:func:`mu_lib.mia.simple_mia`), with its
  indiscernibility ``1 - |2 MIA - 1|``;
* cost: example passes (:mod:`mu_lib.cost`, the same on every machine) and wall time, each as a
  ratio to retraining from scratch.

Tuning a method (Deep Unlearn's protocol, Cadet et al. 2024) needs three more things, also here:
:func:`deep_unlearn_objective`, the score of a trial from retain, forget and validation data;
:func:`practitioner_reference`, the accuracies it aims for when no retrained model is at hand;
and :func:`mean_report`, the average of the reports of several seeds.

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

import numpy as np
import torch
from torch import nn

from mu_lib import mia, train
from mu_lib.data import Splits

__all__ = ["UnlearningReport", "evaluate_unlearning", "largest_gap", "meets_bar", "deep_unlearn_objective",
           "objective_and_accuracies", "practitioner_reference", "forgotten_classes", "mean_report"]


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
        passes: cost of the unlearning run in example passes (``None`` if not counted).
        pass_ratio: ``passes`` divided by retraining's (``None`` if either is unknown): the
            machine-independent cost that the book's verdicts use.
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
    passes: float | None = None
    pass_ratio: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_unlearning(model: nn.Module, splits: Splits, *, method: str = "", seconds: float | None = None,
                        retrain_seconds: float | None = None, passes: float | None = None,
                        retrain_passes: float | None = None, device: str | torch.device | None = None,
                        seed: int = 0) -> UnlearningReport:
    """Evaluate ``model`` on every part of ``splits``, attack it, and record its cost.

    Args:
        model: the (unlearned) model.
        splits: the data it was unlearned on.
        method: a label for the report.
        seconds: wall time of the unlearning run.
        retrain_seconds: wall time of retraining, for :attr:`UnlearningReport.cost_ratio`.
        passes: cost of the unlearning run in example passes (e.g. ``method.last_passes``).
        retrain_passes: passes of retraining (:func:`mu_lib.cost.training_passes`), for
            :attr:`UnlearningReport.pass_ratio`.
        device: where to evaluate.
        seed: seed of the attack's subsampling.

    Returns:
        An :class:`UnlearningReport`.
    """
    ev = {p: train.evaluate(model, *splits.xy(p), device=device) for p in ("retain", "forget", "test")}
    val_acc = train.evaluate(model, *splits.xy("val"), device=device).accuracy if len(splits.val) else float("nan")
    attack = mia.simple_mia(ev["forget"].losses, ev["test"].losses, seed=seed)
    ratio = seconds / retrain_seconds if seconds is not None and retrain_seconds else None
    pass_ratio = passes / retrain_passes if passes is not None and retrain_passes else None
    return UnlearningReport(method=method, retain_acc=ev["retain"].accuracy, forget_acc=ev["forget"].accuracy,
                            val_acc=val_acc, test_acc=ev["test"].accuracy, mia=attack,
                            indiscernibility=float(mia.indiscernibility(attack)), seconds=seconds,
                            cost_ratio=ratio, passes=passes, pass_ratio=pass_ratio)


def largest_gap(report: UnlearningReport, reference: UnlearningReport, *,
                parts: Sequence[str] = ("retain", "forget", "test")) -> float:
    """The largest absolute accuracy difference to ``reference`` over ``parts``, in points: the
    ranking criterion of the book's deep chapters (a mean gap would reward doing nothing when the
    forget set is a small part of the data).

    Example:
        >>> ref = UnlearningReport("retrain", 1.0, 0.9, 0.9, 0.9, 0.5, 0.0)
        >>> round(largest_gap(dataclasses.replace(ref, method="x", forget_acc=0.95), ref), 6)
        5.0
    """
    return 100 * max(abs(getattr(report, f"{p}_acc") - getattr(reference, f"{p}_acc")) for p in parts)


def meets_bar(report: UnlearningReport, reference: UnlearningReport, *, points: float = 2.0,
              max_cost: float = 0.2) -> bool:
    """Whether ``report`` is within ``points`` of ``reference`` on retain, forget and test accuracy
    (:func:`largest_gap`) at no more than ``max_cost`` of retraining's example passes (the
    competition's cut-off of about a fifth of retraining, counted in passes)."""
    return (largest_gap(report, reference) <= points
            and report.pass_ratio is not None and report.pass_ratio <= max_cost)


def deep_unlearn_objective(model: nn.Module, splits: Splits, *, reference: Mapping[str, float],
                           device: str | torch.device | None = None, seed: int = 0,
                           mia_classes: Sequence[int] | None = None) -> float:
    """Deep Unlearn's score of a tuning trial (lower is better), from retain, forget and validation data.

    The Euclidean norm of four terms: the absolute retain, forget and validation accuracy gaps to
    the reference (each divided by 3), and ``1 - indiscernibility`` of the starting kit's attack
    on forget versus *validation* losses (:func:`mu_lib.mia.simple_mia`). The test set plays no
    part (Cadet et al. 2024). With ``mia_classes``, the attack compares the forget set with the
    validation examples of those classes only (for class forgetting: a model that never learnt a
    class has high losses on all of its examples, trained on or not, so only examples of the
    same class make a fair comparison).

    Args:
        model: the unlearned model of the trial.
        splits: the data (its validation split must not be empty).
        reference: accuracies to match, as fractions: ``{"retain": ..., "forget": ..., "val": ...}``
            (a retrained model's, in Deep Unlearn).
        device: where to evaluate.
        seed: seed of the attack's subsampling.
        mia_classes: restrict the attack's validation examples to these classes (``None``: all).

    Returns:
        The objective, >= 0.

    Example:
        >>> from mu_lib import data, train
        >>> s = data.make_splits("digits", val_size=100, test_size=300, seed=0)
        >>> net = train.train_on(s, model="logreg", recipe=train.Recipe(epochs=2, batch_size=64, lr=0.1))
        >>> ref = {p: train.evaluate(net, *s.xy(p)).accuracy for p in ("retain", "forget", "val")}
        >>> 0.0 <= deep_unlearn_objective(net, s, reference=ref) <= 1.0  # only the attack term is left
        True
    """
    return objective_and_accuracies(model, splits, reference=reference, device=device, seed=seed,
                                    mia_classes=mia_classes)[0]


def objective_and_accuracies(model: nn.Module, splits: Splits, *, reference: Mapping[str, float],
                             device: str | torch.device | None = None, seed: int = 0,
                             mia_classes: Sequence[int] | None = None, privacy: bool = True
                             ) -> tuple[float, dict[str, float]]:
    """:func:`deep_unlearn_objective` and the retain, forget and validation accuracies it compared,
    from one evaluation of each part (``privacy=False`` leaves out the membership term)."""
    missing = sorted({"retain", "forget", "val"} - set(reference))
    if missing:
        raise ValueError(f"reference needs accuracies for {missing}; got {sorted(reference)}")
    if len(splits.val) == 0:
        raise ValueError("the objective compares with validation data, but the validation split is empty")
    ev = {p: train.evaluate(model, *splits.xy(p), device=device) for p in ("retain", "forget", "val")}
    terms = [abs(ev[p].accuracy - float(reference[p])) / 3 for p in ("retain", "forget", "val")]
    if not privacy:
        return float(np.linalg.norm(terms)), {p: ev[p].accuracy for p in ("retain", "forget", "val")}
    val_losses = ev["val"].losses
    if mia_classes is not None:
        keep = np.isin(splits.xy("val")[1].numpy(), np.asarray(list(mia_classes)))
        if not keep.any():
            raise ValueError(f"the validation split has no example of the classes {list(mia_classes)}")
        val_losses = val_losses[keep]
    terms.append(1 - mia.indiscernibility(mia.simple_mia(ev["forget"].losses, val_losses, seed=seed)))
    return float(np.linalg.norm(terms)), {p: ev[p].accuracy for p in ("retain", "forget", "val")}


def forgotten_classes(splits: Splits) -> list[int]:
    """Classes of the forget set that no retain example has: the classes a class-forgetting request removes.

    Example:
        >>> from mu_lib import data
        >>> forgotten_classes(data.make_splits("digits", forget="class", forget_class=3, test_size=300, seed=0))
        [3]
        >>> forgotten_classes(data.make_splits("digits", test_size=300, seed=0))
        []
    """
    y = splits.data.y
    gone = set(y[splits.forget].tolist()) - set(y[splits.retain].tolist())
    return sorted(int(c) for c in gone)


def practitioner_reference(original: nn.Module, splits: Splits, *, device: str | torch.device | None = None
                           ) -> dict[str, float]:
    """The accuracies a retrained model would have, estimated without retraining, from the original model.

    A practitioner who must forget has no retrained model to compare with, but can say what it
    would do: it keeps the original's accuracy on the retain set and on held-out data, and treats
    the forget examples as held-out data. So:

    * ``retain``: the original model's retain accuracy;
    * ``val``: its validation accuracy, counting the validation examples of forgotten classes
      (:func:`forgotten_classes`) as errors, since a retrained model never predicts those classes;
    * ``forget``: for random forgetting, its validation accuracy on the classes of the forget set
      (unseen examples of the same classes); for class forgetting, 0.

    These are the targets of :func:`mu_lib.unlearn.tune`'s objective (Deep Unlearn's, with this
    reference in place of the retrained model's accuracies).

    Example:
        >>> from mu_lib import data, train
        >>> s = data.make_splits("digits", val_size=100, test_size=300, seed=0)
        >>> net = train.train_on(s, model="logreg", recipe=train.Recipe(epochs=2, batch_size=64, lr=0.1))
        >>> ref = practitioner_reference(net, s)
        >>> sorted(ref), ref["forget"] == ref["val"]
        (['forget', 'retain', 'val'], True)
    """
    if len(splits.val) == 0:
        raise ValueError("the reference needs held-out data, but the validation split is empty")
    gone = forgotten_classes(splits)
    xv, yv = splits.xy("val")
    correct = train.evaluate(original, xv, yv, device=device).correct.astype(bool)
    yv_np = yv.numpy()
    lost = np.isin(yv_np, gone)
    forget_classes = np.unique(splits.data.y[splits.forget].numpy())
    same = np.isin(yv_np, forget_classes) & ~lost
    return {"retain": train.evaluate(original, *splits.xy("retain"), device=device).accuracy,
            "val": float((correct & ~lost).mean()),
            "forget": 0.0 if gone else float(correct[same].mean() if same.any() else correct.mean())}


_MEAN_FIELDS = ("retain_acc", "forget_acc", "val_acc", "test_acc", "mia", "indiscernibility")


def mean_report(reports: Sequence[UnlearningReport], *, method: str | None = None) -> UnlearningReport:
    """The average of several reports of one method (e.g. over seeds), field by field.

    Accuracies, attack accuracy and indiscernibility are averaged; the costs (``seconds``,
    ``cost_ratio``, ``passes``, ``pass_ratio``) too when every report has them (else ``None``).

    Args:
        reports: the reports to average (at least one).
        method: the label of the average (default: the first report's).

    Example:
        >>> a = UnlearningReport("m", 1.0, 0.5, 0.8, 0.9, 0.5, 1.0, seconds=2.0, cost_ratio=0.2)
        >>> b = dataclasses.replace(a, forget_acc=0.7, seconds=4.0, cost_ratio=0.4)
        >>> r = mean_report([a, b])
        >>> round(r.forget_acc, 3), r.seconds, round(r.cost_ratio, 3)
        (0.6, 3.0, 0.3)
    """
    reports = list(reports)
    if not reports:
        raise ValueError("no reports to average")
    mean = {k: float(np.mean([getattr(r, k) for r in reports])) for k in _MEAN_FIELDS}
    timed = {}
    for k in ("seconds", "cost_ratio", "passes", "pass_ratio"):
        values = [getattr(r, k) for r in reports]
        timed[k] = float(np.mean(values)) if all(v is not None for v in values) else None
    return UnlearningReport(method=reports[0].method if method is None else method, **mean, **timed)
