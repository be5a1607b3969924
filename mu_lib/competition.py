"""The end-to-end scoring run of the NeurIPS 2023 Machine Unlearning Challenge, resumable and shardable.

The challenge scored an unlearning method by comparing **N models unlearned** from one original
model (one call of the method per model, different seeds) with **N models retrained from scratch**
on the retain set (Triantafillou et al. 2024). For every forget example, the two samples of N
logit-scaled confidences give an ε (how well the best threshold or interval test tells them
apart); the ε are turned into the forget quality ``F``, and

    final score = F x (mean retain acc. unlearned / retrained) x (mean test acc. unlearned / retrained).

Methods slower than a cut-off (about 20 % of the time of retraining one model) were rejected.

:class:`Competition` runs this with the library's pieces: :func:`mu_lib.train.train_on` for the
original model, :func:`mu_lib.train.fit_many` (vectorised over seeds) for the retrained models
when the model allows it, :mod:`mu_lib.unlearn` for the methods and :mod:`mu_lib.audit` for the
score. Its units of work are the models:

* ``original`` (trained once, or given) is stored as ``original.pt``;
* ``retrain/timing.npz``: one plain :func:`~mu_lib.train.fit` of the retraining recipe, timed after
  a one-epoch warm-up. This is the per-model retraining time of the cut-off. The retrained models
  themselves are trained many at a time with ``fit_many``, whose amortised time per model says
  nothing about what one retraining costs, so it is not used for the cut-off;
* ``retrain/00007.npz``: retrained model 7 (trained in fixed chunks of ``chunk_size`` models, so
  that a restarted or sharded run batches them exactly as an uninterrupted one);
* ``unlearn/<label>/00007.npz``: unlearned model 7 of a method.

Each file holds the model's forget-set confidences, its retain, forget and test accuracy and its
time. It is written atomically (a temporary file, then ``os.replace``), so a run killed at any
moment leaves finished files and nothing half-written; a restarted run skips the finished models.
``run(shard=i, num_shards=k)`` does only the models of shard ``i`` (the machines or Colab sessions
share the run directory), and :func:`merge` scores the union, naming any model still missing.
``backend="ray"`` runs the same units as Ray tasks (Ray is optional).

A manifest records a hash of everything that defines the run (data and splits, model, recipe,
number of models, seed); opening a run directory made for another configuration raises an error,
and so does a method label reused with other hyperparameters.

Example:
    >>> import tempfile
    >>> from mu_lib import data, train
    >>> s = data.make_splits("digits", forget_fraction=0.02, val_size=50, test_size=200, seed=0)
    >>> comp = Competition(s, model="logreg", recipe=train.Recipe(epochs=1, batch_size=256, lr=0.1),
    ...                    num_models=2, methods=["original"], run_dir=tempfile.mkdtemp())
    >>> comp.run()  # the timing run, 2 retrained and 2 unlearned models
    5
    >>> rep = comp.report()
    >>> rep["original"].forget_quality  # two identical copies of one model: maximally "peaky"
    0.0
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mu_lib import runtime, train, unlearn
from mu_lib.data import Splits
from mu_lib.models import has_batchnorm, make_model

__all__ = ["DEFAULT_CUTOFF", "EARLY_STOP_RUNS", "EARLY_STOP_MARGIN", "MethodScore", "CompetitionReport", "Competition",
           "merge", "run_competition"]

DEFAULT_CUTOFF = 0.2
"""Largest mean unlearning time, as a fraction of the time of retraining one model (challenge PDF §5)."""

EARLY_STOP_RUNS = 3
"""With ``early_stop``, a method is judged on the median time of its first this many runs."""

EARLY_STOP_MARGIN = 2.0
"""With ``early_stop``, a method is stopped when that median exceeds the cut-off by this factor."""

_FORMAT = 1
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Any]:
    """Open a temporary file beside ``path`` for binary writing; move it onto ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, obj: Any) -> None:
    with _atomic(path) as fh:
        fh.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _write_result(path: Path, result: Mapping[str, Any]) -> None:
    arrays = {k: np.asarray(v) for k, v in result.items() if k != "meta"}
    arrays["meta"] = np.asarray(json.dumps(result.get("meta", {}), sort_keys=True))
    with _atomic(path) as fh:
        np.savez(fh, **arrays)


def _read_result(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files if k != "meta"}
        out["meta"] = json.loads(str(z["meta"])) if "meta" in z.files else {}
    for k in ("retain_acc", "forget_acc", "test_acc", "seconds"):
        out[k] = float(out[k])
    return out


def _sha256(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()


def _state_hash(model: nn.Module) -> str:
    parts: list[bytes] = []
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        parts += [k.encode(), str(tuple(t.shape)).encode(), str(t.dtype).encode(), t.numpy().tobytes()]
    return _sha256(*parts)


def _splits_hash(splits: Splits) -> str:
    ds = splits.data
    parts = [ds.name.encode(), str(tuple(ds.x.shape)).encode(), ds.y.numpy().tobytes(),
             np.float64(ds.x.double().sum()).tobytes()]
    parts += [np.asarray(splits.indices(p), np.int64).tobytes() for p in ("retain", "forget", "val", "test")]
    return _sha256(*parts)


def _derive_seed(seed: int, tag: str, index: int) -> int:
    """An independent, reproducible seed for unit ``(tag, index)`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(tag.encode()), int(index)]).generate_state(1)[0] >> 1)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


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
    from mu_lib.audit import logit_scaled_confidence

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


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MethodScore:
    """The score of one method in a :class:`CompetitionReport`.

    Attributes:
        label: the method's label in the run (its registry name unless renamed).
        name: the registry name.
        forget_quality: ``F`` of the challenge (mean over forget examples of ``2^-floor(ε / 0.5)``).
        final_score: ``F`` times the two accuracy ratios.
        retain_acc: mean retain accuracy of the unlearned models (a fraction).
        forget_acc: mean forget accuracy of the unlearned models.
        test_acc: mean test accuracy of the unlearned models.
        retain_ratio: ``retain_acc`` over the retrained models' mean.
        test_ratio: ``test_acc`` over the retrained models' mean.
        seconds: mean wall time of one unlearning run.
        seconds_max: the slowest run.
        time_ratio: ``seconds`` over the time of retraining one model.
        within_time: whether ``time_ratio`` is within the cut-off; a method that is not is rejected.
        num_runs: unlearned models behind the numbers (N, or fewer for a method stopped early).
        stopped_early: the method was stopped after its first runs for being far too slow
            (``run(early_stop=True)``); its ``forget_quality`` and ``final_score`` are NaN and
            its accuracies and times are those of the runs made.
        epsilons: per-forget-example ε ``[|S|]`` (empty when stopped early).
        confs: the unlearned models' forget-set confidences ``[num_runs, |S|]``.
        calibrated_forget_quality: ``F`` from the calibrated per-example ε
            (:func:`mu_lib.audit.calibrated_epsilons`: rules chosen on half of the models, error
            rates bounded on the other half), or ``None`` when not computed.
    """

    label: str
    name: str
    forget_quality: float
    final_score: float
    retain_acc: float
    forget_acc: float
    test_acc: float
    retain_ratio: float
    test_ratio: float
    seconds: float
    seconds_max: float
    time_ratio: float
    within_time: bool
    num_runs: int
    stopped_early: bool
    epsilons: np.ndarray = field(repr=False)
    confs: np.ndarray = field(repr=False)
    calibrated_forget_quality: float | None = None

    def row(self) -> dict[str, Any]:
        """The scalar fields, for a table."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("epsilons", "confs")}


@dataclass(frozen=True)
class CompetitionReport:
    """Scores of every method of a run, against the same N retrained models.

    Attributes:
        num_models: N, models per side.
        retrain_seconds: time of one plain retraining (the reference of the cut-off).
        cutoff: the cut-off as a fraction of ``retrain_seconds``.
        retrain_retain_acc: mean retain accuracy of the retrained models.
        retrain_forget_acc: mean forget accuracy of the retrained models.
        retrain_test_acc: mean test accuracy of the retrained models.
        original_acc: the original model's accuracy on ``retain``, ``forget`` and ``test``.
        retrained_confs: the retrained models' forget-set confidences ``[N, |S|]``.
        methods: label -> :class:`MethodScore`, in the order of the run.
    """

    num_models: int
    retrain_seconds: float
    cutoff: float
    retrain_retain_acc: float
    retrain_forget_acc: float
    retrain_test_acc: float
    original_acc: dict[str, float]
    retrained_confs: np.ndarray = field(repr=False)
    methods: dict[str, MethodScore] = field(default_factory=dict)

    @property
    def cutoff_seconds(self) -> float:
        """The largest accepted mean unlearning time."""
        return self.cutoff * self.retrain_seconds

    def __getitem__(self, label: str) -> MethodScore:
        if label not in self.methods:
            raise KeyError(f"no method {label!r} in this report; it has {list(self.methods)}")
        return self.methods[label]

    def rejected(self) -> list[str]:
        """Labels of the methods slower than the cut-off."""
        return [k for k, m in self.methods.items() if not m.within_time]

    def table(self, *, sort: bool = False):
        """A pandas ``DataFrame``, one row per method (``sort``: by final score, rejected last)."""
        import pandas as pd

        df = pd.DataFrame([m.row() for m in self.methods.values()]).set_index("label")
        if sort:
            df = df.sort_values(["within_time", "final_score"], ascending=[False, False], kind="stable")
        return df

    def verdicts(self) -> list[str]:
        """One sentence per method on the time cut-off."""
        out = []
        for m in self.methods.values():
            word = "passes" if m.within_time else "is REJECTED by"
            extra = f" (stopped after {m.num_runs} runs)" if m.stopped_early else ""
            out.append(f"{m.label}: {m.seconds:.3g} s per run = {m.time_ratio:.0%} of retraining; "
                       f"{word} the {self.cutoff:.0%} cut-off ({self.cutoff_seconds:.3g} s){extra}")
        return out


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------

MethodSpec = str | unlearn.Method


class Competition:
    """A scoring run: original -> N retrained -> N unlearned per method -> score.

    Args:
        splits: the data (retain, forget, val, test).
        model: model name for :func:`mu_lib.models.make_model`.
        recipe: training recipe of the original and of every retrained model.
        num_models: N, the number of retrained models and of unlearned models per method (>= 2).
        methods: method names (configured with :func:`mu_lib.unlearn.get` and ``epoch_budget``),
            configured :class:`mu_lib.unlearn.Method` objects, or a mapping label -> either (to
            score variants of one method side by side). The name ``"retrain"`` given as a string
            means retraining scored as if it were an unlearning method: its N models are trained
            exactly like the reference retrained models (same recipe, ``fit_many`` when possible,
            fresh seeds), and its time per run is by definition the retraining time.
        run_dir: the run directory (created if needed).
        seed: seed of the original model; every other seed is derived from it.
        epoch_budget: passed to :func:`mu_lib.unlearn.get` for methods given by name.
        device: where to train and unlearn.
        original: an already trained original model of architecture ``model`` (else it is
            trained, or loaded from the run directory).
        chunk_size: retrained models vectorised together (fixed chunks, whatever the sharding).
        cutoff: the time cut-off as a fraction of the time of retraining one model.
        calibrated: also compute ``F`` from :func:`mu_lib.audit.calibrated_epsilons` in reports.

    Raises:
        ValueError: for ``num_models < 2``, unknown method names (the registry's message), bad
            labels, or a run directory created for another configuration.
    """

    def __init__(self, splits: Splits, *, model: str, recipe: train.Recipe, num_models: int,
                 methods: Sequence[MethodSpec] | Mapping[str, MethodSpec], run_dir: str | os.PathLike,
                 seed: int = 0, epoch_budget: float | None = None, device: str | torch.device | None = None,
                 original: nn.Module | None = None, chunk_size: int = 64, cutoff: float = DEFAULT_CUTOFF,
                 calibrated: bool = True) -> None:
        if not isinstance(splits, Splits):
            raise TypeError(f"splits must be a mu_lib.data.Splits, got {type(splits).__name__}")
        if isinstance(num_models, bool) or int(num_models) != num_models or num_models < 2:
            raise ValueError(f"num_models must be an integer >= 2 (ε compares two samples of models), "
                             f"got {num_models!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if not cutoff > 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        if not isinstance(recipe, train.Recipe):
            raise TypeError(f"recipe must be a mu_lib.train.Recipe, got {type(recipe).__name__}")
        ds = splits.data
        make_model(model, num_classes=ds.num_classes, in_channels=ds.in_channels, image_size=ds.image_size)
        self.splits = splits
        self.model = model
        self.recipe = recipe
        self.num_models = int(num_models)
        self.seed = int(seed)
        self.device = runtime.resolve_device(device).type if device is not None else None
        self.chunk_size = int(chunk_size)
        self.cutoff = float(cutoff)
        self.calibrated = calibrated
        self.run_dir = Path(run_dir)
        self.methods = self._configure(methods, epoch_budget)
        self._given_original = original
        self._original_state: dict[str, torch.Tensor] | None = None
        self._original_sha: str | None = None
        self._open_run_dir()

    # ---------------------------------------------------------------- configuration

    def _configure(self, methods: Sequence[MethodSpec] | Mapping[str, MethodSpec],
                   epoch_budget: float | None) -> dict[str, unlearn.Method | None]:
        items = list(methods.items()) if isinstance(methods, Mapping) else [
            (m if isinstance(m, str) else getattr(m, "name", None), m) for m in methods]
        if not items:
            raise ValueError("methods is empty: nothing to score")
        out: dict[str, unlearn.Method | None] = {}
        for label, spec in items:
            if not isinstance(label, str) or not _LABEL.match(label):
                raise ValueError(f"method label {label!r} must be a non-empty name of letters, digits, '_', '.', "
                                 f"'+' or '-' (it names a directory)")
            if label in out:
                raise ValueError(f"method label {label!r} appears twice")
            if isinstance(spec, str):
                # The registry raises a ValueError listing the available methods for an unknown name.
                method = unlearn.get(spec, epoch_budget=epoch_budget) if spec != "retrain" else unlearn.get("retrain")
                out[label] = None if spec == "retrain" else method
            elif isinstance(spec, unlearn.Method):
                out[label] = spec
            else:
                raise TypeError(f"method {label!r} must be a registry name or a mu_lib.unlearn.Method, "
                                f"got {type(spec).__name__}")
        return out

    def _method_record(self, label: str) -> dict[str, Any]:
        method = self.methods[label]
        if method is None:
            return {"name": "retrain", "mode": "reference recipe", "config": dataclasses.asdict(self.recipe)}
        return {"name": method.name, "mode": "method", "config": _jsonable(dataclasses.asdict(method.config))}

    def manifest(self) -> dict[str, Any]:
        """What defines this run; its hash guards the run directory."""
        s = self.splits.sizes()
        return {"format": _FORMAT, "dataset": self.splits.data.name, "splits_sha256": _splits_hash(self.splits),
                "sizes": {k: s[k] for k in ("retain", "forget", "val", "test")}, "model": self.model,
                "recipe": dataclasses.asdict(self.recipe), "num_models": self.num_models, "seed": self.seed,
                "chunk_size": self.chunk_size}

    def _open_run_dir(self) -> None:
        mine = self.manifest()
        path = self.run_dir / "manifest.json"
        if path.exists():
            theirs = json.loads(path.read_text())
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if diff:
                detail = "; ".join(f"{k}: run directory has {theirs.get(k)!r}, this run {mine.get(k)!r}"
                                   for k in diff)
                raise ValueError(f"run directory {self.run_dir} was created for another configuration ({detail}); "
                                 f"use a new run directory")
        else:
            _write_json(path, mine)
        order_path = self.run_dir / "methods.json"
        order = json.loads(order_path.read_text()) if order_path.exists() else []
        if any(label not in order for label in self.methods):
            _write_json(order_path, order + [label for label in self.methods if label not in order])
        for label in self.methods:
            rec = self._method_record(label)
            mpath = self.run_dir / "unlearn" / label / "method.json"
            if mpath.exists():
                old = json.loads(mpath.read_text())
                if old != _jsonable(rec):
                    raise ValueError(f"method label {label!r} in {self.run_dir} was run with {old}, not {rec}; "
                                     f"choose another label for this configuration")
            else:
                _write_json(mpath, rec)

    # ---------------------------------------------------------------- the original model

    def original_model(self) -> nn.Module:
        """The original model: given, loaded from ``original.pt``, or trained (and saved) now."""
        path = self.run_dir / "original.pt"
        ctx = self._context(with_original=False)
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = ctx.make(0)
            net.load_state_dict(state)
            if self._given_original is not None and _state_hash(self._given_original) != _state_hash(net):
                raise ValueError(f"{path} holds another original model than the one given; use a new run directory")
        else:
            if self._given_original is not None:
                net = ctx.make(0)
                try:
                    net.load_state_dict(self._given_original.state_dict())
                except RuntimeError as err:
                    raise ValueError(f"the given original model is not a {self.model!r}: {err}") from None
            else:
                net = train.train_on(self.splits, "train", model=self.model, recipe=self.recipe, seed=self.seed,
                                     device=self.device, progress=False)
            net = net.cpu()
            with _atomic(path) as fh:
                torch.save(net.state_dict(), fh)
        net.eval()
        self._original_sha = _state_hash(net)
        info_path = self.run_dir / "original.json"
        if not info_path.exists():
            res = _evaluate(net, ctx)
            _write_json(info_path, {"sha256": self._original_sha, **{k: v for k, v in res.items() if k.endswith("_acc")}})
        self._original_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        return net

    def _context(self, *, with_original: bool = True) -> _Context:
        if with_original and self._original_state is None:
            self.original_model()
        return _Context(splits=self.splits, model=self.model, recipe=self.recipe, device=self.device,
                        original_state=self._original_state if with_original else None)

    # ---------------------------------------------------------------- the units

    def _tasks(self) -> list[tuple[int, _Task]]:
        """Every unit of the run with the shard number it belongs to (before any sharding)."""
        n, c = self.num_models, self.chunk_size
        tasks: list[tuple[int, _Task]] = [(0, _Task("timing", ("retrain/timing.npz",),
                                                    (_derive_seed(self.seed, "timing", 0),), names=("timing run",)))]
        for k, start in enumerate(range(0, n, c)):
            idx = range(start, min(start + c, n))
            tasks.append((k, _Task("retrain", tuple(f"retrain/{i:05d}.npz" for i in idx),
                                   tuple(_derive_seed(self.seed, "retrain", i) for i in idx),
                                   names=tuple(f"retrained model {i}" for i in idx))))
        for label, method in self.methods.items():
            if method is None:  # retraining scored as a method: same chunks as the reference, fresh seeds
                for k, start in enumerate(range(0, n, c)):
                    idx = range(start, min(start + c, n))
                    tasks.append((k, _Task("retrain", tuple(f"unlearn/{label}/{i:05d}.npz" for i in idx),
                                           tuple(_derive_seed(self.seed, "unlearn", i) for i in idx), label=label,
                                           names=tuple(f"{label} {i}" for i in idx))))
                continue
            for i in range(n):
                tasks.append((i, _Task("unlearn", (f"unlearn/{label}/{i:05d}.npz",),
                                       (_derive_seed(self.seed, "unlearn", i),), label=label, method=method,
                                       names=(f"{label} {i}",))))
        return tasks

    def missing(self) -> list[str]:
        """Names of the models not finished yet: ``"timing run"``, ``"retrained model 7"``, ``"finetune 7"``."""
        return [name for _, t in self._tasks() for p, name in zip(t.paths, t.names)
                if not (self.run_dir / p).exists() and not self._stopped(t)]

    def _stopped(self, task: _Task) -> bool:
        return task.kind == "unlearn" and (self.run_dir / "unlearn" / str(task.label) / "stopped.json").exists()

    def _judge_early(self, label: str) -> None:
        """Stop ``label`` if the median of its first runs exceeds the cut-off by EARLY_STOP_MARGIN."""
        folder = self.run_dir / "unlearn" / label
        timing = self.run_dir / "retrain" / "timing.npz"
        probe = [folder / f"{i:05d}.npz" for i in range(min(EARLY_STOP_RUNS, self.num_models))]
        if (folder / "stopped.json").exists() or not timing.exists() or not all(p.exists() for p in probe):
            return
        seconds = [_read_result(p)["seconds"] for p in probe]
        retrain_seconds = _read_result(timing)["seconds"]
        if float(np.median(seconds)) > EARLY_STOP_MARGIN * self.cutoff * retrain_seconds:
            _write_json(folder / "stopped.json", {"probe_seconds": seconds, "retrain_seconds": retrain_seconds,
                                                  "cutoff": self.cutoff, "margin": EARLY_STOP_MARGIN})

    def run(self, *, shard: int = 0, num_shards: int = 1, backend: str = "local",
            ray_options: Mapping[str, Any] | None = None, callback: Callable[[str], None] | None = None,
            early_stop: bool = False, progress: bool | None = None) -> int:
        """Compute this shard's unfinished models and write one result file per model.

        Shard ``i`` of ``k`` takes the timing run (shard 0), retraining chunk ``c`` when
        ``c % k == i`` and unlearned model ``j`` of every method when ``j % k == i``. Every
        shard needs the original model: train it once (:meth:`original_model`, or shard 0 alone)
        before starting the others in parallel, so that they do not train it concurrently.

        Args:
            shard: this shard's number, ``0 <= shard < num_shards``.
            num_shards: how many shards share the run directory.
            backend: ``"local"`` (this process, in order) or ``"ray"`` (one Ray task per unit;
                results come back to this process, which writes the files).
            ray_options: options of ``ray.remote`` (e.g. ``{"num_gpus": 0.25}``).
            callback: called with a model's name (e.g. ``"finetune 3"``) after its file is written.
            early_stop: stop a method whose first :data:`EARLY_STOP_RUNS` runs take, in median,
                more than :data:`EARLY_STOP_MARGIN` times the cut-off: it is rejected anyway, as
                an over-long submission was on Kaggle, and its remaining runs would only cost
                time. It is then reported with its times and accuracies but no score. Needs the
                timing run to be finished; retraining scored as a method is never stopped. With
                ``backend="ray"`` the check happens only when the tasks are submitted.
            progress: show a progress bar over models.

        Returns:
            The number of models computed by this call (finished ones are skipped).
        """
        if isinstance(num_shards, bool) or int(num_shards) != num_shards or num_shards < 1:
            raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}")
        if isinstance(shard, bool) or int(shard) != shard or not 0 <= shard < num_shards:
            raise ValueError(f"shard must be an integer in [0, {num_shards}), got {shard!r}")
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid backends are {list(_BACKENDS)}")
        todo = [t for k, t in self._tasks() if k % num_shards == shard
                and not all((self.run_dir / p).exists() for p in t.paths) and not (early_stop and self._stopped(t))]
        if not todo:
            return 0
        ctx = self._context(with_original=any(t.kind == "unlearn" for t in todo))
        manifest_sha = _sha256(json.dumps(self.manifest(), sort_keys=True).encode())

        def finished_models() -> Iterator[tuple[_Task, str, str, dict[str, Any]]]:
            skip = self._stopped if early_stop else (lambda task: False)
            for task, results in _BACKENDS[backend](ctx, todo, dict(ray_options or {}), skip):
                for path, name, res in zip(task.paths, task.names, results):
                    if not (self.run_dir / path).exists():  # a partly finished chunk keeps what it has
                        yield task, path, name, res

        total = sum(sum(not (self.run_dir / p).exists() for p in t.paths) for t in todo)
        done = 0
        for task, path, name, res in runtime.progress(finished_models(), enabled=progress, total=total,
                                                      desc=f"models (shard {shard + 1}/{num_shards})"):
            meta = {**res["meta"], "manifest_sha256": manifest_sha, "name": name}
            if task.kind == "unlearn":
                meta["original_sha256"] = self._original_sha
            _write_result(self.run_dir / path, {**res, "meta": meta})
            if early_stop and task.kind == "unlearn":
                self._judge_early(str(task.label))
            done += 1
            if callback is not None:
                callback(name)
        return done

    def report(self) -> CompetitionReport:
        """Score every method of this run (all shards must have finished)."""
        return merge(self.run_dir, methods=list(self.methods), cutoff=self.cutoff, calibrated=self.calibrated,
                     device=self.device)


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------

def _score(confs_u: np.ndarray, confs_r: np.ndarray, calibrated: bool, device: str | None
           ) -> tuple[np.ndarray, float, float | None]:
    """Per-example ε, F and (optionally) the calibrated F, with :mod:`mu_lib.audit`."""
    from mu_lib import audit

    n = confs_u.shape[0]
    eps = audit.per_example_epsilons(confs_u, confs_r, device=device)
    f = audit.forget_score_from_epsilons(eps, num_models=n)
    f_cal = audit.calibrated_epsilons(confs_u, confs_r, device=device).forget_score if calibrated and n >= 4 else None
    return eps, f, f_cal


def merge(run_dir: str | os.PathLike, *, methods: Sequence[str] | None = None, cutoff: float = DEFAULT_CUTOFF,
          calibrated: bool = True, device: str | torch.device | None = None) -> CompetitionReport:
    """Score the finished models of a run directory (the union of every shard's work).

    Args:
        run_dir: the run directory.
        methods: method labels to score (default: every method in the directory, in the order
            they were first run).
        cutoff: the time cut-off as a fraction of the time of retraining one model.
        calibrated: also compute ``F`` from :func:`mu_lib.audit.calibrated_epsilons` (needs N >= 4).
        device: torch device for the ε counting (``None``: CPU).

    Returns:
        The :class:`CompetitionReport`.

    Raises:
        FileNotFoundError: if the directory is not a run directory, or models are missing (the
            message names them). A method stopped early (``run(early_stop=True)``) is not
            missing its remaining models; it is reported without a score.
        ValueError: if result files disagree (another configuration, another original model).
    """
    from mu_lib import audit

    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    device = runtime.resolve_device(device).type if device is not None else None
    root = Path(run_dir)
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise FileNotFoundError(f"{root} is not a run directory (no manifest.json)")
    manifest = json.loads(mpath.read_text())
    manifest_sha = _sha256(json.dumps(manifest, sort_keys=True).encode())
    n = int(manifest["num_models"])
    order_path = root / "methods.json"
    order = json.loads(order_path.read_text()) if order_path.exists() else []
    found = {p.parent.name for p in (root / "unlearn").glob("*/method.json")}
    present = [m for m in order if m in found] + sorted(found - set(order))  # in the order they were added
    labels = list(methods) if methods is not None else present
    unknown = [m for m in labels if m not in present]
    if unknown:
        raise ValueError(f"method(s) {unknown} were never run in {root}; it has {present}")
    if not labels:
        raise ValueError(f"no methods in {root}")
    wanted = [("timing run", root / "retrain" / "timing.npz")]
    wanted += [(f"retrained model {i}", root / "retrain" / f"{i:05d}.npz") for i in range(n)]
    stopped = {}
    for m in labels:
        paths = [(f"{m} {i}", root / "unlearn" / m / f"{i:05d}.npz") for i in range(n)]
        marker = root / "unlearn" / m / "stopped.json"
        if marker.exists() and not all(p.exists() for _, p in paths):  # stopped early: score what was run
            stopped[m] = json.loads(marker.read_text())
            paths = [(name, p) for name, p in paths if p.exists()]
        wanted += paths
    absent = [name for name, p in wanted if not p.exists()]
    if absent:
        shown = ", ".join(absent[:20]) + (f", ... ({len(absent) - 20} more)" if len(absent) > 20 else "")
        raise FileNotFoundError(f"{len(absent)} of {len(wanted)} models are missing in {root}: {shown}. "
                                f"Run the remaining shards (Competition.run) first.")
    results = {name: _read_result(p) for name, p in wanted}
    stale = [name for name, r in results.items() if r["meta"].get("manifest_sha256") != manifest_sha]
    if stale:
        raise ValueError(f"result files {stale[:10]} belong to another configuration than {mpath}")
    originals = {r["meta"].get("original_sha256") for name, r in results.items() if r["meta"].get("kind") == "unlearn"}
    if len(originals) > 1:
        raise ValueError(f"unlearned models in {root} start from {len(originals)} different original models; "
                         f"train the original once before running shards in parallel")
    retrained = [results[f"retrained model {i}"] for i in range(n)]
    confs_r = np.stack([r["forget_conf"] for r in retrained])
    rr_all, rt_all = [r["retain_acc"] for r in retrained], [r["test_acc"] for r in retrained]
    rr, rt = float(np.mean(rr_all)), float(np.mean(rt_all))
    rf = float(np.mean([r["forget_acc"] for r in retrained]))
    retrain_seconds = results["timing run"]["seconds"]
    scores: dict[str, MethodScore] = {}
    for m in labels:
        record = json.loads((root / "unlearn" / m / "method.json").read_text())
        runs = [results[f"{m} {i}"] for i in range(n) if f"{m} {i}" in results]
        confs_u = np.stack([r["forget_conf"] for r in runs])
        ur_all, ut_all = [r["retain_acc"] for r in runs], [r["test_acc"] for r in runs]
        ur, ut = float(np.mean(ur_all)), float(np.mean(ut_all))
        if m in stopped:
            eps, f, f_cal, final = np.zeros(0), float("nan"), None, float("nan")
        else:
            eps, f, f_cal = _score(confs_u, confs_r, calibrated, device)
            final = audit.final_score(f, retain_acc_unlearned=ur_all, retain_acc_retrained=rr_all,
                                      test_acc_unlearned=ut_all, test_acc_retrained=rt_all)
        uf = float(np.mean([r["forget_acc"] for r in runs]))
        if record["mode"] == "reference recipe":  # retraining's cost is, by definition, the retraining time
            secs = np.full(len(runs), retrain_seconds)
        else:
            secs = np.array([r["seconds"] for r in runs])
        ratio = float(secs.mean() / retrain_seconds)
        scores[m] = MethodScore(
            label=m, name=record["name"], forget_quality=f, final_score=final,
            retain_acc=ur, forget_acc=uf, test_acc=ut, retain_ratio=ur / rr, test_ratio=ut / rt,
            seconds=float(secs.mean()), seconds_max=float(secs.max()), time_ratio=ratio,
            within_time=bool(ratio <= cutoff) and m not in stopped, num_runs=len(runs), stopped_early=m in stopped,
            epsilons=eps, confs=confs_u, calibrated_forget_quality=f_cal)
    orig_path = root / "original.json"
    original_acc = ({k: v for k, v in json.loads(orig_path.read_text()).items() if k.endswith("_acc")}
                    if orig_path.exists() else {})
    return CompetitionReport(num_models=n, retrain_seconds=retrain_seconds, cutoff=cutoff, retrain_retain_acc=rr,
                             retrain_forget_acc=rf, retrain_test_acc=rt, original_acc=original_acc,
                             retrained_confs=confs_r, methods=scores)


def run_competition(splits: Splits, methods: Sequence[MethodSpec] | Mapping[str, MethodSpec], *, model: str,
                    recipe: train.Recipe, num_models: int, run_dir: str | os.PathLike, backend: str = "local",
                    progress: bool | None = None, **options: Any) -> CompetitionReport:
    """Run (or resume) a whole scoring run in this process and return its report.

    A shortcut for ``Competition(...).run(backend=backend)`` followed by ``.report()``; the other
    keyword arguments go to :class:`Competition`.
    """
    comp = Competition(splits, model=model, recipe=recipe, num_models=num_models, methods=methods, run_dir=run_dir,
                       **options)
    comp.run(backend=backend, progress=progress)
    return comp.report()
