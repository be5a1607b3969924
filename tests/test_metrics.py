"""`metrics` against direct computation, and the determinism of the whole pipeline on CPU."""

import dataclasses

import numpy as np
import pytest

from mu_lib import data, metrics, mia, runtime, train, unlearn


@pytest.fixture(scope="module")
def setting():
    prof = runtime.get_profile("smoke")
    splits = data.make_splits("digits", forget_fraction=0.1, val_size=100, test_size=300, seed=0)
    recipe = dataclasses.replace(prof.recipe, epochs=3)
    original = train.train_on(splits, model="small_cnn", recipe=recipe, seed=0)
    return splits, original, recipe


def test_report_matches_direct_computation(setting):
    splits, original, _ = setting
    rep = metrics.evaluate_unlearning(original, splits, method="original", seconds=2.0, retrain_seconds=8.0)
    for part in ("retain", "forget", "val", "test"):
        assert getattr(rep, f"{part}_acc") == train.evaluate(original, *splits.xy(part)).accuracy
    f = train.evaluate(original, *splits.xy("forget")).losses
    t = train.evaluate(original, *splits.xy("test")).losses
    assert rep.mia == mia.simple_mia(f, t, seed=0)
    assert rep.indiscernibility == pytest.approx(1 - abs(2 * rep.mia - 1))
    assert rep.cost_ratio == 0.25 and rep.as_dict()["method"] == "original"


def test_compare_methods_keeps_order_and_times(setting):
    splits, original, recipe = setting
    methods = {"retrain": unlearn.get("retrain", **dataclasses.asdict(recipe)), "nothing": unlearn.get("original")}
    reps = unlearn.compare_methods(original, splits, methods, retrain_seconds=1.0)
    assert [r.method for r in reps] == ["retrain", "nothing"]
    assert reps[0].seconds > reps[1].seconds >= 0
    assert reps[1].forget_acc == train.evaluate(original, *splits.xy("forget")).accuracy


def test_compare_methods_skips_a_diverging_method_only_when_asked(setting):
    splits, original, _ = setting
    methods = {"ga": unlearn.get("gradient_ascent", lr=1e30), "nothing": unlearn.get("original")}
    with pytest.raises(FloatingPointError, match="gradient_ascent"):
        unlearn.compare_methods(original, splits, methods)
    with pytest.warns(RuntimeWarning, match="ga diverged and is left out"):
        reps = unlearn.compare_methods(original, splits, methods, on_divergence="skip")
    assert [r.method for r in reps] == ["nothing"]
    with pytest.raises(ValueError, match="on_divergence"):
        unlearn.compare_methods(original, splits, methods, on_divergence="ignore")


def test_pipeline_is_deterministic_on_cpu(setting):
    """Same seed, same numbers: splits, training, unlearning and the attack, run twice."""
    def run():
        s = data.make_splits("digits", forget_fraction=0.1, val_size=100, test_size=300, seed=3)
        net = train.train_on(s, model="small_cnn", recipe=setting[2], seed=3)
        out = unlearn.get("finetune", epochs=1)(net, s, device="cpu", seed=3)
        rep = metrics.evaluate_unlearning(out, s, seed=3)
        return dataclasses.replace(rep, seconds=None), train.evaluate(out, *s.xy("test")).logits

    (a, la), (b, lb) = run(), run()
    assert a == b
    np.testing.assert_array_equal(la, lb)


def test_practitioner_reference_and_the_objectives_parts(setting):
    splits, original, _ = setting
    ref = metrics.practitioner_reference(original, splits)
    acc = {p: train.evaluate(original, *splits.xy(p)).accuracy for p in ("retain", "val")}
    assert ref == {"retain": acc["retain"], "val": acc["val"], "forget": acc["val"]}
    assert metrics.forgotten_classes(splits) == []
    score, accs = metrics.objective_and_accuracies(original, splits, reference=ref, seed=0)
    assert score == metrics.deep_unlearn_objective(original, splits, reference=ref, seed=0)
    assert accs["retain"] == acc["retain"]
    # without the membership term, the objective is the norm of the three accuracy gaps / 3
    quiet, _ = metrics.objective_and_accuracies(original, splits, reference=ref, privacy=False)
    gaps = [abs(accs[p] - ref[p]) / 3 for p in ("retain", "forget", "val")]
    assert quiet == pytest.approx(float(np.linalg.norm(gaps)))
    with pytest.raises(ValueError, match="no example of the classes"):
        metrics.deep_unlearn_objective(original, splits, reference=ref, mia_classes=[99])


def test_largest_gap_and_the_bar_against_a_loop():
    from dataclasses import replace

    from mu_lib.metrics import UnlearningReport, largest_gap, meets_bar

    ref = UnlearningReport("retrain", 1.0, 0.89, 0.87, 0.86, 0.5, 1.0)
    r = replace(ref, method="m", retain_acc=0.985, forget_acc=0.905, test_acc=0.85, pass_ratio=0.15)
    by_hand = 100 * max(abs(a - b) for a, b in ((0.985, 1.0), (0.905, 0.89), (0.85, 0.86)))
    assert abs(largest_gap(r, ref) - by_hand) < 1e-9
    assert abs(largest_gap(r, ref, parts=("test",)) - 1.0) < 1e-9
    assert meets_bar(r, ref)  # 1.5 points at most, 15 % of the passes
    assert not meets_bar(r, ref, points=1.4)
    assert not meets_bar(r, ref, max_cost=0.1)
    assert not meets_bar(replace(r, pass_ratio=None), ref)  # cost unknown: no verdict
