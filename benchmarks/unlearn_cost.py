"""Cost of every registered unlearning method relative to retraining: example passes first, wall time second.

The original model is trained once on the profile's data (``MU_PROFILE``, default ``cpu``), with
Amnesiac's update log, and a random 10 % of its training set is forgotten. Retraining from
scratch on the retain set (the ``retrain`` method with the profile's recipe) is run first; every
other method then runs from the same original model with its reference settings, fitted to the
profile's epoch budget by the budget rule (:class:`mu_lib.unlearn.UnlearnConfig`). For each, the
registry counts the example passes (:mod:`mu_lib.cost`: the same on every machine) and times the
unlearning itself; both are printed as ratios to retraining's. The pass ratio is the verdict; the
time ratio depends on the machine and on whatever else it is doing.

Usage: MU_PROFILE=cpu python benchmarks/unlearn_cost.py [--forget random|class] [--methods a,b,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from mu_lib import cost, data, runtime, train, unlearn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forget", default="random", choices=["random", "class"])
    parser.add_argument("--methods", default="", help="comma-separated subset (default: every registered method)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    prof = runtime.setup(chapter="benchmark unlearn_cost", seed=args.seed, profile=runtime.get_profile().name)
    names = [n for n in (args.methods.split(",") if args.methods else unlearn.available()) if n != "retrain"]
    for n in names:
        unlearn.info(n)  # fail early on a typo, listing the valid names
    splits = data.make_splits(prof.dataset, forget=args.forget, forget_fraction=0.1, forget_class=0,
                              train_size=prof.train_size, val_size=prof.val_size, test_size=prof.test_size,
                              seed=args.seed)
    start = time.perf_counter()
    original = train.train_on(splits, "train", model=prof.model, recipe=prof.recipe, seed=args.seed,
                              device=prof.device, record_updates="amnesiac" in names)
    train_seconds = time.perf_counter() - start
    unlearn.get("finetune", epochs=1)(original, splits, device=prof.device, seed=args.seed)  # warm-up

    retrain = unlearn.get("retrain", **dataclasses.asdict(prof.recipe))
    retrain(original, splits, device=prof.device, seed=args.seed)
    base, base_passes = retrain.last_seconds, retrain.last_passes
    nominal = cost.training_passes(epochs=prof.recipe.epochs, examples=len(splits.retain))
    budget = prof.unlearn_epoch_budget
    print(f"{splits}\noriginal model: {train_seconds:.1f} s; retrain: {base_passes} passes ({nominal} nominal), "
          f"{base:.1f} s; epoch budget {budget}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {prof.device}")
    print(f"{'method':<20}{'family':<24}{'budget cost':>12}{'passes':>11}{'pass ratio':>11}{'seconds':>9}"
          f"{'time ratio':>11}")
    print(f"{'retrain':<20}{'reference':<24}{prof.recipe.epochs:>12g}{base_passes:>11}{1.0:>11.3f}{base:>9.2f}"
          f"{1.0:>11.3f}")
    for name in names:
        method = unlearn.get(name, epoch_budget=budget)
        method(original, splits, device=prof.device, seed=args.seed)
        passes, seconds = method.last_passes, method.last_seconds
        print(f"{name:<20}{method.info.family:<24}{method.config.budget_cost():>12.2f}{passes:>11}"
              f"{passes / base_passes:>11.3f}{seconds:>9.2f}{seconds / base:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
