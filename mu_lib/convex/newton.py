"""Guo et al. (2020), certified removal: one-step Newton removal, its residual bounds and the
budget (the session that uses them is :class:`mu_lib.convex.remover.CertifiedRemover`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from mu_lib.convex import _solve
from mu_lib.convex.calibration import check_calibration, gaussian_ratio
from mu_lib.convex.objective import (
    GAMMA,
    GRADIENT_BOUND,
    Loss,
    _check_data,
    _check_indices,
    _check_loss,
    _check_positive,
    _check_vector,
    _grad_curv,
)

__all__ = ["spectral_norm", "worst_case_bound", "NewtonRemoval", "newton_remove", "gaussian_c", "removal_budget"]

# ----------------------------------------------------------------------------------------------
# Guo et al.: one-step Newton removal and its bounds
# ----------------------------------------------------------------------------------------------

def spectral_norm(X: np.ndarray) -> float:
    """The exact spectral norm ``||X||_2`` (largest singular value), as ``numpy.linalg.norm(X, 2)``.

    For a tall X it is computed as the square root of the largest eigenvalue of the d x d Gram
    matrix ``X^T X`` (a direct, exact method: it agrees with ``numpy.linalg.norm(X, 2)`` to
    rounding, about 1e-15 relative, and costs a fraction of the SVD); otherwise by the SVD.
    Guo et al.'s code estimates the norm with 20 power iterations, which can only
    *under*-estimate it and so would make the certified bound too small.

    Example:
        >>> spectral_norm(np.array([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]]))
        4.0
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if X.shape[0] > X.shape[1]:
        return _spectral_norm_from_gram(X.T @ X)
    return float(np.linalg.norm(X, 2))


def _spectral_norm_from_gram(G: np.ndarray) -> float:
    return math.sqrt(max(float(np.linalg.eigvalsh(G)[-1]), 0.0))


def worst_case_bound(*, n: int, m: int = 1, lam: float, loss: Loss = "logistic", b_norm: float = 0.0) -> float:
    """Worst-case bound on the gradient residual after removing m of n points (Guo et al., Thm 1).

    ``gamma m^2 (2C + ||b||/n)^2 / (lam^2 (n - m))``, which for ``b = 0`` is the published
    ``4 gamma m^2 C^2 / (lam^2 (n - m))`` (gamma = 1/4, C = 1 for the logistic loss). The
    ``||b||/n`` term is the price of the perturbation: at the minimiser of ``L_b`` one only has
    ``||lam w*|| <= C + ||b||/n`` instead of ``<= C``. For the squared loss it is 0 (gamma = 0).

    Example:
        >>> worst_case_bound(n=1001, m=1, lam=1e-3)  # 4 * 0.25 / (1e-6 * 1000)
        1000.0
    """
    _check_loss(loss)
    lam = _check_positive("lam", lam)
    if not (isinstance(n, (int, np.integer)) and isinstance(m, (int, np.integer)) and 0 < m < n):
        raise ValueError(f"need integers 0 < m < n, got m={m!r}, n={n!r}")
    if not math.isfinite(b_norm) or b_norm < 0:
        raise ValueError(f"b_norm must be a non-negative number, got {b_norm!r}")
    gamma = GAMMA[loss]
    if gamma == 0.0:
        return 0.0
    return gamma * m**2 * (2 * GRADIENT_BOUND[loss] + b_norm / n) ** 2 / (lam**2 * (n - m))


@dataclass(frozen=True)
class NewtonRemoval:
    """The result of :func:`newton_remove`.

    Attributes:
        w: the weights after removal, ``w* + H^{-1} Delta``.
        removed: the removed indices (into the rows given).
        step: the Newton step ``H^{-1} Delta``.
        data_dependent_bound: ``gamma ||X'||_2 ||H^{-1} Delta|| ||X' H^{-1} Delta||`` (Corollary 1),
            with X' the remaining rows and their exact spectral norm, or the upper bound of it
            that was passed as ``spectral_norm``.
        worst_case_bound: :func:`worst_case_bound` for these n and m.
        gram: ``X'^T X'`` of the remaining rows when a ``gram`` was given (downdated), else ``None``.
        solve_residual: ``||H' step - Delta||``, the residual of the linear solve (rounding for a
            direct solve; at most 1e-12 ||Delta|| after refinement with a cached factorisation).
            The gradient residual after the step is at most ``bound``.
        spectral_norm: the value of ``||X'||_2`` (or its upper bound) used in the bound.
    """

    w: np.ndarray
    removed: np.ndarray
    step: np.ndarray
    data_dependent_bound: float
    worst_case_bound: float
    gram: np.ndarray | None = None
    solve_residual: float = 0.0
    spectral_norm: float = math.nan

    @property
    def bound(self) -> float:
        """What the removal is charged: ``data_dependent_bound + solve_residual``."""
        return self.data_dependent_bound + self.solve_residual


def _check_square(name: str, A: np.ndarray | None, d: int) -> np.ndarray | None:
    if A is None:
        return None
    A = np.asarray(A, dtype=np.float64)
    if A.shape != (d, d):
        raise ValueError(f"{name} must have shape ({d}, {d}), got {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or inf")
    return A


def newton_remove(w: np.ndarray, X: np.ndarray, y: np.ndarray, remove: int | Sequence[int] | np.ndarray, *,
                  lam: float, loss: Loss = "logistic", b: np.ndarray | None = None,
                  hessian: np.ndarray | None = None, gram: np.ndarray | None = None,
                  factor: tuple[np.ndarray, bool] | None = None, spectral_norm: float | None = None
                  ) -> NewtonRemoval:
    """Remove one point or a batch with one Newton step (Guo et al., Sec. 3), with residual bounds.

    With ``w`` the minimiser of ``L_b(.; D)`` and D' = D minus the m removed points,

        Delta = m lam w + sum_{j removed} grad loss_j(w)         (= -grad L_b(w; D'))
        H     = grad^2 L(w; D') = X'^T diag(loss'') X' + lam (n - m) I
        w_new = w + H^{-1} Delta

    b cancels from the update. The worst-case bound depends on the perturbation through
    ``||b_eff||``, where ``b_eff = b - grad L_b(w; D) = -(sum_i grad loss_i(w) + lam n w)`` is the
    perturbation of which ``w`` is the exact minimiser: ``b`` itself for an exact fit, and in a
    sequence of removals ``b`` minus the residuals left by the earlier steps. The reference for
    the removal is retraining on D' with the same b and the regulariser ``lam (n - m) / 2``, e.g.
    ``fit_logistic(X[keep], y[keep], lam=lam, b=b)``. For the squared loss the step is exact.

    Cost. Without cached quantities, forming H and the spectral norm of X' take O(n d^2). Guo et
    al. count the Hessian as computed offline, at training time; with what was computed then, a
    removal costs O(m d^2 + d^2 + n d):

    * ``hessian`` (the Hessian of L on all n rows at this ``w``) is downdated by the removed rows;
    * ``factor`` (``scipy.linalg.cho_factor(hessian)``) solves the downdated system without a new
      O(d^3) factorisation (Woodbury for the removed rows, iterative refinement for the
      regulariser's shift); the solve's residual is reported and charged (``solve_residual``);
    * ``spectral_norm`` (``spectral_norm(X)`` of the training rows) replaces ``||X'||_2`` in the
      bound: removing rows never increases the spectral norm, so it stays a valid upper bound
      after any removals. Without it, ``gram`` (``X.T @ X``) is downdated and its largest
      eigenvalue computed (O(d^3)), or the norm of X' is computed from scratch.

    Args:
        w: the current weights (the minimiser of ``L_b`` on the rows given).
        X: ``[n, d]`` rows with ``||x_i|| <= 1`` (the current training data).
        y: ``[n]`` labels.
        remove: an index or a 1-D sequence of distinct indices into the rows.
        lam: regularisation strength.
        loss: ``"logistic"`` or ``"squared"``.
        b: the perturbation the model was trained with (default 0). Only validated: neither the
            step nor the bounds need it (the worst-case bound uses ``b_eff``, computed from ``w``).
        hessian: optional ``hessian(w, X, y, lam=lam, loss=loss)``, computed beforehand.
        gram: optional ``X.T @ X``, computed beforehand.
        factor: optional ``cho_factor(hessian)`` (needs ``hessian``).
        spectral_norm: optional upper bound on ``||X||_2`` (e.g. of the training rows).

    Returns:
        A :class:`NewtonRemoval`.

    Example:
        >>> from mu_lib.convex import fit_ridge, normalize_rows
        >>> rng = np.random.default_rng(0)
        >>> X = normalize_rows(rng.normal(size=(30, 3))); y = rng.normal(size=30)
        >>> w = fit_ridge(X, y, lam=0.1)
        >>> r = newton_remove(w, X, y, [0, 5], lam=0.1, loss="squared")
        >>> retrained = fit_ridge(np.delete(X, [0, 5], 0), np.delete(y, [0, 5]), lam=0.1)
        >>> bool(np.allclose(r.w, retrained, atol=1e-12)), r.data_dependent_bound
        (True, 0.0)
    """
    X, y = _check_data(X, y, loss)
    lam = _check_positive("lam", lam)
    n, d = X.shape
    w = _check_vector("w", w, d, allow_none=False)
    _check_vector("b", b, d)
    hessian = _check_square("hessian", hessian, d)
    gram = _check_square("gram", gram, d)
    if factor is not None and hessian is None:
        raise ValueError("factor is the Cholesky factorisation of `hessian`: pass both")
    if spectral_norm is not None:
        spectral_norm = _check_positive("spectral_norm", spectral_norm)
    idx = _check_indices(remove, n)
    return _newton_step(w, X, y, idx, lam=lam, loss=loss, hessian=hessian, gram=gram, factor=factor,
                        norm=spectral_norm)


def _newton_step(w: np.ndarray, X: np.ndarray, y: np.ndarray, idx: np.ndarray, *, lam: float, loss: str,
                 hessian: np.ndarray | None = None, gram: np.ndarray | None = None,
                 factor: tuple[np.ndarray, bool] | None = None, norm: float | None = None,
                 solver: tuple | None = None) -> NewtonRemoval:
    """:func:`newton_remove` on validated inputs. ``solver`` (used by :class:`CertifiedRemover`)
    is ``(apply_inverse, max_iter, on_factor)``: refine with that approximate inverse and the exact
    Hessian products at ``w`` (O(n d) each); if that stalls, factorise H and pass the
    factorisation to ``on_factor``."""
    n = X.shape[0]
    keep = np.ones(n, dtype=bool)
    keep[idx] = False
    Xr, m = X[idx], idx.size
    need_all_curvatures = hessian is None
    g, h = _grad_curv(w, X, y, loss, curvature_rows=None if need_all_curvatures else idx)
    delta = m * lam * w + Xr.T @ g[idx]
    shift = lam * (n - m)
    step = None
    if hessian is None:
        hk = h * keep

        def matvec(v: np.ndarray) -> np.ndarray:
            return X.T @ (hk * (X @ v)) + shift * v

        if solver is not None:
            step, residual, ok = _solve.refine(solver[0], matvec, delta, max_iter=solver[1])
            step = step if ok else None
        if step is None:
            H = X.T @ (hk[:, None] * X)
            H[np.diag_indices_from(H)] += shift
            fac = cho_factor(H)
            step = cho_solve(fac, delta)
            residual = float(np.linalg.norm(matvec(step) - delta))
            if solver is not None:
                solver[2](fac)
    else:  # h holds the curvatures of the removed rows only
        U = Xr * np.sqrt(h)[:, None]

        def matvec(v: np.ndarray) -> np.ndarray:
            return hessian @ v - U.T @ (U @ v) - (m * lam) * v

        if factor is not None:
            step, residual, ok = _solve.refine(_solve.woodbury_inverse(factor, U), matvec, delta, max_iter=50)
            step = step if ok else None
        if step is None:
            H = hessian - U.T @ U
            H[np.diag_indices_from(H)] -= m * lam
            step = cho_solve(cho_factor(H), delta)
            residual = float(np.linalg.norm(matvec(step) - delta))
    gram_k = None if gram is None else gram - Xr.T @ Xr
    gamma = GAMMA[loss]
    bound, norm_k = 0.0, math.nan
    if gamma > 0:
        if norm is not None:
            norm_k = norm
        else:
            norm_k = spectral_norm(X[keep]) if gram_k is None else _spectral_norm_from_gram(gram_k)
        bound = gamma * norm_k * float(np.linalg.norm(step)) * float(np.linalg.norm((X @ step)[keep]))
    # w is the exact minimiser of L_{b_eff} with b_eff = b - grad L_b(w; D) (= b when w is exact).
    b_eff = -(X.T @ g + lam * n * w)
    worst = worst_case_bound(n=n, m=m, lam=lam, loss=loss, b_norm=float(np.linalg.norm(b_eff)))
    return NewtonRemoval(w=w + step, removed=idx, step=step, data_dependent_bound=bound, worst_case_bound=worst,
                         gram=gram_k, solve_residual=float(residual), spectral_norm=float(norm_k))


def gaussian_c(delta: float) -> float:
    """Guo et al.'s constant ``c = sqrt(2 ln(1.5 / delta))`` of the Gaussian loss perturbation.

    It enters the classic budget ``sigma eps / c`` (``removal_budget(..., calibration="classic")``).

    Example:
        >>> round(gaussian_c(1e-4), 4)
        4.3854
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return math.sqrt(2.0 * math.log(1.5 / delta))


def removal_budget(*, sigma: float, eps: float, delta: float, calibration: str = "exact") -> float:
    """The gradient-residual budget of (eps, delta)-certified removal with ``b ~ N(0, sigma^2 I)``.

    Guo et al.'s argument: after removals whose residual bounds sum to beta, the published weights
    are the exact minimiser of the objective with the perturbation ``b - u``, ``||u|| <= beta``, so
    they are as indistinguishable from a retrained model as b is from a shift of b by at most
    beta: a Gaussian mechanism with sensitivity beta.

    * ``"exact"`` (default): the largest beta for which that mechanism is (eps, delta)-
      indistinguishable, ``sigma r*(eps, delta)`` with ``r*`` from
      :func:`mu_lib.convex.calibration.gaussian_ratio` (Balle and Wang 2018), rounded down; valid
      for every eps > 0, and 1.3 to 1.8 times the classic budget for eps <= 1.
    * ``"classic"``: Guo et al.'s ``sigma eps / c``, ``c = sqrt(2 ln(1.5/delta))``. Its true delta
      exceeds the requested one for large eps (at eps = 10, delta = 1e-4 it is 2.2e-4).

    Example:
        >>> round(removal_budget(sigma=10, eps=1, delta=1e-4, calibration="classic"), 4)
        2.2803
        >>> round(removal_budget(sigma=10, eps=1, delta=1e-4), 4)
        3.139
    """
    sigma, eps = _check_positive("sigma", sigma), _check_positive("eps", eps)
    if check_calibration(calibration) == "classic":
        return sigma * eps / gaussian_c(delta)
    return sigma * gaussian_ratio(eps=eps, delta=delta)
