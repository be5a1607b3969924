"""Unlearning and privacy as hypothesis tests: ε from error rates, with confidence.

(ε, δ)-differential privacy and (ε, δ)-certified removal bound how well *any* test can tell two
worlds apart (Kairouz et al. 2015): a test with false-positive rate FPR and false-negative rate
FNR certifies

    ε ≥ max( ln((1 − δ − FPR) / FNR), ln((1 − δ − FNR) / FPR) ).

:func:`eps_from_rates` evaluates that bound; :func:`clopper_pearson` gives exact binomial
confidence intervals for rates measured on finitely many trained models; and
:func:`epsilon_lower_bound` turns two samples of scores (one per world) into a statistically valid
lower bound on ε, as in Jagielski et al. (2020): by default the threshold is chosen on held-out
models, because the best threshold on the audited models inflates the bound.

The NeurIPS 2023 unlearning competition (Triantafillou et al. 2024) turned that view into a score
per forget example: :func:`per_example_epsilons` is its estimator, reimplemented faithfully from
the organisers' released code with exact, faster counting (thousands of times faster, memory
linear in the number of models), :func:`forget_points`, :func:`forget_score` and
:func:`final_score` its aggregation. The estimator picks the best of ~160,000 decision rules on
the same models it measures them on, so it is biased upward; :func:`calibrated_epsilons` chooses
the rule on half of the models and bounds its error rates on the other half (Jagielski et al.'s
practice), which gives a per-example guarantee; :func:`calibrated_forget_score` reports its score
only when the number of models could have shown a difference (else NaN, "inconclusive"); and
:func:`permutation_test` tests "indistinguishable from retraining" per example with all 2N models,
which has power at small N. All are conditional on the one original model the unlearned models
start from. The book's chapter "The ε audit" explains them.

Example:
    >>> import numpy as np
    >>> round(float(eps_from_rates(0.1, 0.1)), 4)  # ln 9
    2.1972
    >>> round(epsilon_lower_bound(np.ones(500), np.zeros(500), alpha=0.01, threshold=0.5).epsilon, 2)
    4.54
"""

from __future__ import annotations

from mu_lib.audit._rules import EPSILON_CAP, INTERVAL_BUFFER, THRESHOLDS_PER_UNIT, ORGANISERS_SECONDS_512x20
from mu_lib.audit.bounds import (
    DELTA,
    THRESHOLD_CHOICES,
    EpsilonLowerBound,
    clopper_pearson,
    eps_from_rates,
    epsilon_lower_bound,
    max_certifiable_epsilon,
    models_needed,
)
from mu_lib.audit.calibrated import FIRST_BUCKET_EDGE, CalibratedForgetScore, calibrated_forget_score
from mu_lib.audit.epsilons import (
    CalibratedEpsilons,
    DecisionRule,
    best_decision_rules,
    calibrated_epsilons,
    per_example_epsilons,
)
from mu_lib.audit.permutation import CORRECTIONS, PermutationTest, adjust_p_values, permutation_test
from mu_lib.audit.score import final_score, forget_points, forget_score, forget_score_from_epsilons
from mu_lib.mia.lira import logit_scaled_confidence

__all__ = [
    "eps_from_rates", "clopper_pearson", "EpsilonLowerBound", "epsilon_lower_bound", "logit_scaled_confidence",
    "DELTA", "EPSILON_CAP", "per_example_epsilons", "DecisionRule", "best_decision_rules", "forget_points",
    "forget_score", "forget_score_from_epsilons", "final_score", "CalibratedEpsilons", "calibrated_epsilons",
    "max_certifiable_epsilon", "models_needed", "ORGANISERS_SECONDS_512x20", "THRESHOLDS_PER_UNIT",
    "INTERVAL_BUFFER", "FIRST_BUCKET_EDGE", "CalibratedForgetScore", "calibrated_forget_score", "CORRECTIONS",
    "PermutationTest", "adjust_p_values", "permutation_test", "THRESHOLD_CHOICES",
]
