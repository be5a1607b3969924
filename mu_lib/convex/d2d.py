"""Neel et al. (2021), Descent-to-Delete: projected gradient descent, warm-started after every
deletion, published with Gaussian noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mu_lib.convex.calibration import check_calibration, gaussian_ratio
from mu_lib.convex.objective import Loss, _check_data, _check_positive, _check_vector, _locate, _per_example

__all__ = [
    "d2d_contraction", "d2d_sensitivity", "d2d_sigma", "d2d_initial_steps", "projected_gradient_descent",
    "DescentToDelete",
]

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


def d2d_sensitivity(*, T: int, n: int, lipschitz: float, strong_convexity: float, smoothness: float,
                    m: int = 1) -> float:
    """The L2 sensitivity of one Descent-to-Delete update that deletes m points with T steps.

    ``Delta = 4 L gamma^T m / (mu n (1 - gamma^T))`` with ``gamma = (beta - mu)/(beta + mu)``. For
    one deletion: the minimiser moves by at most ``2 L / (mu n)``, so T warm-started steps keep the
    secret iterate within ``E = 2 L gamma^T / (mu n (1 - gamma^T))`` of the optimum (steady state),
    and the iterate of a retraining is as close: the two are within ``2 E``. Neel et al.'s noise
    ``4 sqrt(2) L gamma^T / (mu n (1 - gamma^T) conv)`` is ``sqrt(2) Delta / conv`` for this Delta
    (``conv`` in :func:`d2d_sigma`). Deleting m points in one update moves the minimiser up to m
    times as far, and from the steady state the two iterates end within ``(m + 1) E <= m Delta``.

    Example:
        >>> round(d2d_sensitivity(T=25, n=1000, lipschitz=1.05, strong_convexity=0.05, smoothness=3.95), 6)
        0.095114
    """
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(m, (int, np.integer)) or m < 1 or m >= n:
        raise ValueError(f"m (deletions in one update) must be an integer in [1, n), got m={m!r}, n={n!r}")
    L = _check_positive("lipschitz", lipschitz)
    gamma = d2d_contraction(strong_convexity=strong_convexity, smoothness=smoothness)
    gT = gamma**T
    return 4.0 * L * gT * int(m) / (strong_convexity * n * (1 - gT))


def d2d_sigma(*, T: int, n: int, eps: float, delta: float, lipschitz: float, strong_convexity: float,
              smoothness: float, m: int = 1, calibration: str = "exact") -> float:
    """Noise of Descent-to-Delete for an update of m deletions with T gradient steps (Neel et al.).

    The noise hides the sensitivity ``Delta`` of :func:`d2d_sensitivity` (linear in m):

    * ``"exact"`` (default): ``sigma = Delta / r*(eps, delta)``, the smallest noise of the analytic
      Gaussian mechanism (Balle and Wang 2018; :func:`mu_lib.convex.calibration.gaussian_ratio`);
    * ``"classic"``: the published ``sigma = sqrt(2) Delta / conv`` with
      ``conv = sqrt(ln(1/delta) + eps) - sqrt(ln(1/delta))``, i.e. for m = 1
      ``4 sqrt(2) L gamma^T / (mu n (1 - gamma^T) conv)`` as in Neel et al.'s code.

    Both are valid; the exact one is smaller. ``n`` is the dataset size after the update. With
    m > 1 the update leaves the iterate up to m times farther from the optimum than the steady
    state of single deletions; :class:`DescentToDelete` therefore processes a batch as m
    sequential deletions and publishes with ``m = 1``.

    Example:
        >>> kw = dict(T=25, n=1000, eps=5.0, delta=1e-6, lipschitz=1.05, strong_convexity=0.05, smoothness=3.95)
        >>> round(d2d_sigma(**kw, calibration="classic"), 3), round(d2d_sigma(**kw), 3)
        (0.217, 0.093)
        >>> d2d_sigma(**kw, m=4) == 4 * d2d_sigma(**kw)  # linear in the batch size
        True
    """
    eps = _check_positive("eps", eps)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    sensitivity = d2d_sensitivity(T=T, n=n, lipschitz=lipschitz, strong_convexity=strong_convexity,
                                  smoothness=smoothness, m=m)
    if check_calibration(calibration) == "classic":
        log_inv = math.log(1.0 / delta)
        conversion = math.sqrt(log_inv + eps) - math.sqrt(log_inv)
        return math.sqrt(2) * sensitivity / conversion
    return sensitivity / gaussian_ratio(eps=eps, delta=delta)


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
    the current dataset size. Constants: mu = lam, beta = 1/4 + lam, L = 1 + lam * radius, with the
    ball radius ``1/lam`` by default (it contains the minimiser since ``||lam w*|| <= 1``).

    Batches: a request to delete m points is processed as m sequential deletions, each with its T
    steps, and published once. The steady-state argument behind the noise (the secret iterate
    stays within ``2 L gamma^T / (mu n (1 - gamma^T))`` of the optimum) then holds after every
    deletion, so the noise of one deletion covers the batch. Taking T steps once for the whole
    batch would need m times the noise (``d2d_sigma(..., m=m)``) and would leave the iterate
    farther from the optimum than later updates assume.

    Adaptivity: the guarantee for an unbounded sequence of updates holds for requests that are
    not chosen after seeing the published models. Gupta et al. (NeurIPS 2021) show that requests
    that depend on the published models (an adaptive requester) can break such guarantees, and
    how to restore them; this class does not handle that case.

    Args:
        X, y: training data (rows with ``||x_i|| <= 1``, labels in {-1, +1}).
        lam: regularisation strength (the strong convexity mu).
        eps, delta: the unlearning guarantee of every published model.
        steps_per_update: T.
        radius: radius of the ball of the projection (default ``1/lam``).
        initial_steps: steps of the initial training (default :func:`d2d_initial_steps`).
        seed: seed or generator of the noise.
        calibration: ``"exact"`` (default) or ``"classic"`` (see :func:`d2d_sigma`).

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
                 seed: int | np.random.Generator = 0, calibration: str = "exact") -> None:
        self.X, self.y = _check_data(X, y, "logistic")
        self.lam = _check_positive("lam", lam)
        self.eps = _check_positive("eps", eps)
        self.delta = float(delta)
        self.calibration = check_calibration(calibration)
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
                               strong_convexity=self.strong, smoothness=self.smooth, calibration=self.calibration)
        return self.secret + self.sigma * self.rng.standard_normal(self.secret.shape[0])

    def remove(self, ids: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Delete points by original index and return the published weights.

        A request for m points is processed as m sequential deletions (in the order given): each
        removes one point and runs T warm-started steps, so the secret iterate keeps the steady
        state of single deletions; the result is published once, with the noise of one deletion
        at the final dataset size (what the last of m sequential deletions requires). Cost: m T
        gradient steps.
        """
        pos = _locate(self.ids, ids)
        order = self.ids[pos]
        for point in order:
            keep = self.ids != point
            self.X, self.y, self.ids = self.X[keep], self.y[keep], self.ids[keep]
            self.secret = projected_gradient_descent(self.secret, self.X, self.y, lam=self.lam, steps=self.T,
                                                     radius=self.radius)
        self.published = self._publish()
        return self.published
