"""Membership-inference attacks and their metrics.

* :func:`roc` / :func:`tpr_at_fpr`: ROC curves of a membership score (larger = member) and the
  true-positive rate at a fixed low false-positive rate, the metric that LiRA popularised.
* :func:`loss_threshold_attack`: the simplest attack, "low loss means member", evaluated over
  every threshold.
* :func:`simple_mia`: the attack of the NeurIPS 2023 unlearning challenge's starting kit: a
  logistic regression on per-example losses, forget (members) vs test (non-members), scored by
  10-fold stratified shuffle-split cross-validated accuracy.
* :func:`indiscernibility`: ``1 - |2 * MIA - 1|``, 1 when the attack is at chance;
  :func:`chance_gap`: the mean of ``|2 * MIA - 1|`` of an attack at chance on n examples.
* LiRA, the likelihood-ratio attack of Carlini et al. (2022): :func:`shadow_masks` (which examples
  each shadow model trains on), :func:`train_shadow_models` (many models at once with
  :func:`mu_lib.train.fit_many`), :func:`lira_statistics` (the logit-scaled confidence of every
  model on every example), :func:`lira_online` / :func:`lira_offline` (the Gaussian tests) and
  :func:`lira_scores` (every model in turn as the target, the others as its shadows).
* Evaluations of unlearning that compare N unlearned with N retrained models, example by
  example, from statistics a competition run already stores (no model is trained):
  :func:`ulira` (U-LiRA, Hayes et al. 2025: a per-example likelihood-ratio test between the two
  populations), :func:`rmia_unlearning` (offline RMIA, Zarifzadeh et al. 2024, with the retrained
  models as references; :func:`rmia_offline` and :func:`tune_offline_a` for any target) and
  :func:`klom` (the KL divergence of margins, Georgiev et al. 2024, as EasyDUB computes it).
* Memorization scores (Feldman and Zhang 2020) from subsampled shadow models:
  :func:`estimate_memorization`, and :func:`memorization_hook` for
  ``mu_lib.data.make_splits(..., forget="memorization", level=...)``.

Convention: scores are oriented so that **larger means "member"**. (TF-Privacy's
``compute_score_lira`` returns the opposite sign; the reference ``plot.py`` negates its
prediction before the ROC.)

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> members, nonmembers = rng.exponential(0.2, 500), rng.exponential(1.0, 500)  # losses
    >>> res = loss_threshold_attack(members, nonmembers)
    >>> 0.75 < res.auc < 0.9
    True
"""

from __future__ import annotations

from mu_lib.mia.attacks import (
    AttackResult,
    attack_from_scores,
    chance_gap,
    indiscernibility,
    loss_threshold_attack,
    roc,
    simple_mia,
    tpr_at_fpr,
)
from mu_lib.mia.klom import binned_kl, klom, klom_quantiles, margins
from mu_lib.mia.lira import (
    LIRA_ATTACKS,
    LiraScores,
    lira_offline,
    lira_online,
    lira_scores,
    lira_statistics,
    logit_scaled_confidence,
    shadow_masks,
    train_shadow_models,
)
from mu_lib.mia.memorization import (
    MemorizationScores,
    estimate_memorization,
    memorization_from_correct,
    memorization_hook,
    subsample_masks,
)
from mu_lib.mia.rmia import URmiaResult, rmia_offline, rmia_unlearning, true_class_probability, tune_offline_a
from mu_lib.mia.ulira import ULiraResult, ulira, ulira_log_ratio

__all__ = [
    "AttackResult", "roc", "tpr_at_fpr", "attack_from_scores", "loss_threshold_attack", "simple_mia",
    "indiscernibility", "chance_gap", "LIRA_ATTACKS", "shadow_masks", "train_shadow_models", "lira_statistics",
    "lira_online",
    "lira_offline", "LiraScores", "lira_scores", "logit_scaled_confidence",
    "ULiraResult", "ulira_log_ratio", "ulira", "true_class_probability", "rmia_offline", "tune_offline_a",
    "URmiaResult", "rmia_unlearning", "margins", "binned_kl", "klom", "klom_quantiles", "subsample_masks",
    "memorization_from_correct", "MemorizationScores", "estimate_memorization", "memorization_hook"
]
