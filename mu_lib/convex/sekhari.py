"""Sekhari et al. (2021), Algorithm 1: store the Hessian at training time, unlearn with one Newton
step from it and Gaussian noise calibrated to the deletion's sensitivity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from mu_lib.convex.calibration import check_calibration, gaussian_ratio
from mu_lib.convex.objective import GAMMA, Loss, _check_data, _check_positive, _hess, _per_example, fit

__all__ = ["SekhariState", "SekhariResult", "sekhari_fit", "sekhari_downdate", "sekhari_noise", "sekhari_unlearn"]

# ----------------------------------------------------------------------------------------------
# Sekhari et al., Algorithm 1 (mean-form normalisation)
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SekhariState:
    """What Sekhari et al.'s learner A_sc outputs and stores: ``w_hat`` and ``T(S) = {grad^2 F_hat(w_hat)}``.

    Sekhari et al. normalise by the data size: ``F_hat(w) = (1/n) sum_i f(w, z_i)`` with the
    per-example ``f(w, z) = loss(w; z) + (lam/2)||w||^2``, i.e. ``F_hat = L(w; D) / n`` in this
    module's sum form, so ``w_hat`` is the same minimiser and ``lam`` means the same thing; the
    stored Hessian is the mean-form one, ``(1/n) X^T diag(loss'') X + lam I``.

    Attributes:
        w: the empirical risk minimiser ``w_hat``.
        hessian: ``grad^2 F_hat(w_hat)`` (``[d, d]``).
        n: the training set size.
        lam: the regularisation strength (= strong convexity of every f).
        loss: the loss.
    """

    w: np.ndarray
    hessian: np.ndarray
    n: int
    lam: float
    loss: str


@dataclass(frozen=True)
class SekhariResult:
    """The output of :func:`sekhari_unlearn`.

    Attributes:
        w: the published, noisy weights ``w_tilde = w_bar + nu``.
        w_bar: the Newton-step weights before noise.
        gamma: ``2 M m^2 L^2 / (lam^3 n^2)``, the bound on ``||w_bar - w_retrain||``.
        sigma: the standard deviation of the Gaussian noise nu.
    """

    w: np.ndarray
    w_bar: np.ndarray
    gamma: float
    sigma: float


def sekhari_fit(X: np.ndarray, y: np.ndarray, *, lam: float, loss: Loss = "logistic") -> SekhariState:
    """Sekhari et al.'s learner: the ERM ``w_hat`` and the stored Hessian ``grad^2 F_hat(w_hat)`` (mean form).

    Example:
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([1.0, -1.0])
        >>> sekhari_fit(X, y, lam=1.0, loss="squared").hessian  # X^T X / 2 + I
        array([[1.5, 0. ],
               [0. , 1.5]])
    """
    X, y = _check_data(X, y, loss)
    w = fit(X, y, lam=lam, loss=loss)
    return SekhariState(w=w, hessian=_hess(w, X, y, lam, loss) / X.shape[0], n=int(X.shape[0]), lam=float(lam),
                        loss=loss)


def _check_removed(state: SekhariState, X_removed: np.ndarray, y_removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Xr, yr = _check_data(X_removed, y_removed, state.loss)
    if Xr.shape[1] != state.w.shape[0]:
        raise ValueError(f"X_removed has {Xr.shape[1]} features, the model {state.w.shape[0]}")
    if Xr.shape[0] >= state.n:
        raise ValueError(f"cannot remove {Xr.shape[0]} points from a training set of {state.n}")
    return Xr, yr


def sekhari_downdate(state: SekhariState, X_removed: np.ndarray, y_removed: np.ndarray) -> np.ndarray:
    """The Hessian of ``F_hat`` on S minus U at ``w_hat``, from the stored one (no access to S needed).

    ``H_hat = (n grad^2 F_hat(w_hat) - sum_{z in U} grad^2 f(w_hat, z)) / (n - m)``, with
    ``grad^2 f(w, z) = loss''(z) x x^T + lam I``.
    """
    Xr, yr = _check_removed(state, X_removed, y_removed)
    m = Xr.shape[0]
    _, _, h = _per_example(state.w, Xr, yr, state.loss)
    H = state.n * state.hessian - Xr.T @ (h[:, None] * Xr)
    H[np.diag_indices_from(H)] -= m * state.lam
    return H / (state.n - m)


def sekhari_noise(*, m: int, n: int, lam: float, eps: float, delta: float, M: float = 0.25, L: float = 2.0,
                  calibration: str = "exact") -> tuple[float, float]:
    """``(gamma, sigma)`` of Sekhari et al.'s Algorithm 1 for m deletions out of n.

    ``gamma = 2 M m^2 L^2 / (lam^3 n^2)`` bounds ``||w_bar - w_retrain||`` (the exponent of lam is
    3: ``||w_hat - w_retrain|| <= 2 m L / (lam n)`` for ``m <= n/2``, and the Newton error is at
    most ``M / (2 lam)`` times its square). The noise hides a shift of norm gamma:

    * ``"exact"`` (default): ``sigma = gamma / r*(eps, delta)``, the analytic Gaussian mechanism
      (Balle and Wang 2018; :func:`mu_lib.convex.calibration.gaussian_ratio`), valid for every eps;
    * ``"classic"``: the paper's ``sigma = (gamma / eps) sqrt(2 ln(1.25 / delta))``, the classic
      Gaussian mechanism (Dwork and Roth, proved for eps < 1).

    Args:
        m: number of deleted points (at most n/2).
        n: training set size.
        lam: strong convexity of every f (the regularisation strength).
        eps, delta: the unlearning guarantee.
        M: Hessian-Lipschitz constant of f. For the logistic loss with ``||x|| <= 1`` it is
            the largest third derivative ``1/(6 sqrt 3)``; the default 1/4 is the conservative value
            that :data:`GAMMA` uses for Guo et al. Use 0 for the squared loss.
        L: Lipschitz constant of f where the minimisers live: for the logistic loss
            ``1 + lam ||w|| <= 1 + lam (1/lam) = 2``.
        calibration: ``"exact"`` or ``"classic"``.

    Example:
        >>> g, s = sekhari_noise(m=1, n=100, lam=0.1, eps=1.0, delta=1e-5, M=0.25, L=2.0, calibration="classic")
        >>> round(g, 6), round(s / g, 4)  # 2 * 0.25 * 4 / (1e-3 * 1e4), sqrt(2 ln 125000)
        (0.2, 4.8448)
        >>> round(sekhari_noise(m=1, n=100, lam=0.1, eps=1.0, delta=1e-5)[1] / g, 4)  # 1 / r*(1, 1e-5)
        3.7306
    """
    if not (isinstance(n, (int, np.integer)) and isinstance(m, (int, np.integer)) and 0 < m and 2 * m <= n):
        raise ValueError(f"need integers 0 < m <= n/2, got m={m!r}, n={n!r}")
    lam = _check_positive("lam", lam)
    eps = _check_positive("eps", eps)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not (math.isfinite(M) and M >= 0 and math.isfinite(L) and L > 0):
        raise ValueError(f"need M >= 0 and L > 0, got M={M!r}, L={L!r}")
    gamma = 2.0 * M * m**2 * L**2 / (lam**3 * n**2)
    if check_calibration(calibration) == "classic":
        return gamma, gamma / eps * math.sqrt(2.0 * math.log(1.25 / delta))
    return gamma, gamma / gaussian_ratio(eps=eps, delta=delta)


def sekhari_unlearn(state: SekhariState, X_removed: np.ndarray, y_removed: np.ndarray, *, eps: float,
                    delta: float, M: float | None = None, L: float = 2.0,
                    seed: int | np.random.Generator = 0, calibration: str = "exact") -> SekhariResult:
    """Sekhari et al.'s Algorithm 1: a Newton step from the stored Hessian, then Gaussian noise.

    ``w_bar = w_hat + (1/(n-m)) H_hat^{-1} sum_{z in U} grad f(w_hat, z)`` with ``H_hat`` from
    :func:`sekhari_downdate` and ``grad f(w, z) = grad loss(w; z) + lam w``; then
    ``w_tilde = w_bar + N(0, sigma^2 I)`` with ``sigma`` from :func:`sekhari_noise`. Only the
    deleted points and the stored statistics are used. (In this module's sum form the step is the
    same as :func:`newton_remove`'s batch step.)

    Args:
        state: from :func:`sekhari_fit`.
        X_removed, y_removed: the deleted points U.
        eps, delta: the unlearning guarantee.
        M: Hessian-Lipschitz constant (default: 1/4 for the logistic loss, 0 for the squared loss).
        L: Lipschitz constant (see :func:`sekhari_noise`).
        seed: seed or generator of the noise.
        calibration: ``"exact"`` or ``"classic"`` (see :func:`sekhari_noise`).

    Example:
        >>> from mu_lib.convex import fit_ridge, normalize_rows
        >>> rng = np.random.default_rng(0)
        >>> X = normalize_rows(rng.normal(size=(40, 3))); y = rng.normal(size=40)
        >>> st = sekhari_fit(X, y, lam=0.1, loss="squared")
        >>> res = sekhari_unlearn(st, X[:4], y[:4], eps=1.0, delta=1e-5)
        >>> res.sigma, bool(np.allclose(res.w, fit_ridge(X[4:], y[4:], lam=0.1), atol=1e-12))
        (0.0, True)
    """
    Xr, yr = _check_removed(state, X_removed, y_removed)
    m = Xr.shape[0]
    H = sekhari_downdate(state, Xr, yr)
    _, g, _ = _per_example(state.w, Xr, yr, state.loss)
    grad_sum = Xr.T @ g + m * state.lam * state.w
    w_bar = state.w + cho_solve(cho_factor(H), grad_sum) / (state.n - m)
    if M is None:
        M = 0.0 if state.loss == "squared" else GAMMA["logistic"]
    gamma, sigma = sekhari_noise(m=m, n=state.n, lam=state.lam, eps=eps, delta=delta, M=M, L=L,
                                 calibration=calibration)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    noise = sigma * rng.standard_normal(w_bar.shape[0]) if sigma > 0 else np.zeros_like(w_bar)
    return SekhariResult(w=w_bar + noise, w_bar=w_bar, gamma=gamma, sigma=sigma)
