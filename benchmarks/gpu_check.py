"""The prepared GPU check (issue 14 §6): one script, no network, within 10 minutes on one GPU.

It prints, for the machine it runs on:

1. seconds per epoch of the gpu profile's model (ResNet-9) on CIFAR-shaped data (45,000
   examples per epoch, as CIFAR-10 less the validation set), in fp32 and on the fast path, and the
   ratio; the same for the small CNN of the chapters that train many models;
2. one short run of every registered unlearning method on the device (all must succeed);
3. ``audit.per_example_epsilons`` on the CPU and on the device for 512 + 512 models x 200 examples
   (must be equal);
4. DP-SGD from scratch against Opacus on the device (same batches and noise: must agree);
5. ``fit_many`` against a loop of ``fit`` on the device (fp32: must agree; and both timed);
6. each chapter's projected time under the gpu profile on a T4: the chapter's training workload
   (models x epochs, :data:`WORKLOADS`) times the measured seconds per epoch, times the T4
   throughput ratio of this GPU (:data:`GPUS`, from NVIDIA's data sheets; ``--t4-ratio``
   overrides it).

It needs no network: the data are ``cifar10_like`` (generated; the timing does not depend on the
pixels) and synthetic confidences. ``--device cpu --quick`` runs every section at toy size on
the CPU (the tests do, in seconds); there the model is the gpu_smoke profile's ``resnet9_tiny``
and the fast path bf16 autocast, so the numbers exercise the code, not a GPU.

Usage:
    python benchmarks/gpu_check.py                    # on the CUDA device, full size
    python benchmarks/gpu_check.py --device cpu --quick
    python benchmarks/gpu_check.py --json out.json    # also write every number as JSON

The exit status is 1 when a check fails (a method raises, the ε differ, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from typing import Any

import numpy as np
import torch

from mu_lib import audit, compute, data, dp, fastpath, models, runtime, train, unlearn

GPUS = {  # name fragment: (dense fp16/bf16 tensor TFLOPS, memory bandwidth GB/s), NVIDIA data sheets
    "T4": (65, 320),
    "L4": (121, 300),
    "A10": (125, 600),
    "V100": (125, 900),
    "A100": (312, 2039),
    "L40S": (362, 864),
    "H100": (989, 3350),
    "H200": (989, 4800),
}
T4_SOURCE = ("NVIDIA data sheets: T4 65 TFLOPS fp16 tensor (dense), 320 GB/s; this GPU's dense fp16/bf16 tensor "
             "TFLOPS and bandwidth from its data sheet; ratio = the larger of the two ratios (a T4 is never "
             "assumed faster than both its compute and its memory allow; its 70 W cap can make it slower still)")

# Each chapter's training workload under the gpu profile, read off the chapter's code (gpu values of
# its prof.pick calls). A term is (model key, models, epochs per model, examples per epoch); the model
# keys are the throughputs measured in section 1. Update a row when its chapter's gpu sizes change.
N_TRAIN = 45_000  # CIFAR-10's 50,000 training images less the gpu profile's 5,000 validation images
GPU = runtime.get_profile("gpu")
BUDGET = GPU.unlearn_epoch_budget
WORKLOADS: dict[str, list[tuple[str, int, float, int]]] = {
    "memorization": [("deep", 3, GPU.epochs, N_TRAIN)],  # original, with canaries, retrained
    "definitions": [],  # simulations of randomised response: no network
    "differential-privacy": [("dpsgd", 2, 200 * 256 / 60_000, 60_000),  # ours vs Opacus, 200 steps each
                             ("dpsgd", 15, 15, 60_000)],  # 5 target ε x 3 seeds x 15 epochs (MNIST)
    "certified-removal": [],  # convex models: Newton steps on MNIST features, no network
    "exact-unlearning": [("deep", 4, GPU.epochs, N_TRAIN)],  # SISA ensembles of 1, 2, 4, 8 shards
    "deep-unlearning": [("deep", 3, GPU.epochs, N_TRAIN),  # original, retrained (random and class)
                        ("deep", 20 * 2 + 2, BUDGET, N_TRAIN),  # 20 methods x 2 requests, the check
                        ("deep", 4 * (12 + 1), BUDGET, N_TRAIN)],  # 4 tuned: 12 trials + 1 re-run
    "competition-methods": [("deep", 2, GPU.epochs, N_TRAIN),  # original, retrained
                            ("deep", 19 + 2, BUDGET, N_TRAIN),  # baselines, winners, newer; CT check
                            ("deep", 8 * (8 + 1), BUDGET, N_TRAIN)],  # 8 winners tuned: 8 trials + 1
    "membership-inference": [("small", 64, 20, 5_000),  # shadow models on halves of 10,000
                             ("dpsgd", 2 * 16, 10, 5_000)],  # DP shadow models at ε = 8 and 1
    "epsilon-audit": [],  # synthetic confidences: the audit only
    "competition-scoring": [("small", 2 + 2 * 32, 20, 5_000),  # original, timing, N + N retrained (small CNN)
                            ("small", 32 * 27, 2, 5_000)],  # N runs of every method, <= 2 epochs each
    "beyond-the-competition": [("small", 2 + 2 * 32, 20, 5_000),  # its scoring run (small CNN, N = 32)
                               ("small", 32 * 27, 2, 5_000),  # N runs of every method (upper bound)
                               ("small", 3 * (1 + 2 * 64), 20, 5_000)],  # three memorization levels, N = 64
}


def _report(title: str) -> None:
    print(f"\n== {title}")


def section_throughput(dev: torch.device, quick: bool) -> dict[str, Any]:
    """Seconds per epoch (N_TRAIN examples) in fp32 and on the fast path."""
    deep = "resnet9_tiny" if quick else GPU.model
    batch = 32 if quick else GPU.batch_size
    steps = 2 if quick else 24
    fast = fastpath.fast_path(dev, precision="auto" if dev.type == "cuda" else "bf16").name
    out: dict[str, Any] = {"fast_precision": fast}
    for key, name in (("deep", deep), ("small", "small_cnn")):
        row = {}
        for prec in ("fp32", fast):
            row[prec] = compute.epoch_seconds(name, dataset="cifar10_like", examples=N_TRAIN, batch_size=batch,
                                              augment=True, device=dev, precision=prec, steps=steps,
                                              warmup=1 if quick else 3)
        row["ratio"] = row["fp32"] / row[fast]
        out[key] = {"model": name, **row}
        print(f"{name:>13} on 3x32x32, batch {batch}: {row['fp32']:.2f} s/epoch fp32, {row[fast]:.2f} s/epoch "
              f"{fast} -> fast path {row['ratio']:.2f}x faster")
    return out


def section_methods(dev: torch.device, quick: bool, names: list[str] | None = None) -> dict[str, Any]:
    """One short run of every registered method (or of ``names``; epoch budget 1) on a small split."""
    name = "resnet9_tiny" if quick else GPU.model
    s = data.make_splits("cifar10_like", forget_fraction=0.1, train_size=96 if quick else 2048,
                         val_size=32 if quick else 256, test_size=32 if quick else 512, seed=0)
    recipe = train.Recipe(epochs=1, batch_size=32 if quick else 256, lr=0.05, augment=True)
    with fastpath.use_precision("auto" if dev.type == "cuda" else "bf16"):
        original = train.train_on(s, model=name, recipe=recipe, device=dev)
        logged = train.train_on(s, model=name, recipe=recipe, device=dev, record_updates=True)
        out = {}
        for method_name in names or unlearn.available():
            method = unlearn.get(method_name, epoch_budget=1)
            if method_name == "retrain":
                method = unlearn.get("retrain", epochs=1, batch_size=recipe.batch_size, lr=recipe.lr, augment=True)
            elif method_name == "fisher":  # one backward pass per example and class: a subset, as the chapter
                method = unlearn.get("fisher", num_examples=16 if quick else 512)
            start = time.perf_counter()
            try:
                net = method(logged if method_name == "amnesiac" else original, s, device=dev, seed=0)
                acc = train.evaluate(net, *s.xy("test"), device=dev).accuracy
                out[method_name] = {"ok": True, "seconds": method.last_seconds, "test_acc": acc}
                print(f"  {method_name:>18}: {method.last_seconds:7.2f} s, test accuracy {acc:.3f}")
            except Exception as err:  # reported, and the check fails
                out[method_name] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:300],
                                    "seconds": time.perf_counter() - start}
                print(f"  {method_name:>18}: FAILED")
    bad = [k for k, v in out.items() if not v["ok"]]
    print(f"{len(out) - len(bad)} of {len(out)} methods ran on {dev.type} ({name}, epoch budget 1)"
          + (f"; FAILED: {bad}" if bad else ""))
    for k in bad:
        print(f"  {k}: {out[k]['error']}")
    return {"methods": out, "ok": not bad}


def section_epsilons(dev: torch.device, quick: bool) -> dict[str, Any]:
    """per_example_epsilons on the CPU and on the device: equal."""
    n, m = (64, 20) if quick else (512, 200)
    rng = np.random.default_rng(0)
    shift = rng.normal(0, 0.5, size=m)
    u = rng.normal(shift, 1.0, size=(n, m)).round(3)
    r = rng.normal(0.0, 1.0, size=(n, m)).round(3)
    t = time.perf_counter()
    on_cpu = audit.per_example_epsilons(u, r, device="cpu")
    cpu_s = time.perf_counter() - t
    with runtime.Stopwatch(dev) as sw:
        on_dev = audit.per_example_epsilons(u, r, device=dev)
    equal = bool(np.array_equal(on_cpu, on_dev))
    verdict = "equal" if equal else f"DIFFERENT (max diff {np.abs(on_cpu - on_dev).max():.3g})"
    print(f"per_example_epsilons {n} + {n} models x {m} examples: CPU {cpu_s:.2f} s, {dev.type} {sw.seconds:.2f} s; "
          f"{verdict}")
    return {"models": n, "examples": m, "cpu_seconds": cpu_s, "device_seconds": sw.seconds, "equal": equal,
            "ok": equal}


def section_dpsgd(dev: torch.device, quick: bool) -> dict[str, Any]:
    """DP-SGD from scratch against Opacus on the device: same batches and noise, same model."""
    ds = data.load_dataset("cifar10_like")
    n = 128 if quick else 5000
    x, y = ds.x[:n], ds.y[:n]
    steps = 2 if quick else 50
    kw = dict(noise_multiplier=1.1, max_grad_norm=1.0, sample_rate=0.05, steps=steps, lr=0.1, seed=3, device=dev)
    make = lambda: models.make_model("small_cnn", num_classes=10, in_channels=3, image_size=32, seed=0)
    with runtime.Stopwatch(dev) as a:
        ours = dp.dpsgd_fit(make(), x, y, **kw)
    with runtime.Stopwatch(dev) as b:
        theirs = dp.dpsgd_fit_opacus(make(), x, y, **kw)
    diff = max(float((p - q).detach().abs().max())
               for p, q in zip(ours.model.parameters(), theirs.model.parameters()))
    same_batches = bool(np.array_equal(ours.batch_sizes, theirs.batch_sizes))
    ok = same_batches and diff < 1e-3
    examples = float(ours.batch_sizes.sum())
    print(f"DP-SGD {steps} steps on {dev.type}: from scratch {a.seconds:.2f} s, Opacus {b.seconds:.2f} s; "
          f"same batches {same_batches}, max parameter difference {diff:.2e} ({'agree' if ok else 'DISAGREE'})")
    return {"ours_seconds": a.seconds, "opacus_seconds": b.seconds, "max_diff": diff, "same_batches": same_batches,
            "examples": examples, "seconds_per_example": a.seconds / max(examples, 1.0), "ok": ok}


def section_fit_many(dev: torch.device, quick: bool) -> dict[str, Any]:
    """fit_many on the device against a loop of fit (fp32, where they must agree)."""
    ds = data.load_dataset("cifar10_like")
    n, k = (64, 2) if quick else (2048, 16)
    x, y = ds.x[:n], ds.y[:n]
    make = lambda s: models.make_model("small_cnn", num_classes=10, in_channels=3, image_size=32, seed=s)
    kw = dict(epochs=2, batch_size=64, lr=0.05, device=dev, precision="fp32", progress=False)
    seeds = list(range(k))
    with runtime.Stopwatch(dev) as a:
        many = train.fit_many(make, x, y, seeds=seeds, **kw)
    with runtime.Stopwatch(dev) as b:
        loop = [train.fit(make(s), x, y, seed=s, **kw) for s in seeds]
    diff = max(float((p - q).abs().max()) for u, v in zip(many, loop) for p, q in zip(u.parameters(), v.parameters()))
    ok = diff < 1e-3
    print(f"fit_many {k} models on {dev.type}: {a.seconds:.2f} s, loop of fit {b.seconds:.2f} s "
          f"({b.seconds / a.seconds:.1f}x); max parameter difference {diff:.2e} ({'agree' if ok else 'DISAGREE'})")
    return {"models": k, "fit_many_seconds": a.seconds, "loop_seconds": b.seconds, "max_diff": diff, "ok": ok}


def t4_ratio(dev: torch.device, override: float | None) -> tuple[float | None, str]:
    """How many times faster this GPU is than a T4 (from data sheets), and where that comes from."""
    if override is not None:
        return override, f"--t4-ratio {override} (given)"
    if dev.type != "cuda":
        return None, "no T4 ratio for a CPU: pass --t4-ratio, or run on a GPU"
    name = torch.cuda.get_device_name(dev)
    for key in sorted(GPUS, key=len, reverse=True):
        if key in name.replace("-", " ").upper().replace(" ", "") or key in name:
            tflops, bandwidth = GPUS[key]
            ratio = max(tflops / GPUS["T4"][0], bandwidth / GPUS["T4"][1])
            return ratio, f"{name}: {tflops} TFLOPS, {bandwidth} GB/s vs T4 65 TFLOPS, 320 GB/s. {T4_SOURCE}"
    return None, f"{name} is not in the data-sheet table: pass --t4-ratio"


def section_projections(throughput: dict[str, Any], dpsgd: dict[str, Any] | None, dev: torch.device,
                        ratio: float | None, source: str) -> dict[str, Any]:
    fast = throughput["fast_precision"]
    per_example = {key: throughput[key][fast] / N_TRAIN for key in ("deep", "small")}  # seconds
    if dpsgd is not None:
        per_example["dpsgd"] = dpsgd["seconds_per_example"]
    out = {}
    print(f"T4 ratio: {source}")
    print(f"{'chapter':>22} {'here':>10} {'T4':>10}  arithmetic (models x epochs x s per epoch here)")
    for chapter, terms in WORKLOADS.items():
        if not terms:
            out[chapter] = {"here": 0.0, "t4": 0.0, "note": "no network training"}
            print(f"{chapter:>22} {'-':>10} {'-':>10}  no network training")
            continue
        notes, missing = [], []
        for key, count, epochs, examples in terms:
            if key not in per_example:
                missing.append(key)
                continue
            notes.append(compute.ComputeNote(models=count, epochs=float(epochs),
                                             seconds_per_epoch=per_example[key] * examples))
        total = sum(notes[1:], notes[0]) if notes else None
        here = total.seconds if total else math.nan
        t4 = here * ratio if ratio is not None else math.nan
        text = total.arithmetic() if total else ""
        out[chapter] = {"here": here, "t4": t4, "arithmetic": text, "unmeasured": missing}
        t4_text = compute.fmt_seconds(t4) if math.isfinite(t4) else "n/a"
        print(f"{chapter:>22} {compute.fmt_seconds(here):>10} {t4_text:>10}  {text}"
              + (f" (+ unmeasured {missing})" if missing else ""))
    return {"ratio": ratio, "source": source, "chapters": out, "device": dev.type}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--quick", action="store_true", help="toy sizes (for the tests and a first look)")
    parser.add_argument("--t4-ratio", type=float, default=None, help="this device's speed over a T4's")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--methods", default=None, help="comma-separated method names (default: all)")
    args = parser.parse_args(argv)
    names = args.methods.split(",") if args.methods else None
    unknown = sorted(set(names or []) - set(unlearn.available()))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; registered: {unlearn.available()}")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # a long run shows each line as it comes
    dev = runtime.resolve_device(args.device)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"gpu_check on {dev} ({name}), torch {torch.__version__}, quick={args.quick}")
    results: dict[str, Any] = {"device": str(dev), "device_name": name, "torch": torch.__version__,
                               "quick": args.quick}
    sections = [("throughput", section_throughput),
                ("methods", lambda d, q: section_methods(d, q, names)), ("epsilons", section_epsilons),
                ("dpsgd", section_dpsgd), ("fit_many", section_fit_many)]
    start = time.perf_counter()
    failed = []
    for key, fn in sections:
        _report(key)
        try:
            results[key] = fn(dev, args.quick)
            if not results[key].get("ok", True):
                failed.append(key)
        except Exception:  # report and go on: the other sections still say something
            traceback.print_exc()
            results[key] = None
            failed.append(key)
    _report("projections under the gpu profile")
    if results.get("throughput"):
        ratio, source = t4_ratio(dev, args.t4_ratio)
        results["projections"] = section_projections(results["throughput"], results.get("dpsgd"), dev, ratio,
                                                     source)
    results["seconds"] = time.perf_counter() - start
    results["failed"] = failed
    print(f"\ngpu_check finished in {results['seconds']:.0f} s; " + (f"FAILED: {failed}" if failed else "all passed"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
