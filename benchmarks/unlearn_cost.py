"""Wall time of every registered unlearning method, and its ratio to the time of retraining.

The original model is trained once on the profile's data (``MU_PROFILE``, default ``cpu``) and a
random 10 % of its training set is forgotten. Retraining from scratch on the retain set (the
``retrain`` method with the profile's recipe) is timed first; every other method then runs from
the same original model with its reference settings, its epochs capped by the profile's
unlearning budget (20 % of the original training's epochs), and is timed by the registry around
the unlearning itself. Both are measured in the same run, after a short warm-up; the ratio is
what counts, since absolute times depend on the machine and on whatever else it is doing.

Usage: MU_PROFILE=cpu python benchmarks/unlearn_cost.py [--forget random|class] [--methods a,b,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from mu_lib import data, runtime, train, unlearn


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
                              device=prof.device)
    train_seconds = time.perf_counter() - start
    unlearn.get("finetune", epochs=1)(original, splits, device=prof.device, seed=args.seed)  # warm-up

    retrain = unlearn.get("retrain", **dataclasses.asdict(prof.recipe))
    retrain(original, splits, device=prof.device, seed=args.seed)
    base = retrain.last_seconds
    budget = prof.unlearn_epoch_budget
    print(f"{splits}\noriginal model: {train_seconds:.1f} s; retrain: {base:.1f} s; epoch budget {budget}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {prof.device}")
    print(f"{'method':<18}{'family':<20}{'epochs':>7}{'seconds':>10}{'cost ratio':>12}")
    print(f"{'retrain':<18}{'reference':<20}{prof.recipe.epochs:>7}{base:>10.2f}{1.0:>12.3f}")
    for name in names:
        method = unlearn.get(name, epoch_budget=budget)
        method(original, splits, device=prof.device, seed=args.seed)
        print(f"{name:<18}{method.info.family:<20}{method.config.total_epochs():>7g}{method.last_seconds:>10.2f}"
              f"{method.last_seconds / base:>12.3f}", flush=True)


if __name__ == "__main__":
    main()
