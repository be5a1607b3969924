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
* noise calibration: :func:`gaussian_delta` and :func:`gaussian_ratio`, the exact analytic Gaussian
  mechanism (Balle and Wang 2018) that every budget and noise below uses by default
  (``calibration="exact"``; the papers' own rules with ``calibration="classic"``);
* Guo et al.: :func:`newton_remove` (one Newton step that removes one point or a batch, with the
  data-dependent and worst-case bounds on the gradient residual; optionally with the Hessian, its
  Cholesky factorisation and ``||X||_2`` cached at training time), :func:`removal_budget`, and the
  session :class:`CertifiedRemover` (loss perturbation, accumulated bound, retraining);
* Sekhari et al., Algorithm 1: :func:`sekhari_fit`, :func:`sekhari_downdate`,
  :func:`sekhari_noise`, :func:`sekhari_unlearn`;
* Neel et al., Descent-to-Delete: :func:`d2d_sensitivity`, :func:`d2d_sigma`,
  :func:`projected_gradient_descent`, :func:`d2d_initial_steps` and the session
  :class:`DescentToDelete` (a batch request is processed as sequential deletions);
* data: :func:`binary_task` (two classes of a :mod:`mu_lib.data` dataset, rows L2-normalised).

The book chapter ``book/certified-removal.ipynb`` teaches all of this.

Example:
    >>> import numpy as np
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

from mu_lib.convex.calibration import CALIBRATIONS, gaussian_delta, gaussian_ratio
from mu_lib.convex.d2d import (
    DescentToDelete,
    d2d_contraction,
    d2d_initial_steps,
    d2d_sensitivity,
    d2d_sigma,
    projected_gradient_descent,
)
from mu_lib.convex.newton import (
    NewtonRemoval,
    gaussian_c,
    newton_remove,
    removal_budget,
    spectral_norm,
    worst_case_bound,
)
from mu_lib.convex.objective import (
    GAMMA,
    GRADIENT_BOUND,
    LOGISTIC_THIRD_DERIVATIVE_MAX,
    LOSSES,
    fit,
    fit_logistic,
    fit_ridge,
    gradient,
    gradient_residual,
    hessian,
    normalize_rows,
    objective,
)
from mu_lib.convex.remover import CertifiedRemover, RemovalStep
from mu_lib.convex.sekhari import (
    SekhariResult,
    SekhariState,
    sekhari_downdate,
    sekhari_fit,
    sekhari_noise,
    sekhari_unlearn,
)
from mu_lib.convex.tasks import BinaryTask, binary_task

__all__ = [
    "LOSSES", "GAMMA", "GRADIENT_BOUND", "LOGISTIC_THIRD_DERIVATIVE_MAX", "normalize_rows", "objective",
    "gradient", "hessian", "gradient_residual", "fit_logistic", "fit_ridge", "fit", "spectral_norm",
    "worst_case_bound", "NewtonRemoval", "newton_remove", "gaussian_c", "removal_budget", "RemovalStep",
    "CertifiedRemover", "SekhariState", "SekhariResult", "sekhari_fit", "sekhari_downdate", "sekhari_noise",
    "sekhari_unlearn", "d2d_contraction", "d2d_sigma", "d2d_initial_steps", "projected_gradient_descent",
    "DescentToDelete", "BinaryTask", "binary_task", "CALIBRATIONS", "gaussian_delta", "gaussian_ratio",
    "d2d_sensitivity",
]
