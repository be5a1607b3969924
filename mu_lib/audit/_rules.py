"""The vectorised engine behind the competition's ε: the grids of single-threshold and interval
decision rules, the error-count tables and the scan that finds each example's best rule.

Private: :mod:`mu_lib.audit.epsilons` and :mod:`mu_lib.audit.score` call it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mu_lib.audit.bounds import _bound_from_upper_rates, clopper_pearson

__all__ = ["EPSILON_CAP", "ORGANISERS_SECONDS_512x20", "THRESHOLDS_PER_UNIT", "INTERVAL_BUFFER"]

# ---------------------------------------------------------------------------------------------
# The NeurIPS 2023 unlearning competition's per-example ε and forget score (Triantafillou et al.
# 2024), reimplemented from the organisers' released metric and vectorised; and a calibrated
# variant with a per-example statistical guarantee.

EPSILON_CAP = 50.0
"""ε given to perfectly separated or "peaky" examples (worth 0 points)."""
ORGANISERS_SECONDS_512x20 = 90.0
"""Reference figure, not measured by this library: wall time of the organisers' released metric
for 512 + 512 models and 20 forget examples on a two-core CPU (the speed target of
``benchmarks/audit_speed.py`` and of the ε-audit chapter is stated against it)."""
THRESHOLDS_PER_UNIT = 100
"""Grid density of the decision rules: thresholds per unit of confidence."""
INTERVAL_BUFFER = 2.0
"""Half-width of the window swept by the edges of the interval rules."""
_NUM_LEFT_EDGES = int(np.ceil(2 * INTERVAL_BUFFER * THRESHOLDS_PER_UNIT))  # 400
_RANGE_RATIO_GUARD = 0.01


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _validate_confidences(unlearned: Any, retrained: Any, *, delta: float, min_models: int = 2
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as float64 ``[num_models, num_examples]`` arrays, after checking them."""
    out = []
    for name, x in (("unlearned", unlearned), ("retrained", retrained)):
        a = _to_numpy(x)
        if a.ndim != 2:
            raise ValueError(f"{name} must have shape [num_models, num_examples], got shape {a.shape}")
        if a.shape[0] < min_models:
            raise ValueError(f"{name} needs at least {min_models} models (rows), got {a.shape[0]}")
        if a.shape[1] < 1:
            raise ValueError(f"{name} has no examples (columns): shape {a.shape}")
        bad = np.argwhere(~np.isfinite(a))
        if bad.size:
            i, j = bad[0]
            raise ValueError(f"{name} contains NaN or inf ({bad.shape[0]} values), e.g. {a[i, j]} "
                             f"at model {i}, example {j}")
        out.append(a)
    if out[0].shape != out[1].shape:
        raise ValueError(f"unlearned and retrained must have the same shape, got {out[0].shape} and "
                         f"{out[1].shape}")
    if not (isinstance(delta, (int, float, np.floating)) and 0 <= delta < 1):
        raise ValueError(f"delta must be a number in [0, 1), got {delta!r}")
    return out[0], out[1]


def _resolve(device: Any) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def _orient(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per example, the side with the larger median is "positive" (strict: a tie makes the
    unlearned side positive). Returns ``(pos, neg, retrained_is_positive)``."""
    retrained_pos = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
    return (np.where(retrained_pos, retrained, unlearned), np.where(retrained_pos, unlearned, retrained),
            retrained_pos)


@functools.lru_cache(maxsize=8)
def _competition_table(num_models: int, delta: float) -> np.ndarray:
    """ε of a rule as a function of its error counts, exactly as the released code evaluates it.

    Entry ``[kf * (N + 1) + kn]`` is the float32 value for ``kf`` false positives and ``kn``
    false negatives out of ``N`` models per side: rates ``k / N`` in float32, then
    ``max(0, nanmax(ln(1 − δ − FPR) − ln FNR, ln(1 − δ − FNR) − ln FPR))`` with float32 logs.
    ``+inf`` marks perfect separation (both counts 0), ``-inf`` the rules the code discards
    (exactly one count 0) and the rules whose two logarithms are both NaN.
    """
    rate = np.arange(num_models + 1, dtype=np.float32) / np.float32(num_models)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.float32(1 - delta) - rate)  # the code's `1 - delta - fpr`, in float32
        lg = np.log(rate)
        eps = np.clip(np.fmax(a[:, None] - lg[None, :], a[None, :] - lg[:, None]), 0, None)
    eps[np.isnan(eps)] = -np.inf
    eps[0, :] = -np.inf
    eps[:, 0] = -np.inf
    eps[0, 0] = np.inf
    return eps.astype(np.float32).ravel()


def _calibrated_table(num_models: int, alpha: float, delta: float) -> np.ndarray:
    """Clopper–Pearson lower bound on ε for every pair of error counts (float64, flattened)."""
    _, upper = clopper_pearson(np.arange(num_models + 1), num_models, alpha=alpha)
    return _bound_from_upper_rates(upper[:, None], upper[None, :], delta).ravel()


def _interval_edges(narrow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges of the interval rules for a chunk of examples, as the released code builds them.

    ``narrow`` is ``[B, N]``: the narrower-range side P of each example, of range w. Right edges
    ``linspace(P.min + w − 2, P.max + 2, ceil(100·(…)))`` (about 400, float64; padded to the
    chunk's longest by repeating the last, which adds no new rule) and for each right edge r
    ``linspace(r − w − 2, r − w + 2, 400)`` left edges. Returns ``right [B, R]``, ``left [B, R, 400]``.
    """
    pmin, pmax = narrow.min(axis=1), narrow.max(axis=1)
    width = pmax - pmin
    lo = (pmin + width) - INTERVAL_BUFFER
    hi = pmax + INTERVAL_BUFFER
    num = np.ceil((hi - lo) * THRESHOLDS_PER_UNIT).astype(np.int64)
    right = np.empty((narrow.shape[0], int(num.max())))
    for n_right in np.unique(num):  # in practice 400 or 401; one vectorised linspace per length
        rows = np.flatnonzero(num == n_right)
        edges = np.linspace(lo[rows], hi[rows], int(n_right), axis=-1)
        right[rows] = np.concatenate([edges, np.repeat(edges[:, -1:], right.shape[1] - n_right, axis=1)], axis=1)
    shifted = right - width[:, None]
    left = np.linspace(shifted - INTERVAL_BUFFER, shifted + INTERVAL_BUFFER, _NUM_LEFT_EDGES, axis=-1)
    return right, left


def _single_thresholds(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Single thresholds ``torch.linspace(min, max, ceil(100·(max − min)))`` in float32 over all
    ``2N`` values of each example, as float64, padded with ``-inf`` (a rule that is always
    discarded) to the chunk's longest grid. ``pos``/``neg`` are ``[B, N]``."""
    lo = np.minimum(pos.min(axis=1), neg.min(axis=1))
    hi = np.maximum(pos.max(axis=1), neg.max(axis=1))
    num = np.ceil((hi - lo) * THRESHOLDS_PER_UNIT).astype(np.int64)
    out = np.full((pos.shape[0], max(int(num.max()), 1)), -np.inf)
    for b in range(pos.shape[0]):  # torch's own float32 linspace, on the CPU as the original runs it
        out[b, :num[b]] = torch.linspace(float(lo[b]), float(hi[b]), int(num[b]), dtype=torch.float32).double().numpy()
    return out


def _count_at_least(sorted_side: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``#{c >= t}`` for every threshold (``sorted_side`` ``[B, N]``, ``thresholds`` ``[B, G]``)."""
    return sorted_side.shape[1] - torch.searchsorted(sorted_side, thresholds, side="left")


def _interval_codes(narrow: torch.Tensor, wide: torch.Tensor, right: torch.Tensor, left: torch.Tensor
                    ) -> torch.Tensor:
    """Table index ``kf·(N+1) + kn`` of every interval rule "predict P iff l <= c <= r".

    ``kf = #{Q in [l, r]}``, ``kn = N − #{P in [l, r]}``. Both sides are merged and sorted once;
    a prefix code ``(N+1)·#Q − #P`` over the merged order turns each rule into one binary search
    of its left edge and one gather: ``index = N + code(#≤ r) − code(#< l)``, with the left
    position clamped to the right one so that empty intervals (l > r) count nothing.
    ``narrow``/``wide`` are ``[B, N]``, ``right`` ``[B, R]``, ``left`` ``[B, R, L]``.
    """
    b, n = narrow.shape
    merged, order = torch.sort(torch.cat([narrow, wide], dim=1), dim=1)
    zero = torch.zeros((b, 1), dtype=torch.int64, device=narrow.device)
    n_wide = torch.cat([zero, torch.cumsum(order >= n, dim=1)], dim=1)  # [B, 2N+1]
    n_narrow = torch.arange(2 * n + 1, device=narrow.device) - n_wide
    code = n_wide * (n + 1) - n_narrow
    upto = torch.searchsorted(merged, right, side="right")  # #values <= r
    below = torch.searchsorted(merged, left.reshape(b, -1), side="left")  # #values < l
    torch.minimum(below.view(left.shape), upto[:, :, None], out=below.view(left.shape))
    index = torch.gather(code, 1, below).view(left.shape)
    torch.sub((torch.gather(code, 1, upto) + n)[:, :, None], index, out=index)
    return index.view(b, -1)


@dataclass(frozen=True)
class _Scan:
    """Best rule of each example: its table value and where it lies (see :func:`_scan`)."""

    value: np.ndarray  # [n] best table value
    lower: np.ndarray  # [n] rule: predict `side` iff lower <= c <= upper
    upper: np.ndarray
    narrow_is_pos: np.ndarray  # [n] for interval rules the predicted side is the narrower one
    is_interval: np.ndarray  # [n]


def _scan(pos: np.ndarray, neg: np.ndarray, table: np.ndarray, *, device: torch.device) -> _Scan:
    """Maximise ``table[kf·(N+1) + kn]`` over the single-threshold and interval rules of each example.

    Rules predict a side S iff ``lower <= c <= upper``: single thresholds predict the positive
    (larger-median) side iff ``c >= t``; interval rules predict the narrower-range side P (on a
    tie, the negative side) iff ``l <= c <= r``. ``kf`` counts the other side's models that the
    rule predicts as S, ``kn`` the models of S it misses. Examples are processed in chunks; each
    side is sorted once and every rule is counted with ``searchsorted``.
    """
    num_models, n = pos.shape
    pos_t, neg_t = np.ascontiguousarray(pos.T), np.ascontiguousarray(neg.T)
    narrow_is_pos = np.ptp(pos_t, axis=1) < np.ptp(neg_t, axis=1)
    narrow = np.where(narrow_is_pos[:, None], pos_t, neg_t)
    wide = np.where(narrow_is_pos[:, None], neg_t, pos_t)
    tab = torch.as_tensor(table, device=device)
    rules_per_example = 401 * _NUM_LEFT_EDGES
    chunk = max(1, (1 << (24 if device.type == "cuda" else 21)) // rules_per_example)
    value = np.empty(n, dtype=table.dtype)
    lower, upper = np.empty(n), np.empty(n)
    is_interval = np.empty(n, dtype=bool)

    def put(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=device)

    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        b = sl.stop - sl.start
        # Interval rules: predict P iff l <= c <= r.
        right, left = _interval_edges(narrow[sl])
        codes = _interval_codes(put(narrow[sl]), put(wide[sl]), put(right), put(left))
        best_i, arg_i = torch.take(tab, codes).max(dim=1)
        del codes
        # Single thresholds: predict the positive side iff c >= t.
        thr = _single_thresholds(pos_t[sl], neg_t[sl])
        t_t = put(thr)
        kn = num_models - _count_at_least(torch.sort(put(pos_t[sl]), dim=1).values, t_t)
        kf = _count_at_least(torch.sort(put(neg_t[sl]), dim=1).values, t_t)
        best_s, arg_s = torch.take(tab, kf * (num_models + 1) + kn).max(dim=1)
        # Interval rules come first in the released code's concatenation: they win ties.
        use_i = (best_i >= best_s).cpu().numpy()
        arg_i, arg_s = arg_i.cpu().numpy(), arg_s.cpu().numpy()
        rows = np.arange(b)
        value[sl] = np.where(use_i, best_i.cpu().numpy(), best_s.cpu().numpy())
        lower[sl] = np.where(use_i, left.reshape(b, -1)[rows, arg_i], thr[rows, arg_s])
        upper[sl] = np.where(use_i, right[rows, arg_i // _NUM_LEFT_EDGES], np.inf)
        is_interval[sl] = use_i
    return _Scan(value=value, lower=lower, upper=upper, narrow_is_pos=narrow_is_pos, is_interval=is_interval)


def _range_guard(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """The released code's "peakiness" test: smallest / largest range of the two sides < 0.01
    (0 / 0 is NaN, which does not trigger it)."""
    pos_diff, neg_diff = np.ptp(pos, axis=0), np.ptp(neg, axis=0)
    largest = np.where(pos_diff > neg_diff, pos_diff, neg_diff)
    smallest = np.where(pos_diff > neg_diff, neg_diff, pos_diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        return smallest / largest < _RANGE_RATIO_GUARD


def _competition_scan(unlearned: np.ndarray, retrained: np.ndarray, delta: float, device: Any
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Scan | None, np.ndarray]:
    pos, neg, retrained_pos = _orient(unlearned, retrained)
    guard = _range_guard(pos, neg)
    eps = np.full(pos.shape[1], EPSILON_CAP)
    scan = None
    todo = np.flatnonzero(~guard)
    if todo.size:
        scan = _scan(pos[:, todo], neg[:, todo], _competition_table(pos.shape[0], float(delta)),
                     device=_resolve(device))
        # No surviving rule (e.g. both sides one and the same constant): the released code fails
        # here (nanmax of an empty array); we return 0, the ε of indistinguishable samples.
        eps[todo] = np.clip(np.where(scan.value == -np.inf, 0.0, scan.value), 0.0, EPSILON_CAP)
    return eps, guard, retrained_pos, scan, todo
