"""Run several unlearning methods from the same original model and evaluate each on the three axes
(:func:`mu_lib.metrics.evaluate_unlearning`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mu_lib import runtime
from mu_lib.data import Splits
from mu_lib.metrics import UnlearningReport, evaluate_unlearning
from mu_lib.unlearn.base import get

__all__ = ["compare_methods"]


def compare_methods(model: nn.Module, splits: Splits, methods: Sequence[str] | Mapping[str, object], *,
                    retrain_seconds: float | None = None, retrain_passes: float | None = None,
                    device: str | torch.device | None = None, seed: int = 0,
                    epoch_budget: float | None = None, on_divergence: str = "raise") -> list[UnlearningReport]:
    """Run several unlearning methods from the same original model and evaluate each.

    A method whose loss becomes infinite or NaN raises :class:`FloatingPointError`
    (``on_divergence="raise"``), or is left out of the result with a :class:`RuntimeWarning` that
    names it and quotes the error (``"skip"``), so that one diverging method does not discard the
    others' runs.

    Args:
        model: the original model (never modified).
        splits: the data.
        methods: method names (configured with the reference defaults and ``epoch_budget``), or a
            mapping from label to a configured :class:`~mu_lib.unlearn.Method`.
        retrain_seconds: wall time of retraining, for the time ratios.
        retrain_passes: example passes of retraining (:func:`mu_lib.cost.training_passes`), for
            the machine-independent cost ratios.
        device: where to run.
        seed: seed of every run.
        epoch_budget: passed to :func:`~mu_lib.unlearn.get` for methods given by name.
        on_divergence: ``"raise"`` or ``"skip"`` (see above).

    Returns:
        One :class:`UnlearningReport` per method that did not diverge, in order.

    Raises:
        ValueError: for an unknown ``on_divergence``.
        FloatingPointError: when a method diverges and ``on_divergence="raise"``.

    Example:
        >>> import warnings
        >>> from mu_lib import data, train
        >>> s = data.make_splits("digits", train_size=300, val_size=50, test_size=100, seed=0)
        >>> net = train.train_on(s, model="logreg", recipe=train.Recipe(epochs=2, batch_size=64, lr=0.1))
        >>> methods = {"ga": get("gradient_ascent", lr=1e30), "ft": get("finetune", epochs=1)}
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     reps = compare_methods(net, s, methods, on_divergence="skip")
        >>> [r.method for r in reps], str(caught[0].message).startswith("ga diverged")
        (['ft'], True)
    """
    if on_divergence not in ("raise", "skip"):
        raise ValueError(f"on_divergence must be 'raise' or 'skip', got {on_divergence!r}")
    if isinstance(methods, Mapping):
        configured = dict(methods)
    else:
        configured = {name: get(name, epoch_budget=epoch_budget) for name in methods}
    reports = []
    for label, method in runtime.progress(configured.items(), desc="methods", total=len(configured)):
        try:
            out = method(model, splits, device=device, seed=seed)
        except FloatingPointError as err:
            if on_divergence == "raise":
                raise
            warnings.warn(f"{label} diverged and is left out: {err}", RuntimeWarning, stacklevel=2)
            continue
        reports.append(evaluate_unlearning(out, splits, method=label, seconds=method.last_seconds,
                                           retrain_seconds=retrain_seconds, passes=method.last_passes,
                                           retrain_passes=retrain_passes, device=device, seed=seed))
    return reports
