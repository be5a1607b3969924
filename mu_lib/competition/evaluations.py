"""Evaluations beyond the competition's score, read from a finished run directory: U-LiRA, RMIA,
KLoM and Deep Unlearn's accuracy gaps beside the competition's F, with their rankings compared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mu_lib import mia, train
from mu_lib.competition.report import DEFAULT_CUTOFF, CompetitionReport, merge
from mu_lib.competition.rundir import _read_result, _splits_hash
from mu_lib.competition.units import output_rows
from mu_lib.data import Splits
from mu_lib.models import make_model

__all__ = ["CRITERIA", "MethodEvaluation", "RunEvaluation", "evaluate_run"]

CRITERIA: dict[str, tuple[str, bool]] = {
    "F": ("forget_quality", True),
    "U-LiRA": ("ulira_accuracy", False),
    "RMIA": ("rmia_advantage", False),
    "KLoM": ("klom_forget", False),
    "gaps": ("max_gap", False),
}
"""The five views of forgetting compared by :meth:`RunEvaluation.kendall_tau`: criterion ->
(column of :meth:`RunEvaluation.table`, whether larger is better)."""

_LOGITS = ("forget_logits", "retain_logits", "val_logits")


@dataclass(frozen=True)
class MethodEvaluation:
    """Every evaluation of one method of a run, against the run's N retrained models.

    Attributes:
        label: the method's label in the run.
        forget_quality: the competition's ``F`` (higher is better).
        final_score: the competition's final score.
        ulira_accuracy: U-LiRA's balanced accuracy (:func:`mu_lib.mia.ulira`; 0.5 is best).
        ulira_auc: U-LiRA's pooled AUC.
        rmia_auc: offline RMIA's pooled AUC, unlearned targets as "members"
            (:func:`mu_lib.mia.rmia_unlearning`; 0.5 is best, below 0.5 means over-forgetting).
        rmia_advantage: ``|rmia_auc - 0.5|``.
        klom_forget: the KLoM quantile (95th percentile by default) over forget examples.
        klom_retain: the same over the stored retain subset.
        klom_val: the same over the stored validation subset.
        retain_gap: ``|mean retain accuracy of the unlearned - of the retrained models|``.
        forget_gap: the same for forget accuracy.
        test_gap: the same for test accuracy.
        val_gap: the same for the stored validation subset.
        max_gap: the largest of the retain, forget and test gaps (Deep Unlearn's accuracy gaps
            summarised by the worst one).
        num_runs: unlearned models behind the numbers.
        ulira: the full :class:`mu_lib.mia.ULiraResult`.
        rmia: the full :class:`mu_lib.mia.URmiaResult`.
        klom_values: per-forget-example KLoM ``[m]``.
    """

    label: str
    forget_quality: float
    final_score: float
    ulira_accuracy: float
    ulira_auc: float
    rmia_auc: float
    rmia_advantage: float
    klom_forget: float
    klom_retain: float
    klom_val: float
    retain_gap: float
    forget_gap: float
    test_gap: float
    val_gap: float
    max_gap: float
    num_runs: int
    ulira: Any = field(repr=False)
    rmia: Any = field(repr=False)
    klom_values: np.ndarray = field(repr=False)

    def row(self) -> dict[str, Any]:
        """The scalar fields, for a table."""
        return {k: v for k, v in self.__dict__.items() if k not in ("ulira", "rmia", "klom_values")}


@dataclass(frozen=True)
class RunEvaluation:
    """The evaluations of every method of a run directory (:func:`evaluate_run`).

    Attributes:
        report: the competition's :class:`CompetitionReport` of the run.
        methods: label -> :class:`MethodEvaluation` (methods stopped early are left out).
        offline_a: RMIA's coefficient ``a`` used for every method.
        offline_a_auc: the AUC of the tuning attack on the original model (``nan`` if ``a`` was given).
        klom_quantile: the quantile that summarises KLoM.
        retrain_val_acc: mean accuracy of the retrained models on the stored validation subset.
    """

    report: CompetitionReport
    methods: dict[str, MethodEvaluation]
    offline_a: float
    offline_a_auc: float
    klom_quantile: float
    retrain_val_acc: float

    def __getitem__(self, label: str) -> MethodEvaluation:
        if label not in self.methods:
            raise KeyError(f"no method {label!r} in this evaluation; it has {list(self.methods)}")
        return self.methods[label]

    def table(self):
        """A pandas ``DataFrame``, one row per method."""
        import pandas as pd

        return pd.DataFrame([m.row() for m in self.methods.values()]).set_index("label")

    def _labels(self, methods: Sequence[str] | None) -> list[str]:
        labels = list(self.methods) if methods is None else list(methods)
        unknown = [m for m in labels if m not in self.methods]
        if unknown:
            raise ValueError(f"method(s) {unknown} are not in this evaluation; it has {list(self.methods)}")
        if len(labels) < 2:
            raise ValueError(f"need at least two methods to rank, got {labels}")
        return labels

    def ranks(self, methods: Sequence[str] | None = None):
        """Rank of every method under every criterion of :data:`CRITERIA` (1 = best; ties share the mean rank)."""
        import pandas as pd

        labels = self._labels(methods)
        df = self.table().loc[labels]
        return pd.DataFrame({name: df[col].rank(ascending=not higher, method="average")
                             for name, (col, higher) in CRITERIA.items()})

    def kendall_tau(self, methods: Sequence[str] | None = None):
        """Kendall's tau-b between the rankings of every pair of criteria (``DataFrame``, symmetric).

        Each criterion is oriented so that +1 means "the two criteria order the methods the same
        way"; tau-b accounts for ties (several methods at ``F = 0``, say). A criterion that
        ties every method has no order, and its taus are NaN.
        """
        import pandas as pd
        from scipy.stats import kendalltau

        r = self.ranks(methods)
        names = list(CRITERIA)
        out = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                tau = kendalltau(r[a], r[b]).statistic
                out.loc[a, b] = out.loc[b, a] = tau
        return out


def _logits(result: dict[str, Any], key: str, path: Path) -> np.ndarray:
    if key not in result:
        raise ValueError(f"{path} has no {key!r}: it was written before result files stored logits; run the "
                         f"models of this run directory again with the current library (a new run directory)")
    return np.asarray(result[key], dtype=np.float64)


def _original_outputs(root: Path, manifest: dict[str, Any], splits: Splits, device) -> dict[str, np.ndarray]:
    ds = splits.data
    net = make_model(manifest["model"], num_classes=ds.num_classes, in_channels=ds.in_channels,
                     image_size=ds.image_size, seed=0)
    net.load_state_dict(torch.load(root / "original.pt", map_location="cpu", weights_only=True))
    net.eval()
    out = {}
    for part in ("forget", "val"):
        x, _ = splits.xy(part)
        rows = torch.from_numpy(output_rows(splits, part))
        out[part] = train.predict_logits(net, x[rows], device=device).double().numpy()
    return out


def evaluate_run(run_dir: str | os.PathLike, splits: Splits, *, methods: Sequence[str] | None = None,
                 offline_a: float | str = "tune", gamma: float = 1.0, klom_quantile: float = 0.95,
                 fixed_variance: bool = False, cutoff: float = DEFAULT_CUTOFF, calibrated: bool = False,
                 device: str | torch.device | None = None) -> RunEvaluation:
    """Score every method of a finished run directory under five views of forgetting, training nothing.

    The run directory of :class:`mu_lib.competition.Competition` holds, for each of the N
    retrained models and the N unlearned models of every method, its logits on the forget set, on
    a fixed subset of the retain set and on (a subset of) the validation set. From them:

    * the competition's ``F`` and final score (:func:`mu_lib.competition.merge`);
    * U-LiRA (:func:`mu_lib.mia.ulira`) on the forget examples' logit-scaled confidences;
    * offline RMIA (:func:`mu_lib.mia.rmia_unlearning`) with the retrained models as references
      and the validation examples as the population; with ``offline_a="tune"``, ``a`` is the one
      under which RMIA best attacks the **original** model (forget examples: members; half of the
      validation examples: non-members; the other half: the population), as the reference code
      tunes ``a`` on a model of known membership (inference only);
    * KLoM (:func:`mu_lib.mia.klom`) on the forget set, the retain subset and the validation subset,
      each summarised by its ``klom_quantile`` (EasyDUB's 95th percentile);
    * Deep Unlearn's accuracy gaps to retraining (retain, forget, test; validation subset too).

    Args:
        run_dir: a finished run directory.
        splits: the splits the run was made with (checked against the manifest's hash): the
            labels come from them.
        methods: labels to evaluate (default: every method of the run). Methods stopped early are
            skipped.
        offline_a: RMIA's ``a`` in ``[0, 1]``, or ``"tune"``.
        gamma: RMIA's threshold.
        klom_quantile: the quantile that summarises each KLoM distribution.
        fixed_variance: U-LiRA with one pooled sigma per side.
        cutoff: the competition's time cut-off (for the report).
        calibrated: also compute the calibrated ``F`` (slower).
        device: where to run the original model when tuning ``a``.

    Returns:
        A :class:`RunEvaluation`; ``.kendall_tau()`` compares the rankings.

    Raises:
        FileNotFoundError: for a directory that is not a finished run (from ``merge``).
        ValueError: for splits of another run, result files without logits, an empty validation
            split, or bad options.

    Example:
        >>> import tempfile
        >>> from mu_lib import data, train
        >>> from mu_lib.competition import Competition
        >>> s = data.make_splits("digits", forget_fraction=0.05, train_size=200, val_size=40, test_size=100)
        >>> comp = Competition(s, model="logreg", recipe=train.Recipe(epochs=1, batch_size=64, lr=0.1),
        ...                    num_models=3, methods=["original", "finetune"], run_dir=tempfile.mkdtemp())
        >>> _ = comp.run()
        >>> ev = evaluate_run(comp.run_dir, s)
        >>> ev["original"].ulira_accuracy  # N copies of one model: always told apart from retraining
        1.0
        >>> list(ev.kendall_tau().columns)
        ['F', 'U-LiRA', 'RMIA', 'KLoM', 'gaps']
    """
    if not (offline_a == "tune" or (isinstance(offline_a, (int, float)) and 0 <= offline_a <= 1)):
        raise ValueError(f"offline_a must be 'tune' or a number in [0, 1], got {offline_a!r}")
    if not 0 <= klom_quantile <= 1:
        raise ValueError(f"klom_quantile must be in [0, 1], got {klom_quantile}")
    if not isinstance(splits, Splits):
        raise TypeError(f"splits must be a mu_lib.data.Splits, got {type(splits).__name__}")
    root = Path(run_dir)
    report = merge(root, methods=methods, cutoff=cutoff, calibrated=calibrated, device=device)
    manifest = json.loads((root / "manifest.json").read_text())
    if manifest.get("splits_sha256") != _splits_hash(splits):
        raise ValueError(f"the splits given are not those of {root} (their hash differs from the manifest's)")
    if len(splits.val) < 2:
        raise ValueError("RMIA needs population examples that no model trained on: the validation split has "
                         f"{len(splits.val)} example(s)")
    y = splits.data.y.numpy()
    labels = {p: y[splits.indices(p)][output_rows(splits, p)] for p in ("forget", "retain", "val")}
    n = report.num_models

    def load(folder: Path, count: int) -> dict[str, np.ndarray]:
        files = [folder / f"{i:05d}.npz" for i in range(count)]
        results = [_read_result(p) for p in files]
        return {k: np.stack([_logits(r, k, p) for r, p in zip(results, files)]) for k in _LOGITS}

    def outputs(logits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {f"margin_{p}": mia.margins(logits[f"{p}_logits"], np.broadcast_to(labels[p], logits[f"{p}_logits"]
                                                                               .shape[:-1]))
               for p in ("forget", "retain", "val")}
        for p in ("forget", "val"):
            lg = logits[f"{p}_logits"]
            out[f"prob_{p}"] = mia.true_class_probability(lg, np.broadcast_to(labels[p], lg.shape[:-1]))
        out["val_acc"] = (logits["val_logits"].argmax(-1) == labels["val"]).mean(axis=1)
        return out

    ref = outputs(load(root / "retrain", n))
    a_auc = float("nan")
    if offline_a == "tune":
        orig = _original_outputs(root, manifest, splits, device)
        p_forget = mia.true_class_probability(orig["forget"], labels["forget"])
        p_val = mia.true_class_probability(orig["val"], labels["val"])
        half = np.arange(len(p_val)) % 2 == 0  # even positions: non-member candidates, odd: population
        a, a_auc = mia.tune_offline_a(np.r_[p_forget, p_val[half]], np.c_[ref["prob_forget"], ref["prob_val"][:, half]],
                                      p_val[~half], ref["prob_val"][:, ~half],
                                      np.r_[np.ones(len(p_forget), bool), np.zeros(half.sum(), bool)], gamma=gamma)
    else:
        a = float(offline_a)
    evaluations: dict[str, MethodEvaluation] = {}
    for label, score in report.methods.items():
        if score.stopped_early:
            continue
        u = outputs(load(root / "unlearn" / label, n))
        ul = mia.ulira(u["margin_forget"], ref["margin_forget"], fixed_variance=fixed_variance)
        rm = mia.rmia_unlearning(u["prob_forget"], ref["prob_forget"], u["prob_val"], ref["prob_val"], offline_a=a,
                                 gamma=gamma)
        kl = {p: mia.klom(u[f"margin_{p}"], ref[f"margin_{p}"]) for p in ("forget", "retain", "val")}
        q = {p: mia.klom_quantiles(v, quantiles=(klom_quantile,))[float(klom_quantile)] for p, v in kl.items()}
        gaps = {"retain": abs(score.retain_acc - report.retrain_retain_acc),
                "forget": abs(score.forget_acc - report.retrain_forget_acc),
                "test": abs(score.test_acc - report.retrain_test_acc),
                "val": abs(float(u["val_acc"].mean()) - float(ref["val_acc"].mean()))}
        evaluations[label] = MethodEvaluation(
            label=label, forget_quality=score.forget_quality, final_score=score.final_score,
            ulira_accuracy=ul.accuracy, ulira_auc=ul.auc, rmia_auc=rm.auc, rmia_advantage=rm.advantage,
            klom_forget=q["forget"], klom_retain=q["retain"], klom_val=q["val"], retain_gap=gaps["retain"],
            forget_gap=gaps["forget"], test_gap=gaps["test"], val_gap=gaps["val"],
            max_gap=max(gaps["retain"], gaps["forget"], gaps["test"]), num_runs=score.num_runs, ulira=ul, rmia=rm,
            klom_values=kl["forget"])
    return RunEvaluation(report=report, methods=evaluations, offline_a=float(a), offline_a_auc=float(a_auc),
                         klom_quantile=float(klom_quantile), retrain_val_acc=float(ref["val_acc"].mean()))
