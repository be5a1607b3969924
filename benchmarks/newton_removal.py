"""Speed of one certified Newton removal (Guo et al.) against retraining from scratch.

Data: synthetic and seeded. For each n, rows are drawn from a standard Gaussian in d dimensions
and divided by their norms (||x_i|| = 1, as the bounds assume); labels are
sign(x^T w_teacher + 0.5 noise) in {-1, +1}. The model is L2-regularised logistic regression in
mu_lib.convex's sum form.

Three timings per n, each the median of --repeats runs (a different removed point every run):

* retrain: ``fit_logistic`` on the n - 1 remaining rows from w = 0 (Newton's method to a
  gradient norm below 1e-10);
* removal, Hessian cached: ``newton_remove`` given the Hessian and the Gram matrix X^T X of the
  training data, computed once at training time, which is how Guo et al. count the cost
  (O(d^3 + n d) per removal: downdate, solve, exact spectral norm, bounds);
* removal, Hessian formed: ``newton_remove`` forming the Hessian and the Gram matrix of the
  remaining data (O(n d^2)), as every step of a sequence of removals must.

BLAS runs on one thread by default (--threads 1): small matrix products are slowed down,
erratically, when several BLAS threads compete with other processes for the cores; --threads 0
keeps the BLAS library's default.

Usage: python benchmarks/newton_removal.py [--n 1000 2000 5000 10000] [--d 100] [--lam 1e-3]
       [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from mu_lib import convex


def median_seconds(fn, repeats: int) -> float:
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(n: int, d: int, lam: float, repeats: int, seed: int) -> dict[str, float]:
    """Median seconds of a retraining and of the two kinds of Newton removal at this size."""
    rng = np.random.default_rng(seed)
    X = convex.normalize_rows(rng.normal(size=(n, d)))
    y = np.where(X @ rng.normal(size=d) + 0.5 * rng.normal(size=n) > 0, 1.0, -1.0)
    w = convex.fit_logistic(X, y, lam=lam)
    H = convex.hessian(w, X, y, lam=lam)
    G = X.T @ X
    points = rng.choice(n, size=repeats, replace=False)

    def retrain(r: int) -> None:
        keep = np.delete(np.arange(n), points[r])
        convex.fit_logistic(X[keep], y[keep], lam=lam)

    def remove_cached(r: int) -> None:
        convex.newton_remove(w, X, y, int(points[r]), lam=lam, hessian=H, gram=G)

    def remove_formed(r: int) -> None:
        convex.newton_remove(w, X, y, int(points[r]), lam=lam)

    for fn in (retrain, remove_cached, remove_formed):  # warm-up
        fn(0)
    return {"retrain": median_seconds(retrain, repeats), "cached": median_seconds(remove_cached, repeats),
            "formed": median_seconds(remove_formed, repeats)}


def main(argv: list[str] | None = None) -> dict[int, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--d", type=int, default=100)
    parser.add_argument("--lam", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (0: the library's default)")
    args = parser.parse_args(argv)
    if min(args.n) < 1000 or args.d < 64:
        parser.error(f"the benchmark is meant for n >= 1000 and d >= 64, got n={args.n}, d={args.d}")

    print(f"synthetic normalised data, d={args.d}, lam={args.lam:g}; medians of {args.repeats} runs; "
          f"BLAS threads: {args.threads or 'default'}")
    print(f"{'n':>7} {'retrain ms':>11} {'cached ms':>10} {'speed-up':>9} {'formed ms':>10} {'speed-up':>9}")
    results = {}
    with threadpool_limits(limits=args.threads or None):
        for n in args.n:
            t = measure(n, args.d, args.lam, args.repeats, args.seed)
            results[n] = t
            print(f"{n:>7} {1e3 * t['retrain']:>11.2f} {1e3 * t['cached']:>10.2f} {t['retrain'] / t['cached']:>8.1f}x "
                  f"{1e3 * t['formed']:>10.2f} {t['retrain'] / t['formed']:>8.1f}x")
    return results


if __name__ == "__main__":
    main()
