"""Run several unlearning methods from the same original model and evaluate each on the three axes
(:func:`mu_lib.metrics.evaluate_unlearning`).
"""

from __future__ import annotations

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
                    epoch_budget: float | None = None) -> list[UnlearningReport]:
    """Run several unlearning methods from the same original model and evaluate each.

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

    Returns:
        One :class:`UnlearningReport` per method, in order.
    """
    if isinstance(methods, Mapping):
        configured = dict(methods)
    else:
        configured = {name: get(name, epoch_budget=epoch_budget) for name in methods}
    reports = []
    for label, method in runtime.progress(configured.items(), desc="methods", total=len(configured)):
        out = method(model, splits, device=device, seed=seed)
        reports.append(evaluate_unlearning(out, splits, method=label, seconds=method.last_seconds,
                                           retrain_seconds=retrain_seconds, passes=method.last_passes,
                                           retrain_passes=retrain_passes, device=device, seed=seed))
    return reports
