"""Epoch budgets that keep each method's shape (issue 10, section 2).

For every registered method, the learning rates of every optimiser step are recorded (a global
optimiser hook) at budgets 1, 3 and 30 (30 exceeds every reference cost: the reference schedule)
and compared as functions of the fraction of the run done: a shorter run must follow the same
curve, with fewer steps. The cost that the budget bounds, and the rules the issue names (SCRUB's
max-steps, CF-k's milestones, RNI's final segment, forget-only passes counted by their size),
are checked one by one.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

from mu_lib import data, train, unlearn

BUDGETS = (1, 3, 30)
TRAINING = [n for n in unlearn.available() if unlearn.get(n).config.budget_cost() > 0]
SMALL = {"batch_size": 16, "retain_batch_size": 16, "forget_batch_size": 8, "noise_batch": 4,
         "noise_copies": 2, "woodfisher_n": 8, "num_examples": 8}


@pytest.fixture(scope="module")
def problem(one_thread):
    s = data.make_splits("digits", train_size=320, val_size=60, test_size=60, seed=0)
    net = train.train_on(s, model="small_cnn", recipe=train.Recipe(epochs=3, batch_size=32, lr=0.05), seed=0,
                         record_updates=True)
    return s, net


def _small(name: str) -> dict:
    fields = {f for f in unlearn.info(name).config_cls.__dataclass_fields__}
    return {k: v for k, v in SMALL.items() if k in fields}


@contextlib.contextmanager
def _lr_trace():
    rates: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: rates.append(float(opt.param_groups[0]["lr"])))
    try:
        yield rates
    finally:
        handle.remove()


def _curve(rates: list[float], grid: np.ndarray) -> np.ndarray:
    """The rate at each fraction of the run in ``grid`` (steps as equal slices of [0, 1))."""
    r = np.asarray(rates)
    return r[np.minimum((grid * len(r)).astype(int), len(r) - 1)]


def test_budget_rule_on_the_cost():
    for name in unlearn.available():
        ref = unlearn.get(name).config
        for b in BUDGETS:
            cfg = unlearn.get(name, epoch_budget=b).config
            if ref.budget_cost() <= b:
                assert cfg == ref, f"{name}: a budget above the reference cost must leave it unchanged"
            else:  # about the budget: integer phases are rounded
                assert cfg.budget_cost() <= b * 1.35 + 0.9, (name, b, cfg.budget_cost())
                assert cfg.budget_cost() >= min(b, ref.budget_cost()) * 0.45, (name, b, cfg.budget_cost())


def test_forget_only_passes_count_by_their_size():
    # gradient ascent reads the forget set only (a tenth of the data): 10 epochs cost 1 training epoch
    assert unlearn.get("gradient_ascent", epoch_budget=3).config.epochs == 10
    assert unlearn.get("gradient_ascent", epoch_budget=0.5).config.epochs == 5
    # NegGrad+ pairs each retain batch with a forget batch: an epoch costs 1.8
    assert unlearn.get("neggrad_plus", epoch_budget=3).config.epochs == 2
    # FCS: a stage-1 pass over the forget set costs 0.1, a stage-2 epoch 1
    fcs = unlearn.get("fcs", epoch_budget=3).config
    assert (fcs.stage1_epochs, fcs.epochs) == (1, 3)


def test_scrub_scales_its_max_steps_with_its_epochs():
    assert [(c.epochs, c.msteps) for c in (unlearn.get("scrub", epoch_budget=b).config for b in BUDGETS)] == [
        (1, 1), (3, 2), (5, 3)]


def test_rni_and_reinit_mse_keep_their_rounds_and_cycles():
    rni = unlearn.get("rni", epoch_budget=3).config
    ref = unlearn.get("rni").config
    assert rni.noise_rounds == ref.noise_rounds and rni.fine_lrs == ref.fine_lrs
    assert rni.reset_epochs / ref.reset_epochs == pytest.approx(rni.fine_epochs / ref.fine_epochs)
    cyc = unlearn.get("reinit_mse", epoch_budget=1).config
    assert len(cyc.cycle_epochs) == 3 and cyc.cycle_epochs[1] == pytest.approx(2 * cyc.cycle_epochs[0])
    assert cyc.cosine_period == pytest.approx(cyc.cycle_epochs[1])


@pytest.mark.parametrize("name", TRAINING)
def test_the_learning_rate_schedule_keeps_its_shape(name, problem):
    s, net = problem
    traces = {}
    for b in BUDGETS:
        method = unlearn.get(name, epoch_budget=b, **_small(name))
        with _lr_trace() as rates:
            method(net, s, device="cpu", seed=0)
        assert rates, f"{name} took no optimiser step at budget {b}"
        traces[b] = rates
    grid = (np.arange(200) + 0.5) / 200
    ref = _curve(traces[30], grid)
    scale = max(ref.max(), 1e-30)
    for b in (1, 3):
        gap = float(np.mean(np.abs(_curve(traces[b], grid) - ref)) / scale)
        assert gap < 0.12, f"{name}: at budget {b} the rate curve is {gap:.2f} away from the reference shape"
        assert len(traces[b]) <= len(traces[30])


def test_cf_k_decays_at_the_same_fractions_at_every_budget(problem):
    s, net = problem
    for b in BUDGETS:
        with _lr_trace() as rates:
            unlearn.get("cf_k", epoch_budget=b, batch_size=16)(net, s, device="cpu", seed=0)
        r = np.asarray(rates) / rates[0]
        n = len(r)
        assert np.allclose(r[: n // 2], 1.0)  # half of the run at the full rate, at every budget
        assert r[int(0.95 * n)] == pytest.approx(1e-3)


def test_rni_keeps_its_final_segment_at_the_higher_rate(problem):
    s, net = problem
    with _lr_trace() as rates:
        unlearn.get("rni", epoch_budget=3, batch_size=16)(net, s, device="cpu", seed=0)
    assert rates[-1] == pytest.approx(1e-3) and rates[0] == pytest.approx(2e-4)
    tail = np.mean(np.isclose(rates, 1e-3))
    assert tail == pytest.approx(1 / 9, abs=0.03)  # one epoch of nine at the reference, the same fraction here
