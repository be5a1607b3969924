"""Scoring a run directory: per-method scores, the time cut-off, and :func:`merge` of every
shard's results.

The cut-off never compares times taken on two machines: every unlearned model is judged against
the retraining time measured on the machine it ran on (each shard times its own retraining), and
the report says which machine's reference judged each run (:attr:`MethodScore.judged_by`,
:attr:`CompetitionReport.references`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mu_lib import runtime
from mu_lib.competition.rundir import _read_result, _sha256

__all__ = ["DEFAULT_CUTOFF", "MethodScore", "CompetitionReport", "merge"]

DEFAULT_CUTOFF = 0.2
"""Largest mean unlearning time, as a fraction of the time of retraining one model (challenge PDF §5)."""

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
        time_ratio: mean over runs of the run's time over the time of retraining one model on the
            machine the run ran on (with one machine: ``seconds`` over its retraining time).
        within_time: whether ``time_ratio`` is within the cut-off; a method that is not is rejected.
        num_runs: unlearned models behind the numbers (N, or fewer for a method stopped early).
        stopped_early: the method was stopped after its first runs for being far too slow
            (``run(early_stop=True)``); its ``forget_quality`` and ``final_score`` are NaN and
            its accuracies and times are those of the runs made.
        epsilons: per-forget-example ε ``[|S|]`` (empty when stopped early).
        confs: the unlearned models' forget-set confidences ``[num_runs, |S|]``.
        calibrated_forget_quality: ``F`` from the calibrated per-example ε
            (:func:`mu_lib.audit.calibrated_forget_score`: rules chosen on half of the models,
            error rates bounded on the other half), ``NaN`` when the test is inconclusive at this
            N (it could not certify the first bucket edge), ``None`` when not computed.
        calibrated_conclusive: whether that test was conclusive (``None`` when not computed).
        max_certifiable_epsilon: the largest ε the calibrated test can certify at this N.
        judged_by: for each run, the machine whose retraining time judged it.
        run_ratios: for each run, its time over that machine's retraining time.
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
    calibrated_conclusive: bool | None = None
    max_certifiable_epsilon: float | None = None
    judged_by: tuple[str, ...] = field(default=(), repr=False)
    run_ratios: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def calibrated_label(self) -> str:
        """The calibrated F with its status, for prose and tables (never a bare inconclusive number)."""
        if self.calibrated_conclusive is None:
            return "not computed"
        if not self.calibrated_conclusive:
            return f"inconclusive (certifies ε ≤ {self.max_certifiable_epsilon:.2f} < 0.5)"
        return f"{self.calibrated_forget_quality:.3f}"

    def row(self) -> dict[str, Any]:
        """The scalar fields, for a table (the calibrated F as its label with status)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("epsilons", "confs", "judged_by", "run_ratios")}
        out["calibrated_forget_quality"] = self.calibrated_label
        out["judged_by"] = ", ".join(sorted(set(self.judged_by)))
        return out


@dataclass(frozen=True)
class CompetitionReport:
    """Scores of every method of a run, against the same N retrained models.

    Attributes:
        num_models: N, models per side.
        retrain_seconds: time of one plain retraining (the reference of the cut-off); with
            several machines, the mean of their references (each run is judged by its own).
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
    references: dict[str, float] = field(default_factory=dict)

    @property
    def cutoff_seconds(self) -> float:
        """The largest accepted mean unlearning time (with one machine; else per machine, see
        :attr:`references`)."""
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
            machines = sorted(set(m.judged_by))
            judge = (f"judged on {machines[0]}" if len(machines) == 1 else
                     f"each run judged on its own machine ({len(machines)} machines)")
            out.append(f"{m.label}: {m.seconds:.3g} s per run = {m.time_ratio:.0%} of retraining; "
                       f"{word} the {self.cutoff:.0%} cut-off; {judge}{extra}")
        return out


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------

def _score(confs_u: np.ndarray, confs_r: np.ndarray, calibrated: bool, device: str | None
           ) -> tuple[np.ndarray, float, Any]:
    """Per-example ε, F and (optionally) the calibrated F with its status, with :mod:`mu_lib.audit`."""
    from mu_lib import audit

    n = confs_u.shape[0]
    eps = audit.per_example_epsilons(confs_u, confs_r, device=device)
    f = audit.forget_score_from_epsilons(eps, num_models=n)
    cal = audit.calibrated_forget_score(confs_u, confs_r, device=device) if calibrated else None
    return eps, f, cal


def merge(run_dir: str | os.PathLike, *, methods: Sequence[str] | None = None, cutoff: float = DEFAULT_CUTOFF,
          calibrated: bool = True, device: str | torch.device | None = None) -> CompetitionReport:
    """Score the finished models of a run directory (the union of every shard's work).

    Args:
        run_dir: the run directory.
        methods: method labels to score (default: every method in the directory, in the order
            they were first run).
        cutoff: the time cut-off as a fraction of the time of retraining one model.
        calibrated: also compute the calibrated ``F`` with its status
            (:func:`mu_lib.audit.calibrated_forget_score`).
        device: torch device for the ε counting (``None``: CPU).

    Returns:
        The :class:`CompetitionReport`.

    Raises:
        FileNotFoundError: if the directory is not a run directory, or models are missing (the
            message names them, with the error of any that failed), or an unlearned model ran on
            a machine that has no timing reference. A method stopped early
            (``run(early_stop=True)``) is not missing its remaining models; it is reported
            without a score.
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
    timings = sorted((root / "retrain" / "timing").glob("*.npz"))
    wanted = [(f"timing run on {p.stem}", p) for p in timings] or [("timing run", root / "retrain" / "timing")]
    wanted += [(f"retrained model {i}", root / "retrain" / f"{i:05d}.npz") for i in range(n)]
    stopped = {}
    for m in labels:
        paths = [(f"{m} {i}", root / "unlearn" / m / f"{i:05d}.npz") for i in range(n)]
        marker = root / "unlearn" / m / "stopped.json"
        if marker.exists() and not all(p.exists() for _, p in paths):  # stopped early: score what was run
            stopped[m] = json.loads(marker.read_text())
            paths = [(name, p) for name, p in paths if p.exists()]
        wanted += paths
    absent = [name for name, p in wanted if not p.is_file()]
    if absent:
        shown = ", ".join(absent[:20]) + (f", ... ({len(absent) - 20} more)" if len(absent) > 20 else "")
        failures = [json.loads(p.read_text()) for p in sorted((root / "failed").glob("*.json"))]
        failed = "; ".join(f"{r['name']}: {r['error']}" for r in failures if r["name"] in set(absent))[:1500]
        raise FileNotFoundError(f"{len(absent)} of {len(wanted)} models are missing in {root}: {shown}. "
                                f"Run the remaining shards (Competition.run) first."
                                + (f" Failed in an earlier run: {failed}" if failed else ""))
    results = {name: _read_result(p) for name, p in wanted}
    references = {p.stem: results[f"timing run on {p.stem}"]["seconds"] for p in timings}
    untimed = sorted({str(r["meta"].get("machine")) for r in results.values() if r["meta"].get("kind") == "unlearn"}
                     - set(references))
    if untimed:
        raise FileNotFoundError(f"unlearned models in {root} ran on machine(s) {untimed}, which have no timing "
                                f"reference: run a shard on each of them (Competition.run times its retraining), "
                                f"so that no run is judged against another machine's time")
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
    retrain_seconds = float(np.mean(list(references.values())))
    scores: dict[str, MethodScore] = {}
    for m in labels:
        record = json.loads((root / "unlearn" / m / "method.json").read_text())
        runs = [results[f"{m} {i}"] for i in range(n) if f"{m} {i}" in results]
        confs_u = np.stack([r["forget_conf"] for r in runs])
        ur_all, ut_all = [r["retain_acc"] for r in runs], [r["test_acc"] for r in runs]
        ur, ut = float(np.mean(ur_all)), float(np.mean(ut_all))
        if m in stopped:
            eps, f, cal, final = np.zeros(0), float("nan"), None, float("nan")
        else:
            eps, f, cal = _score(confs_u, confs_r, calibrated, device)
            final = audit.final_score(f, retain_acc_unlearned=ur_all, retain_acc_retrained=rr_all,
                                      test_acc_unlearned=ut_all, test_acc_retrained=rt_all)
        uf = float(np.mean([r["forget_acc"] for r in runs]))
        judged_by = tuple(str(r["meta"].get("machine")) for r in runs)
        if record["mode"] == "reference recipe":  # retraining's cost is, by definition, the retraining time
            secs = np.array([references[j] if j in references else retrain_seconds for j in judged_by])
            ratios = np.ones(len(runs))
        else:
            secs = np.array([r["seconds"] for r in runs])
            ratios = secs / np.array([references[j] for j in judged_by])
        ratio = float(ratios.mean())
        scores[m] = MethodScore(
            label=m, name=record["name"], forget_quality=f, final_score=final,
            retain_acc=ur, forget_acc=uf, test_acc=ut, retain_ratio=ur / rr, test_ratio=ut / rt,
            seconds=float(secs.mean()), seconds_max=float(secs.max()), time_ratio=ratio,
            within_time=bool(ratio <= cutoff) and m not in stopped, num_runs=len(runs), stopped_early=m in stopped,
            epsilons=eps, confs=confs_u, calibrated_forget_quality=None if cal is None else cal.score,
            calibrated_conclusive=None if cal is None else cal.conclusive,
            max_certifiable_epsilon=None if cal is None else cal.max_certifiable_epsilon,
            judged_by=judged_by, run_ratios=ratios)
    orig_path = root / "original.json"
    original_acc = ({k: v for k, v in json.loads(orig_path.read_text()).items() if k.endswith("_acc")}
                    if orig_path.exists() else {})
    return CompetitionReport(num_models=n, retrain_seconds=retrain_seconds, cutoff=cutoff, retrain_retain_acc=rr,
                             retrain_forget_acc=rf, retrain_test_acc=rt, original_acc=original_acc,
                             retrained_confs=confs_r, methods=scores, references=references)
