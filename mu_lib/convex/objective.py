"""The L2-regularised convex objective: losses, gradient, Hessian, exact fits and the input checks.

Everything is NumPy/SciPy in float64, in the sum form of Guo et al. (2020); see :mod:`mu_lib.convex`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit

from mu_lib._validate import index_array

__all__ = [
    "LOSSES", "GAMMA", "GRADIENT_BOUND", "LOGISTIC_THIRD_DERIVATIVE_MAX", "normalize_rows", "objective",
    "gradient", "hessian", "gradient_residual", "fit_logistic", "fit_ridge", "fit"
]

Loss = Literal["logistic", "squared"]
LOSSES: tuple[str, ...] = ("logistic", "squared")

#: max over z of |l'''(z)| for the logistic loss, i.e. max |s(1-s)(1-2s)| = 1/(6 sqrt 3) ~ 0.0962.
LOGISTIC_THIRD_DERIVATIVE_MAX = 1.0 / (6.0 * math.sqrt(3.0))
#: Lipschitz constant gamma of l'' used in the bounds. For the logistic loss Guo et al.'s code
#: uses 1/4, a valid, conservative value (the tight one is LOGISTIC_THIRD_DERIVATIVE_MAX); for
#: the squared loss l'' is constant, so gamma = 0 and the Newton step is exact.
GAMMA: dict[str, float] = {"logistic": 0.25, "squared": 0.0}
#: Bound C on ||grad l(w; x, y)|| when ||x|| <= 1: 1 for the logistic loss (sigma(-z)||x|| <= 1);
#: the squared loss has no such bound (but gamma = 0 makes its bounds 0).
GRADIENT_BOUND: dict[str, float] = {"logistic": 1.0, "squared": math.inf}

_ROW_NORM_TOL = 1e-9


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

def _check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid losses are {list(LOSSES)}")
    return loss


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_data(X: np.ndarray, y: np.ndarray, loss: str = "logistic") -> tuple[np.ndarray, np.ndarray]:
    _check_loss(loss)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty 2-D array [n, d], got shape {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X {X.shape}, got {y.shape}")
    sq_norms = np.einsum("ij,ij->i", X, X)  # three times faster than np.linalg.norm(X, axis=1)
    # one pass for both checks: a NaN or inf anywhere makes its row's squared norm NaN or inf
    if not np.isfinite(sq_norms).all() and not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"X contains NaN or inf (first at row {bad[0]}, column {bad[1]}: {X[tuple(bad)]})")
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"y contains NaN or inf (first at index {i}: {y[i]})")
    if not (sq_norms <= (1 + _ROW_NORM_TOL) ** 2).all():
        i = int(np.argmax(np.where(np.isnan(sq_norms), np.inf, sq_norms)))
        raise ValueError(f"rows of X must have L2 norm <= 1 (use normalize_rows); row {i} has norm "
                         f"{math.sqrt(sq_norms[i]):.6g}")
    if loss == "logistic" and not (np.abs(y) == 1.0).all():
        bad = np.unique(y[~np.isin(y, (-1.0, 1.0))])[:5]
        raise ValueError(f"labels must be -1 or +1 for the logistic loss, got values {bad.tolist()}")
    return X, y


def _check_vector(name: str, v: np.ndarray | None, d: int, *, allow_none: bool = True) -> np.ndarray:
    if v is None:
        if allow_none:
            return np.zeros(d)
        raise ValueError(f"{name} is required")
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (d,):
        raise ValueError(f"{name} must have shape ({d},), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf: {v[~np.isfinite(v)][:5].tolist()}")
    return v


def _check_indices(remove: int | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    # one valid index, the common case of a removal: skip the general checks (and their cost)
    if isinstance(remove, (int, np.integer)) and not isinstance(remove, (bool, np.bool_)) and 0 <= remove < n > 1:
        return np.array([int(remove)], dtype=np.int64)
    idx = index_array(remove, name="indices to remove", n=n, nonempty=True)
    if idx.size >= n:
        raise ValueError(f"cannot remove all {n} points (asked to remove {idx.size}); retrain on nothing is undefined")
    return idx


def _locate(ids: np.ndarray, requested: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Positions of the requested original indices among the sorted remaining ``ids``."""
    req = index_array(requested, name="ids to remove", nonempty=True)
    pos = np.searchsorted(ids, req)
    found = (pos < ids.size) & (ids[np.minimum(pos, ids.size - 1)] == req)
    if not found.all():
        raise ValueError(f"ids not present (unknown or already removed): {req[~found][:5].tolist()}")
    return _check_indices(pos, ids.size)


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Divide every row by its L2 norm (rows of zeros stay zero), as Guo et al.'s code does.

    Example:
        >>> np.linalg.norm(normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]])), axis=1)
        array([1., 0.])
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


# ----------------------------------------------------------------------------------------------
# losses and the sum-form objective
# ----------------------------------------------------------------------------------------------

def _per_example(w: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example loss values, gradient coefficients g (grad = X^T g) and curvatures h (H = X^T diag(h) X)."""
    if loss == "logistic":
        z = y * (X @ w)
        return np.logaddexp(0.0, -z), -y * expit(-z), expit(z) * expit(-z)
    r = X @ w - y
    return 0.5 * r * r, r, np.ones_like(r)


def _grad_curv(w: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str, *, curvature_rows: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient coefficients g of every row, and curvatures h of ``curvature_rows`` (all rows if None).

    The same quantities as :func:`_per_example` without the loss values, with one ``expit`` call
    for g: the cheap path of a removal with a cached Hessian, which needs h of the removed rows only.
    """
    if loss == "logistic":
        z = y * (X @ w)
        s = expit(-z)  # sigma(-z)
        zc = z if curvature_rows is None else z[curvature_rows]
        sc = s if curvature_rows is None else s[curvature_rows]
        return -y * s, sc * expit(zc)
    r = X @ w - y
    return r, np.ones(r.size if curvature_rows is None else len(curvature_rows))


def objective(w: np.ndarray, X: np.ndarray, y: np.ndarray, *, lam: float, loss: Loss = "logistic",
              b: np.ndarray | None = None) -> float:
    """The sum-form objective ``L_b(w; D) = sum_i loss_i + (lam n / 2)||w||^2 + b^T w``.

    Example:
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([1.0, -1.0])
        >>> round(objective(np.zeros(2), X, y, lam=0.1), 6)  # 2 log 2
        1.386294
    """
    X, y = _check_data(X, y, loss)
    lam = _check_positive("lam", lam)
    w = _check_vector("w", w, X.shape[1], allow_none=False)
    b = _check_vector("b", b, X.shape[1])
    values, _, _ = _per_example(w, X, y, loss)
    return float(values.sum() + 0.5 * lam * X.shape[0] * (w @ w) + b @ w)


def _grad(w: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float, loss: str, b: np.ndarray) -> np.ndarray:
    _, g, _ = _per_example(w, X, y, loss)
    return X.T @ g + lam * X.shape[0] * w + b


def _hess(w: np.ndarray, X: np.ndarray, y: np.ndarray, lam: float, loss: str) -> np.ndarray:
    _, _, h = _per_example(w, X, y, loss)
    H = X.T @ (h[:, None] * X)
    H[np.diag_indices_from(H)] += lam * X.shape[0]
    return H


def gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray, *, lam: float, loss: Loss = "logistic",
             b: np.ndarray | None = None) -> np.ndarray:
    """Gradient of the sum-form objective: ``sum_i grad loss_i + lam n w + b``.

    Example:
        >>> X = np.array([[1.0, 0.0]]); y = np.array([1.0])
        >>> gradient(np.zeros(2), X, y, lam=1.0)
        array([-0.5,  0. ])
    """
    X, y = _check_data(X, y, loss)
    lam = _check_positive("lam", lam)
    w = _check_vector("w", w, X.shape[1], allow_none=False)
    return _grad(w, X, y, lam, loss, _check_vector("b", b, X.shape[1]))


def hessian(w: np.ndarray, X: np.ndarray, y: np.ndarray, *, lam: float, loss: Loss = "logistic") -> np.ndarray:
    """Hessian of the sum-form objective: ``X^T diag(loss'') X + lam n I`` (b does not enter).

    Example:
        >>> X = np.array([[1.0, 0.0]]); y = np.array([1.0])
        >>> hessian(np.zeros(2), X, y, lam=1.0)
        array([[1.25, 0.  ],
               [0.  , 1.  ]])
    """
    X, y = _check_data(X, y, loss)
    lam = _check_positive("lam", lam)
    w = _check_vector("w", w, X.shape[1], allow_none=False)
    return _hess(w, X, y, lam, loss)


def gradient_residual(w: np.ndarray, X: np.ndarray, y: np.ndarray, *, lam: float, loss: Loss = "logistic",
                      b: np.ndarray | None = None) -> float:
    """The exact gradient residual ``||grad L_b(w; D)||_2`` (0 at the exact minimiser).

    After a removal, pass the remaining data D' and the perturbation b the model was trained with:
    this is the quantity that the data-dependent and worst-case bounds of :func:`newton_remove`
    bound from above.

    Example:
        >>> X = np.array([[0.6, 0.8], [1.0, 0.0]]); y = np.array([1.0, -1.0])
        >>> gradient_residual(fit_ridge(X, y, lam=0.5), X, y, lam=0.5, loss="squared") < 1e-14
        True
    """
    return float(np.linalg.norm(gradient(w, X, y, lam=lam, loss=loss, b=b)))


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------

def fit_logistic(X: np.ndarray, y: np.ndarray, *, lam: float, b: np.ndarray | None = None,
                 tol: float = 1e-10, max_iter: int = 100, w0: np.ndarray | None = None) -> np.ndarray:
    """Minimise the sum-form logistic objective with Newton's method (exact Hessian, Cholesky solves).

    A backtracking (Armijo) line search keeps the early, damped steps safe; near the optimum the
    full Newton step converges quadratically. The iteration stops when ``||grad L_b|| < tol``.
    Guo et al.'s code uses L-BFGS in float32 instead; Newton in float64 reaches a residual many
    orders of magnitude smaller, which matters because the residual is charged to the budget.

    Args:
        X: ``[n, d]`` rows with ``||x_i|| <= 1``.
        y: ``[n]`` labels in {-1, +1}.
        lam: regularisation strength (the sum form uses ``lam * n / 2``).
        b: the perturbation vector ``[d]`` (default 0).
        tol: target gradient norm.
        max_iter: most Newton iterations.
        w0: starting point (default 0, i.e. training from scratch).

    Returns:
        The minimiser ``w`` (``[d]``).

    Raises:
        RuntimeError: if the gradient norm does not fall below ``tol`` within ``max_iter``
            iterations (e.g. ``tol`` below the rounding floor of a very large problem).

    Example:
        >>> X = normalize_rows(np.random.default_rng(1).normal(size=(50, 3)))
        >>> y = np.sign(X[:, 0] + 1e-3)
        >>> w = fit_logistic(X, y, lam=0.1)
        >>> bool(np.linalg.norm(gradient(w, X, y, lam=0.1)) < 1e-10)
        True
    """
    loss = "logistic"
    X, y = _check_data(X, y, loss)
    lam = _check_positive("lam", lam)
    tol = _check_positive("tol", tol)
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    d = X.shape[1]
    b = _check_vector("b", b, d)
    w = _check_vector("w0", w0, d).copy()

    def f(v: np.ndarray) -> float:
        values, _, _ = _per_example(v, X, y, loss)
        return float(values.sum() + 0.5 * lam * X.shape[0] * (v @ v) + b @ v)

    fw = f(w)
    for _ in range(max_iter):
        g = _grad(w, X, y, lam, loss, b)
        if np.linalg.norm(g) < tol:
            return w
        p = -cho_solve(cho_factor(_hess(w, X, y, lam, loss)), g)
        slope = float(g @ p)
        t = 1.0
        # The slack 1e-12 |f| accepts full steps whose decrease is below rounding near the optimum.
        while True:
            f_new = f(w + t * p)
            if f_new <= fw + 1e-4 * t * slope + 1e-12 * abs(fw) or t < 1e-12:
                break
            t *= 0.5
        w, fw = w + t * p, f_new
    g_norm = float(np.linalg.norm(_grad(w, X, y, lam, loss, b)))
    if g_norm < tol:
        return w
    raise RuntimeError(f"Newton's method stopped at gradient norm {g_norm:.3g} >= tol={tol:g} after "
                       f"{max_iter} iterations; raise max_iter or tol")


def fit_ridge(X: np.ndarray, y: np.ndarray, *, lam: float, b: np.ndarray | None = None) -> np.ndarray:
    """Minimise the sum-form ridge objective ``sum_i (w^T x_i - y_i)^2 / 2 + (lam n/2)||w||^2 + b^T w``.

    The closed form ``w = (X^T X + lam n I)^{-1} (X^T y - b)`` is solved with a Cholesky
    factorisation. ``y`` may be any real targets (for ``y in {-1, +1}`` the loss equals
    ``(1 - y w^T x)^2 / 2``).

    Example:
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([1.0, -1.0])
        >>> fit_ridge(X, y, lam=0.5)  # (1 + 0.5 * 2) w = X^T y
        array([ 0.5, -0.5])
    """
    X, y = _check_data(X, y, "squared")
    lam = _check_positive("lam", lam)
    b = _check_vector("b", b, X.shape[1])
    H = X.T @ X
    H[np.diag_indices_from(H)] += lam * X.shape[0]
    return cho_solve(cho_factor(H), X.T @ y - b)


def fit(X: np.ndarray, y: np.ndarray, *, lam: float, loss: Loss = "logistic", b: np.ndarray | None = None
        ) -> np.ndarray:
    """:func:`fit_logistic` or :func:`fit_ridge`, chosen by ``loss``."""
    _check_loss(loss)
    return fit_logistic(X, y, lam=lam, b=b) if loss == "logistic" else fit_ridge(X, y, lam=lam, b=b)
