"""The auto-checked exercises: a right answer passes, each typical wrong answer fails on the property
it breaks, with expected against got, and the feedback renders everywhere.

The right answers here are written from the definitions, as slowly and plainly as possible (Python
loops, scipy's beta quantiles, closed forms); the checks compare against the library, so each test
also ties the library to the definition.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import beta

from mu_lib import exercises
from mu_lib.exercises import Case, Feedback, run_cases

BOOK = Path(__file__).resolve().parents[1] / "book"


# ------------------------------------------------------------------ right answers, from the definitions


def adv_loop(member_losses, nonmember_losses):
    best = 0.0
    for t in [-math.inf, *member_losses, *nonmember_losses]:
        tpr = sum(x <= t for x in member_losses) / len(member_losses)
        fpr = sum(x <= t for x in nonmember_losses) / len(nonmember_losses)
        best = max(best, tpr - fpr)
    return best


def eps_loop(fpr, fnr, delta):
    out = 0.0
    for num, den in ((1 - delta - fpr, fnr), (1 - delta - fnr, fpr)):
        if num > 0:
            out = max(out, math.inf if den == 0 else math.log(num / den))
    return out


def clip_loop(grads, max_grad_norm):
    rows = []
    for g in grads:
        norm = math.sqrt(sum(float(v) ** 2 for v in g))
        rows.append([float(v) * min(1.0, max_grad_norm / norm) if norm > 0 else 0.0 for v in g])
    return torch.tensor(rows)


def bound_numpy(X_remaining, step):
    s = np.linalg.svd(X_remaining, compute_uv=False)[0]
    return 0.25 * s * np.linalg.norm(step) * np.linalg.norm(X_remaining @ step)


def neggrad_loop(retain_logits, retain_labels, forget_logits, forget_labels, alpha):
    def ce(z, y):
        return sum(-(z[i, y[i]] - torch.logsumexp(z[i], 0)) for i in range(len(y))) / len(y)
    return alpha * ce(retain_logits, retain_labels) - (1 - alpha) * ce(forget_logits, forget_labels)


def final_loop(forget_quality, retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned, test_acc_retrained):
    mean = lambda a: sum(a) / len(a)
    return (forget_quality * mean(retain_acc_unlearned) / mean(retain_acc_retrained)
            * mean(test_acc_unlearned) / mean(test_acc_retrained))


def phi_loop(logits, labels):
    out = []
    for z, y in zip(logits, labels):
        m = max(z)
        e = [math.exp(v - m) for v in z]
        out.append(math.log(e[y]) - math.log(sum(e) - e[y]))
    return np.array(out)


def calibrated_scipy(false_positives, false_negatives, n, alpha, delta):
    up = [1.0 if k == n else beta.ppf(1 - alpha / 2, k + 1, n - k) for k in (false_positives, false_negatives)]
    return max(0.0, math.log((1 - delta - up[0]) / up[1]), math.log((1 - delta - up[1]) / up[0]))


def forget_loop(epsilons, num_models):
    last = math.ceil(math.log(num_models - 1))
    return sum(2.0 ** -math.floor(e / 0.5) if e < last else 0.0 for e in epsilons) / len(epsilons)


def indisc_loop(mia_accuracy):
    a = np.atleast_1d(np.asarray(mia_accuracy, dtype=float))
    out = np.array([1 - (2 * x - 1 if x >= 0.5 else 1 - 2 * x) for x in a])
    return out if np.ndim(mia_accuracy) else float(out[0])


def restarts_loop(slices, ids):
    out = {}
    for k, shard in enumerate(slices):
        for r, piece in enumerate(shard):
            if any(int(i) in {int(x) for x in piece} for i in ids):
                out[k] = min(r, out.get(k, r))
    return out


RIGHT = {
    "check_mia_advantage": adv_loop,
    "check_eps_from_rates": eps_loop,
    "check_clip_gradients": clip_loop,
    "check_data_dependent_bound": bound_numpy,
    "check_neggrad_plus_loss": neggrad_loop,
    "check_final_score": final_loop,
    "check_logit_scaled_confidence": phi_loop,
    "check_calibrated_epsilon": calibrated_scipy,
    "check_forget_score": forget_loop,
    "check_indiscernibility": indisc_loop,
    "check_sisa_restarts": restarts_loop,
}


@pytest.mark.parametrize("check", sorted(RIGHT))
def test_a_right_answer_passes_and_says_so(check):
    fb = getattr(exercises, check)(RIGHT[check])
    assert isinstance(fb, Feedback) and fb.passed and bool(fb), str(fb)
    assert fb.cases >= 3 and str(fb).startswith("✓")


# ------------------------------------------------------------------ typical wrong answers

def _where(slices, i):
    return next((k, r) for k, shard in enumerate(slices) for r, piece in enumerate(shard) if i in piece)


def _wrong_bound(X_remaining, step):  # Frobenius instead of spectral norm
    return 0.25 * np.linalg.norm(X_remaining) * np.linalg.norm(step) * np.linalg.norm(X_remaining @ step)


WRONG = [
    ("check_mia_advantage", lambda member_losses, nonmember_losses: float(np.mean(member_losses < 0.5)
                                                                           - np.mean(nonmember_losses < 0.5)),
     "the best threshold"),
    ("check_mia_advantage", lambda member_losses, nonmember_losses: adv_loop(nonmember_losses, member_losses),
     "separated losses give advantage 1"),
    ("check_eps_from_rates", lambda fpr, fnr, delta: math.log((1 - delta - fpr) / fnr),
     "the bound takes the larger of its two sides"),
    ("check_eps_from_rates", lambda fpr, fnr, delta: eps_loop(fpr, fnr, 0.0), "δ is subtracted"),
    ("check_eps_from_rates", lambda fpr, fnr, delta: max(math.log((1 - fpr) / fnr), math.log((1 - fnr) / fpr)),
     "worse than guessing"),
    ("check_clip_gradients", lambda grads, max_grad_norm: grads * max_grad_norm / grads.norm(dim=1, keepdim=True),
     "shorter than C is left unchanged"),
    ("check_clip_gradients", lambda grads, max_grad_norm: grads * torch.clamp(max_grad_norm / grads.norm(), max=1),
     "each example is clipped on its own"),
    ("check_data_dependent_bound", _wrong_bound, "not the Frobenius norm np.linalg.norm(X)"),
    ("check_data_dependent_bound", lambda X_remaining, step: 4 * bound_numpy(X_remaining, step), "multiply by 0.25"),
    ("check_neggrad_plus_loss", lambda retain_logits, retain_labels, forget_logits, forget_labels, alpha:
     alpha * F.cross_entropy(retain_logits, retain_labels) + (1 - alpha) * F.cross_entropy(forget_logits,
                                                                                             forget_labels),
     "*subtracted*"),
    ("check_neggrad_plus_loss", lambda retain_logits, retain_labels, forget_logits, forget_labels, alpha:
     (1 - alpha) * F.cross_entropy(retain_logits, retain_labels) - alpha * F.cross_entropy(forget_logits,
                                                                                             forget_labels),
     "α weighs the retain loss"),
    ("check_final_score", lambda forget_quality, retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned,
     test_acc_retrained: final_loop(forget_quality, retain_acc_retrained, retain_acc_unlearned, test_acc_retrained,
                                    test_acc_unlearned), "unlearned over retrained"),
    ("check_final_score", lambda forget_quality, retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned,
     test_acc_retrained: min(forget_quality, final_loop(forget_quality, retain_acc_unlearned, retain_acc_retrained,
                                                        test_acc_unlearned, test_acc_retrained)), "not capped"),
    ("check_logit_scaled_confidence", lambda logits, labels: np.log(
        np.exp(logits)[np.arange(len(labels)), labels] / (np.exp(logits).sum(1) - np.exp(logits)[
            np.arange(len(labels)), labels])), "must not overflow"),
    ("check_logit_scaled_confidence", lambda logits, labels: logits[np.arange(len(labels)), labels], "uniform logits"),
    ("check_calibrated_epsilon", lambda false_positives, false_negatives, n, alpha, delta: eps_loop(
        false_positives / n, false_negatives / n, delta), "plug-in ε of the empirical rates"),
    ("check_calibrated_epsilon", lambda false_positives, false_negatives, n, alpha, delta: calibrated_scipy(
        false_positives, false_negatives, n, 2 * alpha, delta), "split over the two tails"),
    ("check_forget_score", lambda epsilons, num_models: float(np.mean(2.0 ** -np.floor(np.asarray(epsilons) / 0.5))),
     "the last bucket depends on N"),
    ("check_forget_score", lambda epsilons, num_models: forget_loop(epsilons, 512), "the last bucket depends on N"),
    ("check_indiscernibility", lambda mia_accuracy: 2 - 2 * mia_accuracy, "always *wrong*"),
    ("check_sisa_restarts", lambda slices, ids: {k: 0 for k in range(len(slices))}, "restarts its own shard"),
    ("check_sisa_restarts", lambda slices, ids: {k: 0 for k, r in [_where(slices, i) for i in ids]},
     "restarts its own shard"),
    ("check_sisa_restarts", lambda slices, ids: dict(_where(slices, i) for i in ids), "the earliest affected"),
    ("check_sisa_restarts", lambda slices, ids: dict([_where(slices, ids[0])]), "several shards"),
    ("check_sisa_restarts", lambda slices, ids: [_where(slices, i) for i in ids], "expected a dict, got list"),
    ("check_indiscernibility", lambda mia_accuracy: 1 - abs(2 * float(mia_accuracy) - 1), "elementwise"),
]


@pytest.mark.parametrize("check,fn,prop", WRONG, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_a_wrong_answer_names_the_property_and_shows_expected_against_got(check, fn, prop):
    with np.errstate(all="ignore"):
        fb = getattr(exercises, check)(fn)
    assert not fb.passed and not bool(fb)
    assert prop in fb.message, fb.message
    assert ("expected" in fb.message and "got" in fb.message) or "raised" in fb.message, fb.message
    assert "Hint:" in fb.message and str(fb).startswith("✗")


def test_the_message_shows_the_tiny_case_and_both_values():
    fb = exercises.check_eps_from_rates(lambda fpr, fnr, delta: 0.0)
    assert fb.message.startswith("a test that errs 10 % of the time either way certifies ln 9. On fpr=0.1, "
                                 "fnr=0.1, delta=0 expected 2.19722, got 0.")


def test_missing_return_exceptions_stubs_and_non_functions_get_their_own_hint():
    assert "returned None" in exercises.check_forget_score(lambda epsilons, num_models: None).message

    def stub(epsilons, num_models):
        raise NotImplementedError

    assert exercises.check_forget_score(stub).message.startswith("not implemented yet")
    fb = exercises.check_forget_score(lambda epsilons, num_models: 1 / 0)
    assert "raised ZeroDivisionError: division by zero" in fb.message
    fb = exercises.check_forget_score(lambda eps: 0.0)  # wrong signature
    assert "raised TypeError" in fb.message
    fb = exercises.check_forget_score(0.5)
    assert "pass your function itself" in fb.message and fb.cases == 0
    fb = exercises.check_logit_scaled_confidence(lambda logits, labels: np.zeros(7))
    assert "expected shape (1,), got shape (7,)" in fb.message
    fb = exercises.check_final_score(lambda **kw: "high")
    assert "expected a number or an array, got str" in fb.message


def test_run_cases_stops_at_the_first_failure_and_accepts_infinity():
    cases = [Case("inf", {"x": 0}, math.inf, "h"), Case("one", {"x": 1}, 1.0, "h"), Case("two", {"x": 2}, 2.0, "h")]
    fb = run_cases("demo", lambda x: math.inf if x == 0 else 1.0, cases, success="ok")
    assert not fb.passed and fb.cases == 3 and fb.message.startswith("two.")
    assert run_cases("demo", lambda x: math.inf if x == 0 else float(x), cases, success="ok").passed


def test_feedback_renders_as_html_markdown_and_text():
    good = exercises.check_eps_from_rates(eps_loop)
    bad = exercises.check_eps_from_rates(lambda fpr, fnr, delta: -1.0)
    assert 'class="mu-feedback"' in good._repr_html_() and "✓ Correct" in good._repr_html_()
    assert "✗ Not yet" in bad._repr_html_() and "&lt;" not in good._repr_html_()
    assert bad._repr_markdown_().startswith("**✗ Not yet** `eps_from_rates`")
    hostile = Feedback("x<script>", False, "a < b & c", 1)
    assert "<script>" not in hostile._repr_html_() and "a &lt; b &amp; c" in hostile._repr_html_()


def test_every_chapter_has_a_check_and_every_check_a_chapter():
    chapters = {p.stem for p in BOOK.glob("*.ipynb")}
    assert set(exercises.CHECKS) == chapters
    assert set(exercises.CHECKS.values()) == {getattr(exercises, name) for name in RIGHT}


def test_every_chapter_calls_its_check_and_its_solution_passes_it():
    """Issue 12: each chapter has an auto-checked exercise whose solution asserts it passes.

    The cells come from the classroom insertion script (metadata ``mu_classroom``); the solution's
    code runs after the chapter in ``tests/test_solutions.py``.
    """
    import nbformat

    for path in sorted(BOOK.glob("*.ipynb")):
        check = exercises.CHECKS[path.stem].__name__
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert f"exercises.{check}(my_" in code, f"{path.stem}: no exercise cell calls exercises.{check}"
        assert f"assert exercises.{check}(" in markdown, f"{path.stem}: no solution asserts that it passes {check}"
