"""Throughput of `train.fit_many` (64 models vectorised with torch.func) over a loop of `train.fit`.

Both train the same 64 small models (an MLP 64-64-32-10 on scikit-learn's digits; one seed each)
with the same recipe; both are warmed up once, then timed in the same run. The ratio is what
counts: absolute times depend on the machine and on whatever else it is doing.

Both take the same fast path (``--precision``, default fp32; ``--device cuda`` and ``--precision
auto`` time the GPU path, with CUDA synchronised before and after each timing).

Usage: python benchmarks/fit_many.py [--models 64] [--epochs 5] [--model mlp] [--device cpu] [--precision fp32]
"""

from __future__ import annotations

import argparse

import torch

from mu_lib import data, models, runtime, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="mlp", choices=["logreg", "mlp", "small_cnn"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=list(runtime.PRECISIONS))
    args = parser.parse_args()

    splits = data.make_splits("digits", val_size=0, test_size=297, seed=0)
    x, y = splits.xy("train")

    def factory(seed: int) -> torch.nn.Module:
        return models.make_model(args.model, num_classes=10, in_channels=1, image_size=8, seed=seed)

    kw = dict(epochs=args.epochs, batch_size=args.batch_size, lr=0.1, momentum=0.9, weight_decay=5e-4,
              device=args.device, precision=args.precision, progress=False)
    seeds = list(range(args.models))
    train.fit_many(factory, x, y, seeds=seeds[:2], **{**kw, "epochs": 1})  # warm-up
    train.fit(factory(0), x, y, seed=0, **{**kw, "epochs": 1})

    loop_times, many_times = [], []
    for _ in range(args.repeats):
        with runtime.Stopwatch(args.device) as watch:
            loop = [train.fit(factory(s), x, y, seed=s, **kw) for s in seeds]
        loop_times.append(watch.seconds)
        with runtime.Stopwatch(args.device) as watch:
            many = train.fit_many(factory, x, y, seeds=seeds, **kw)
        many_times.append(watch.seconds)
    loop_t, many_t = sorted(loop_times)[len(loop_times) // 2], sorted(many_times)[len(many_times) // 2]
    agree = sum(int((train.evaluate(a, x, y).predictions == train.evaluate(b, x, y).predictions).all())
                for a, b in zip(many, loop))
    print(f"{args.models} x {args.model} on digits ({len(y)} examples), {args.epochs} epochs, "
          f"batch {args.batch_size}, {args.device} {args.precision}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"loop of fit : {loop_t:7.2f} s  (median of {args.repeats})")
    print(f"fit_many    : {many_t:7.2f} s  (median of {args.repeats})")
    print(f"speed-up    : {loop_t / many_t:7.1f}x")
    print(f"models with identical training-set predictions: {agree}/{args.models}")


if __name__ == "__main__":
    main()
