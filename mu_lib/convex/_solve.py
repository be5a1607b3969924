"""Linear solves of the Newton removal that reuse a cached Cholesky factorisation.

Private: :mod:`mu_lib.convex.newton` calls them. A removal needs ``s = H'^{-1} Delta`` for the
Hessian H' on the remaining data. Factorising H' costs O(d^3) (and forming it O(n d^2)); a
factorisation of a nearby matrix P (the Hessian at training time) solves the same system by
iterative refinement, ``s <- s + P^{-1}(Delta - H' s)``, which costs one product with H' and two
triangular solves per iteration and converges geometrically while ``||I - P^{-1} H'|| < 1``. The
final linear residual ``||H' s - Delta||`` is returned: a removal adds it to its certified bound,
so an inexact solve is never hidden.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import lapack

Factor = tuple[np.ndarray, bool]  # scipy.linalg.cho_factor's output

REFINE_TOL = 1e-12
"""Refinement stops when ``||Delta - H' s|| <= REFINE_TOL ||Delta||`` (the rest is charged)."""


def _norm(v: np.ndarray) -> float:
    return float(np.sqrt(v.dot(v)))


def refine(apply_inverse: Callable[[np.ndarray], np.ndarray], matvec: Callable[[np.ndarray], np.ndarray],
           rhs: np.ndarray, *, max_iter: int) -> tuple[np.ndarray, float, bool]:
    """Iterative refinement of ``H' s = rhs`` with an approximate inverse.

    Returns ``(s, ||H' s - rhs||, converged)``; ``converged`` is false when ``max_iter`` iterations
    did not reach :data:`REFINE_TOL` (the caller then factorises H' itself).
    """
    s = apply_inverse(rhs)
    target = REFINE_TOL * _norm(rhs)
    r = rhs - matvec(s)
    norm = _norm(r)
    for _ in range(max_iter):
        if norm <= target:
            return s, norm, True
        s_new = s + apply_inverse(r)
        r_new = rhs - matvec(s_new)
        norm_new = _norm(r_new)
        if not norm_new < norm:  # no progress (rounding floor, or P too far from H')
            break
        s, r, norm = s_new, r_new, norm_new
    return s, norm, norm <= target


def cho_solve(factor: Factor, b: np.ndarray) -> np.ndarray:
    """``scipy.linalg.cho_solve`` without its input checks (LAPACK ``dpotrs`` directly): a removal
    makes several small solves, and the checks cost more than a 100 x 100 triangular solve."""
    c, lower = factor
    x, info = lapack.dpotrs(c, b, lower=lower)
    if info != 0:
        raise ValueError(f"dpotrs failed with info={info}")
    return x


def woodbury_inverse(factor: Factor, U: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``v -> (A - U^T U)^{-1} v`` from the Cholesky factor of A (``U`` is ``[m, d]``), by the
    Woodbury identity: ``A^{-1} v + Z (I - U Z)^{-1} Z^T v`` with ``Z = A^{-1} U^T``. O(m d^2 + m^3)
    to set up, O(d^2 + m d) per application."""
    if U.shape[0] == 0:
        return lambda v: cho_solve(factor, v)
    Z = cho_solve(factor, U.T)  # [d, m]
    S = np.eye(U.shape[0]) - U @ Z
    S_inv = np.linalg.inv(S) if U.shape[0] > 1 else 1.0 / S

    def apply(v: np.ndarray) -> np.ndarray:
        return cho_solve(factor, v) + Z @ (S_inv @ (Z.T @ v))

    return apply
