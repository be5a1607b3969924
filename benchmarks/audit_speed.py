"""Speed of the competition's per-example ε (``mu_lib.audit.per_example_epsilons``).

Prints the time for 512 unlearned + 512 retrained models with 20 and with 1,000 forget examples
(synthetic Gaussian confidences, the golden vectors' recipe with a 0.5 σ shift, seeded), and
two ratios:

* against the organisers' released ``metric.py``, which needs about 90 s for 512 + 512 models and
  20 examples on this project's CPU machine kind (2 cores), as measured for the reference
  (``competition-metric.md`` §6.3: "about 1.5 min per N = 512 case"); that code is not run here;
* against a straightforward numpy transcription of the same specification (the slow reference of
  ``tests/test_audit.py``: broadcasting over models and rules, one right edge at a time), timed
  in this run on a few examples and checked to give identical ε.

Usage: ``python benchmarks/audit_speed.py [--device cuda] [--reference-examples 2]``. Timings
depend on the load of the machine: both wall and CPU seconds are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from mu_lib import audit


def confidences(num_models: int, num_examples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Retrained ``mu + sigma·z``, unlearned shifted by 0.5 σ; ``mu ~ U(-2, 6)``, ``sigma ~ U(0.5, 1.5)``."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-2, 6, num_examples)
    sigma = rng.uniform(0.5, 1.5, num_examples)
    retrained = mu + sigma * rng.standard_normal((num_models, num_examples))
    unlearned = mu + 0.5 * sigma + sigma * rng.standard_normal((num_models, num_examples))
    return unlearned, retrained


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def slow_reference():
    path = Path(__file__).resolve().parents[1] / "tests" / "test_audit.py"
    spec = importlib.util.spec_from_file_location("_audit_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._reference_epsilons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="torch device for the counting (default: CPU)")
    parser.add_argument("--reference-examples", type=int, default=2,
                        help="examples timed with the straightforward transcription (0: skip)")
    args = parser.parse_args()

    u, r = confidences(512, 1000, seed=0)
    audit.per_example_epsilons(u[:, :1], r[:, :1], device=args.device)  # warm-up (imports, caches)

    print("per_example_epsilons, 512 + 512 models")
    results = {}
    for n in (20, 1000):
        eps, wall, cpu = timed(audit.per_example_epsilons, u[:, :n], r[:, :n], device=args.device)
        results[n] = (eps, wall)
        print(f"  {n:5d} examples: {wall:7.2f} s wall, {cpu:7.2f} s CPU  "
              f"(forget score {audit.forget_score_from_epsilons(eps, num_models=512):.4f})")
    wall20 = results[20][1]
    print(f"organisers' released code, 512 x 20 on this machine kind: ~{audit.ORGANISERS_SECONDS_512x20:.0f} s "
          f"(reference figure, not run) -> speed-up {audit.ORGANISERS_SECONDS_512x20 / wall20:.0f}x")

    k = args.reference_examples
    if k > 0:
        reference = slow_reference()
        ref, ref_wall, _ = timed(reference, u[:, :k], r[:, :k])
        if not np.array_equal(ref, results[20][0][:k]):
            raise SystemExit(f"MISMATCH with the straightforward transcription: {ref} vs {results[20][0][:k]}")
        per_example_ref = ref_wall / k
        per_example_ours = wall20 / 20
        print(f"straightforward numpy transcription: {per_example_ref:.2f} s per example (identical ε on {k}) "
              f"-> in-run speed-up {per_example_ref / per_example_ours:.0f}x")


if __name__ == "__main__":
    main()
