"""Validation of what the membership and unlearning evaluations read: logits with their labels,
and the two populations they compare (statistics of N unlearned and N retrained models on the
same examples).
"""

from __future__ import annotations

import numpy as np


def check_logits(logits, targets, *, min_classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, targets)`` as numpy arrays (torch tensors accepted, the logits' dtype kept),
    checked: finite ``[..., K]`` logits with ``K >= min_classes``, integer targets of shape
    ``logits.shape[:-1]`` in ``[0, K)``."""
    if hasattr(logits, "detach"):
        logits = logits.detach().cpu().numpy()
    if hasattr(targets, "detach"):
        targets = targets.detach().cpu().numpy()
    z, t = np.asarray(logits), np.asarray(targets)
    if z.ndim < 1 or z.shape[-1] < min_classes or z.shape[:-1] != t.shape:
        raise ValueError(f"need logits [..., K >= {min_classes}] and targets of shape logits.shape[:-1]; got "
                         f"logits of shape {z.shape} and targets of shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"targets must be integers, got dtype {t.dtype}")
    k = z.shape[-1]
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"targets must lie in [0, {k}), got range [{t.min()}, {t.max()}]")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or inf")
    return z, t


def check_population(name: str, a: np.ndarray, *, num_examples: int | None = None) -> np.ndarray:
    """``a`` as a finite float64 ``[models, examples]`` array with at least one model and one example."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a [models, examples] array with at least one of each, got shape {arr.shape}")
    if num_examples is not None and arr.shape[1] != num_examples:
        raise ValueError(f"{name} has {arr.shape[1]} examples (columns), expected {num_examples}")
    if not np.isfinite(arr).all():
        rows, cols = np.nonzero(~np.isfinite(arr))
        raise ValueError(f"{name} contains NaN or inf, e.g. at model {int(rows[0])}, example {int(cols[0])}")
    return arr


def check_pair(unlearned: np.ndarray, retrained: np.ndarray, *, min_models: int = 2,
               same_count: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``[N_u, m]`` unlearned and ``[N_r, m]`` retrained statistics of the same ``m`` examples."""
    u = check_population("unlearned", unlearned)
    r = check_population("retrained", retrained, num_examples=u.shape[1])
    for name, arr in (("unlearned", u), ("retrained", r)):
        if arr.shape[0] < min_models:
            raise ValueError(f"{name} has {arr.shape[0]} model(s); this evaluation needs at least {min_models} "
                             f"per side")
    if same_count and u.shape[0] != r.shape[0]:
        raise ValueError(f"need as many unlearned as retrained models (N per side), got {u.shape[0]} and {r.shape[0]}")
    return u, r
