"""Evaluations of a finished competition run (U-LiRA, RMIA, KLoM, accuracy gaps, Kendall's tau), training nothing.

References: the competition's own report of the same run (F, accuracies, forget confidences), the
``mia`` functions applied by hand to the stored logits, scipy's Kendall tau, and the known answer
that a deterministic method (doing nothing) is always detected by U-LiRA.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from mu_lib import competition, data, mia, train
from mu_lib.competition.units import OUTPUT_ROWS, output_rows

pytestmark = pytest.mark.usefixtures("one_thread")

N = 4


@pytest.fixture(scope="module")
def run():
    splits = data.make_splits("digits", forget_fraction=0.05, train_size=300, val_size=60, test_size=100, seed=0)
    comp = competition.Competition(splits, model="mlp", recipe=train.Recipe(epochs=3, batch_size=64, lr=0.1),
                                   num_models=N, methods=["retrain", "original", "finetune"],
                                   run_dir=tempfile.mkdtemp(), epoch_budget=1)
    comp.run()
    return splits, comp


@pytest.fixture(scope="module")
def evaluation(run):
    splits, comp = run
    return competition.evaluate_run(comp.run_dir, splits)


def test_result_files_store_logits_of_the_forget_retain_and_validation_rows(run):
    splits, comp = run
    with np.load(Path(comp.run_dir) / "unlearn" / "finetune" / "00000.npz") as z:
        assert z["forget_logits"].shape == (len(splits.forget), 10)
        assert z["retain_logits"].shape == (min(len(splits.retain), OUTPUT_ROWS["retain"]), 10)
        assert z["val_logits"].shape == (len(splits.val), 10)
        assert z["forget_logits"].dtype == np.float32
        y = splits.data.y.numpy()[splits.forget]
        np.testing.assert_allclose(mia.margins(z["forget_logits"], y), z["forget_conf"], atol=1e-5)


def test_output_rows_are_a_fixed_evenly_spaced_subset():
    s = data.make_splits("digits", val_size=1100, test_size=100, seed=0)  # 537 retain examples
    rows = output_rows(s, "retain")
    assert len(rows) == OUTPUT_ROWS["retain"] and rows[0] == 0 and rows[-1] == len(s.retain) - 1
    assert np.array_equal(rows, output_rows(s, "retain"))
    assert len(output_rows(s, "val")) == OUTPUT_ROWS["val"]
    assert np.array_equal(output_rows(s, "forget"), np.arange(len(s.forget)))


def test_competition_numbers_are_those_of_the_report(run, evaluation):
    rep = run[1].report()
    for label in ("retrain", "original", "finetune"):
        ev, sc = evaluation[label], rep[label]
        assert ev.forget_quality == pytest.approx(sc.forget_quality)
        assert ev.final_score == pytest.approx(sc.final_score)
        assert ev.retain_gap == pytest.approx(abs(sc.retain_acc - rep.retrain_retain_acc))
        assert ev.forget_gap == pytest.approx(abs(sc.forget_acc - rep.retrain_forget_acc))
        assert ev.test_gap == pytest.approx(abs(sc.test_acc - rep.retrain_test_acc))
        assert ev.max_gap == pytest.approx(max(ev.retain_gap, ev.forget_gap, ev.test_gap))
        assert ev.num_runs == N


def test_ulira_and_klom_are_those_of_the_stored_confidences(run, evaluation):
    rep = run[1].report()
    for label in ("original", "finetune"):
        ul = mia.ulira(rep[label].confs, rep.retrained_confs)
        assert evaluation[label].ulira_accuracy == pytest.approx(ul.accuracy)
        if label == "finetune":  # (doing nothing: N copies of one model, sigma ~ 0, ratios dominated by rounding)
            np.testing.assert_allclose(evaluation[label].ulira.scores, ul.scores, rtol=1e-3, atol=1e-3)
        kl = mia.klom(rep[label].confs, rep.retrained_confs)
        np.testing.assert_allclose(evaluation[label].klom_values, kl, atol=1e-6)
        assert evaluation[label].klom_forget == pytest.approx(np.quantile(kl, 0.95), abs=1e-6)


def test_doing_nothing_is_always_detected(evaluation):
    assert evaluation["original"].ulira_accuracy == 1.0
    assert evaluation["original"].forget_quality == 0.0


def test_rmia_uses_the_retrained_models_as_references(run, evaluation):
    splits, comp = run
    root = Path(comp.run_dir)
    y = splits.data.y.numpy()

    def probs(folder, part):
        rows = output_rows(splits, part)
        lab = y[splits.indices(part)][rows]
        return np.stack([mia.true_class_probability(np.load(folder / f"{i:05d}.npz")[f"{part}_logits"], lab)
                         for i in range(N)])

    u, r = root / "unlearn" / "finetune", root / "retrain"
    expected = mia.rmia_unlearning(probs(u, "forget"), probs(r, "forget"), probs(u, "val"), probs(r, "val"),
                                   offline_a=evaluation.offline_a)
    np.testing.assert_allclose(evaluation["finetune"].rmia.scores, expected.scores)
    assert evaluation["finetune"].rmia_auc == pytest.approx(expected.auc)
    assert 0 <= evaluation.offline_a <= 1 and 0 <= evaluation.offline_a_auc <= 1


def test_ranks_and_kendall_tau(evaluation):
    ranks = evaluation.ranks()
    assert list(ranks.columns) == list(competition.CRITERIA)
    table = evaluation.table()
    assert ranks.loc["retrain", "F"] == table["forget_quality"].rank(ascending=False)["retrain"]
    tau = evaluation.kendall_tau()
    assert np.allclose(tau.values, tau.values.T) and np.allclose(np.diag(tau.values), 1.0)
    assert tau.loc["F", "KLoM"] == pytest.approx(kendalltau(ranks["F"], ranks["KLoM"]).statistic)
    with pytest.raises(ValueError, match="not in this evaluation"):
        evaluation.ranks(["retrain", "nope"])


def test_a_given_offline_a_is_used(run):
    splits, comp = run
    ev = competition.evaluate_run(comp.run_dir, splits, methods=["finetune"], offline_a=0.3)
    assert ev.offline_a == 0.3 and np.isnan(ev.offline_a_auc) and list(ev.methods) == ["finetune"]


def test_splits_of_another_run_and_bad_options_are_rejected(run):
    splits, comp = run
    other = data.make_splits("digits", forget_fraction=0.05, train_size=300, val_size=60, test_size=100, seed=1)
    with pytest.raises(ValueError, match="not those of"):
        competition.evaluate_run(comp.run_dir, other)
    with pytest.raises(ValueError, match="offline_a"):
        competition.evaluate_run(comp.run_dir, splits, offline_a=2.0)


def test_result_files_without_logits_are_named(run, tmp_path):
    import shutil

    splits, comp = run
    old = tmp_path / "old"
    shutil.copytree(comp.run_dir, old)
    path = old / "unlearn" / "original" / "00001.npz"
    with np.load(path) as z:
        kept = {k: z[k] for k in z.files if not k.endswith("_logits")}
    np.savez(path, **kept)
    json.loads((old / "manifest.json").read_text())  # still a valid run directory for merge
    with pytest.raises(ValueError, match="00001.npz has no 'forget_logits'"):
        competition.evaluate_run(old, splits, methods=["original"])
