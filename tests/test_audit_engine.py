"""Tests of the engine behind the competition's ε (``mu_lib.audit._rules``, ``_intervals``).

The engine has two exact kernels for the interval rules (one rule at a time for large N, by the
gaps between merged values for small N), a closed-form inverse of numpy's ``linspace``, rule
values from an (N+1)² table or from O(N) vectors, and CPU worker threads. Each is compared here
with its obviously correct counterpart: the other kernel, ``searchsorted`` on the materialised
edges, ``numpy.linspace``, the table, one thread. The end-to-end reference (the organisers'
golden vectors and a slow transcription of their code) is in ``test_audit.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mu_lib import audit
from mu_lib.audit import _intervals, _rules


def _cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Gaussian, heavy-tied (quarter grid), one-sided, separated and nearly constant examples."""
    rng = np.random.default_rng(21)
    cases = []
    for n in (3, 8, 17, 40):
        u = rng.normal(0.4, 1.0, (n, 6)) + rng.uniform(-3, 3, 6)
        r = rng.normal(0.0, 1.3, (n, 6)) + u.mean(0)
        u[:, 1] = np.round(u[:, 1] * 4) / 4  # values on the quarter grid: ties, and edges that hit data
        r[:, 1] = np.round(r[:, 1] * 4) / 4
        u[:, 2] = r[:, 2] + 30.0  # perfectly separated
        u[:, 3] = r[:, 3].mean() + 1e-3 * rng.normal(size=n)  # narrow, above the range guard or not
        u[:, 4] = np.round(r[:, 4])  # integers: edges of the grids fall on data values
        r[:, 4] = np.round(r[:, 4]) + 0.5
        cases.append((u, r))
    return cases


def _kernels(u: np.ndarray, r: np.ndarray, mode: str) -> list[tuple]:
    pos, neg, _ = _rules._orient(u, r)
    values = _rules._competition_values(u.shape[0], 1e-5)
    out = []
    for kernel in (_intervals.brute, _intervals.by_gaps):
        narrow_is_pos = np.ptp(pos, axis=0) < np.ptp(neg, axis=0)
        narrow = np.where(narrow_is_pos, pos, neg).T.copy()
        wide = np.where(narrow_is_pos, neg, pos).T.copy()
        right, start, step, stop = (torch.as_tensor(x) for x in _rules._interval_edges(narrow))
        merged, code = _rules._merged_codes(torch.as_tensor(narrow), torch.as_tensor(wide))
        up = torch.searchsorted(merged, right, right=True)
        best, i, j = kernel(merged, code, up, right, start, step, stop, values, u.shape[0], mode)
        out.append((best.numpy(), i.numpy(), j.numpy()))
    return out


@pytest.mark.parametrize("case", range(4))
@pytest.mark.parametrize("mode", ["first", "median"])
def test_the_two_interval_kernels_choose_the_same_rule(case, mode):
    u, r = _cases()[case]
    (b1, i1, j1), (b2, i2, j2) = _kernels(u, r, mode)
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(j1, j2)


@pytest.mark.parametrize("case", range(4))
def test_per_example_epsilons_is_the_same_with_either_kernel(case, monkeypatch):
    u, r = _cases()[case]
    results = []
    for gaps_max in (0, 10_000):
        monkeypatch.setattr(_rules, "_GAPS_MAX_MODELS", gaps_max)
        results.append((audit.per_example_epsilons(u, r), audit.best_decision_rules(u, r),
                        audit.calibrated_epsilons(u, r).epsilons if u.shape[0] >= 4 else None))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    if results[0][2] is not None:
        np.testing.assert_array_equal(results[0][2], results[1][2])


def test_left_edges_are_numpy_linspace_bit_for_bit():
    rng = np.random.default_rng(3)
    right = np.sort(rng.uniform(-50, 50, (5, 401)), axis=1)
    width = rng.uniform(0, 7, 5)
    shifted = right - width[:, None]
    expected = np.linspace(shifted - 2.0, shifted + 2.0, 400, axis=-1)
    _, start, step, stop = (x for x in (None, shifted - 2.0, (shifted + 2.0 - (shifted - 2.0)) / 399, shifted + 2.0))
    got = _intervals.left_edges(torch.as_tensor(start), torch.as_tensor(step), torch.as_tensor(stop)).numpy()
    np.testing.assert_array_equal(got, expected)


def test_edges_at_or_below_equals_a_search_of_the_materialised_edges():
    rng = np.random.default_rng(4)
    start = torch.as_tensor(rng.uniform(-20, 20, (3, 50)))
    stop = start + 4.0
    step = (stop - start) / 399
    lefts = _intervals.left_edges(start, step, stop)  # [3, 50, 400]
    # queries: random, exactly on edges, one ulp either side of edges, beyond both ends
    on = lefts[:, :, rng.integers(0, 400, 40)].reshape(3, -1)[:, :60]
    x = torch.cat([torch.as_tensor(rng.uniform(-25, 25, (3, 60))), on, torch.nextafter(on, on + 1),
                   torch.nextafter(on, on - 1), torch.full((3, 2), -1e3), torch.full((3, 2), 1e3)], dim=1)
    got = _intervals._edges_at_or_below(x[:, None, :], start[..., None], step[..., None], stop[..., None])
    want = torch.searchsorted(lefts.reshape(150, 400), x[:, None, :].expand(3, 50, -1).reshape(150, -1),
                              right=True).view(3, 50, -1)
    assert torch.equal(got, want)


@pytest.mark.parametrize("kind", ["competition", "calibrated"])
def test_rule_values_from_vectors_equal_the_table(kind):
    n = 37
    values = (_rules._competition_values(n, 1e-5) if kind == "competition"
              else _rules._calibrated_values(n, 0.05, 1e-5))
    assert values._table is not None
    vectors = _rules._RuleValues(values.a, values.b, zeros=values.zeros, num_models=n)
    vectors._table = None  # force the O(N) path
    index = torch.arange((n + 1) ** 2, dtype=torch.int32)
    np.testing.assert_array_equal(vectors(index).numpy(), values(index).numpy())
    # and the competition's table entries are the released code's formula
    if kind == "competition":
        f32 = np.float32
        for kf, kn in ((0, 0), (0, 5), (5, 0), (1, 1), (3, 7), (n, n), (n, 1), (2, n)):
            got = float(values(torch.tensor([kf * (n + 1) + kn]))[0])
            if kf == kn == 0:
                assert got == math.inf
            elif kf == 0 or kn == 0 or kf == kn == n:
                assert got == -math.inf
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    a = np.log(f32(1 - 1e-5) - f32(kf) / f32(n)) - np.log(f32(kn) / f32(n))
                    b = np.log(f32(1 - 1e-5) - f32(kn) / f32(n)) - np.log(f32(kf) / f32(n))
                assert got == float(max(0.0, np.fmax(a, b)))


def test_memory_is_linear_in_the_number_of_models():
    """10,000 + 10,000 models run without the (N+1)² table (it would take 400 MB), and give the
    largest finite ε where exactly one model of each side lies among the other side's."""
    n = 10_000
    assert _rules._competition_values(n, 1e-5)._table is None
    rng = np.random.default_rng(6)
    u = np.r_[rng.uniform(0.0, 1.0, n - 1), 3.0]
    r = np.r_[rng.uniform(3.5, 4.5, n - 1), 0.5]
    eps = audit.per_example_epsilons(np.c_[u, -u], np.c_[r, -r])
    f32 = np.float32
    expected = np.log(f32(1 - 1e-5) - f32(1) / f32(n)) - np.log(f32(1) / f32(n))  # ln(N(1 − δ) − 1)
    np.testing.assert_array_equal(eps, [expected, expected])
    assert expected == pytest.approx(math.log(n * (1 - 1e-5) - 1), abs=1e-5)


def test_worker_threads_do_not_change_the_result():
    rng = np.random.default_rng(5)
    u, r = rng.normal(size=(100, 9)), rng.normal(0.2, 1.0, (100, 9))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = audit.per_example_epsilons(u, r)
        torch.set_num_threads(2)
        two = audit.per_example_epsilons(u, r)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("num_models", [16, 32, 64])
def test_the_calibrated_selection_reaches_the_certifiable_maximum_when_separated(num_models):
    """Choosing the middle of the equally good rules on the selection half lets a perfectly
    separated method reach max_certifiable_epsilon on every example (the edge of the run, the
    released code's choice, loses some held-out models)."""
    rng = np.random.default_rng(num_models)
    r = rng.normal(size=(num_models, 12))
    cal = audit.calibrated_epsilons(r + 10.0, rng.normal(size=(num_models, 12)))
    np.testing.assert_allclose(cal.epsilons, audit.max_certifiable_epsilon(num_models), rtol=1e-12)
