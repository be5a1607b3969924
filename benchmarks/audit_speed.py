"""Speed of the competition's per-example ε (``mu_lib.audit.per_example_epsilons``).

Data: synthetic Gaussian confidences, the golden vectors' recipe with a 0.5 σ shift (seeded):
per example, retrained ``mu + sigma z`` and unlearned ``mu + 0.5 sigma + sigma z'`` with
``mu ~ U(-2, 6)``, ``sigma ~ U(0.5, 1.5)``.

Prints, for 512 unlearned + 512 retrained models:

* our time for 20 and for 1,000 forget examples, with torch's default number of threads and with
  one thread (wall and CPU seconds);
* the time with larger batches of examples per kernel call (``--batches``), to show why the CPU
  engine evaluates one example per call;
* with ``--reference DIR``: the organisers' released ``metric.py`` from a local checkout in DIR
  (google-deepmind/unlearning_evaluation), timed in this run on the same 20 examples. It runs in a
  subprocess under ``python -O`` (its ``assert`` on a numpy array fails otherwise) with
  ``torch.Tensor.cuda`` redirected to the CPU, and its per-example ε are checked to equal ours
  bit for bit. The released code is never copied into this repository: point DIR at a checkout
  elsewhere;
* with ``--large``: 10,000 + 10,000 models on a few examples (memory linear in N).

Usage: ``python benchmarks/audit_speed.py [--reference DIR] [--device cuda] [--large]``.
Timings depend on the load of the machine: run it on idle cores (e.g. ``taskset -c 0,1``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mu_lib import audit
from mu_lib.audit import _rules

_REFERENCE_RUNNER = r"""
import importlib.util, json, sys, time
import numpy as np, torch
torch.Tensor.cuda = lambda self, *a, **k: self  # the released code calls .cuda() unconditionally
spec = importlib.util.spec_from_file_location("metric", sys.argv[1])
metric = importlib.util.module_from_spec(spec)
spec.loader.exec_module(metric)
data = np.load(sys.argv[2])
seen = []
inner = metric._get_epsilons
def recording(*args, **kwargs):
    eps = inner(*args, **kwargs)
    seen.append(np.asarray(eps, dtype=np.float64))
    return eps
metric._get_epsilons = recording
wall, cpu = time.perf_counter(), time.process_time()
score = metric.compute_forget_score_from_confs(data["unlearned"], data["retrained"])
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
json.dump({"wall": wall, "cpu": cpu, "forget_score": float(score), "epsilons": np.concatenate(seen).tolist()},
          open(sys.argv[3], "w"))
"""


def confidences(num_models: int, num_examples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Retrained ``mu + sigma·z``, unlearned shifted by 0.5 σ; ``mu ~ U(-2, 6)``, ``sigma ~ U(0.5, 1.5)``."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-2, 6, num_examples)
    sigma = rng.uniform(0.5, 1.5, num_examples)
    retrained = mu + sigma * rng.standard_normal((num_models, num_examples))
    unlearned = mu + 0.5 * sigma + sigma * rng.standard_normal((num_models, num_examples))
    return unlearned, retrained


def timed(fn, *args, repeats: int = 1, **kwargs):
    """``(result, best wall seconds, CPU seconds of that run)`` over ``repeats`` runs."""
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[1]:
            best = (out, wall, cpu)
    return best


def with_threads(n: int, fn, *args, **kwargs):
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(saved)


def run_reference(directory: Path, unlearned: np.ndarray, retrained: np.ndarray) -> dict:
    metric = directory / "metric.py"
    if not metric.is_file():
        raise SystemExit(f"--reference: {metric} not found (expected a checkout of google-deepmind/"
                         f"unlearning_evaluation)")
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "confs.npz", Path(tmp) / "out.json"
        np.savez(data, unlearned=unlearned, retrained=retrained)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        subprocess.run([sys.executable, "-O", "-c", _REFERENCE_RUNNER, str(metric), str(data), str(out)],
                       check=True, env=env)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="torch device for the counting (default: CPU)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="directory of a checkout of the organisers' released metric.py")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs for our timings")
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 4, 16],
                        help="examples per kernel call to compare at N = 512 (CPU)")
    parser.add_argument("--large", action="store_true", help="also time 10,000 + 10,000 models")
    args = parser.parse_args()

    u, r = confidences(512, 1000, seed=0)
    audit.per_example_epsilons(u[:, :2], r[:, :2], device=args.device)  # warm-up (imports, caches)
    print(f"per_example_epsilons, 512 + 512 models; torch {torch.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs visible, torch threads {torch.get_num_threads()}, device {args.device or 'cpu'}")
    results = {}
    for threads in sorted({torch.get_num_threads(), 1}, reverse=True):
        for n in (20, 1000):
            eps, wall, cpu = with_threads(threads, timed, audit.per_example_epsilons, u[:, :n], r[:, :n],
                                          device=args.device, repeats=args.repeats if n == 20 else 1)
            results[threads, n] = (eps, wall)
            print(f"  {threads} thread(s), {n:5d} examples: {wall:7.3f} s wall, {cpu:7.3f} s CPU "
                  f"({1e3 * wall / n:.2f} ms per example; forget score "
                  f"{audit.forget_score_from_epsilons(eps, num_models=512):.4f})")
    best20 = min(wall for (t, n), (_, wall) in results.items() if n == 20)
    best1000 = min(wall for (t, n), (_, wall) in results.items() if n == 1000)
    assert all(np.array_equal(results[k][0], results[(1, k[1])][0]) for k in results)

    if args.device in (None, "cpu") and args.batches:
        print("examples per kernel call (1 thread, 200 examples):")
        original = _rules._kernel_batch
        try:
            for batch in args.batches:
                _rules._kernel_batch = lambda num_models, gaps, device, b=batch: b
                _, wall, _ = with_threads(1, timed, audit.per_example_epsilons, u[:, :200], r[:, :200])
                print(f"  {batch:3d} per call: {1e3 * wall / 200:.2f} ms per example")
        finally:
            _rules._kernel_batch = original

    if args.reference is not None:
        ref = run_reference(args.reference, u[:, :20], r[:, :20])
        ours = results[(1, 20)][0]
        same = np.array_equal(np.asarray(ref["epsilons"]), ours)
        print(f"organisers' released metric.py (python -O, .cuda() on the CPU), 512 x 20: {ref['wall']:.1f} s "
              f"wall, {ref['cpu']:.1f} s CPU; forget score {ref['forget_score']:.6f}; per-example ε identical "
              f"to ours: {same}")
        print(f"speed-up, 512 x 20: {ref['wall'] / best20:.0f}x (our best {best20:.3f} s); 512 x 1,000 in "
              f"{best1000:.2f} s")
        if not same:
            raise SystemExit("MISMATCH with the organisers' code")
    else:
        print(f"(no --reference: the organisers' code was not run; our best 512 x 20 is {best20:.3f} s, "
              f"512 x 1,000 {best1000:.2f} s)")

    if args.large:
        ul, rl = confidences(10_000, 4, seed=1)
        _, wall, cpu = timed(audit.per_example_epsilons, ul, rl, device=args.device)
        print(f"10,000 + 10,000 models, 4 examples: {wall:.2f} s wall ({cpu:.2f} s CPU), "
              f"rule values from O(N) vectors: {_rules._competition_values(10_000, audit.DELTA)._table is None}")


if __name__ == "__main__":
    main()
