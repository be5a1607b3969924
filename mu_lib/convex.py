"""Certified removal for L2-regularised convex models: Guo et al., Sekhari et al., Descent-to-Delete.

Everything here is NumPy/SciPy in float64. Rows are scaled so that ``||x_i|| <= 1`` and labels are
``y_i in {-1, +1}`` (real targets are accepted for the squared loss). The objective is the
**sum form** of Guo et al. (2020):

    L_b(w; D) = sum_i loss(x_i, y_i; w) + (lam * n / 2) ||w||^2 + b^T w

with the logistic loss ``log(1 + exp(-y w^T x))`` or the squared loss ``(w^T x - y)^2 / 2``
(ridge). The regulariser follows the data size: after removing m points it is
``lam * (n - m) / 2``. Dividing by n gives the mean form ``mean_i loss + (lam/2)||w||^2 + b^T w / n``
of Guo's reference code and of Sekhari et al. (same minimiser, same ``lam``).

What is in it:

* training: :func:`fit_logistic` (Newton's method with the exact Hessian), :func:`fit_ridge`
  (closed form); :func:`objective`, :func:`gradient`, :func:`hessian`, :func:`gradient_residual`;
* Guo et al.: :func:`newton_remove` (one Newton step that removes one point or a batch, with the
  data-dependent and worst-case bounds on the gradient residual), :func:`removal_budget`, and the
  session :class:`CertifiedRemover` (loss perturbation, accumulated bound, retraining);
* Sekhari et al., Algorithm 1: :func:`sekhari_fit`, :func:`sekhari_downdate`,
  :func:`sekhari_noise`, :func:`sekhari_unlearn`;
* Neel et al., Descent-to-Delete: :func:`d2d_sigma`, :func:`projected_gradient_descent`,
  :func:`d2d_initial_steps` and the session :class:`DescentToDelete`;
* data: :func:`binary_task` (two classes of a :mod:`mu_lib.data` dataset, rows L2-normalised).

The book chapter ``book/certified-removal.ipynb`` teaches all of this.

Example:
    >>> rng = np.random.default_rng(0)
    >>> X = normalize_rows(rng.normal(size=(200, 5)))
    >>> y = np.where(X @ np.ones(5) + 0.3 * rng.normal(size=200) > 0, 1.0, -1.0)
    >>> w = fit_logistic(X, y, lam=1e-2)
    >>> gradient_residual(w, X, y, lam=1e-2) < 1e-10
    True
    >>> step = newton_remove(w, X, y, [3, 7], lam=1e-2)
    >>> r = gradient_residual(step.w, np.delete(X, [3, 7], 0), np.delete(y, [3, 7]), lam=1e-2)
    >>> bool(r <= step.data_dependent_bound <= step.worst_case_bound)
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit

__all__ = [
    "LOSSES",
    "GAMMA",
    "GRADIENT_BOUND",
    "LOGISTIC_THIRD_DERIVATIVE_MAX",
    "normalize_rows",
    "objective",
    "gradient",
    "hessian",
    "gradient_residual",
    "fit_logistic",
    "fit_ridge",
    "fit",
    "spectral_norm",
    "worst_case_bound",
    "NewtonRemoval",
    "newton_remove",
    "gaussian_c",
    "removal_budget",
    "RemovalStep",
    "CertifiedRemover",
    "SekhariState",
    "SekhariResult",
    "sekhari_fit",
    "sekhari_downdate",
    "sekhari_noise",
    "sekhari_unlearn",
    "d2d_contraction",
    "d2d_sigma",
    "d2d_initial_steps",
    "projected_gradient_descent",
    "DescentToDelete",
    "BinaryTask",
    "binary_task",
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
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"X contains NaN or inf (first at row {bad[0]}, column {bad[1]}: {X[tuple(bad)]})")
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"y contains NaN or inf (first at index {i}: {y[i]})")
    sq_norms = np.einsum("ij,ij->i", X, X)  # three times faster than np.linalg.norm(X, axis=1)
    if (sq_norms > (1 + _ROW_NORM_TOL) ** 2).any():
        i = int(np.argmax(sq_norms))
        raise ValueError(f"rows of X must have L2 norm <= 1 (use normalize_rows); row {i} has norm "
                         f"{math.sqrt(sq_norms[i]):.6g}")
    if loss == "logistic" and not np.isin(y, (-1.0, 1.0)).all():
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
    idx = np.atleast_1d(np.asarray(remove))
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"indices to remove must be a non-empty int or 1-D sequence, got {remove!r}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices to remove must be integers, got dtype {idx.dtype} ({idx[:5].tolist()})")
    idx = idx.astype(np.int64)
    out = idx[(idx < 0) | (idx >= n)]
    if out.size:
        raise ValueError(f"indices out of range [0, {n}): {out[:5].tolist()}")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"duplicated indices to remove: {uniq[counts > 1][:5].tolist()}")
    if idx.size >= n:
        raise ValueError(f"cannot remove all {n} points (asked to remove {idx.size}); retrain on nothing is undefined")
    return idx


def _locate(ids: np.ndarray, requested: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Positions of the requested original indices among the sorted remaining ``ids``."""
    req = np.atleast_1d(np.asarray(requested))
    if req.ndim != 1 or req.size == 0:
        raise ValueError(f"ids to remove must be a non-empty int or 1-D sequence, got {requested!r}")
    if not np.issubdtype(req.dtype, np.integer):
        raise ValueError(f"ids to remove must be integers, got dtype {req.dtype} ({req[:5].tolist()})")
    uniq, counts = np.unique(req, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"duplicated ids to remove: {uniq[counts > 1][:5].tolist()}")
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


def sekhari_noise(*, m: int, n: int, lam: float, eps: float, delta: float, M: float = 0.25, L: float = 2.0
                  ) -> tuple[float, float]:
    """``(gamma, sigma)`` of Sekhari et al.'s Algorithm 1 for m deletions out of n.

    ``gamma = 2 M m^2 L^2 / (lam^3 n^2)`` bounds ``||w_bar - w_retrain||`` (the exponent of lam is
    3: ``||w_hat - w_retrain|| <= 2 m L / (lam n)`` for ``m <= n/2``, and the Newton error is at
    most ``M / (2 lam)`` times its square); ``sigma = (gamma / eps) sqrt(2 ln(1.25 / delta))`` is the
    classic Gaussian mechanism (Dwork and Roth, stated for eps < 1).

    Args:
        m: number of deleted points (at most n/2).
        n: training set size.
        lam: strong convexity of every f (the regularisation strength).
        eps, delta: the unlearning guarantee.
        M: Hessian-Lipschitz constant of f. For the logistic loss with ``||x|| <= 1`` it is
            ``max|loss'''| = 1/(6 sqrt 3)``; the default 1/4 is the conservative value that
            :data:`GAMMA` uses for Guo et al. Use 0 for the squared loss.
        L: Lipschitz constant of f where the minimisers live: for the logistic loss
            ``1 + lam ||w|| <= 1 + lam (1/lam) = 2``.

    Example:
        >>> g, s = sekhari_noise(m=1, n=100, lam=0.1, eps=1.0, delta=1e-5, M=0.25, L=2.0)
        >>> round(g, 6), round(s / g, 4)  # 2 * 0.25 * 4 / (1e-3 * 1e4), sqrt(2 ln 125000)
        (0.2, 4.8448)
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
    return gamma, gamma / eps * math.sqrt(2.0 * math.log(1.25 / delta))


def sekhari_unlearn(state: SekhariState, X_removed: np.ndarray, y_removed: np.ndarray, *, eps: float,
                    delta: float, M: float | None = None, L: float = 2.0,
                    seed: int | np.random.Generator = 0) -> SekhariResult:
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

    Example:
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
    gamma, sigma = sekhari_noise(m=m, n=state.n, lam=state.lam, eps=eps, delta=delta, M=M, L=L)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    noise = sigma * rng.standard_normal(w_bar.shape[0]) if sigma > 0 else np.zeros_like(w_bar)
    return SekhariResult(w=w_bar + noise, w_bar=w_bar, gamma=gamma, sigma=sigma)


# ----------------------------------------------------------------------------------------------
# Neel et al., Descent-to-Delete (mean-form objective, projected full-batch gradient descent)
# ----------------------------------------------------------------------------------------------

def d2d_contraction(*, strong_convexity: float, smoothness: float) -> float:
    """``gamma = (M - m) / (M + m)``: the contraction of gradient descent with step ``2 / (M + m)``.

    Example:
        >>> d2d_contraction(strong_convexity=1.0, smoothness=3.0)
        0.5
    """
    m = _check_positive("strong_convexity", strong_convexity)
    M = _check_positive("smoothness", smoothness)
    if M < m:
        raise ValueError(f"smoothness {M} must be >= strong convexity {m}")
    return (M - m) / (M + m)


def d2d_sigma(*, T: int, n: int, eps: float, delta: float, lipschitz: float, strong_convexity: float,
              smoothness: float) -> float:
    """Noise of Descent-to-Delete for T gradient steps per update (Neel et al., as in their code).

    ``sigma = 4 sqrt(2) L gamma^T / (m n (1 - gamma^T) (sqrt(ln(1/delta) + eps) - sqrt(ln(1/delta))))``
    with ``gamma = (M - m)/(M + m)``, m the strong convexity, M the smoothness and L the Lipschitz
    constant of every per-example loss, n the dataset size.

    Example:
        >>> round(d2d_sigma(T=25, n=1000, eps=5.0, delta=1e-6, lipschitz=1.05, strong_convexity=0.05,
        ...                 smoothness=3.95), 3)
        0.217
    """
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    eps = _check_positive("eps", eps)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    L = _check_positive("lipschitz", lipschitz)
    gamma = d2d_contraction(strong_convexity=strong_convexity, smoothness=smoothness)
    gT = gamma**T
    log_inv = math.log(1.0 / delta)
    conversion = math.sqrt(log_inv + eps) - math.sqrt(log_inv)
    return 4 * math.sqrt(2) * L * gT / (strong_convexity * n * (1 - gT) * conversion)


def d2d_initial_steps(*, T: int, n: int, diameter: float, lipschitz: float, strong_convexity: float,
                      smoothness: float) -> int:
    """Steps of the initial training run: ``T + ceil(ln(D m n / (2L)) / ln(1/gamma))`` (at least T).

    From a start anywhere in a set of diameter D, these steps bring the iterate as close to the
    optimum as the steady state of T warm-started steps per update. This is the rough form given
    in the reference notes; Neel et al.'s Theorem 3.1 states the exact one.

    Example:
        >>> d2d_initial_steps(T=10, n=100, diameter=200.0, lipschitz=2.0, strong_convexity=0.01,
        ...                   smoothness=0.26)
        61
    """
    gamma = d2d_contraction(strong_convexity=strong_convexity, smoothness=smoothness)
    ratio = _check_positive("diameter", diameter) * strong_convexity * n / (2 * _check_positive("lipschitz", lipschitz))
    extra = math.ceil(math.log(ratio) / math.log(1 / gamma)) if ratio > 1 and gamma > 0 else 0
    return int(T) + max(0, extra)


def projected_gradient_descent(theta: np.ndarray, X: np.ndarray, y: np.ndarray, *, lam: float, steps: int,
                               radius: float, loss: Loss = "logistic") -> np.ndarray:
    """Full-batch projected gradient descent on ``mean_i loss_i + (lam/2)||w||^2`` over a ball.

    The step is ``2 / (M + m)`` with ``m = lam`` and ``M = max loss'' + lam`` (1/4 + lam for the
    logistic loss, 1 + lam for the squared loss, since ``||x|| <= 1``); every step contracts the
    distance to the constrained minimiser by ``(M - m)/(M + m)``.

    Example:
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0]]); y = np.array([1.0, -1.0])
        >>> w = projected_gradient_descent(np.zeros(2), X, y, lam=1.0, steps=60, radius=10.0, loss="squared")
        >>> bool(np.allclose(w, fit_ridge(X, y, lam=1.0)))
        True
    """
    X, y = _check_data(X, y, loss)
    lam = _check_positive("lam", lam)
    radius = _check_positive("radius", radius)
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    theta = _check_vector("theta", theta, X.shape[1], allow_none=False).copy()
    smooth = (0.25 if loss == "logistic" else 1.0) + lam
    eta = 2.0 / (smooth + lam)
    n = X.shape[0]
    for _ in range(int(steps)):
        _, g, _ = _per_example(theta, X, y, loss)
        theta = theta - eta * (X.T @ g / n + lam * theta)
        norm = np.linalg.norm(theta)
        if norm > radius:
            theta *= radius / norm
    return theta


class DescentToDelete:
    """Descent-to-Delete (Neel et al., 2021) for L2-regularised logistic regression.

    Initial training runs :func:`d2d_initial_steps` projected gradient steps from 0; each update
    (a deletion of one point or a batch) warm-starts from the *secret* iterate, runs T steps on the
    remaining data and publishes ``secret + N(0, sigma^2 I)`` with sigma from :func:`d2d_sigma` at
    the current dataset size. Constants: m = lam, M = 1/4 + lam, L = 1 + lam * radius, with the
    ball radius ``1/lam`` by default (it contains the minimiser since ``||lam w*|| <= 1``).

    Attributes:
        secret: the un-noised iterate.
        published: the last published, noisy iterate.
        sigma: the noise of the last publication.
        X, y, ids: the remaining data and their original indices.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = normalize_rows(rng.normal(size=(200, 3))); y = np.where(X[:, 0] > 0, 1.0, -1.0)
        >>> dd = DescentToDelete(X, y, lam=0.05, eps=1.0, delta=1e-5, steps_per_update=20, seed=0)
        >>> _ = dd.remove([0, 1])
        >>> dd.n, bool(dd.sigma > 0)
        (198, True)
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, *, lam: float, eps: float, delta: float, steps_per_update: int,
                 radius: float | None = None, initial_steps: int | None = None,
                 seed: int | np.random.Generator = 0) -> None:
        self.X, self.y = _check_data(X, y, "logistic")
        self.lam = _check_positive("lam", lam)
        self.eps = _check_positive("eps", eps)
        self.delta = float(delta)
        if not isinstance(steps_per_update, (int, np.integer)) or steps_per_update < 1:
            raise ValueError(f"steps_per_update must be a positive integer, got {steps_per_update!r}")
        self.T = int(steps_per_update)
        self.radius = _check_positive("radius", radius) if radius is not None else 1.0 / self.lam
        self.strong, self.smooth, self.lipschitz = self.lam, 0.25 + self.lam, 1.0 + self.lam * self.radius
        if initial_steps is not None and (not isinstance(initial_steps, (int, np.integer)) or initial_steps < 0):
            raise ValueError(f"initial_steps must be a non-negative integer, got {initial_steps!r}")
        self.initial_steps = int(initial_steps) if initial_steps is not None else d2d_initial_steps(
            T=self.T, n=self.n, diameter=2 * self.radius, lipschitz=self.lipschitz, strong_convexity=self.strong,
            smoothness=self.smooth)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.ids = np.arange(self.n)
        self.secret = projected_gradient_descent(np.zeros(self.X.shape[1]), self.X, self.y, lam=self.lam,
                                                 steps=self.initial_steps, radius=self.radius)
        self.published = self._publish()

    @property
    def n(self) -> int:
        """Number of remaining points."""
        return int(self.X.shape[0])

    def _publish(self) -> np.ndarray:
        self.sigma = d2d_sigma(T=self.T, n=self.n, eps=self.eps, delta=self.delta, lipschitz=self.lipschitz,
                               strong_convexity=self.strong, smoothness=self.smooth)
        return self.secret + self.sigma * self.rng.standard_normal(self.secret.shape[0])

    def remove(self, ids: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Delete points by original index, run T warm-started steps and return the published weights."""
        pos = _locate(self.ids, ids)
        keep = np.ones(self.n, dtype=bool)
        keep[pos] = False
        self.X, self.y, self.ids = self.X[keep], self.y[keep], self.ids[keep]
        self.secret = projected_gradient_descent(self.secret, self.X, self.y, lam=self.lam, steps=self.T,
                                                 radius=self.radius)
        self.published = self._publish()
        return self.published


# ----------------------------------------------------------------------------------------------
# the chapter's binary task
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BinaryTask:
    """Two classes of an image dataset as rows with ``||x|| = 1`` and labels in {-1, +1}.

    Attributes:
        X_train, y_train, X_test, y_test: the split (float64).
        classes: the two original class labels; the first is +1, the second -1.
        dataset: the dataset name.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int, int]
    dataset: str

    def accuracy(self, w: np.ndarray, *, part: Literal["train", "test"] = "test") -> float:
        """Accuracy of the linear classifier ``sign(w^T x)`` on a part."""
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        X, y = (self.X_test, self.y_test) if part == "test" else (self.X_train, self.y_train)
        return float(np.mean(np.where(X @ np.asarray(w) >= 0, 1.0, -1.0) == y))


def binary_task(dataset_name: str, classes: tuple[int, int] = (3, 8), *, test_fraction: float = 0.2,
                seed: int = 0) -> BinaryTask:
    """The binary task of Guo et al.'s MNIST experiment, on any :mod:`mu_lib.data` dataset.

    Images are mapped back to [0, 1] pixels, shifted by -0.5 and flattened; every row is divided
    by its L2 norm (as in Guo et al.'s ``load_features``); ``classes[0] -> +1`` and
    ``classes[1] -> -1`` (3 -> +1, 8 -> -1 as in their code). The split is a stratified, seeded
    random split of all images of the two classes (for MNIST this pools the official training and
    test images, unlike Guo et al., who use the official split).

    Args:
        dataset_name: ``"digits"`` (ships with scikit-learn) or ``"mnist"`` (downloaded), ...
        classes: the two class labels.
        test_fraction: fraction of the two classes held out for testing.
        seed: seed of the split.

    Example:
        >>> task = binary_task("digits", test_fraction=0.2, seed=0)
        >>> task.X_train.shape, task.X_test.shape, sorted(set(task.y_train.tolist()))
        ((285, 64), (72, 64), [-1.0, 1.0])
    """
    from sklearn.model_selection import train_test_split

    from mu_lib.data import load_dataset

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    ds = load_dataset(dataset_name)
    a, c = (int(v) for v in classes)
    if a == c or not (0 <= a < ds.num_classes and 0 <= c < ds.num_classes):
        raise ValueError(f"classes must be two distinct labels in 0..{ds.num_classes - 1}, got {classes!r}")
    labels = ds.y.numpy()
    sel = np.flatnonzero((labels == a) | (labels == c))
    pixels = ds.to_pixels(ds.x[sel]).reshape(len(sel), -1).double().numpy()
    X = normalize_rows(pixels - 0.5)
    y = np.where(labels[sel] == a, 1.0, -1.0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)
    return BinaryTask(X_train=X_tr, y_train=y_tr, X_test=X_te, y_test=y_te, classes=(a, c), dataset=dataset_name)
