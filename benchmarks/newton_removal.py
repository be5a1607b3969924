"""Speed of one certified Newton removal (Guo et al.) against retraining from scratch.

Data: synthetic, seeded: n rows drawn from a standard Gaussian in d dimensions and divided by
their norms (||x_i|| = 1, as the bounds assume), labels sign(x^T w_teacher + 0.5 noise) in
{-1, +1}. The model is L2-regularised logistic regression in mu_lib.convex's sum form.

Three timings, each the median of --repeats runs (a different removed point every run):

* retrain: ``fit_logistic`` on the n - 1 remaining rows from w = 0 (Newton's method to a
  gradient norm below 1e-10);
* removal, Hessian cached: ``newton_remove`` given the Hessian and the Gram matrix X^T X of the
  training data, computed once at training time, which is how Guo et al. count the cost
  (O(d^3 + n d) per removal: downdate, solve, exact spectral norm, bound);
* removal, Hessian formed: ``newton_remove`` that forms the Hessian of the remaining data and
  takes the spectral norm by an SVD (O(n d^2)), as a session of sequential removals must.

Usage: python benchmarks/newton_removal.py [--n 2000] [--d 100] [--lam 1e-3] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mu_lib import convex


def median_seconds(fn, repeats: int) -> float:
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=100)
    parser.add_argument("--lam", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1000 or args.d < 64:
        parser.error(f"the benchmark is meant for n >= 1000 and d >= 64, got n={args.n}, d={args.d}")

    rng = np.random.default_rng(args.seed)
    X = convex.normalize_rows(rng.normal(size=(args.n, args.d)))
    y = np.where(X @ rng.normal(size=args.d) + 0.5 * rng.normal(size=args.n) > 0, 1.0, -1.0)
    w = convex.fit_logistic(X, y, lam=args.lam)
    H = convex.hessian(w, X, y, lam=args.lam)
    G = X.T @ X
    points = rng.choice(args.n, size=args.repeats, replace=False)

    def retrain(r: int) -> None:
        keep = np.delete(np.arange(args.n), points[r])
        convex.fit_logistic(X[keep], y[keep], lam=args.lam)

    def remove_cached(r: int) -> None:
        convex.newton_remove(w, X, y, int(points[r]), lam=args.lam, hessian=H, gram=G)

    def remove_formed(r: int) -> None:
        convex.newton_remove(w, X, y, int(points[r]), lam=args.lam)

    for fn in (retrain, remove_cached, remove_formed):  # warm-up (imports, BLAS threads)
        fn(0)
    t_retrain = median_seconds(retrain, args.repeats)
    t_cached = median_seconds(remove_cached, args.repeats)
    t_formed = median_seconds(remove_formed, args.repeats)
    print(f"synthetic normalised data: n={args.n}, d={args.d}, lam={args.lam:g}, median of {args.repeats} runs")
    print(f"  retrain (fit_logistic from scratch):     {1e3 * t_retrain:8.2f} ms")
    print(f"  Newton removal, Hessian cached:          {1e3 * t_cached:8.2f} ms   speed-up {t_retrain / t_cached:6.1f}x")
    print(f"  Newton removal, Hessian formed:          {1e3 * t_formed:8.2f} ms   speed-up {t_retrain / t_formed:6.1f}x")
    return {"retrain": t_retrain, "cached": t_cached, "formed": t_formed}


if __name__ == "__main__":
    main()
