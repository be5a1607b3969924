"""Neel et al. (2021), Descent-to-Delete: projected gradient descent, warm-started after every
deletion, published with Gaussian noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mu_lib.convex.objective import Loss, _check_data, _check_positive, _check_vector, _locate, _per_example

__all__ = ["d2d_contraction", "d2d_sigma", "d2d_initial_steps", "projected_gradient_descent", "DescentToDelete"]

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
        >>> from mu_lib.convex import fit_ridge
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
        >>> from mu_lib.convex import normalize_rows
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
