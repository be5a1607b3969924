"""Speed of one certified Newton removal (Guo et al.) against retraining, cold and warm.

Data: synthetic and seeded. For each n, rows are drawn from a standard Gaussian in d dimensions
and divided by their norms (||x_i|| = 1, as the bounds assume); labels are
sign(x^T w_teacher + 0.5 noise) in {-1, +1}. The model is L2-regularised logistic regression in
mu_lib.convex's sum form.

Timings per n, each the median of --repeats runs (a different removed point every run):

* cold retrain: ``fit_logistic`` on the n - 1 remaining rows from w = 0 (Newton's method to a
  gradient norm below 1e-10);
* warm refit, the fair competitor: ``fit_logistic`` on the remaining rows started from the current
  weights w*, stopped at the gradient norm that the Newton removal leaves (its exact residual on
  the remaining rows), i.e. the same accuracy. From w* this is one Newton iteration, the same
  step as the removal: what the removal saves is forming and factorising the Hessian;
* removal, cached: ``newton_remove`` with what was computed once at training time: the Hessian
  at w*, its Cholesky factorisation and the spectral norm ||X||_2 (a valid upper bound after any
  removals), which is how Guo et al. count the cost (O(d^2 + n d) per removal);
* removal, formed: ``newton_remove`` forming the Hessian and the spectral norm of the remaining
  data (O(n d^2)).

The one-time cost of the cache (Hessian, factorisation, norm) is printed too. BLAS runs on one
thread by default (--threads 1): small matrix products are slowed down, erratically, when several
BLAS threads compete with other processes for the cores; --threads 0 keeps the library's default.

Usage: python benchmarks/newton_removal.py [--n 1000 2000 5000 10000] [--d 100] [--lam 1e-3]
       [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.linalg import cho_factor
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
    """Median seconds of the retrainings and of the two kinds of Newton removal at this size."""
    rng = np.random.default_rng(seed)
    X = convex.normalize_rows(rng.normal(size=(n, d)))
    y = np.where(X @ rng.normal(size=d) + 0.5 * rng.normal(size=n) > 0, 1.0, -1.0)
    w = convex.fit_logistic(X, y, lam=lam)
    start = time.perf_counter()
    H = convex.hessian(w, X, y, lam=lam)
    F = cho_factor(H)
    norm = convex.spectral_norm(X)
    cache_seconds = time.perf_counter() - start
    points = rng.choice(n, size=repeats, replace=False)
    keeps = [np.delete(np.arange(n), p) for p in points]
    # the gradient norm each removal leaves on the remaining rows: the warm refit's target
    targets = []
    for r, p in enumerate(points):
        step = convex.newton_remove(w, X, y, int(p), lam=lam, hessian=H, factor=F, spectral_norm=norm)
        targets.append(max(convex.gradient_residual(step.w, X[keeps[r]], y[keeps[r]], lam=lam), 1e-12))

    def retrain(r: int) -> None:
        convex.fit_logistic(X[keeps[r]], y[keeps[r]], lam=lam)

    def warm(r: int) -> None:
        convex.fit_logistic(X[keeps[r]], y[keeps[r]], lam=lam, w0=w, tol=targets[r])

    def remove_cached(r: int) -> None:
        convex.newton_remove(w, X, y, int(points[r]), lam=lam, hessian=H, factor=F, spectral_norm=norm)

    def remove_formed(r: int) -> None:
        convex.newton_remove(w, X, y, int(points[r]), lam=lam)

    for fn in (retrain, warm, remove_cached, remove_formed):  # warm-up
        fn(0)
    return {"retrain": median_seconds(retrain, repeats), "warm": median_seconds(warm, repeats),
            "cached": median_seconds(remove_cached, repeats), "formed": median_seconds(remove_formed, repeats),
            "cache": cache_seconds, "residual": float(np.median(targets))}


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
    print(f"{'n':>7} {'cold ms':>9} {'warm ms':>9} {'cached ms':>10} {'cold/cached':>12} {'warm/cached':>12} "
          f"{'formed ms':>10} {'cache ms':>9} {'residual':>9}")
    results = {}
    with threadpool_limits(limits=args.threads or None):
        for n in args.n:
            t = measure(n, args.d, args.lam, args.repeats, args.seed)
            results[n] = t
            print(f"{n:>7} {1e3 * t['retrain']:>9.2f} {1e3 * t['warm']:>9.2f} {1e3 * t['cached']:>10.3f} "
                  f"{t['retrain'] / t['cached']:>11.1f}x {t['warm'] / t['cached']:>11.1f}x "
                  f"{1e3 * t['formed']:>10.2f} {1e3 * t['cache']:>9.2f} {t['residual']:>9.1e}")
    return results


if __name__ == "__main__":
    main()
