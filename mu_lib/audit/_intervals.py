"""The two exact kernels that find, per example, the best interval rule "predict P iff l <= c <= r".

Private: :func:`mu_lib.audit._rules._scan` calls them. Both enumerate the same rules as the
organisers' released code (about 400 right edges r_i, and for each 400 left edges l_ij, float64
``linspace`` exactly as numpy builds it) and return the same best value and the same rule:

* :func:`brute` counts every one of the ~160,000 rules with a binary search of its left edge in the
  merged, sorted confidences of both sides (cost ~ rules x log 2N); best for large N.
* :func:`by_gaps` turns the search around: a rule's counts depend only on how many merged values
  lie below its left edge, k, so per right edge it searches each of the 2N merged values in the
  400 left edges (which tells which k occur, and at which left edges) and evaluates each occurring
  k once (cost ~ 400 x 2N x log 400); best for small N (2N + 1 well below 400).

A rule is identified by its position ``i·L + j`` in the released code's order (right edge i, then
left edge j, L = 400). ``mode="first"`` returns the first rule that attains the best value (the
released code's ``nanmax`` order, used to explain an ε), ``mode="median"`` the middle one among
those that attain it (the calibrated estimator's choice: the centre of a run of equally good
rules generalises better to held-out models than its edge).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

NUM_LEFT_EDGES = 400
"""Left edges per right edge (``linspace(r − w − 2, r − w + 2, 400)``)."""

Values = Callable[[torch.Tensor], torch.Tensor]
"""Maps table indices ``kf·(N+1) + kn`` (int64) to rule values (see ``_rules._RuleValues``)."""


def left_edges(start: torch.Tensor, step: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
    """``numpy.linspace(start, stop, 400)`` per right edge, with numpy's own float64 operations:
    ``j·step + start`` for j < 399 and exactly ``stop`` at j = 399 (``start``/``step``/``stop`` are
    ``[B, R]``; returns ``[B, R, 400]``)."""
    j = torch.arange(NUM_LEFT_EDGES, dtype=torch.float64, device=start.device)
    out = torch.mul(j, step[..., None])
    out.add_(start[..., None])
    out[..., -1] = stop
    return out


def left_edge_at(start: torch.Tensor, step: torch.Tensor, stop: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """The single left edge ``j`` of :func:`left_edges` (elementwise)."""
    return torch.where(j == NUM_LEFT_EDGES - 1, stop, j.to(torch.float64) * step + start)


def _select(vals: torch.Tensor, weights: torch.Tensor | None, mode: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best value per row of ``vals`` ``[B, M]`` and the flat index of the chosen cell, plus (for
    ``"median"``) the rank of the chosen rule inside that cell when cells hold ``weights`` rules."""
    best, first = vals.max(dim=1)
    if mode == "first":
        return best, first, torch.zeros_like(first)
    tied = vals == best[:, None]
    w = tied.to(torch.int64) if weights is None else torch.where(tied, weights, 0)
    cum = torch.cumsum(w, dim=1)
    target = (cum[:, -1] - 1) // 2  # 0-based rank of the median tied rule
    cell = torch.searchsorted(cum, target[:, None], right=True).squeeze(1)
    before = torch.gather(cum, 1, cell[:, None]).squeeze(1) - torch.gather(w, 1, cell[:, None]).squeeze(1)
    return best, cell, target - before


def _index_dtype(num_models: int) -> torch.dtype:
    """int32 where every table index ``kf·(N+1) + kn`` fits (N ≤ 46,339): half the memory traffic."""
    return torch.int32 if (num_models + 1) ** 2 < 2 ** 31 else torch.int64


def _gather_codes(code: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``code[b, k[b, ...]]`` for every example b, as one flat ``index_select`` (int32 allowed)."""
    b, width = code.shape
    if b > 1:
        offsets = torch.arange(0, b * width, width, device=k.device, dtype=k.dtype)
        k = k + offsets.view((b,) + (1,) * (k.dim() - 1))
    return torch.index_select(code.reshape(-1), 0, k.reshape(-1)).view(k.shape)


def brute(merged: torch.Tensor, code: torch.Tensor, up: torch.Tensor, right: torch.Tensor, start: torch.Tensor,
          step: torch.Tensor, stop: torch.Tensor, values: Values, num_models: int, mode: str
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evaluate every interval rule; see the module docstring.

    ``merged`` ``[B, 2N]`` (sorted confidences of both sides), ``code`` ``[B, 2N + 1]`` (prefix code
    ``(N+1)·#Q − #P`` over the merged order), ``up`` ``[B, R]`` (#merged ≤ r_i), ``right`` the right
    edges r_i and ``start``/``step``/``stop`` their left edges (:func:`left_edges`). Returns the best
    value ``[B]``, its right edge index i ``[B]`` and left edge index j ``[B]``. One example at a
    time (B = 1) is the fastest on a CPU: its arrays stay in the cache.
    """
    b, r = up.shape
    dtype = _index_dtype(num_models)
    code = code.to(dtype)
    up = up.to(dtype)
    lefts = left_edges(start, step, stop)
    int32 = dtype == torch.int32
    if b == 1:  # #values < l
        below = torch.searchsorted(merged[0], lefts.view(-1), out_int32=int32).view(1, r, NUM_LEFT_EDGES)
    else:
        below = torch.searchsorted(merged, lefts.view(b, -1), out_int32=int32).view(b, r, NUM_LEFT_EDGES)
    del lefts
    # A left edge beyond its right edge (l > r, an empty interval) has below >= up; clamping it to
    # up makes the rule count nothing. When every row's last left edge is at most its right edge
    # (the narrow side is at least 2 wide) no interval is empty and the pass can be skipped.
    if not bool((stop <= right).all()):
        torch.minimum(below, up[:, :, None], out=below)
    index = _gather_codes(code, below)
    del below
    torch.sub((_gather_codes(code, up) + num_models)[:, :, None], index, out=index)
    vals = values(index.view(b, -1))
    del index
    best, cell, rank = _select(vals, None, mode)
    pos = cell + rank
    return best, pos // NUM_LEFT_EDGES, pos % NUM_LEFT_EDGES


_SAFE_INDEX_RANGE = 2.0 ** 40
""":func:`_edges_at_or_below` computes a left-edge index from ``(x − start) / step``; while
``|x| / step`` stays below this, its rounding error is far below one index and one correction
step each way makes it exact (confidences are logits, |x| < 1e3 in practice)."""


def _edges_at_or_below(x: torch.Tensor, start: torch.Tensor, step: torch.Tensor, stop: torch.Tensor
                       ) -> torch.Tensor:
    """``G(x) = #{j : l_j <= x}`` for the left edges ``l_j`` of :func:`left_edges`, exactly.

    ``l_j = j·step + start`` (j < 399) rounds monotonically, so ``G`` is one more than the last j
    with ``l_j <= x``, plus 1 if ``stop <= x``. That last j is within rounding error of
    ``t = (x − start) / step`` (see ``_SAFE_INDEX_RANGE``), so it is ``c`` or ``c + 1`` for
    ``c = floor(t − 1/2)``; recomputing ``l_{c+1}`` with numpy's own operations decides which.
    Shapes broadcast: ``x`` ``[B, 1, M]``, the rest ``[B, R, 1]``; returns int64 ``[B, R, M]``.
    """
    last = float(NUM_LEFT_EDGES - 2)  # the last edge given by the formula; edge 399 is `stop`
    nxt = torch.sub(x, start).div_(step).sub_(0.5).floor_().clamp_(-1.0, last).add_(1.0)  # c + 1
    g = nxt.add((nxt * step + start <= x) & (nxt <= last))
    return g.add_(stop <= x).to(torch.int64)


def by_gaps(merged: torch.Tensor, code: torch.Tensor, up: torch.Tensor, right: torch.Tensor, start: torch.Tensor,
            step: torch.Tensor, stop: torch.Tensor, values: Values, num_models: int, mode: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same result as :func:`brute`, by the gaps between merged values (see the module
    docstring): left edge j falls in gap k (``merged[k−1] < l_ij <= merged[k]``, so k values lie
    below it) iff ``G(merged[k−1]) <= j < G(merged[k])`` with ``G(x) = #{j : l_ij <= x}``."""
    b, r = up.shape
    m = merged.shape[1]  # 2N
    # bounds[..., k] = G(merged[k − 1]) for k = 0..2N + 1, with G(merged[−1]) = 0, G(merged[2N]) = 400
    bounds = torch.empty((b, r, m + 2), dtype=torch.int64, device=merged.device)
    bounds[..., 0], bounds[..., -1] = 0, NUM_LEFT_EDGES
    scale = torch.maximum(merged.abs().amax(dim=1), start.abs().amax(dim=1)) / step.amin(dim=1)
    if bool((scale < _SAFE_INDEX_RANGE).all()):
        bounds[..., 1:-1] = _edges_at_or_below(merged[:, None, :], start[..., None], step[..., None], stop[..., None])
    else:  # huge confidences: search the materialised edges instead
        lefts = left_edges(start, step, stop).view(b * r, NUM_LEFT_EDGES)
        queries = merged[:, None, :].expand(b, r, m).reshape(b * r, m)
        bounds[..., 1:-1] = torch.searchsorted(lefts, queries, right=True).view(b, r, m)
    first_j = bounds[..., :-1]  # first left edge in gap k, k = 0..2N
    count = bounds[..., 1:] - first_j  # left edges in gap k
    dtype = _index_dtype(num_models)
    k = torch.minimum(torch.arange(m + 1, device=merged.device, dtype=dtype)[None, None, :],
                      up.to(dtype)[:, :, None])
    code = code.to(dtype)
    index = _gather_codes(code, k)
    torch.sub((_gather_codes(code, up.to(dtype)) + num_models)[:, :, None], index, out=index)
    vals = values(index.view(b, -1)).view(b, r, m + 1)
    vals = vals.masked_fill(count == 0, -torch.inf)
    best, cell, rank = _select(vals.view(b, -1), count.view(b, -1), mode)
    j = torch.gather(first_j.reshape(b, -1), 1, cell[:, None]).squeeze(1) + rank
    return best, cell // (m + 1), j
