"""The scoring run itself: :class:`Competition` (original, retrained and unlearned models, shards,
early stopping) and :func:`run_competition`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mu_lib import runtime, train, unlearn
from mu_lib.competition.report import DEFAULT_CUTOFF, CompetitionReport, merge
from mu_lib.competition.rundir import (
    _FORMAT,
    _LABEL,
    _atomic,
    _code_version,
    _derive_seed,
    _jsonable,
    _read_result,
    _sha256,
    _splits_hash,
    _state_hash,
    _write_json,
    _write_result,
)
from mu_lib.competition.units import _BACKENDS, _Context, _evaluate, _Task, timing_path
from mu_lib.data import Splits
from mu_lib.models import make_model

__all__ = ["EARLY_STOP_RUNS", "EARLY_STOP_MARGIN", "UnitsFailedError", "Competition", "run_competition"]

EARLY_STOP_RUNS = 3
"""With ``early_stop``, a method is judged on the median time of its first this many runs."""

EARLY_STOP_MARGIN = 2.0
"""With ``early_stop``, a method is stopped when that median exceeds the cut-off by this factor."""


class UnitsFailedError(RuntimeError):
    """Raised by :meth:`Competition.run` after every other unit finished, when some units failed.

    Attributes:
        failures: model name -> the error it raised (also stored in the run directory's
            ``failed/`` folder until a rerun computes the model).
        computed: the number of models the call computed (what ``run()`` would have returned).
    """

    def __init__(self, failures: Mapping[str, str], computed: int = 0) -> None:
        self.failures = dict(failures)
        self.computed = int(computed)
        shown = "; ".join(f"{k}: {v}" for k, v in list(self.failures.items())[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(f"{len(self.failures)} model(s) failed and were recorded, the others were computed: "
                         f"{shown}{more}. Fix the cause and call run() again: it retries only these.")


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
        num_shards: the shard plan: how many shards (machines, Colab sessions) share the run
            directory; each calls :meth:`run` with its own ``shard``.
        precision: the precision of every model of the run (original, retrained, unlearned);
            ``None`` takes the profile's (:func:`mu_lib.fastpath.default_precision`).

    The manifest records what defines the run, and also the code version (``mu_lib``'s version
    and a hash of its source), the torch version, the device type, the precision and the shard
    plan: resuming or sharding under any other of these refuses, naming the difference, so that
    every model of a score comes from the same code and arithmetic.

    Raises:
        ValueError: for ``num_models < 2``, unknown method names (the registry's message), bad
            labels, or a run directory created for another configuration.
    """

    def __init__(self, splits: Splits, *, model: str, recipe: train.Recipe, num_models: int,
                 methods: Sequence[MethodSpec] | Mapping[str, MethodSpec], run_dir: str | os.PathLike,
                 seed: int = 0, epoch_budget: float | None = None, device: str | torch.device | None = None,
                 original: nn.Module | None = None, chunk_size: int = 64, cutoff: float = DEFAULT_CUTOFF,
                 calibrated: bool = True, num_shards: int = 1, precision: str | None = None) -> None:
        if not isinstance(splits, Splits):
            raise TypeError(f"splits must be a mu_lib.data.Splits, got {type(splits).__name__}")
        if isinstance(num_models, bool) or int(num_models) != num_models or num_models < 2:
            raise ValueError(f"num_models must be an integer >= 2 (ε compares two samples of models), "
                             f"got {num_models!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if isinstance(num_shards, bool) or int(num_shards) != num_shards or num_shards < 1:
            raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}")
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
        self.precision = runtime.fast_path(runtime.resolve_device(device), precision=precision).name
        self.num_shards = int(num_shards)
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
                "chunk_size": self.chunk_size, "code_version": _code_version(), "torch_version": torch.__version__,
                "device": runtime.resolve_device(self.device).type, "precision": self.precision,
                "shard_plan": {"num_shards": self.num_shards}}

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
                                     device=self.device, progress=False, precision=self.precision)
            net = net.cpu()
            with _atomic(path) as fh:
                torch.save(net.state_dict(), fh)
        net.eval()
        self._original_sha = _state_hash(net)
        info_path = self.run_dir / "original.json"
        if not info_path.exists():
            res = _evaluate(net, ctx)
            accuracies = {k: v for k, v in res.items() if k.endswith("_acc")}
            _write_json(info_path, {"sha256": self._original_sha, **accuracies})
        self._original_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        return net

    def _context(self, *, with_original: bool = True) -> _Context:
        if with_original and self._original_state is None:
            self.original_model()
        return _Context(splits=self.splits, model=self.model, recipe=self.recipe, device=self.device,
                        precision=self.precision, original_state=self._original_state if with_original else None)

    # ---------------------------------------------------------------- the units

    def _tasks(self) -> list[tuple[int | None, _Task]]:
        """Every unit of the run with the shard number it belongs to (before any sharding).

        The timing run belongs to every shard (``None``): each machine times its own retraining.
        """
        n, c = self.num_models, self.chunk_size
        tasks: list[tuple[int | None, _Task]] = [(None, _Task("timing", (), (_derive_seed(self.seed, "timing", 0),),
                                                              names=("timing run",)))]
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
        """Names of the models not finished yet: ``"timing run on <machine>"`` (a machine whose
        unlearned models have no reference yet, or ``"timing run"`` when there is none at all),
        ``"retrained model 7"``, ``"finetune 7"``."""
        out = [name for _, t in self._tasks() for p, name in zip(t.paths, t.names)
               if not (self.run_dir / p).exists() and not self._stopped(t)]
        machines = {_read_result(p)["meta"].get("machine") for p in (self.run_dir / "unlearn").glob("*/*.npz")}
        timed = {p.stem for p in (self.run_dir / "retrain" / "timing").glob("*.npz")}
        untimed = sorted(m for m in machines - timed if m)
        return [f"timing run on {m}" for m in untimed] + ([] if timed or untimed else ["timing run"]) + out

    def failures(self) -> dict[str, str]:
        """Models whose unit raised in a previous :meth:`run` and that are still missing: name -> error."""
        out = {}
        for p in sorted((self.run_dir / "failed").glob("*.json")):
            record = json.loads(p.read_text())
            if not (self.run_dir / record["path"]).exists():
                out[record["name"]] = record["error"]
        return out

    def _stopped(self, task: _Task) -> bool:
        return task.kind == "unlearn" and (self.run_dir / "unlearn" / str(task.label) / "stopped.json").exists()

    def _judge_early(self, label: str) -> None:
        """Stop ``label`` if the median of its first runs, each relative to the retraining time of its
        own machine, exceeds the cut-off by EARLY_STOP_MARGIN."""
        folder = self.run_dir / "unlearn" / label
        probe = [folder / f"{i:05d}.npz" for i in range(min(EARLY_STOP_RUNS, self.num_models))]
        if (folder / "stopped.json").exists() or not all(p.exists() for p in probe):
            return
        runs = [_read_result(p) for p in probe]
        timings = [self.run_dir / timing_path(str(r["meta"].get("machine"))) for r in runs]
        if not all(t.exists() for t in timings):
            return
        seconds = [r["seconds"] for r in runs]
        references = [_read_result(t)["seconds"] for t in timings]
        ratios = [s / r for s, r in zip(seconds, references)]
        if float(np.median(ratios)) > EARLY_STOP_MARGIN * self.cutoff:
            _write_json(folder / "stopped.json", {"probe_seconds": seconds, "retrain_seconds": references,
                                                  "cutoff": self.cutoff, "margin": EARLY_STOP_MARGIN})

    def run(self, *, shard: int = 0, num_shards: int | None = None, backend: str = "local",
            ray_options: Mapping[str, Any] | None = None, callback: Callable[[str], None] | None = None,
            early_stop: bool = False, progress: bool | None = None) -> int:
        """Compute this shard's unfinished models and write one result file per model.

        Shard ``i`` of ``k`` takes retraining chunk ``c`` when ``c % k == i`` and unlearned model
        ``j`` of every method when ``j % k == i``; every shard also times one plain retraining on
        its own machine (once per machine), against which its unlearned models are judged. Every
        shard needs the original model: train it once (:meth:`original_model`, or shard 0 alone)
        before starting the others in parallel, so that they do not train it concurrently.

        A unit that raises is recorded in the run directory's ``failed/`` folder and the other
        units go on; :class:`UnitsFailedError` is raised at the end. A later call computes only
        what is missing, so it retries exactly the failed models.

        Args:
            shard: this shard's number, ``0 <= shard < num_shards``.
            num_shards: the shard plan; ``None`` takes the run's (the constructor's ``num_shards``),
                and any other value than the run's is refused.
            backend: ``"local"`` (this process, in order) or ``"ray"`` (one Ray task per unit;
                results come back to this process, which writes the files). With Ray, one
                timing run is pinned to every node of the cluster that has none yet.
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

        Raises:
            UnitsFailedError: after all other units, if some failed (the message names them).
        """
        if num_shards is None:
            num_shards = self.num_shards
        if isinstance(num_shards, bool) or int(num_shards) != num_shards or num_shards < 1:
            raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}")
        if num_shards != self.num_shards:
            raise ValueError(f"shard plan differs: run directory {self.run_dir} is planned for {self.num_shards} "
                             f"shard(s), this call asks for {num_shards}; pass num_shards={num_shards} to "
                             f"Competition (in a new run directory) to change the plan")
        if isinstance(shard, bool) or int(shard) != shard or not 0 <= shard < num_shards:
            raise ValueError(f"shard must be an integer in [0, {num_shards}), got {shard!r}")
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid backends are {list(_BACKENDS)}")
        todo = [t for k, t in self._tasks() if (k is None or k % num_shards == shard)
                and not (t.paths and all((self.run_dir / p).exists() for p in t.paths))
                and not (early_stop and self._stopped(t))]
        ctx = self._context(with_original=any(t.kind == "unlearn" for t in todo))
        manifest_sha = _sha256(json.dumps(self.manifest(), sort_keys=True).encode())
        failed: dict[str, str] = {}

        def finished_models() -> Iterator[tuple[_Task, str, str, dict[str, Any]]]:
            skip = self._stopped if early_stop else (lambda task: False)
            exists = lambda path: (self.run_dir / path).exists()
            for task, results in _BACKENDS[backend](ctx, todo, dict(ray_options or {}), skip, exists):
                if isinstance(results, BaseException):
                    for path, name in zip(task.paths, task.names):
                        if not exists(path):
                            failed[name] = self._record_failure(task, path, name, results)
                    continue
                for path, name, res in zip(task.paths, task.names, results):
                    if not exists(path):  # a partly finished chunk keeps what it has
                        yield task, path, name, res

        total = sum(sum(not (self.run_dir / p).exists() for p in t.paths) if t.paths else 1 for t in todo)
        done = 0
        for task, path, name, res in runtime.progress(finished_models(), enabled=progress, total=total,
                                                      desc=f"models (shard {shard + 1}/{num_shards})"):
            meta = {**res["meta"], "manifest_sha256": manifest_sha, "name": name, "shard": int(shard)}
            if task.kind == "unlearn":
                meta["original_sha256"] = self._original_sha
            _write_result(self.run_dir / path, {**res, "meta": meta})
            self._failure_path(name).unlink(missing_ok=True)
            if early_stop and task.kind == "unlearn":
                self._judge_early(str(task.label))
            done += 1
            if callback is not None:
                callback(name)
        if failed:
            raise UnitsFailedError(failed, computed=done)
        return done

    def _failure_path(self, name: str) -> Path:
        return self.run_dir / "failed" / (re.sub(r"[^A-Za-z0-9_.+-]+", "_", name) + ".json")

    def _record_failure(self, task: _Task, path: str, name: str, err: BaseException) -> str:
        message = f"{type(err).__name__}: {err}"[:2000]
        _write_json(self._failure_path(name), {"name": name, "path": path, "kind": task.kind, "label": task.label,
                                               "error": message})
        return message

    def report(self, *, methods: Sequence[str] | None = None) -> CompetitionReport:
        """Score every method of this run, or the labels ``methods`` (all their models must exist)."""
        labels = list(self.methods) if methods is None else list(methods)
        unknown = [m for m in labels if m not in self.methods]
        if unknown:
            raise ValueError(f"method label(s) {unknown} are not in this run; it has {list(self.methods)}")
        return merge(self.run_dir, methods=labels, cutoff=self.cutoff, calibrated=self.calibrated,
                     device=self.device)


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
