"""Forgetting happens (issue 10, section 6): on a small model that has memorised a mislabelled
forget set, every method with its tuned setting lowers the forget accuracy on the wrong labels by
at least 20 points and keeps the retain accuracy within 10 points of the original's.

The problem: 400 digits, 20 of them (the forget set) relabelled with a wrong class
(``data.mislabel``), a small CNN trained for 40 epochs until it predicts all 20 wrong labels. A
model that never saw them cannot predict their wrong labels, so the forget accuracy must fall.

The settings below were found with ``unlearn.tune`` (epoch budget 8, 40 to 60 trials, one seed),
with targets a practitioner knows here without retraining: the original's retain and validation
accuracy, and 0 on the forget set (the membership term off, since mislabelled examples are told
apart from held-out ones even by a retrained model). Where the objective's choice traded retain
accuracy for forgetting beyond this test's bound, the trial with the largest margin to both bounds
among the same search's trials was kept. For fine-tuning, l1-sparse, CT, KDE and winner 8, whose
random searches did not reach a setting that forgets, the setting comes from a small manual grid
(a high learning rate with strong weight decay for the fine-tuning recipes; one layer per cycle,
small batches and no input noise for winner 8). Each method's reference setting, for comparison,
is in the closing note of issue 10.

Fisher forgetting is the exception, tested as such: its noise, inversely proportional to the
retain set's Fisher information, forgets the memorised labels only at a scale that also costs more
than 10 points of retain accuracy (at ``alpha`` 6e-6: 25 points of forgetting for 13 of retain);
the test asserts that trade-off, so that a change that removes it fails and is noticed.
"""

from __future__ import annotations

import dataclasses

import pytest

from mu_lib import data, train, unlearn

RECIPE = train.Recipe(epochs=40, batch_size=32, lr=0.05)

TUNED = {
    "retrain": dataclasses.asdict(RECIPE),
    "finetune": {"epochs": 9, "lr": 0.1, "weight_decay": 0.05, "batch_size": 64},
    "gradient_ascent": {"epochs": 40, "lr": 5.774e-04, "weight_decay": 0.06582, "batch_size": 64},
    "neggrad_plus": {"epochs": 2, "lr": 0.03206, "weight_decay": 1.715e-05, "alpha": 0.1503},
    "sfr_on": {"epochs": 6.481, "lr": 0.04364, "weight_decay": 1.487e-05, "forget_alpha": 6.773,
               "threshold": 4.567},
    "random_labels": {"epochs": 8, "lr": 0.001431, "weight_decay": 5.902e-04, "batch_size": 64},
    "salun": {"epochs": 8, "lr": 0.01873, "weight_decay": 0.003206, "threshold": 0.3694},
    "boundary_shrink": {"epochs": 70, "lr": 8.317e-04, "weight_decay": 8.501e-05, "eps": 0.2313},
    "boundary_expanding": {"epochs": 60, "lr": 4.556e-04, "weight_decay": 0.008668},
    "l1_sparse": {"epochs": 9, "lr": 0.1, "alpha": 1e-4, "weight_decay": 0.05, "batch_size": 64},
    "cf_k": {"epochs": 8, "lr": 0.09558, "weight_decay": 0.06248, "batch_size": 64},
    "eu_k": {"epochs": 8, "lr": 0.02141, "weight_decay": 0.01407, "batch_size": 64},
    "influence": {"alpha": 19.58},
    "ssd": {"alpha": 256.2, "lam": 0.5042, "batch_size": 64},
    "fisher": {"alpha": 6e-6},
    "scrub": {"epochs": 2, "msteps": 1, "gamma": 0.4547, "alpha": 0.373, "kd_T": 3.443, "lr": 0.06687,
              "weight_decay": 0.06028},
    "bad_teacher": {"epochs": 10, "lr": 0.01733, "batch_size": 64, "temperature": 1.798,
                    "retain_fraction": 0.4716},
    "scar": {"epochs": 5, "lr": 0.01074, "weight_decay": 9.765e-04, "batch_size": 128, "lambda_1": 3.729,
             "lambda_2": 3.375},
    "unsir": {"noise_l2": 0.2644, "impair_epochs": 3, "impair_lr": 0.03507, "repair_epochs": 3,
              "repair_lr": 0.01754, "batch_size": 64},
    "amnesiac": {"epochs": 7, "lr": 0.05349, "weight_decay": 2.882e-05},
    "fcs": {"epochs": 3, "batch_size": 128, "stage1_lr": 0.317, "forget_lr": 0.01902, "retain_lr": 0.06341},
    "msg": {"epochs": 8, "lr": 0.007531, "weight_decay": 1.159e-05, "init_rate": 0.332},
    "cfw": {"epochs": 7, "lr": 0.02689, "weight_decay": 1.363e-05, "batch_size": 256, "sigma": 0.1757},
    "prmq": {"epochs": 8.889, "prune_amount": 0.9536, "entropy_weight": 1.496, "lr": 0.01776,
             "weight_decay": 0.004694, "batch_size": 128},
    "ct": {"epochs": 8, "lr": 0.05, "weight_decay": 1e-4, "batch_size": 32},
    "kde": {"epochs": 7, "warmup_epochs": 1, "lr": 0.05, "warmup_lr": 0.01, "batch_size": 32},
    "rni": {"reset_epochs": 0.8642, "noise_epochs": 3.457, "fine_epochs": 3.457, "noise_std": 0.05128,
            "lr": 0.007531, "weight_decay": 1.159e-05},
    "reinit_mse": {"cycle_epochs": (3.0, 3.0, 3.0), "layers_per_cycle": 1, "lr": 0.01, "batch_size": 16,
                   "cosine_period": 3.0, "input_noise_std": 0.0},
}


@pytest.fixture(scope="module")
def memorised(one_thread):
    ds = data.load_dataset("digits")
    s = data.make_splits(ds, train_size=400, val_size=150, test_size=300, forget_fraction=20 / 400, seed=0)
    noisy = data.mislabel(ds, s.forget, seed=0)
    s = data.Splits(noisy, retain=s.retain, forget=s.forget, val=s.val, test=s.test, description="mislabelled")
    net = train.train_on(s, model="small_cnn", recipe=RECIPE, seed=0, record_updates=True)
    accuracy = {p: train.evaluate(net, *s.xy(p)).accuracy for p in ("retain", "forget")}
    assert accuracy["forget"] == 1.0 and accuracy["retain"] == 1.0  # the wrong labels are memorised
    return s, net, accuracy


def test_every_method_has_a_tuned_setting():
    assert sorted(TUNED) == sorted(n for n in unlearn.available() if n != "original")


@pytest.mark.parametrize("name", [n for n in sorted(TUNED) if n != "fisher"])
def test_the_tuned_setting_forgets_the_memorised_labels_and_keeps_the_rest(name, memorised):
    s, net, before = memorised
    after = _accuracies(unlearn.get(name, **TUNED[name])(net, s, device="cpu", seed=0), s)
    assert after["forget"] <= before["forget"] - 0.20, f"{name} forgot too little: {after}"
    assert after["retain"] >= before["retain"] - 0.10, f"{name} lost too much of the retain set: {after}"


def test_fisher_forgets_only_at_a_cost_in_retain_accuracy(memorised):
    """The exception: Fisher forgetting's tuned noise forgets 20 points only by costing more than 10
    points of retain accuracy (a change that removes the trade-off fails here and is noticed)."""
    s, net, before = memorised
    after = _accuracies(unlearn.get("fisher", **TUNED["fisher"])(net, s, device="cpu", seed=0), s)
    assert after["forget"] <= before["forget"] - 0.20, after
    assert after["retain"] < before["retain"] - 0.10, after


def _accuracies(model, s) -> dict[str, float]:
    return {p: train.evaluate(model, *s.xy(p)).accuracy for p in ("retain", "forget")}
