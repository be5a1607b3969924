"""Units of work of a scoring run (the timing run, chunks of retrained models, unlearned models)
and the backends that execute them: this process, or Ray tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mu_lib import train, unlearn
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


def _evaluate(net: nn.Module, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in ("retain", "forget", "test"):
        x, y = ctx.splits.xy(part)
        logits = train.predict_logits(net, x, device=ctx.device)
        out[f"{part}_acc"] = float((logits.argmax(1) == y).double().mean())
        if part == "forget":
            out["forget_conf"] = logit_scaled_confidence(logits.numpy(), y.numpy())
    return out


def _vectorised(ctx: _Context) -> bool:
    return not ctx.recipe.augment and not has_batchnorm(ctx.make(0))


def _fit_kwargs(ctx: _Context) -> dict[str, Any]:
    r = ctx.recipe
    return dict(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay,
                schedule=r.schedule, device=ctx.device, progress=False)


def _unit_retrain_chunk(ctx: _Context, seeds: list[int]) -> list[dict[str, Any]]:
    """Train retrained models from scratch on the retain set: vectorised with fit_many when possible."""
    x, y = ctx.splits.xy("retain")
    start = time.perf_counter()
    if _vectorised(ctx):
        nets = train.fit_many(ctx.make, x, y, seeds=seeds, chunk_size=len(seeds), **_fit_kwargs(ctx))
    else:
        aug = ctx.splits.data.augment if ctx.recipe.augment else None
        nets = [train.fit(ctx.make(s), x, y, seed=s, augment=aug, **_fit_kwargs(ctx)) for s in seeds]
    per_model = (time.perf_counter() - start) / len(seeds)
    return [{**_evaluate(net, ctx), "seconds": per_model,
             "meta": {"seed": s, "vectorised": _vectorised(ctx), "kind": "retrain"}} for s, net in zip(seeds, nets)]


def _unit_timing(ctx: _Context, seed: int) -> dict[str, Any]:
    """Time one plain `fit` of the retraining recipe (after a one-epoch warm-up that is not timed)."""
    x, y = ctx.splits.xy("retain")
    aug = ctx.splits.data.augment if ctx.recipe.augment else None
    kw = _fit_kwargs(ctx)
    train.fit(ctx.make(seed), x, y, seed=seed, augment=aug, **{**kw, "epochs": 1})
    start = time.perf_counter()
    net = train.fit(ctx.make(seed), x, y, seed=seed, augment=aug, **kw)
    seconds = time.perf_counter() - start
    return {**_evaluate(net, ctx), "seconds": seconds, "meta": {"seed": seed, "kind": "timing"}}


def _unit_unlearn(ctx: _Context, method: unlearn.Method, seed: int) -> dict[str, Any]:
    net = method(ctx.original(), ctx.splits, device=ctx.device, seed=seed)
    return {**_evaluate(net, ctx), "seconds": float(method.last_seconds),
            "meta": {"seed": seed, "kind": "unlearn", "method": method.name}}


@dataclass(frozen=True)
class _Task:
    """One unit of work: what to compute and where its result file(s) go."""

    kind: str  # "timing", "retrain" or "unlearn"
    paths: tuple[str, ...]
    seeds: tuple[int, ...]
    label: str | None = None
    method: unlearn.Method | None = None
    names: tuple[str, ...] = ()


def _execute(ctx: _Context, task: _Task) -> list[dict[str, Any]]:
    if task.kind == "timing":
        return [_unit_timing(ctx, task.seeds[0])]
    if task.kind == "retrain":
        return _unit_retrain_chunk(ctx, list(task.seeds))
    return [_unit_unlearn(ctx, task.method, task.seeds[0])]


def _local_backend(ctx: _Context, tasks: Sequence[_Task], options: Mapping[str, Any], skip: Callable[[_Task], bool]
                   ) -> Iterator[tuple[_Task, list[dict[str, Any]]]]:
    for task in tasks:
        if not skip(task):
            yield task, _execute(ctx, task)


def _ray_backend(ctx: _Context, tasks: Sequence[_Task], options: Mapping[str, Any], skip: Callable[[_Task], bool]
                 ) -> Iterator[tuple[_Task, list[dict[str, Any]]]]:
    try:
        import ray
    except ImportError:
        raise ImportError("backend='ray' needs Ray, which is not installed: pip install 'ray[default]' "
                          "(or use backend='local')") from None
    if not ray.is_initialized():
        ray.init()
    remote = ray.remote(**options)(_execute) if options else ray.remote(_execute)
    ctx_ref = ray.put(ctx)
    pending = {remote.remote(ctx_ref, task): task for task in tasks if not skip(task)}  # skip: checked once, here
    waiting = list(pending)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        for ref in done:
            yield pending[ref], ray.get(ref)


_BACKENDS: dict[str, Callable[..., Iterator[tuple[_Task, list[dict[str, Any]]]]]] = {
    "local": _local_backend,
    "ray": _ray_backend,
}
