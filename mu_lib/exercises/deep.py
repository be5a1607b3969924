"""Checks of the exercises of the deep-unlearning chapters: NegGrad+ and the competition's score."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mu_lib import audit, sisa
from mu_lib.exercises.feedback import Case, Feedback, run_cases

__all__ = ['check_neggrad_plus_loss', 'check_final_score', 'check_sisa_restarts']


# --------------------------------------------------------------------------------------------
# deep-unlearning


def check_neggrad_plus_loss(fn: Callable[..., Any]) -> Feedback:
    """Deep unlearning: NegGrad+'s loss ``α · CE(retain) − (1 − α) · CE(forget)``.

    ``fn(retain_logits, retain_labels, forget_logits, forget_labels, alpha)`` returns a scalar
    tensor; cross-entropies are batch means, as ``torch.nn.functional.cross_entropy`` computes
    them (the loss of :mod:`mu_lib.unlearn.gradient`'s ``neggrad_plus`` with ``proximal = 0``).

    Example:
        >>> def loss(retain_logits, retain_labels, forget_logits, forget_labels, alpha):
        ...     return (alpha * F.cross_entropy(retain_logits, retain_labels)
        ...             - (1 - alpha) * F.cross_entropy(forget_logits, forget_labels))
        >>> check_neggrad_plus_loss(loss).passed
        True
    """
    g = torch.Generator().manual_seed(3)
    cases = []
    for prop, nr, nf, k, alpha, hint in [
        ("the forget loss is *subtracted* (gradient ascent on the forget set)", 4, 2, 3, 0.5,
         "L = α·CE_r − (1 − α)·CE_f: the minus sign makes the optimiser increase the forget loss"),
        ("α weighs the retain loss and 1 − α the forget loss", 3, 3, 4, 0.7,
         "α multiplies the retain term; check that you did not swap α and 1 − α"),
        ("cross-entropies are means over each batch, not sums", 5, 2, 3, 0.95,
         "F.cross_entropy's default reduction is the mean; batches of different sizes must not change the scale"),
        ("α = 1 is plain fine-tuning on the retain set", 4, 4, 3, 1.0, "with α = 1 the forget term vanishes"),
    ]:
        args = {"retain_logits": torch.randn(nr, k, generator=g),
                "retain_labels": torch.randint(0, k, (nr,), generator=g),
                "forget_logits": torch.randn(nf, k, generator=g),
                "forget_labels": torch.randint(0, k, (nf,), generator=g), "alpha": alpha}
        expected = (alpha * F.cross_entropy(args["retain_logits"], args["retain_labels"])
                    - (1 - alpha) * F.cross_entropy(args["forget_logits"], args["forget_labels"]))
        cases.append(Case(prop, args, float(expected), hint,
                          shown=f"{nr} retain and {nf} forget examples with {k} classes, alpha={alpha}"))
    return run_cases("neggrad_plus_loss", fn, cases, rtol=1e-5, atol=1e-6,
                     success="your loss is NegGrad+'s: retain loss weighted by α minus forget loss weighted by 1 − α.")


# --------------------------------------------------------------------------------------------
# competition-methods


def check_final_score(fn: Callable[..., Any]) -> Feedback:
    """Competition methods: the challenge's final score from F and per-model accuracies.

    ``fn(forget_quality, retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned,
    test_acc_retrained)`` gets F and four arrays of per-model accuracies and returns
    ``F · (mean RA_U / mean RA_R) · (mean TA_U / mean TA_R)``; the reference is
    :func:`mu_lib.audit.final_score`.

    Example:
        >>> def score(forget_quality, retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned,
        ...           test_acc_retrained):
        ...     return (forget_quality * np.mean(retain_acc_unlearned) / np.mean(retain_acc_retrained)
        ...             * np.mean(test_acc_unlearned) / np.mean(test_acc_retrained))
        >>> check_final_score(score).passed
        True
    """
    spec = [
        ("equal accuracies leave F unchanged", 0.5, [0.9, 0.9], [0.9, 0.9], [0.8, 0.8], [0.8, 0.8],
         "the two ratios are 1 when the unlearned models are as accurate as the retrained ones"),
        ("the ratios are unlearned over retrained", 1 / 6, [0.97] * 3, [1.0] * 3, [0.90] * 3, [0.95] * 3,
         "divide the unlearned models' accuracy by the retrained models' accuracy, not the reverse"),
        ("accuracies are averaged over models before the ratio", 0.25, [0.8, 1.0], [0.9, 0.9], [0.7, 0.9], [0.8, 0.8],
         "take the mean of each array first, then the ratios of the means"),
        ("the score is not capped: more accurate than retraining scores above F", 0.5, [1.0, 1.0], [0.8, 0.8],
         [0.9, 0.9], [0.9, 0.9], "do not clip the ratios at 1"),
    ]
    cases = []
    for p, f, ra_u, ra_r, ta_u, ta_r, h in spec:
        args = {"forget_quality": f, "retain_acc_unlearned": np.array(ra_u), "retain_acc_retrained": np.array(ra_r),
                "test_acc_unlearned": np.array(ta_u), "test_acc_retrained": np.array(ta_r)}
        expected = audit.final_score(f, retain_acc_unlearned=ra_u, retain_acc_retrained=ra_r,
                                     test_acc_unlearned=ta_u, test_acc_retrained=ta_r)
        cases.append(Case(p, args, expected, h))
    return run_cases("final_score", fn, cases, rtol=1e-9,
                     success="your final score agrees with audit.final_score: F times the two accuracy ratios.")


# --------------------------------------------------------------------------------------------
# exact-unlearning


def check_sisa_restarts(fn: Callable[..., Any]) -> Feedback:
    """Exact unlearning: which SISA constituents a deletion request retrains, and from which slice.

    ``fn(slices, ids)`` gets a partition as ``slices[k][r]`` (the ids of slice ``r`` of shard
    ``k``, in training order) and the ids to forget, and returns ``{shard: first slice}``: every
    shard holding one of the ids restarts from the checkpoint before the earliest slice that holds
    one. The reference is :meth:`mu_lib.sisa.Partition.locate` (Bourtoule et al. 2021).

    Example:
        >>> def restarts(slices, ids):
        ...     out = {}
        ...     for k, shard in enumerate(slices):
        ...         hit = [r for r, s in enumerate(shard) if set(s) & set(ids)]
        ...         if hit:
        ...             out[k] = min(hit)
        ...     return out
        >>> check_sisa_restarts(restarts).passed
        True
    """
    def ref(part: sisa.Partition, ids: list[int]) -> dict[int, int]:
        first: dict[int, int] = {}
        for k, r in part.locate(ids):
            first[k] = min(r, first.get(k, r))
        return first

    part = sisa.make_partition(np.arange(24), shards=3, slices=4, seed=1)
    s = part.slices
    spec = [
        ("one id restarts its own shard from its own slice", [int(s[1][2][0])],
         "find the shard k and the slice r that hold the id: {k: r}"),
        ("shards without a forgotten id are left alone", [int(s[0][3][1])],
         "return only the shards that hold one of the ids"),
        ("within a shard, the earliest affected slice decides", [int(s[2][1][1]), int(s[2][3][0])],
         "a later slice was trained on top of every earlier checkpoint: restart from the earliest slice hit"),
        ("ids in several shards restart each of them", [int(s[0][0][0]), int(s[2][2][0]), int(s[1][3][1])],
         "collect one entry per shard hit"),
        ("the order of the ids does not matter", [int(s[1][3][0]), int(s[1][0][1]), int(s[1][2][0])],
         "take the minimum slice per shard, not the slice of the first id"),
    ]
    cases = [Case(p, {"slices": s, "ids": ids}, ref(part, ids), h,
                  shown=f"3 shards x 4 slices of 24 ids, forgetting ids {ids}") for p, ids, h in spec]
    return run_cases("sisa_restarts", fn, cases,
                     success="your restarts match the partition's: each shard hit, from its earliest slice.")
