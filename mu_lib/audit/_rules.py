"""The vectorised engine behind the competition's ε: the grids of single-threshold and interval
decision rules, the error-count tables and the scan that finds each example's best rule.

Private: :mod:`mu_lib.audit.epsilons` and :mod:`mu_lib.audit.score` call it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mu_lib.audit import _intervals
from mu_lib.audit.bounds import clopper_pearson

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
_NUM_LEFT_EDGES = _intervals.NUM_LEFT_EDGES  # ceil(2 · INTERVAL_BUFFER · THRESHOLDS_PER_UNIT)
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


_TABLE_MAX_ENTRIES = 1 << 22
"""Rule values are looked up in an (N+1)² table up to this many entries (N ≤ 2,047: 16 MB in
float32); beyond, they are computed from O(N) vectors, so memory stays linear in N."""


class _RuleValues:
    """The value of a rule as a function of its error counts, looked up by ``kf·(N+1) + kn``.

    ``value(kf, kn) = max(0, a[kf] − b[kn], a[kn] − b[kf])`` with NaN (both terms undefined) as
    ``-inf``, and ``-inf`` when exactly one count is 0, ``+inf`` when both are (``zeros=True``;
    the competition's rules) or plain formula values (``zeros=False``; the calibrated selection).
    For small N the values are precomputed in an ``(N+1)²`` table; for large N they are computed
    per rule from the two length-``N+1`` vectors ``a``, ``b`` with the same float operations, so
    both give identical values.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, *, zeros: bool, num_models: int) -> None:
        self.a, self.b, self.zeros, self.num_models = a, b, zeros, num_models
        self.dtype = a.dtype
        self._table = self._evaluate_np(np.arange(num_models + 1)[:, None], np.arange(num_models + 1)[None, :]
                                        ).ravel() if (num_models + 1) ** 2 <= _TABLE_MAX_ENTRIES else None
        self._on: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def _evaluate_np(self, kf: np.ndarray, kn: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            eps = np.clip(np.fmax(self.a[kf] - self.b[kn], self.a[kn] - self.b[kf]), 0, None)
        eps[np.isnan(eps)] = -np.inf
        if self.zeros:
            eps = np.where((kf == 0) | (kn == 0), np.where((kf == 0) & (kn == 0), np.inf, -np.inf), eps)
        return eps.astype(self.dtype)

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        dev = index.device
        if dev not in self._on:
            self._on[dev] = tuple(torch.as_tensor(x, device=dev) for x in (
                (self._table,) if self._table is not None else (self.a, self.b)))
        if self._table is not None:
            return torch.index_select(self._on[dev][0], 0, index.reshape(-1)).view(index.shape)
        a, b = self._on[dev]
        kf = torch.div(index, self.num_models + 1, rounding_mode="floor")
        kn = index - kf * (self.num_models + 1)
        eps = torch.fmax(a[kf] - b[kn], a[kn] - b[kf]).clamp_min_(0)
        eps.masked_fill_(torch.isnan(eps), -torch.inf)
        if self.zeros:
            zf, zn = kf == 0, kn == 0
            eps.masked_fill_(zf | zn, -torch.inf).masked_fill_(zf & zn, torch.inf)
        return eps


@functools.lru_cache(maxsize=8)
def _competition_values(num_models: int, delta: float) -> _RuleValues:
    """ε of a rule as a function of its error counts, exactly as the released code evaluates it.

    For ``kf`` false positives and ``kn`` false negatives out of ``N`` models per side: rates
    ``k / N`` in float32, then ``max(0, nanmax(ln(1 − δ − FPR) − ln FNR, ln(1 − δ − FNR) − ln FPR))``
    with float32 logs. ``+inf`` marks perfect separation (both counts 0), ``-inf`` the rules the
    code discards (exactly one count 0) and the rules whose two logarithms are both NaN.
    """
    rate = np.arange(num_models + 1, dtype=np.float32) / np.float32(num_models)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.float32(1 - delta) - rate)  # the code's `1 - delta - fpr`, in float32
        lg = np.log(rate)
    return _RuleValues(a, lg, zeros=True, num_models=num_models)


def _calibrated_values(num_models: int, alpha: float, delta: float) -> _RuleValues:
    """Clopper–Pearson lower bound on ε for every pair of error counts out of ``num_models``:
    ``max(0, ln(1 − δ − FPR⁺) − ln FNR⁺, ln(1 − δ − FNR⁺) − ln FPR⁺)`` (the value that the
    calibrated estimator maximises to *choose* a rule)."""
    _, upper = clopper_pearson(np.arange(num_models + 1), num_models, alpha=alpha)
    upper = np.asarray(upper, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(1 - delta - upper > 0, np.log(np.maximum(1 - delta - upper, 1e-300)), -np.inf)
    return _RuleValues(a, np.log(upper), zeros=False, num_models=num_models)


def _interval_edges(narrow: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges of the interval rules for a chunk of examples, as the released code builds them.

    ``narrow`` is ``[B, N]``: the narrower-range side P of each example, of range w. Right edges
    ``linspace(P.min + w − 2, P.max + 2, ceil(100·(…)))`` (about 400, float64; padded to the
    chunk's longest by repeating the last, which adds no new rule) and for each right edge r the
    400 left edges ``linspace(r − w − 2, r − w + 2, 400)``, given by their ``start``, ``step`` and
    ``stop`` (numpy's linspace is ``j·step + start``, with ``stop`` itself last). Returns
    ``right, start, step, stop``, each ``[B, R]``.
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
    start, stop = shifted - INTERVAL_BUFFER, shifted + INTERVAL_BUFFER
    step = np.subtract(stop, start) / (_NUM_LEFT_EDGES - 1)
    return right, start, step, stop


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


def _merged_codes(narrow: torch.Tensor, wide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides merged and sorted, and the prefix code ``(N+1)·#Q − #P`` over the merged order.

    A rule "predict P iff l <= c <= r" with u = #merged ≤ r and k = min(#merged < l, u) has
    ``kf = #Q in [l, r]``, ``kn = N − #P in [l, r]``, i.e. table index
    ``kf·(N+1) + kn = N + code[u] − code[k]``. ``narrow``/``wide`` are ``[B, N]``.
    """
    b, n = narrow.shape
    merged, order = torch.sort(torch.cat([narrow, wide], dim=1), dim=1)
    zero = torch.zeros((b, 1), dtype=torch.int64, device=narrow.device)
    n_wide = torch.cat([zero, torch.cumsum(order >= n, dim=1)], dim=1)  # [B, 2N+1]
    n_narrow = torch.arange(2 * n + 1, device=narrow.device) - n_wide
    return merged, n_wide * (n + 1) - n_narrow


@dataclass(frozen=True)
class _Scan:
    """Best rule of each example: its value and where it lies (see :func:`_scan`)."""

    value: np.ndarray  # [n] best rule value
    lower: np.ndarray  # [n] rule: predict `side` iff lower <= c <= upper
    upper: np.ndarray
    narrow_is_pos: np.ndarray  # [n] for interval rules the predicted side is the narrower one
    is_interval: np.ndarray  # [n]


_GAPS_MAX_MODELS = 96
"""Up to this N per side the interval rules are evaluated by gaps (:func:`_intervals.by_gaps`),
beyond it one by one (:func:`_intervals.brute`); both are exact, the switch is for speed."""
_CHUNK = 64
"""Examples per chunk for the edges, merging and the single thresholds."""
_KERNEL_CELLS = {"cpu_gaps": 1 << 18, "cuda": 1 << 24}
"""Cells (rules, or gaps for :func:`_intervals.by_gaps`) per call of an interval kernel: on a
CPU the brute kernel takes one example at a time (its ~160,000 rules stay in the cache), the gap
kernel about 256k cells; on CUDA about 16M, so that one launch has enough work."""


@contextlib.contextmanager
def _cpu_workers() -> Iterator[int]:
    """Run the CPU engine as ``torch.get_num_threads()`` worker threads, each on its own chunk of
    examples with single-threaded torch kernels (torch releases the GIL inside them). The
    kernels are small (one example's ~160,000 rules), and splitting each one across threads costs
    more in synchronisation than it saves. Yields the number of workers; torch's thread count is
    restored afterwards."""
    workers = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(1)
    try:
        yield workers
    finally:
        if workers > 1:
            torch.set_num_threads(workers)


def _kernel_batch(num_models: int, gaps: bool, device: torch.device) -> int:
    per_example = 401 * ((2 * num_models + 1) if gaps else _NUM_LEFT_EDGES)
    if device.type == "cuda":
        return max(1, _KERNEL_CELLS["cuda"] // per_example)
    return max(1, _KERNEL_CELLS["cpu_gaps"] // per_example) if gaps else 1


def _scan(pos: np.ndarray, neg: np.ndarray, values: _RuleValues, *, device: torch.device, mode: str = "first"
          ) -> _Scan:
    """Maximise the rule value over the single-threshold and interval rules of each example.

    Rules predict a side S iff ``lower <= c <= upper``: single thresholds predict the positive
    (larger-median) side iff ``c >= t``; interval rules predict the narrower-range side P (on a
    tie, the negative side) iff ``l <= c <= r``. ``kf`` counts the other side's models that the
    rule predicts as S, ``kn`` the models of S it misses. Examples are processed in chunks; each
    side is sorted once and the rules are counted with binary searches (:mod:`._intervals`).

    ``mode="first"`` (the competition): among equally good rules the first in the released code's
    order, intervals before single thresholds. ``mode="median"`` (the calibrated selection): the
    middle of the equally good rules of a family, and a single threshold over an interval of the
    same value (the simpler rule).
    """
    num_models, n = pos.shape
    pos_t, neg_t = np.ascontiguousarray(pos.T), np.ascontiguousarray(neg.T)
    narrow_is_pos = np.ptp(pos_t, axis=1) < np.ptp(neg_t, axis=1)
    narrow = np.where(narrow_is_pos[:, None], pos_t, neg_t)
    wide = np.where(narrow_is_pos[:, None], neg_t, pos_t)
    gaps = num_models <= _GAPS_MAX_MODELS
    kernel = _intervals.by_gaps if gaps else _intervals.brute
    batch = _kernel_batch(num_models, gaps, device)
    value = np.empty(n, dtype=values.dtype)
    lower, upper = np.empty(n), np.empty(n)
    is_interval = np.empty(n, dtype=bool)

    def put(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=device)

    def run(sl: slice) -> None:
        size = sl.stop - sl.start
        # Interval rules: predict P iff l <= c <= r.
        right, start, step, stop = (put(x) for x in _interval_edges(narrow[sl]))
        merged, code = _merged_codes(put(narrow[sl]), put(wide[sl]))
        up = torch.searchsorted(merged, right, right=True)  # #values <= r
        parts = [kernel(merged[k], code[k], up[k], right[k], start[k], step[k], stop[k], values, num_models, mode)
                 for k in (slice(a, min(a + batch, size)) for a in range(0, size, batch))]
        best_i, row, col = (torch.cat(x) for x in zip(*parts))
        rows = torch.arange(size, device=device)
        left_i = _intervals.left_edge_at(start[rows, row], step[rows, row], stop[rows, row], col)
        right_i = right[rows, row]
        # Single thresholds: predict the positive side iff c >= t.
        thr = _single_thresholds(pos_t[sl], neg_t[sl])
        t_t = put(thr)
        kn = num_models - _count_at_least(torch.sort(put(pos_t[sl]), dim=1).values, t_t)
        kf = _count_at_least(torch.sort(put(neg_t[sl]), dim=1).values, t_t)
        vals = values(kf * (num_models + 1) + kn).masked_fill_(t_t == -torch.inf, -torch.inf)
        best_s, cell, _ = _intervals._select(vals, None, mode)
        # Competition: intervals come first in the released code's concatenation and win ties.
        use_i = (best_i >= best_s) if mode == "first" else (best_i > best_s)
        value[sl] = torch.where(use_i, best_i, best_s).cpu().numpy()
        lower[sl] = torch.where(use_i, left_i, torch.gather(t_t, 1, cell[:, None]).squeeze(1)).cpu().numpy()
        upper[sl] = torch.where(use_i, right_i, torch.inf).cpu().numpy()
        is_interval[sl] = use_i.cpu().numpy()

    if device.type != "cpu":
        for begin in range(0, n, max(_CHUNK, batch)):
            run(slice(begin, min(begin + max(_CHUNK, batch), n)))
    else:
        with _cpu_workers() as workers:
            chunk = max(batch, min(_CHUNK, -(-n // workers)))
            slices = [slice(b, min(b + chunk, n)) for b in range(0, n, chunk)]
            if workers == 1 or len(slices) == 1:
                for sl in slices:
                    run(sl)
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(run, slices))
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
        scan = _scan(pos[:, todo], neg[:, todo], _competition_values(pos.shape[0], float(delta)),
                     device=_resolve(device))
        # No surviving rule (e.g. both sides one and the same constant): the released code fails
        # here (nanmax of an empty array); we return 0, the ε of indistinguishable samples.
        eps[todo] = np.clip(np.where(scan.value == -np.inf, 0.0, scan.value), 0.0, EPSILON_CAP)
    return eps, guard, retrained_pos, scan, todo
