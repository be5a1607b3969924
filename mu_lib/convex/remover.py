"""Guo et al. (2020), Algorithm 2: the certified-removal session (loss perturbation, Newton steps,
accumulated bound, retraining when the budget is spent).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor

from mu_lib.convex._solve import cho_solve
from mu_lib.convex.calibration import check_calibration
from mu_lib.convex.newton import _newton_step, removal_budget, spectral_norm
from mu_lib.convex.objective import (
    Loss,
    _check_data,
    _check_positive,
    _hess,
    _locate,
    fit,
    gradient_residual,
)

__all__ = ["RemovalStep", "CertifiedRemover"]


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
    bound (data-dependent bound plus the linear solve's residual) to the accumulated bound
    ``beta``; ``beta`` starts at the optimisation residual ``||grad L_b(w; D)||`` of the fit (so an
    inexact fit is charged, as the reference recommends). When ``beta`` would exceed
    :func:`removal_budget` (``sigma, eps, delta, calibration``), the Newton step is discarded and
    the model is retrained from scratch on the remaining data with a freshly drawn ``b``, and
    ``beta`` restarts from that fit's residual (below 1e-10, i.e. 0 in practice).

    Speed. ``||X||_2`` is computed once per fit and bounds ``||X'||_2`` after any removals. The
    Hessian's Cholesky factorisation is cached and reused: a step solves ``H' s = Delta`` for the
    Hessian H' at the current weights on the remaining data by iterative refinement with the
    cached factor and exact products ``H' v`` (O(n d) each), and only refactorises (O(n d^2),
    Guo et al.'s code does it at every step) when the refinement stops converging because the
    weights or the data have moved too far from the cached ones. The solve's residual is charged.

    Args:
        X, y: the training data (rows with ``||x_i|| <= 1``; labels in {-1, +1} for the logistic loss).
        lam: regularisation strength.
        sigma: standard deviation of every coordinate of b.
        eps, delta: the (eps, delta) of the certified removal.
        loss: ``"logistic"`` or ``"squared"``.
        seed: seed or NumPy generator of b.
        retrain: ``False`` keeps taking Newton steps past the budget (to study the bounds); the
            removals are then certified only while :attr:`certified` is true.
        calibration: ``"exact"`` (default) or ``"classic"``, see :func:`removal_budget`.

    Attributes:
        X, y: the remaining data.
        ids: original indices of the remaining points.
        w, b: current weights and perturbation.
        beta: the accumulated bound.
        budget: :func:`removal_budget` of ``sigma, eps, delta``.
        history: one :class:`RemovalStep` per request.
        removals_before_retrain: for each retrain, the number of points removed by Newton steps
            since the previous fit.
        factorisations: Hessian factorisations so far (one per fit, plus the refreshes).

    Example:
        >>> from mu_lib.convex import normalize_rows
        >>> rng = np.random.default_rng(0)
        >>> X = normalize_rows(rng.normal(size=(300, 4)))
        >>> y = np.where(X[:, 0] > 0, 1.0, -1.0)
        >>> rm = CertifiedRemover(X, y, lam=1e-2, sigma=1.0, eps=1.0, delta=1e-4, seed=0)
        >>> for i in range(5):
        ...     _ = rm.remove(i)
        >>> rm.n, bool(rm.beta <= rm.budget), rm.factorisations
        (295, True, 1)
    """

    _REFINE_ITERATIONS = 25
    """Refinement iterations before the Hessian is refactorised at the current weights."""

    def __init__(self, X: np.ndarray, y: np.ndarray, *, lam: float, sigma: float, eps: float, delta: float,
                 loss: Loss = "logistic", seed: int | np.random.Generator = 0, retrain: bool = True,
                 calibration: str = "exact") -> None:
        self.X, self.y = _check_data(X, y, loss)
        self.retrain = bool(retrain)
        self.lam = _check_positive("lam", lam)
        self.sigma = _check_positive("sigma", sigma)
        self.eps = _check_positive("eps", eps)
        self.delta = float(delta)
        self.loss = loss
        self.calibration = check_calibration(calibration)
        self.budget = removal_budget(sigma=sigma, eps=eps, delta=delta, calibration=calibration)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.ids = np.arange(self.X.shape[0])
        self.history: list[RemovalStep] = []
        self.removals_before_retrain: list[int] = []
        self.factorisations = 0
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
        self.norm = spectral_norm(self.X)  # an upper bound of ||X'||_2 for every later X'
        self._factorise()
        self._since_fit = 0

    def _factorise(self) -> None:
        self._factor = cho_factor(_hess(self.w, self.X, self.y, self.lam, self.loss))
        self.factorisations += 1

    def remove(self, ids: int | Sequence[int] | np.ndarray) -> RemovalStep:
        """Remove points given by their *original* indices (one request, one Newton step).

        Raises:
            ValueError: for unknown, already removed or duplicated indices, or for removing every
                remaining point.
        """
        start = time.perf_counter()
        pos = _locate(self.ids, ids)
        removed_ids = self.ids[pos]
        factor = self._factor

        def refreshed(new_factor: tuple[np.ndarray, bool]) -> None:  # the refinement stalled: cache the new one
            self._factor = new_factor
            self.factorisations += 1

        step = _newton_step(self.w, self.X, self.y, pos, lam=self.lam, loss=self.loss, norm=self.norm,
                            solver=(lambda v: cho_solve(factor, v), self._REFINE_ITERATIONS, refreshed))
        keep = np.ones(self.n, dtype=bool)
        keep[step.removed] = False
        self.X, self.y, self.ids = self.X[keep], self.y[keep], self.ids[keep]
        retrained = self.retrain and self.beta + step.bound > self.budget
        if retrained:
            self.removals_before_retrain.append(self._since_fit)
            self._train()
        else:
            self.w = step.w
            self.beta += step.bound
            self._since_fit += int(pos.size)
        record = RemovalStep(ids=removed_ids, bound=step.bound, worst_case=step.worst_case_bound,
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
