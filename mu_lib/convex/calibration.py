"""Calibrating Gaussian noise to a sensitivity: the exact rule of the analytic Gaussian mechanism
(Balle and Wang 2018) and the classic rules of the papers.

Adding ``N(0, sigma^2 I)`` to a quantity that moves by at most ``Delta`` (in L2) between two
neighbouring worlds is (eps, delta)-indistinguishable **if and only if**

    Phi(Delta / (2 sigma) - eps sigma / Delta) - e^eps Phi(-Delta / (2 sigma) - eps sigma / Delta) <= delta

(Balle and Wang 2018, Theorem 8). The left side depends on ``r = Delta / sigma`` alone and grows
with r, so for every (eps, delta) there is a largest admissible ratio ``r*(eps, delta)``:
:func:`gaussian_ratio` finds it with a bracketed root finder and rounds it down.

The classic rule ``sigma = Delta sqrt(2 ln(1.25 / delta)) / eps`` (Dwork and Roth, Thm A.1, proved
for eps < 1), Guo et al.'s variant with 1.5 for 1.25, and the zCDP conversion of Descent-to-Delete
are sufficient conditions only: they add more noise than needed (and the first two are not proved
for eps >= 1). They are kept as ``calibration="classic"`` to show the difference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr

__all__ = ["CALIBRATIONS", "check_calibration", "gaussian_delta", "gaussian_ratio"]

CALIBRATIONS = ("exact", "classic")
"""``"exact"``: the analytic Gaussian mechanism; ``"classic"``: each paper's own sufficient rule."""


_SAFETY = 1e-9
"""Relative margin below the requested δ, far above the float64 error of :func:`gaussian_delta`."""


def _check_eps_delta(eps: float, delta: float) -> tuple[float, float]:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not (
            math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)) or not 0 < delta < 1:
        raise ValueError(f"delta must be a number in (0, 1), got {delta!r}")
    return float(eps), float(delta)


def check_calibration(calibration: str) -> str:
    """The calibration name, or a ValueError naming the valid ones."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    return calibration


def gaussian_delta(*, ratio: float, eps: float) -> float:
    """The exact δ at which ``N(0, σ²I)`` noise hides a shift of norm Δ = ``ratio`` · σ at this ε.

    ``Φ(r/2 − ε/r) − e^ε Φ(−r/2 − ε/r)`` for ``r = Δ/σ``, evaluated in log space
    (``Φ(a)·(1 − exp(ε + ln Φ(b) − ln Φ(a)))``) so that it keeps its relative accuracy when both
    terms are tiny (δ down to 1e-300) or e^ε is huge.

    Args:
        ratio: Δ/σ ≥ 0.
        eps: ε > 0.

    Returns:
        δ in [0, 1].

    Example:
        >>> round(gaussian_delta(ratio=1.0, eps=1.0), 6)
        0.126937
        >>> gaussian_delta(ratio=0.0, eps=1.0)
        0.0
    """
    if not (math.isfinite(ratio) and ratio >= 0):
        raise ValueError(f"ratio must be a non-negative number, got {ratio!r}")
    eps, _ = _check_eps_delta(eps, 0.5)
    if ratio == 0.0:
        return 0.0
    a = ratio / 2 - eps / ratio
    b = -ratio / 2 - eps / ratio
    log_a, log_b = float(log_ndtr(a)), float(log_ndtr(b))
    if log_a == -math.inf:
        return 0.0
    return max(0.0, math.exp(log_a) * -math.expm1(min(0.0, eps + log_b - log_a)))


def gaussian_ratio(*, eps: float, delta: float) -> float:
    """The largest Δ/σ for which Gaussian noise gives (ε, δ)-indistinguishability (exact).

    Solves ``gaussian_delta(ratio=r, eps=eps) = delta`` with :func:`scipy.optimize.brentq` on a
    bracket where the left side changes sign, then rounds down until the computed δ of the
    returned ratio is at most ``delta·(1 − 1e-9)``: the float64 evaluation of δ is accurate to
    about 5e-12 relative (checked against 50-digit arithmetic), so the true δ stays below
    ``delta`` (a budget ``σ·r`` or a noise ``Δ/r`` is never on the unsafe side).

    Args:
        eps: ε > 0.
        delta: δ in (0, 1).

    Returns:
        ``r*(ε, δ) > 0``.

    Example:
        >>> r = gaussian_ratio(eps=1.0, delta=1e-5)
        >>> round(r, 4), gaussian_delta(ratio=r, eps=1.0) <= 1e-5
        (0.2681, True)
        >>> round(r / (1.0 / math.sqrt(2 * math.log(1.25 / 1e-5))), 2)  # over the classic rule's Δ/σ
        1.3
    """
    eps, delta = _check_eps_delta(eps, delta)

    target = delta * (1 - _SAFETY)

    def excess(log_r: float) -> float:
        return gaussian_delta(ratio=math.exp(log_r), eps=eps) / target - 1.0

    lo, hi = math.log(1e-6), math.log(2 * (math.sqrt(eps) + 10.0))
    while excess(lo) >= 0:  # δ(r) grows with r; widen the bracket if needed
        lo -= 5.0
    while excess(hi) <= 0:
        hi += 1.0
    r = math.exp(brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200))
    while gaussian_delta(ratio=r, eps=eps) > target:  # round to the safe side
        r = math.nextafter(r, 0.0) * (1 - 1e-15)
    return r
