"""Guo et al. (2020), certified removal: one-step Newton removal, its residual bounds, the budget
and the :class:`CertifiedRemover` session.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

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
    _locate,
    fit,
    gradient_residual,
)

__all__ = [
    "spectral_norm", "worst_case_bound", "NewtonRemoval", "newton_remove", "gaussian_c", "removal_budget",
    "RemovalStep", "CertifiedRemover"
]

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
            with X' the remaining rows and the exact spectral norm.
        worst_case_bound: :func:`worst_case_bound` for these n and m.
        gram: ``X'^T X'`` of the remaining rows when a ``gram`` was given (downdated), else ``None``.
    """

    w: np.ndarray
    removed: np.ndarray
    step: np.ndarray
    data_dependent_bound: float
    worst_case_bound: float
    gram: np.ndarray | None = None


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
                  hessian: np.ndarray | None = None, gram: np.ndarray | None = None) -> NewtonRemoval:
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

    Cost: forming H and the Gram matrix of X' for the spectral norm takes O(n d^2). Guo
    et al. count the Hessian as computed offline, at training time: pass ``hessian`` (the Hessian
    of L on all n rows at this ``w``) and ``gram`` (``X^T X`` of all n rows) and both are downdated
    by the removed rows (O(m d^2)); the spectral norm is then the square root of the largest
    eigenvalue of the d x d downdated Gram matrix (exact, not power iteration), and a removal
    costs O(d^3 + n d).

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
    b = _check_vector("b", b, d)
    hessian = _check_square("hessian", hessian, d)
    gram = _check_square("gram", gram, d)
    idx = _check_indices(remove, n)
    keep = np.ones(n, dtype=bool)
    keep[idx] = False
    Xr, m = X[idx], idx.size
    g, h = _grad_curv(w, X, y, loss, curvature_rows=None if hessian is None else idx)
    delta = m * lam * w + Xr.T @ g[idx]
    if hessian is None:
        H = X.T @ ((h * keep)[:, None] * X)
        H[np.diag_indices_from(H)] += lam * (n - m)
    else:  # h holds the curvatures of the removed rows only
        H = hessian - Xr.T @ (h[:, None] * Xr)
        H[np.diag_indices_from(H)] -= m * lam
    step = cho_solve(cho_factor(H), delta)
    gram_k = None if gram is None else gram - Xr.T @ Xr
    gamma = GAMMA[loss]
    bound = 0.0
    if gamma > 0:
        norm_k = spectral_norm(X[keep]) if gram_k is None else _spectral_norm_from_gram(gram_k)
        bound = gamma * norm_k * float(np.linalg.norm(step)) * float(np.linalg.norm((X @ step)[keep]))
    # w is the exact minimiser of L_{b_eff} with b_eff = b - grad L_b(w; D) (= b when w is exact).
    b_eff = -(X.T @ g + lam * n * w)
    worst = worst_case_bound(n=n, m=m, lam=lam, loss=loss, b_norm=float(np.linalg.norm(b_eff)))
    return NewtonRemoval(w=w + step, removed=idx, step=step, data_dependent_bound=bound, worst_case_bound=worst,
                         gram=gram_k)


def gaussian_c(delta: float) -> float:
    """Guo et al.'s constant ``c = sqrt(2 ln(1.5 / delta))`` of the Gaussian loss perturbation.

    Example:
        >>> round(gaussian_c(1e-4), 4)
        4.3854
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return math.sqrt(2.0 * math.log(1.5 / delta))


def removal_budget(*, sigma: float, eps: float, delta: float) -> float:
    """The gradient-residual budget ``sigma eps / c`` of (eps, delta)-certified removal (Guo et al.).

    With ``b ~ N(0, sigma^2 I)`` removals are (eps, delta)-certified as long as the accumulated
    residual bound stays at or below ``sigma eps / c``, ``c = sqrt(2 ln(1.5/delta))``.

    Example:
        >>> round(removal_budget(sigma=10, eps=1, delta=1e-4), 4)
        2.2803
    """
    return _check_positive("sigma", sigma) * _check_positive("eps", eps) / gaussian_c(delta)


@dataclass(frozen=True)
class RemovalStep:
    """One request handled by :class:`CertifiedRemover`.

    Attributes:
        ids: original indices of the removed points.
        bound: data-dependent bound of the Newton step (also reported when it triggered a retrain).
        worst_case: the worst-case bound of the step.
        beta: the accumulated bound after the request (restarted after a retrain).
        retrained: whether the request made the remover retrain from scratch.
        seconds: wall time of the request.
    """

    ids: np.ndarray
    bound: float
    worst_case: float
    beta: float
    retrained: bool
    seconds: float


class CertifiedRemover:
    """(eps, delta)-certified removal by loss perturbation and Newton steps (Guo et al., Alg. 2).

    Training minimises ``L_b(w; D)`` with ``b ~ N(0, sigma^2 I_d)`` drawn from a seeded NumPy
    generator. Each removal request takes one Newton step (:func:`newton_remove`) and adds its
    data-dependent bound to the accumulated bound ``beta``; ``beta`` starts at the optimisation
    residual ``||grad L_b(w; D)||`` of the fit (so an inexact fit is charged, as the reference
    recommends). When ``beta`` would exceed ``removal_budget(sigma, eps, delta)``, the Newton step
    is discarded and the model is retrained from scratch on the remaining data with a freshly
    drawn ``b``, and ``beta`` restarts from that fit's residual (below 1e-10, i.e. 0 in practice).

    As in Guo et al.'s code, every Newton step forms the Hessian at the current weights on the
    remaining data (O(n d^2)); the Gram matrix ``X^T X`` that the exact spectral norm needs is kept
    and downdated (O(m d^2)).

    Args:
        X, y: the training data (rows with ``||x_i|| <= 1``; labels in {-1, +1} for the logistic loss).
        lam: regularisation strength.
        sigma: standard deviation of every coordinate of b.
        eps, delta: the (eps, delta) of the certified removal.
        loss: ``"logistic"`` or ``"squared"``.
        seed: seed or NumPy generator of b.
        retrain: ``False`` keeps taking Newton steps past the budget (to study the bounds); the
            removals are then certified only while :attr:`certified` is true.

    Attributes:
        X, y: the remaining data.
        ids: original indices of the remaining points.
        w, b: current weights and perturbation.
        beta: the accumulated bound.
        budget: ``sigma eps / c``.
        history: one :class:`RemovalStep` per request.
        removals_before_retrain: for each retrain, the number of points removed by Newton steps
            since the previous fit.

    Example:
        >>> from mu_lib.convex import normalize_rows
        >>> rng = np.random.default_rng(0)
        >>> X = normalize_rows(rng.normal(size=(300, 4)))
        >>> y = np.where(X[:, 0] > 0, 1.0, -1.0)
        >>> rm = CertifiedRemover(X, y, lam=1e-2, sigma=1.0, eps=1.0, delta=1e-4, seed=0)
        >>> for i in range(5):
        ...     _ = rm.remove(i)
        >>> rm.n, bool(rm.beta <= rm.budget)
        (295, True)
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, *, lam: float, sigma: float, eps: float, delta: float,
                 loss: Loss = "logistic", seed: int | np.random.Generator = 0, retrain: bool = True) -> None:
        self.X, self.y = _check_data(X, y, loss)
        self.retrain = bool(retrain)
        self.lam = _check_positive("lam", lam)
        self.sigma = _check_positive("sigma", sigma)
        self.eps = _check_positive("eps", eps)
        self.delta = float(delta)
        self.loss = loss
        self.budget = removal_budget(sigma=sigma, eps=eps, delta=delta)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.ids = np.arange(self.X.shape[0])
        self.gram = self.X.T @ self.X  # downdated at every removal, as in Guo et al.'s code
        self.history: list[RemovalStep] = []
        self.removals_before_retrain: list[int] = []
        self._since_fit = 0
        self._train()

    @property
    def n(self) -> int:
        """Number of remaining points."""
        return int(self.X.shape[0])

    @property
    def retrains(self) -> int:
        """Number of retrains triggered by the budget (the initial fit excluded)."""
        return len(self.removals_before_retrain)

    def _train(self) -> None:
        self.b = self.sigma * self.rng.standard_normal(self.X.shape[1])
        self.w = fit(self.X, self.y, lam=self.lam, loss=self.loss, b=self.b)
        self.beta = gradient_residual(self.w, self.X, self.y, lam=self.lam, loss=self.loss, b=self.b)
        self._since_fit = 0

    def remove(self, ids: int | Sequence[int] | np.ndarray) -> RemovalStep:
        """Remove points given by their *original* indices (one request, one Newton step).

        Raises:
            ValueError: for unknown, already removed or duplicated indices, or for removing every
                remaining point.
        """
        start = time.perf_counter()
        pos = _locate(self.ids, ids)
        removed_ids = self.ids[pos]
        step = newton_remove(self.w, self.X, self.y, pos, lam=self.lam, loss=self.loss, b=self.b, gram=self.gram)
        keep = np.ones(self.n, dtype=bool)
        keep[step.removed] = False
        self.X, self.y, self.ids, self.gram = self.X[keep], self.y[keep], self.ids[keep], step.gram
        retrained = self.retrain and self.beta + step.data_dependent_bound > self.budget
        if retrained:
            self.removals_before_retrain.append(self._since_fit)
            self._train()
        else:
            self.w = step.w
            self.beta += step.data_dependent_bound
            self._since_fit += int(pos.size)
        record = RemovalStep(ids=removed_ids, bound=step.data_dependent_bound, worst_case=step.worst_case_bound,
                             beta=self.beta, retrained=bool(retrained), seconds=time.perf_counter() - start)
        self.history.append(record)
        return record

    @property
    def certified(self) -> bool:
        """Whether the accumulated bound is within the budget (always true when ``retrain``)."""
        return self.beta <= self.budget

    def residual(self) -> float:
        """The exact gradient residual ``||grad L_b(w; D_now)||`` (never above ``beta``)."""
        return gradient_residual(self.w, self.X, self.y, lam=self.lam, loss=self.loss, b=self.b)
