"""Checks for the book's auto-checked exercises, with hints.

Every chapter has at least one exercise whose answer is a small function. The reader writes it
in the exercise's code cell and passes it to the chapter's check, for example
``exercises.check_eps_from_rates(my_eps)``. A check runs the function on tiny cases whose
answers the library computes, and returns a :class:`Feedback`: on a wrong answer it names the
property that failed and shows the expected value against the one the function returned on
that case; on a right one it says so. The feedback renders as coloured HTML in Jupyter, Colab
and the built book, and as one line of text in a terminal (``print(feedback)``); it is truthy
exactly when the answer passed, so ``assert check_...(fn)`` works in tests.

Behind this face: ``feedback.py`` (:class:`Feedback`, :class:`Case`, :func:`run_cases`) and the
checks of the book's three parts, ``privacy.py``, ``deep.py`` and ``evaluation.py``.

=====================================  =============================  ==============================
check                                  chapter                        the reference
=====================================  =============================  ==============================
:func:`check_mia_advantage`            memorization                   :func:`mu_lib.mia.loss_threshold_attack`
:func:`check_eps_from_rates`           definitions                    :func:`mu_lib.audit.eps_from_rates`
:func:`check_clip_gradients`           differential-privacy           :func:`mu_lib.dp.clip_grads`
:func:`check_data_dependent_bound`     certified-removal              :func:`mu_lib.convex.newton_remove`
:func:`check_sisa_restarts`            exact-unlearning               :meth:`mu_lib.sisa.Partition.locate`
:func:`check_neggrad_plus_loss`        deep-unlearning                NegGrad+'s loss (Kurmanji et al.)
:func:`check_final_score`              competition-methods            :func:`mu_lib.audit.final_score`
:func:`check_logit_scaled_confidence`  membership-inference           :func:`mu_lib.mia.logit_scaled_confidence`
:func:`check_calibrated_epsilon`       epsilon-audit                  :func:`mu_lib.audit.clopper_pearson`
:func:`check_forget_score`             competition-scoring            :func:`mu_lib.audit.forget_score_from_epsilons`
:func:`check_indiscernibility`         beyond-the-competition         :func:`mu_lib.mia.indiscernibility`
=====================================  =============================  ==============================

Example:
    >>> import math
    >>> print(check_eps_from_rates(lambda fpr, fnr, delta: 0.0))  # doctest: +NORMALIZE_WHITESPACE
    ✗ eps_from_rates: a test that errs 10 % of the time either way certifies ln 9. On fpr=0.1, fnr=0.1,
    delta=0 expected 2.19722, got 0. Hint: ε is max(ln((1 − δ − FPR)/FNR), ln((1 − δ − FNR)/FPR)),
    clamped at 0.
    >>> bool(check_eps_from_rates(lambda fpr, fnr, delta: max(0.0, math.log((1 - delta - fpr) / fnr))))
    False
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mu_lib.exercises.deep import check_final_score, check_neggrad_plus_loss, check_sisa_restarts
from mu_lib.exercises.evaluation import (
    check_calibrated_epsilon,
    check_forget_score,
    check_indiscernibility,
    check_logit_scaled_confidence,
)
from mu_lib.exercises.feedback import Case, Feedback, run_cases
from mu_lib.exercises.privacy import (
    check_clip_gradients,
    check_data_dependent_bound,
    check_eps_from_rates,
    check_mia_advantage,
)

__all__ = [
    "Feedback", "Case", "run_cases", "check_mia_advantage", "check_eps_from_rates", "check_clip_gradients",
    "check_data_dependent_bound", "check_neggrad_plus_loss", "check_final_score", "check_logit_scaled_confidence",
    "check_calibrated_epsilon", "check_forget_score", "check_indiscernibility", "check_sisa_restarts", "CHECKS",
]

CHECKS: dict[str, Callable[[Callable[..., Any]], Feedback]] = {
    "memorization": check_mia_advantage,
    "definitions": check_eps_from_rates,
    "differential-privacy": check_clip_gradients,
    "certified-removal": check_data_dependent_bound,
    "exact-unlearning": check_sisa_restarts,
    "deep-unlearning": check_neggrad_plus_loss,
    "competition-methods": check_final_score,
    "membership-inference": check_logit_scaled_confidence,
    "epsilon-audit": check_calibrated_epsilon,
    "competition-scoring": check_forget_score,
    "beyond-the-competition": check_indiscernibility,
}
"""The auto-checked exercise of each chapter (chapter file name -> check)."""
