"""Units of work of a scoring run (the timing runs, chunks of retrained models, unlearned models)
and the backends that execute them: this process, or Ray tasks.

Every unit runs on the run's fast path (its precision) and records the machine it ran on. The
timing run, the reference of the time cut-off, is made once per machine (:func:`machine_id`):
an unlearned model is judged only against the retraining time measured on its own machine.
A unit that raises is reported to the caller with its error, and the other units go on.
"""

from __future__ import annotations

import platform
import re
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from mu_lib import runtime, train, unlearn
from mu_lib.data import Splits
from mu_lib.mia import logit_scaled_confidence
from mu_lib.models import has_batchnorm, make_model

# --------------------------------------------------------------------------------------------
# units of work (plain functions of a picklable context, so that Ray can run them)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Context:
    """Everything a worker needs; picklable (Ray ships it to the workers once)."""

    splits: Splits
    model: str
    recipe: train.Recipe
    device: str | None
    precision: str = "fp32"
    original_state: dict[str, torch.Tensor] | None = None

    def make(self, seed: int) -> nn.Module:
        ds = self.splits.data
        return make_model(self.model, num_classes=ds.num_classes, in_channels=ds.in_channels,
                          image_size=ds.image_size, seed=seed)

    def original(self) -> nn.Module:
        if self.original_state is None:
            raise RuntimeError("the original model is not loaded")
        net = self.make(0)
        net.load_state_dict(self.original_state)
        return net.eval()


OUTPUT_ROWS = {"retain": 500, "val": 1000}
"""Most examples of these parts whose logits every result file stores (the forget set's are all stored)."""


def output_rows(splits: Splits, part: str) -> np.ndarray:
    """Positions within ``splits.indices(part)`` whose logits are stored: all of the forget set, an
    evenly spaced fixed subset (at most :data:`OUTPUT_ROWS`) of the retain and validation sets."""
    n = len(splits.indices(part))
    if part == "forget" or n <= OUTPUT_ROWS.get(part, n):
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, OUTPUT_ROWS[part]).round().astype(np.int64))


def _evaluate(net: nn.Module, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in ("retain", "forget", "test"):
        x, y = ctx.splits.xy(part)
        logits = train.predict_logits(net, x, device=ctx.device)
        out[f"{part}_acc"] = float((logits.argmax(1) == y).double().mean())
        if part == "forget":
            out["forget_conf"] = logit_scaled_confidence(logits.numpy(), y.numpy())
        if part in ("retain", "forget"):  # for evaluations beyond the competition's (competition.evaluate_run)
            out[f"{part}_logits"] = logits.numpy()[output_rows(ctx.splits, part)].astype(np.float32)
    x_val, _ = ctx.splits.xy("val")
    rows = torch.from_numpy(output_rows(ctx.splits, "val"))
    out["val_logits"] = (train.predict_logits(net, x_val[rows], device=ctx.device).numpy().astype(np.float32)
                         if len(rows) else np.zeros((0, ctx.splits.data.num_classes), np.float32))
    return out


def _vectorised(ctx: _Context) -> bool:
    return not ctx.recipe.augment and not has_batchnorm(ctx.make(0))


def _fit_kwargs(ctx: _Context) -> dict[str, Any]:
    r = ctx.recipe
    return dict(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay,
                schedule=r.schedule, device=ctx.device, precision=ctx.precision, progress=False)


def machine_id(device: str | torch.device | None = None) -> str:
    """The machine a unit runs on, as a file-name-safe string: host name, device type and model.

    Timing references are per machine: the cut-off never compares times taken on two machines.

    Example:
        >>> machine_id("cpu") == machine_id("cpu")
        True
    """
    dev = runtime.resolve_device(device)
    model = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.machine()
    raw = f"{socket.gethostname()}-{dev.type}-{model}"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", raw).strip("-.")[:120] or "machine"


def _meta(ctx: _Context, **fields: Any) -> dict[str, Any]:
    return {**fields, "machine": machine_id(ctx.device), "precision": ctx.precision}


def _unit_retrain_chunk(ctx: _Context, seeds: list[int]) -> list[dict[str, Any]]:
    """Train retrained models from scratch on the retain set: vectorised with fit_many when possible."""
    x, y = ctx.splits.xy("retain", device=runtime.resolve_device(ctx.device))
    with runtime.Stopwatch(ctx.device) as watch:
        if _vectorised(ctx):
            nets = train.fit_many(ctx.make, x, y, seeds=seeds, chunk_size=len(seeds), **_fit_kwargs(ctx))
        else:
            aug = ctx.splits.data.augment if ctx.recipe.augment else None
            nets = [train.fit(ctx.make(s), x, y, seed=s, augment=aug, **_fit_kwargs(ctx)) for s in seeds]
    per_model = watch.seconds / len(seeds)
    return [{**_evaluate(net, ctx), "seconds": per_model,
             "meta": _meta(ctx, seed=s, vectorised=_vectorised(ctx), kind="retrain")} for s, net in zip(seeds, nets)]


def _unit_timing(ctx: _Context, seed: int) -> dict[str, Any]:
    """Time one plain `fit` of the retraining recipe on this machine (after a one-epoch warm-up that is
    not timed), with CUDA synchronised before and after."""
    x, y = ctx.splits.xy("retain", device=runtime.resolve_device(ctx.device))
    aug = ctx.splits.data.augment if ctx.recipe.augment else None
    kw = _fit_kwargs(ctx)
    train.fit(ctx.make(seed), x, y, seed=seed, augment=aug, **{**kw, "epochs": 1})
    with runtime.Stopwatch(ctx.device) as watch:
        net = train.fit(ctx.make(seed), x, y, seed=seed, augment=aug, **kw)
    return {**_evaluate(net, ctx), "seconds": watch.seconds, "meta": _meta(ctx, seed=seed, kind="timing")}


def _unit_unlearn(ctx: _Context, method: unlearn.Method, seed: int) -> dict[str, Any]:
    with runtime.use_precision(ctx.precision):  # the methods' loops take the run's precision
        net = method(ctx.original(), ctx.splits, device=ctx.device, seed=seed)
    return {**_evaluate(net, ctx), "seconds": float(method.last_seconds),
            "meta": _meta(ctx, seed=seed, kind="unlearn", method=method.name)}


@dataclass(frozen=True)
class _Task:
    """One unit of work: what to compute and where its result file(s) go.

    A ``"timing"`` task without paths stands for "time retraining on every machine that has no
    reference yet"; a backend turns it into one task per machine (:func:`timing_path`).
    """

    kind: str  # "timing", "retrain" or "unlearn"
    paths: tuple[str, ...]
    seeds: tuple[int, ...]
    label: str | None = None
    method: unlearn.Method | None = None
    names: tuple[str, ...] = ()


def timing_path(machine: str) -> str:
    """Where the timing reference of ``machine`` is stored in a run directory."""
    return f"retrain/timing/{machine}.npz"


def _for_machine(task: _Task, machine: str) -> _Task:
    return replace(task, paths=(timing_path(machine),), names=(f"timing run on {machine}",))


def _execute(ctx: _Context, task: _Task) -> list[dict[str, Any]]:
    if task.kind == "timing":
        return [_unit_timing(ctx, task.seeds[0])]
    if task.kind == "retrain":
        return _unit_retrain_chunk(ctx, list(task.seeds))
    return [_unit_unlearn(ctx, task.method, task.seeds[0])]


Outcome = tuple[_Task, "list[dict[str, Any]] | BaseException"]


def _local_backend(ctx: _Context, tasks: Sequence[_Task], options: Mapping[str, Any], skip: Callable[[_Task], bool],
                   finished: Callable[[str], bool]) -> Iterator[Outcome]:
    machine = machine_id(ctx.device)
    for task in tasks:
        if task.kind == "timing" and not task.paths:
            task = _for_machine(task, machine)
            if finished(task.paths[0]):
                continue
        if skip(task):
            continue
        try:
            results: list[dict[str, Any]] | BaseException = _execute(ctx, task)
        except Exception as err:  # recorded by the caller; the other units go on
            results = err
        yield task, results


def _machine_of(device: str | None) -> str:
    return machine_id(device)


def _ray_backend(ctx: _Context, tasks: Sequence[_Task], options: Mapping[str, Any], skip: Callable[[_Task], bool],
                 finished: Callable[[str], bool]) -> Iterator[Outcome]:
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    except ImportError:
        raise ImportError("backend='ray' needs Ray, which is not installed: pip install 'ray[default]' "
                          "(or use backend='local')") from None
    if not ray.is_initialized():
        ray.init()
    remote = ray.remote(**options)(_execute) if options else ray.remote(_execute)
    probe = ray.remote(**options)(_machine_of) if options else ray.remote(_machine_of)
    ctx_ref = ray.put(ctx)
    pending = {}
    for task in tasks:
        if task.kind == "timing" and not task.paths:  # one timing run on every node without a reference
            nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
            pinned = [NodeAffinitySchedulingStrategy(node, soft=False) for node in nodes]
            machines = ray.get([probe.options(scheduling_strategy=p).remote(ctx.device) for p in pinned])
            seen: set[str] = set()
            for strategy, machine in zip(pinned, machines):
                timed = _for_machine(task, machine)
                if machine in seen or finished(timed.paths[0]):
                    continue
                seen.add(machine)
                pending[remote.options(scheduling_strategy=strategy).remote(ctx_ref, timed)] = timed
        elif not skip(task):  # skip: checked once, here
            pending[remote.remote(ctx_ref, task)] = task
    waiting = list(pending)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        for ref in done:
            try:
                results: list[dict[str, Any]] | BaseException = ray.get(ref)
            except Exception as err:  # a RayTaskError wraps the unit's exception
                results = err
            yield pending[ref], results


_BACKENDS: dict[str, Callable[..., Iterator[Outcome]]] = {
    "local": _local_backend,
    "ray": _ray_backend,
}
