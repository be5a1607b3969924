"""Input checks shared across the library's layers (private, torch-free).

Example:
    >>> index_array([3, 1], name="forget indices", n=5)
    array([3, 1])
    >>> index_array([1, 1], name="ids to remove")
    Traceback (most recent call last):
    ...
    ValueError: duplicated ids to remove: [1]; duplicates are not allowed
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["index_array"]


def index_array(idx: Any, *, name: str, n: int | None = None, nonempty: bool = False) -> np.ndarray:
    """Distinct integer indices as a one-dimensional int64 array, checked, naming the offenders.

    Args:
        idx: an int, a sequence, a NumPy array or a torch tensor of indices.
        name: what the indices are, for the messages (e.g. ``"forget indices"``).
        n: indices must lie in ``[0, n)`` (``None``: no range check).
        nonempty: refuse an empty set.

    Returns:
        The indices, in the given order.

    Raises:
        ValueError: for a non-1-D input, non-integer values, an empty set (with ``nonempty``),
            indices out of range or duplicates.
    """
    if hasattr(idx, "detach"):
        idx = idx.detach().cpu().numpy()
    arr = np.atleast_1d(np.asarray(idx)) if np.ndim(idx) == 0 else np.asarray(idx)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if nonempty and arr.size == 0:
        raise ValueError(f"{name} must be a non-empty int or 1-D sequence, got an empty one")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype} ({arr[:5].tolist()})")
    arr = arr.astype(np.int64)
    if n is not None:
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise ValueError(f"{name} out of range [0, {n}): {bad[:5].tolist()}")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"duplicated {name}: {uniq[counts > 1][:5].tolist()}; duplicates are not allowed")
    return arr
