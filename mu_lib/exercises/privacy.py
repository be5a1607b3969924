"""Checks of the exercises of the privacy chapters: memorization, definitions, DP-SGD, certified removal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mu_lib import audit, convex, dp, mia
from mu_lib.exercises.feedback import Case, Feedback, run_cases

__all__ = ['check_mia_advantage', 'check_eps_from_rates', 'check_clip_gradients', 'check_data_dependent_bound']


# --------------------------------------------------------------------------------------------
# memorization


def check_mia_advantage(fn: Callable[..., Any]) -> Feedback:
    """Memorization: the best advantage ``max_t (TPR(t) − FPR(t))`` of the loss-threshold attack.

    ``fn(member_losses, nonmember_losses)`` predicts "member" when the loss is at most a
    threshold t and returns the largest TPR − FPR over all thresholds (0 for an attack that never
    beats guessing). The reference is ``2 · accuracy − 1`` of :func:`mu_lib.mia.loss_threshold_attack`.

    Example:
        >>> def adv(member_losses, nonmember_losses):
        ...     ts = np.r_[-np.inf, np.sort(np.r_[member_losses, nonmember_losses])]
        ...     return max(np.mean(member_losses <= t) - np.mean(nonmember_losses <= t) for t in ts)
        >>> check_mia_advantage(adv).passed
        True
    """
    def ref(m: np.ndarray, n: np.ndarray) -> float:
        return 2 * mia.loss_threshold_attack(m, n).accuracy - 1

    cases = []
    for prop, m, n, hint in [
        ("separated losses give advantage 1", [0.1, 0.2], [1.0, 2.0],
         "members have the *lower* losses; predict member when loss <= t"),
        ("identical losses give advantage 0", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5],
         "with equal losses every threshold has TPR = FPR"),
        ("overlapping losses: the best threshold, not the first", [0.1, 0.3, 0.6, 0.9], [0.2, 0.7, 0.8, 1.0],
         "try every threshold, including each observed loss, and keep the largest TPR − FPR"),
        ("unequal group sizes: rates are fractions of each group", [0.1, 0.2, 0.3], [0.25, 0.4],
         "TPR is divided by the number of members, FPR by the number of non-members"),
        ("an attack never does worse than 0 (it may predict nobody)", [0.9, 1.0], [0.1, 0.2],
         "include a threshold below every loss (TPR = FPR = 0)"),
    ]:
        m_a, n_a = np.array(m), np.array(n)
        cases.append(Case(prop, {"member_losses": m_a, "nonmember_losses": n_a}, ref(m_a, n_a), hint))
    return run_cases("mia_advantage", fn, cases,
                     success="your advantage matches the library's loss-threshold attack on every case.")


# --------------------------------------------------------------------------------------------
# definitions


def check_eps_from_rates(fn: Callable[..., Any]) -> Feedback:
    """Definitions: the ε that a test with error rates (FPR, FNR) certifies, ``fn(fpr, fnr, delta)``.

    The reference is :func:`mu_lib.audit.eps_from_rates` (Kairouz et al. 2015).

    Example:
        >>> check_eps_from_rates(lambda fpr, fnr, delta: float(audit.eps_from_rates(fpr, fnr, delta=delta))).passed
        True
    """
    hint = "ε is max(ln((1 − δ − FPR)/FNR), ln((1 − δ − FNR)/FPR)), clamped at 0."
    spec = [
        ("a test that errs 10 % of the time either way certifies ln 9", 0.1, 0.1, 0.0, hint),
        ("a coin flip certifies nothing", 0.5, 0.5, 0.0, "FPR + FNR = 1 gives ln 1 = 0 on both sides"),
        ("the bound takes the larger of its two sides", 0.01, 0.5, 0.0,
         "compute both ln((1 − δ − FPR)/FNR) and ln((1 − δ − FNR)/FPR) and keep the larger"),
        ("a test worse than guessing still certifies ε = 0, never a negative ε", 0.9, 0.9, 0.0,
         "clamp the result at 0"),
        ("δ is subtracted in the numerators", 0.001, 0.5, 1e-2, "the numerators are 1 − δ − FPR and 1 − δ − FNR"),
        ("a perfect test (no errors) certifies ε = inf", 0.0, 0.0, 0.0,
         "a zero denominator with a positive numerator means infinity (math.inf), not an error"),
    ]
    cases = [Case(p, {"fpr": f, "fnr": n, "delta": d}, audit.eps_from_rates(f, n, delta=d), h)
             for p, f, n, d, h in spec]
    return run_cases("eps_from_rates", fn, cases, success="your ε agrees with audit.eps_from_rates on every case, "
                     "including the coin flip, the clamp at 0 and the perfect test.")


# --------------------------------------------------------------------------------------------
# differential-privacy


def check_clip_gradients(fn: Callable[..., Any]) -> Feedback:
    """Differential privacy: DP-SGD's per-example clipping, ``fn(grads, max_grad_norm)``.

    ``grads`` is a ``[B, d]`` tensor, one flattened gradient per example; the answer scales each
    row by ``min(1, C / ‖g_i‖)``. The reference is :func:`mu_lib.dp.clip_grads` (which adds 1e-6
    to the norm, as Opacus does; the check's tolerance accepts both).

    Example:
        >>> def clip(grads, max_grad_norm):
        ...     norms = grads.norm(dim=1, keepdim=True)
        ...     return grads * torch.clamp(max_grad_norm / norms, max=1.0)
        >>> check_clip_gradients(clip).passed
        True
    """
    def ref(g: torch.Tensor, c: float) -> torch.Tensor:
        return dp.clip_grads({"g": g}, max_grad_norm=c)["g"]

    spec = [
        ("a gradient longer than C is scaled down to norm C", [[3.0, 4.0]], 1.0,
         "divide the row by its L2 norm and multiply by C"),
        ("a gradient shorter than C is left unchanged", [[0.3, 0.4]], 1.0,
         "the factor is min(1, C / ‖g‖): never scale a short gradient up"),
        ("each example is clipped on its own", [[3.0, 4.0], [0.3, 0.4], [0.0, 2.0]], 1.0,
         "compute one norm per row (dim=1), not one norm of the whole batch"),
        ("the norm is the L2 norm over all coordinates", [[1.0, 1.0, 1.0, 1.0]], 1.0,
         "‖(1, 1, 1, 1)‖ = 2, not 4 (L1) nor 1 (max)"),
        ("C scales the result", [[6.0, 8.0], [0.5, 0.0]], 2.5, "use max_grad_norm, not the constant 1"),
    ]
    cases = [Case(p, {"grads": torch.tensor(g), "max_grad_norm": c}, ref(torch.tensor(g), c), h)
             for p, g, c, h in spec]
    return run_cases("clip_gradients", fn, cases, rtol=1e-5, atol=1e-5,
                     success="every clipped gradient matches dp.clip_grads: long ones scaled to C, short ones kept.")


# --------------------------------------------------------------------------------------------
# certified-removal


def check_data_dependent_bound(fn: Callable[..., Any]) -> Feedback:
    """Certified removal: Guo et al.'s data-dependent bound ``γ ‖X'‖₂ ‖H⁻¹Δ‖ ‖X' H⁻¹Δ‖``.

    ``fn(X_remaining, step)`` gets the remaining rows X' and the Newton step ``H⁻¹Δ`` of a
    removal, and returns the bound for the logistic loss (γ = 1/4). The reference is the
    ``data_dependent_bound`` of :func:`mu_lib.convex.newton_remove`.

    Example:
        >>> def bound(X_remaining, step):
        ...     return (0.25 * np.linalg.norm(X_remaining, 2) * np.linalg.norm(step)
        ...             * np.linalg.norm(X_remaining @ step))
        >>> check_data_dependent_bound(bound).passed
        True
    """
    rng = np.random.default_rng(12)
    cases = []
    for prop, n, d, remove, lam, hint in [
        ("one removal from 6 points on one line", 6, 2, [0], 0.1,
         "γ = 1/4 for the logistic loss; the three norms are multiplied"),
        ("‖X'‖₂ is the spectral norm (largest singular value), not the Frobenius norm", 12, 3, [4], 0.05,
         "use np.linalg.norm(X, 2) (or the largest singular value), not np.linalg.norm(X)"),
        ("a batch removal of two points", 10, 3, [1, 7], 0.05, "the formula is the same for a batch"),
    ]:
        if d == 2:  # rows along one direction: the spectral and Frobenius norms agree here
            X = np.outer(np.where(rng.random(n) < 0.5, -1.0, 1.0), [0.6, 0.8])
        else:
            X = convex.normalize_rows(rng.normal(size=(n, d)))
        y = np.where(X[:, 0] + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)
        w = convex.fit_logistic(X, y, lam=lam)
        r = convex.newton_remove(w, X, y, remove, lam=lam)
        Xr = np.delete(X, remove, axis=0)
        norms = np.linalg.norm(r.step) * np.linalg.norm(Xr @ r.step)
        slips = ((4 * r.data_dependent_bound, "γ = 1/4 for the logistic loss: multiply by 0.25"),
                 (0.25 * np.linalg.norm(Xr) * norms, "‖X'‖₂ is the spectral norm np.linalg.norm(X, 2), "
                  "not the Frobenius norm np.linalg.norm(X)"))
        cases.append(Case(prop, {"X_remaining": Xr, "step": r.step}, r.data_dependent_bound, hint,
                          shown=f"a {n - len(remove)} x {d} X' and its Newton step", slips=slips))
    return run_cases("data_dependent_bound", fn, cases, rtol=1e-6,
                     success="your bound equals the one convex.newton_remove charges to the budget.")
