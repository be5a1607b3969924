"""``unlearn.tune``: Deep Unlearn's search with a practitioner's targets (issue 10, section 5).

The search is checked against a slow reference (every trial re-run by hand and re-scored), its
selection against the rule it states, and its data use against the test split, which it must
never read.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mu_lib import data, metrics, train, unlearn
from mu_lib.data import Splits


class RecordingSplits(Splits):
    def indices(self, part):  # noqa: D102 - records every part read
        self.__dict__.setdefault("seen", set()).add(part)
        return super().indices(part)


@pytest.fixture(scope="module")
def problem(one_thread):
    s = data.make_splits("digits", train_size=300, val_size=100, test_size=100, seed=0)
    net = train.train_on(s, model="mlp", recipe=train.Recipe(epochs=5, batch_size=32, lr=0.1), seed=0)
    return s, net


def test_trials_are_rescored_exactly_and_the_best_is_selected(problem):
    s, net = problem
    rec = RecordingSplits(s.data, retain=s.retain, forget=s.forget, val=s.val, test=s.test)
    result = unlearn.tune("finetune", net, rec, epoch_budget=2, trials=4, seed=3, seeds=2)
    assert "test" not in rec.__dict__["seen"]  # the test split is never read
    assert result.trials[0]["config"] == unlearn.get("finetune", epoch_budget=2).config
    assert result.reference == metrics.practitioner_reference(net, s)
    for row in result.trials:  # a slow reference: re-run every trial with both seeds and re-score it
        method = unlearn.Method(unlearn.info("finetune"), row["config"])
        scores = [metrics.deep_unlearn_objective(method(net, s, device="cpu", seed=3 + k), s,
                                                 reference=result.reference, seed=3 + k) for k in range(2)]
        assert row["objective"] == pytest.approx(float(np.mean(scores)))
        assert row["config"].budget_cost() <= 2 + 1e-9
    best = min(result.trials, key=lambda r: (r["objective"], r["passes"]))
    assert result.objective == best["objective"] and result.method.config == best["config"]
    again = unlearn.tune("finetune", net, s, epoch_budget=2, trials=4, seed=3, seeds=2)
    assert [r["objective"] for r in again.trials] == [r["objective"] for r in result.trials]


def test_a_cost_limit_excludes_trials_and_refinement_stays_in_the_space(problem):
    s, net = problem
    result = unlearn.tune("neggrad_plus", net, s, epoch_budget=3, trials=6, seed=0, seeds=1,
                          max_passes=4000, refine=0.6)
    assert all(r["passes"] <= 4000 for r in result.trials if r["config"] == result.method.config)
    space = unlearn.search_space("neggrad_plus")
    for row in result.trials[1:]:
        setting = row["setting"]
        assert 1e-5 <= setting["lr"] <= 1e-1 and 0 <= setting["alpha"] <= 1
        assert setting["batch_size"] in space["batch_size"].values and 1 <= setting["length"] <= 3


def test_class_forgetting_targets_and_the_attack_on_the_forgotten_class():
    s = data.make_splits("digits", forget="class", forget_class=3, train_size=300, val_size=100, test_size=100,
                         seed=0)
    net = train.train_on(s, model="mlp", recipe=train.Recipe(epochs=5, batch_size=32, lr=0.1), seed=0)
    ref = metrics.practitioner_reference(net, s)
    xv, yv = s.xy("val")
    correct = train.evaluate(net, xv, yv).correct & (yv.numpy() != 3)
    assert ref["forget"] == 0.0 and ref["val"] == pytest.approx(correct.mean())
    result = unlearn.tune("random_labels", net, s, epoch_budget=1, trials=2, seed=0, seeds=1)
    out = result.method(net, s, device="cpu", seed=0)
    score = metrics.deep_unlearn_objective(out, s, reference=ref, seed=0, mia_classes=[3])
    assert math.isfinite(score) and result.trials[0]["objective"] >= 0


def test_bad_arguments_are_refused(problem):
    s, net = problem
    with pytest.raises(ValueError, match="nothing to tune"):
        unlearn.tune("retrain", net, s, epoch_budget=1)
    with pytest.raises(ValueError, match="trials must be a positive integer"):
        unlearn.tune("finetune", net, s, epoch_budget=1, trials=0)
    with pytest.raises(ValueError, match="epoch_budget must be a positive number"):
        unlearn.tune("finetune", net, s, epoch_budget=0)
    with pytest.raises(ValueError, match="validation split is empty"):
        unlearn.tune("finetune", net, s.replace(val=s.val[:0]), epoch_budget=1)
    with pytest.raises(ValueError, match="unknown unlearning method"):
        unlearn.tune("forget_everything", net, s, epoch_budget=1)


def test_search_space_follows_deep_unlearn():
    space = unlearn.search_space("finetune")
    assert (space["lr"].lo, space["lr"].hi) == (1e-5, 1e-1) and space["batch_size"].values == (64, 128, 256)
    assert "lr_factor" in unlearn.search_space("fcs") and "lr" not in unlearn.search_space("fcs")
    assert "rewind" in unlearn.search_space("scrub") and unlearn.search_space("ssd")["alpha"].hi == 1000.0
    rng = np.random.default_rng(0)
    lr = space["lr"]
    assert all(lr.lo <= lr.perturb(lr(rng), rng) <= lr.hi for _ in range(100))
