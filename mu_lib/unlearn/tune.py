"""Tuning a method's hyperparameters as a practitioner can: without a retrained model, without the test set.

Reference hyperparameters are tuned for one scale (CIFAR-10, a ResNet-18, hundreds of steps per
epoch) and do not transfer. Deep Unlearn (Cadet et al. 2024) therefore searches every method's
hyperparameters per data set and model, scoring a trial by

.. math:: \\bigl\\lVert \\bigl(|RA - RA^*|/3,\\; |FA - FA^*|/3,\\; |VA - VA^*|/3,\\;
          1 - \\mathrm{indisc}(\\mathrm{MIA}_{f\\,vs\\,val})\\bigr) \\bigr\\rVert_2 ,

with ``RA, FA, VA`` the retain, forget and validation accuracies and the starred targets a
retrained model's. :func:`tune` runs the same search with the targets a practitioner can compute
from the original model alone (:func:`mu_lib.metrics.practitioner_reference`: the original's
retain and validation accuracy, and for the forget set its validation accuracy, or 0 for a
forgotten class), averages every trial over seeds, and never reads the test set.

The search is Deep Unlearn's space (:func:`search_space`): learning rate log-uniform in
[1e-5, 1e-1], weight decay log-uniform in [1e-5, 1e-1], momentum 0.9, batch size in
{64, 128, 256}, and a length of 1 to ``epoch_budget`` epochs (here: the method's reference
schedule scaled, by the epoch-budget rule, to that cost), plus each method's own knobs. Deep
Unlearn samples it with Optuna's NSGA-III; :func:`tune` samples it at random (seeded), and its
first trial is always the reference setting scaled to the budget.

Example:
    >>> from mu_lib import data, train, unlearn
    >>> s = data.make_splits("digits", train_size=300, val_size=100, test_size=100, seed=0)
    >>> net = train.train_on(s, model="logreg", recipe=train.Recipe(epochs=3, batch_size=64, lr=0.1))
    >>> result = unlearn.tune("finetune", net, s, epoch_budget=1, trials=2, seed=0, seeds=1)
    >>> len(result.trials), result.method.name
    (2, 'finetune')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mu_lib import metrics
from mu_lib.data import Splits
from mu_lib.unlearn.base import Method, UnlearnConfig, get, info

__all__ = ["TuneResult", "search_space", "tune"]

@dataclass(frozen=True)
class LogUniform:
    """A value log-uniform in ``[lo, hi]``; a perturbation multiplies it by ``exp(N(0, 0.5^2))``."""

    lo: float
    hi: float

    def __call__(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))

    def perturb(self, value: float, rng: np.random.Generator) -> float:
        return float(min(self.hi, max(self.lo, value * math.exp(rng.normal(0.0, 0.5)))))


@dataclass(frozen=True)
class Uniform:
    """A value uniform in ``[lo, hi]``; a perturbation adds ``N(0, (0.1 (hi - lo))^2)``."""

    lo: float
    hi: float

    def __call__(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lo, self.hi))

    def perturb(self, value: float, rng: np.random.Generator) -> float:
        return float(min(self.hi, max(self.lo, value + rng.normal(0.0, 0.1 * (self.hi - self.lo)))))


@dataclass(frozen=True)
class Choice:
    """One of ``values``; a perturbation redraws it with probability 0.3."""

    values: tuple

    def __call__(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def perturb(self, value: Any, rng: np.random.Generator) -> Any:
        return self(rng) if rng.random() < 0.3 else value


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[lo, hi]``; a perturbation moves it by -1, 0 or +1."""

    lo: int
    hi: int

    def __call__(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.lo, self.hi + 1))

    def perturb(self, value: int, rng: np.random.Generator) -> int:
        return int(min(self.hi, max(self.lo, value + int(rng.integers(-1, 2)))))


Sampler = LogUniform | Uniform | Choice | IntRange

LR = LogUniform(1e-5, 1e-1)
WEIGHT_DECAY = LogUniform(1e-5, 1e-1)
BATCH = Choice((64, 128, 256))

# Each method's own knobs (Deep Unlearn's ranges where it searches the method: "float" U[0, 1],
# temperatures U[0, 5]; otherwise ranges around the papers' values, stated here).
_EXTRA: dict[str, dict[str, Sampler]] = {
    "neggrad_plus": {"alpha": Uniform(0.0, 1.0)},
    "sfr_on": {"forget_alpha": LogUniform(1.0, 100.0), "threshold": LogUniform(0.1, 10.0)},
    "salun": {"threshold": Uniform(0.0, 1.0)},
    "boundary_shrink": {"eps": LogUniform(0.01, 0.3)},
    "l1_sparse": {"alpha": LogUniform(1e-6, 1e-2)},
    "cf_k": {"k": Choice((1, 2))},
    "eu_k": {"k": Choice((1, 2))},
    "influence": {"alpha": LogUniform(1e-2, 20.0)},  # Deep Unlearn: U[0, 1]; SalUn's reruns: [1, 20]
    "ssd": {"alpha": LogUniform(1.0, 1000.0), "lam": LogUniform(0.1, 5.0)},  # SSD's own settings: 5 to 50
    "fisher": {"alpha": LogUniform(1e-9, 1e-4)},  # around Golatkar et al.'s sweep, 1e-8 to 1e-5
    "scrub": {"alpha": Uniform(0.0, 1.0), "gamma": Uniform(0.0, 1.0), "kd_T": Uniform(0.5, 5.0),
              "retain_batch_size": Choice((32, 64, 128)), "forget_batch_size": Choice((16, 32, 64)),
              "rewind": Choice((True, False))},
    "bad_teacher": {"temperature": Uniform(0.5, 5.0), "retain_fraction": Uniform(0.1, 1.0)},
    "scar": {"lambda_1": LogUniform(0.1, 10.0), "lambda_2": LogUniform(0.5, 50.0)},
    "unsir": {"noise_l2": LogUniform(0.01, 1.0)},
    "msg": {"init_rate": Uniform(0.05, 0.6)},
    "cfw": {"sigma": Uniform(0.0, 1.0)},
    "prmq": {"prune_amount": Uniform(0.5, 0.99), "entropy_weight": Uniform(0.0, 2.0)},
    "kde": {"temperature": Uniform(1.0, 5.0)},
    "rni": {"noise_std": Uniform(0.0, 0.1)},
    "reinit_mse": {"layers_per_cycle": IntRange(1, 6), "input_noise_std": LogUniform(1e-3, 0.1)},
}

_LR_FACTOR = LogUniform(0.1, 100.0)


def _lr_fields(cfg: UnlearnConfig) -> list[str]:
    """The learning rates of the model's optimisers (UNSIR's ``noise_lr`` optimises inputs, not the model)."""
    return [f.name for f in dataclasses.fields(cfg)
            if (f.name == "lr" or f.name.endswith("_lr")) and f.name != "noise_lr"]


def search_space(name: str) -> dict[str, Sampler]:
    """The samplers of ``name``'s hyperparameters (field name -> sampler: ``sampler(rng)`` draws a value,
    ``sampler.perturb(value, rng)`` a neighbouring one), the length excluded.

    Generic fields follow Deep Unlearn: ``lr`` log-uniform in [1e-5, 1e-1] (for a method with
    several learning rates, a common factor log-uniform in [0.1, 100] on all of them, stored as
    ``"lr_factor"``), ``weight_decay`` log-uniform in [1e-5, 1e-1], ``batch_size`` in
    {64, 128, 256}; then the method's own knobs.

    Example:
        >>> sorted(search_space("salun"))
        ['batch_size', 'lr', 'threshold', 'weight_decay']
    """
    cfg = info(name).config_cls()
    fields = {f.name for f in dataclasses.fields(cfg)}
    space: dict[str, Sampler] = {}
    lrs = _lr_fields(cfg)
    if lrs == ["lr"]:
        space["lr"] = LR
    elif lrs or "fine_lrs" in fields:
        space["lr_factor"] = _LR_FACTOR
    if "weight_decay" in fields:
        space["weight_decay"] = WEIGHT_DECAY
    if "batch_size" in fields and name not in ("fisher", "influence"):
        space["batch_size"] = BATCH
    space.update(_EXTRA.get(name, {}))
    return space


def _configure(name: str, params: Mapping[str, Any], *, length: float | None, epoch_budget: float) -> Method:
    """A method from sampled ``params``: learning-rate factor applied, length scaled by the budget rule."""
    base = get(name).config
    changes = {k: v for k, v in params.items() if k != "lr_factor"}
    if "lr_factor" in params:
        f = params["lr_factor"]
        for field in _lr_fields(base):
            changes[field] = getattr(base, field) * f
        if hasattr(base, "fine_lrs"):
            changes["fine_lrs"] = tuple(v * f for v in base.fine_lrs)
    cfg = dataclasses.replace(base, **changes)
    if cfg.budget_cost() > 0:
        target = epoch_budget if length is None else length
        cfg = cfg._scaled_epochs(target / cfg.budget_cost())
    return Method(info(name), cfg)


@dataclass(frozen=True)
class TuneResult:
    """What :func:`tune` found.

    Attributes:
        name: the method.
        method: the method configured with the selected setting.
        setting: the selected trial's sampled values (``{}``: the reference setting).
        objective: its objective, averaged over seeds (lower is better).
        reference: the target accuracies (:func:`mu_lib.metrics.practitioner_reference`).
        trials: one dict per trial: ``trial``, ``setting``, ``objective`` (``inf`` when the run
            diverged), mean ``retain``, ``forget`` and ``val`` accuracies, ``passes`` and the
            ``config`` it ran.
    """

    name: str
    method: Method
    setting: dict[str, Any]
    objective: float
    reference: dict[str, float]
    trials: list[dict[str, Any]]


def tune(name: str, original: nn.Module, splits: Splits, *, epoch_budget: float, trials: int = 20, seed: int = 0,
         seeds: int = 2, device: str | torch.device | None = None, max_passes: float | None = None,
         reference: Mapping[str, float] | None = None, privacy: bool = True, refine: float = 0.5) -> TuneResult:
    """Search ``name``'s hyperparameters on retain, forget and validation data only.

    Trial 0 is the reference setting scaled to ``epoch_budget``; trials 1, 2, ... draw a setting
    from :func:`search_space` and a length of 1 to ``epoch_budget`` epochs (the method's schedule
    scaled to that cost, :meth:`~mu_lib.unlearn.UnlearnConfig.with_epoch_budget`'s rule), from a
    generator seeded with ``seed``. Every trial runs with ``seeds`` seeds (``seed``, ``seed + 1``,
    ...) and is scored by :func:`mu_lib.metrics.deep_unlearn_objective` against
    :func:`mu_lib.metrics.practitioner_reference`, averaged over the seeds; for class forgetting
    the attack compares the forget set with validation examples of the forgotten classes. The
    trial with the lowest objective wins (fewer passes break ties); a trial whose loss diverges
    scores ``inf``, and with ``max_passes`` a trial that costs more example passes than that
    (:mod:`mu_lib.cost`) is not selected.

    Args:
        name: a registered method (not ``retrain``).
        original: the original model (never modified).
        splits: the data; its validation split must not be empty.
        epoch_budget: the most epochs (by the budget rule's cost) a trial may spend.
        trials: settings tried, the reference one included.
        seed: seed of the search and of the first run of each trial.
        seeds: runs per trial, averaged.
        device: where to run.
        max_passes: a cost limit in example passes per run (e.g. 20 % of retraining's).
        reference: target retain, forget and validation accuracies in place of
            :func:`~mu_lib.metrics.practitioner_reference` (a retrained model's, as in Deep
            Unlearn, or what the practitioner knows: e.g. 0 on a forget set of mislabelled
            examples, whose wrong labels a model that never saw them cannot guess).
        refine: the fraction of the trials after the first that perturb the best setting so far
            (a simple evolutionary refinement in place of Deep Unlearn's NSGA-III); the others are
            drawn at random, and come first.
        privacy: include the objective's membership term (``False`` when forget and held-out
            examples are not alike, e.g. mislabelled ones, which the attack tells apart even
            for a retrained model).

    Returns:
        A :class:`TuneResult`.

    Raises:
        ValueError: for ``retrain``, non-positive ``trials``, ``seeds`` or budget, or an empty
            validation split.
    """
    if name == "retrain":
        raise ValueError("retrain is the reference that unlearning approximates; there is nothing to tune")
    info(name)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    if not (isinstance(epoch_budget, (int, float)) and math.isfinite(epoch_budget) and epoch_budget > 0):
        raise ValueError(f"epoch_budget must be a positive number, got {epoch_budget!r}")
    if not 0 <= refine <= 1:
        raise ValueError(f"refine must be in [0, 1], got {refine!r}")
    reference = dict(reference) if reference is not None else metrics.practitioner_reference(original, splits,
                                                                                             device=device)
    gone = metrics.forgotten_classes(splits)
    rng = np.random.default_rng(seed)
    space = search_space(name)
    random_trials = trials - int(refine * (trials - 1))
    has_length = get(name).config.budget_cost() > 0
    rows: list[dict[str, Any]] = []
    for t in range(trials):
        if t == 0:
            params: dict[str, Any] = {}
            method = get(name, epoch_budget=epoch_budget)
            length = None
        else:
            top = math.floor(epoch_budget) if epoch_budget >= 1 else 1
            lengths = IntRange(1, max(1, top))
            parent = _best(rows, max_passes) if t >= random_trials else None
            if parent is None:
                params = {k: sample(rng) for k, sample in space.items()}
                length = float(lengths(rng)) if has_length else None
            else:  # refine: a neighbour of the best setting so far
                base = parent["setting"] or {k: _reference_value(name, k) for k in space}
                params = {k: space[k].perturb(base[k], rng) if k in base else space[k](rng) for k in space}
                old_length = base.get("length", float(lengths.hi))
                length = float(lengths.perturb(int(old_length), rng)) if has_length else None
            method = _configure(name, params, length=length, epoch_budget=epoch_budget)
        scores, accs, passes = [], [], []
        try:
            for k in range(seeds):
                net = method(original, splits, device=device, seed=seed + k)
                score, acc = metrics.objective_and_accuracies(net, splits, reference=reference, device=device,
                                                              seed=seed + k, mia_classes=gone or None,
                                                              privacy=privacy)
                scores.append(score)
                accs.append([acc[p] for p in ("retain", "forget", "val")])
                passes.append(method.last_passes)
        except FloatingPointError:
            scores, accs, passes = [math.inf], [[math.nan] * 3], [math.nan]
        mean = np.mean(accs, axis=0)
        rows.append({"trial": t, "setting": params if length is None else {**params, "length": length},
                     "objective": float(np.mean(scores)), "retain": float(mean[0]), "forget": float(mean[1]),
                     "val": float(mean[2]), "passes": float(np.mean(passes)), "config": method.config})
    best = _best(rows, max_passes) or rows[0]
    return TuneResult(name=name, method=Method(info(name), best["config"]), setting=best["setting"],
                      objective=best["objective"], reference=reference, trials=rows)


def _best(rows: list[dict[str, Any]], max_passes: float | None) -> dict[str, Any] | None:
    """The trial with the lowest finite objective (fewer passes break ties) within ``max_passes``."""
    eligible = [r for r in rows if math.isfinite(r["objective"]) and (max_passes is None or r["passes"] <= max_passes)]
    return min(eligible, key=lambda r: (r["objective"], r["passes"])) if eligible else None


def _reference_value(name: str, key: str) -> Any:
    """The reference setting's value of a searched field (a learning-rate factor of 1)."""
    return 1.0 if key == "lr_factor" else getattr(get(name).config, key)
