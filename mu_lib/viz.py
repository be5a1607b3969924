"""One plotting style and the book's recurring figures (matplotlib and seaborn).

Functions return the matplotlib ``Axes`` they drew on so that chapters can adjust titles or glue
the figure. Nothing here computes results: figures take arrays that the library computed.

Example:
    >>> import numpy as np
    >>> use_style()
    >>> ax = loss_histograms({"train": np.random.default_rng(0).exponential(0.1, 200),
    ...                       "test": np.random.default_rng(1).exponential(1.0, 200)})
    >>> ax.get_xlabel()
    'per-example loss (log scale)'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["use_style", "color", "loss_histograms", "roc_curves", "grouped_bars", "PALETTE"]

PALETTE = ("#1b6ca8", "#e4572e", "#29a36a", "#8e6ac8", "#f2a541", "#555555", "#d64f8b", "#3fb8c4", "#a3a948",
           "#7f4f24")
_FIXED = {"original": "#555555", "retrain": "#29a36a", "train": "#1b6ca8", "test": "#e4572e",
          "forget": "#d64f8b", "retain": "#1b6ca8", "val": "#f2a541"}


def use_style() -> None:
    """Apply the book's plotting style (seaborn "whitegrid", readable fonts, compact figures)."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette=list(PALETTE))
    mpl.rcParams.update({"figure.figsize": (6.4, 3.6), "figure.dpi": 110, "savefig.bbox": "tight",
                         "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False})


def color(name: str, i: int = 0) -> str:
    """A stable colour for a named series (``retrain`` is always green, ``original`` grey)."""
    return _FIXED.get(name, PALETTE[i % len(PALETTE)])


def loss_histograms(losses: Mapping[str, np.ndarray], *, ax=None, bins: int = 40, log: bool = True,
                    eps: float | None = None, density: bool = True):
    """Overlaid histograms of per-example losses, one per named set, on a log axis.

    Args:
        losses: name -> per-example losses.
        ax: matplotlib axes (a new figure when ``None``).
        bins: number of bins.
        log: log-scale the loss axis.
        eps: lower clip of the losses on the log scale (default: the smallest positive loss).
        density: show the fraction of each set per bin, so that sets of different sizes compare.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    arrays = {k: np.asarray(v, dtype=float) for k, v in losses.items()}
    if log:
        positive = [a[a > 0].min() for a in arrays.values() if (a > 0).any()]
        floor = eps if eps is not None else (min(positive) if positive else 1e-12)
        arrays = {k: np.maximum(a, floor) for k, a in arrays.items()}
    lo = min(a.min() for a in arrays.values())
    hi = max(a.max() for a in arrays.values())
    edges = np.geomspace(lo, hi * 1.0001, bins + 1) if log else np.linspace(lo, hi, bins + 1)
    for i, (name, a) in enumerate(arrays.items()):
        weights = np.full(a.size, 1.0 / a.size) if density else None
        ax.hist(a, bins=edges, weights=weights, alpha=0.55, label=f"{name} (n={a.size})", color=color(name, i))
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("per-example loss (log scale)" if log else "per-example loss")
    ax.set_ylabel("fraction of examples" if density else "examples")
    ax.legend()
    return ax


def roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, ax=None, loglog: bool = True,
               min_fpr: float | None = None):
    """ROC curves (one per name) with the chance diagonal; log-log axes by default, as in LiRA.

    Args:
        curves: name -> ``(fpr, tpr)``.
        ax: matplotlib axes.
        loglog: log-scale both axes, which shows the low-FPR regime that matters for privacy.
        min_fpr: left end of the FPR axis on log axes (default: the smallest positive FPR).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.0))
    positive = [f[f > 0].min() for f, _ in curves.values() if (f > 0).any()]
    lo = min_fpr if min_fpr is not None else (min(positive) if positive else 1e-3)
    for i, (name, (fpr, tpr)) in enumerate(curves.items()):
        ax.plot(np.maximum(fpr, lo), np.maximum(tpr, lo), label=name, color=color(name, i), lw=1.6)
    ax.plot([lo, 1], [lo, 1], ls="--", color="0.6", lw=1, label="chance")
    if loglog:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, 1)
        ax.set_ylim(lo, 1.05)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(loc="lower right")
    return ax


def grouped_bars(values: Mapping[str, Mapping[str, float]], *, ax=None, ylabel: str = "",
                 reference: str | None = None, order: Sequence[str] | None = None, percent: bool = False):
    """Grouped bar chart: one group per outer key (e.g. method), one bar per inner key (e.g. split).

    Args:
        values: group -> (series -> value).
        ax: matplotlib axes.
        ylabel: label of the value axis.
        reference: a group whose values are drawn as dashed horizontal lines across the chart
            (e.g. ``"retrain"``, the gold standard).
        order: order of the groups (default: as given).
        percent: show fractions as percentages.
    """
    import matplotlib.pyplot as plt

    groups = list(order) if order is not None else list(values)
    series = list(dict.fromkeys(k for g in groups for k in values[g]))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.4, 0.55 * len(groups) * max(len(series), 1) / 2 + 2), 3.6))
    width = 0.8 / max(len(series), 1)
    scale = 100.0 if percent else 1.0
    x = np.arange(len(groups))
    for j, s in enumerate(series):
        ys = [scale * values[g].get(s, np.nan) for g in groups]
        ax.bar(x + (j - (len(series) - 1) / 2) * width, ys, width, label=s, color=color(s, j))
        if reference is not None and s in values.get(reference, {}):
            ax.axhline(scale * values[reference][s], color=color(s, j), ls="--", lw=1)
    ax.set_xticks(x, groups, rotation=30 if len(groups) > 5 else 0, ha="right" if len(groups) > 5 else "center")
    ax.set_ylabel(ylabel + (" (%)" if percent and ylabel else ""))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax
