"""The book's three interactive figures: sliders in a live session, one static figure elsewhere.

* :func:`rates_explorer`: the ε that a test with error rates (FPR, FNR) certifies, over the whole
  square, from :func:`mu_lib.audit.eps_from_rates` (chapter *Definitions*);
* :func:`removal_explorer`: λ, σ and ε of certified removal -> how many removals a
  :class:`mu_lib.convex.CertifiedRemover` makes before it must retrain (chapter *Certified removal*);
* :func:`distribution_explorer`: two populations of model confidences for one forget example ->
  the organisers' ε (:func:`mu_lib.audit.per_example_epsilons`), its points
  (:func:`mu_lib.audit.forget_points`) and the calibrated bound
  (:func:`mu_lib.audit.calibrated_epsilons`) (chapter *The ε audit*).

An explorer computes nothing that the library does not: every number it shows is the return
value of the library function named above, called with the current slider values. In a live
session (:func:`mu_lib.runtime.live_session`: Colab or a Jupyter server's kernel) with
ipywidgets installed it returns sliders that redraw the figure; elsewhere (the book build, a
test, a script) it draws the figure once for the given values. Either way it returns an
:class:`Explorer`, which displays itself in a notebook (the static figure is an HTML ``<figure>``
of class ``mu-explorer`` holding a PNG, so that the browser check of the built book can find it)
and prints its values in a terminal.

Example:
    >>> view = rates_explorer(fpr=0.1, fnr=0.1, interactive=False)
    >>> round(view.values["epsilon"], 4), view.widget is None
    (2.1972, True)
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mu_lib import audit, convex, runtime, viz

__all__ = ["Explorer", "rates_explorer", "removal_explorer", "distribution_explorer", "figure_html"]


def figure_html(fig: Figure, *, name: str, caption: str) -> str:
    """An HTML ``<figure class="mu-explorer">`` holding ``fig`` as an inline PNG.

    Example:
        >>> fig = Figure(figsize=(1, 1))
        >>> figure_html(fig, name="demo", caption="a & b").startswith('<figure class="mu-explorer"')
        True
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    text = html.escape(caption)
    return (f'<figure class="mu-explorer" data-explorer="{html.escape(name)}" style="margin:0">'
            f'<img src="data:image/png;base64,{data}" alt="{text}" style="max-width:100%">'
            f'<figcaption style="font-size:0.85em">{text}</figcaption></figure>')


@dataclass
class Explorer:
    """What an explorer returns.

    Attributes:
        name: the explorer's name.
        values: the numbers the library computed for the current setting.
        summary: one line stating them.
        figure: the static figure (``None`` in a live session, where the widget draws).
        widget: the ipywidgets box (``None`` outside a live session).
    """

    name: str
    values: dict[str, Any]
    summary: str
    figure: Figure | None = None
    widget: Any = None
    _html: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.name}: {self.summary}"

    def _repr_html_(self) -> str | None:
        if self.widget is not None:
            return None
        if self._html is None and self.figure is not None:
            self._html = figure_html(self.figure, name=self.name, caption=self.summary)
        return self._html

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.widget is not None:
            display(self.widget)
        else:
            display({"text/html": self._repr_html_() or "", "text/plain": str(self)}, raw=True)


def _live(interactive: bool | None) -> bool:
    if interactive is False:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        if interactive:
            raise ImportError("interactive=True needs ipywidgets (pip install ipywidgets)") from None
        return False
    return True if interactive else runtime.live_session()


def _interactive(name: str, draw: Callable[..., tuple[Figure, dict[str, Any], str]], controls: dict[str, Any]
                 ) -> Explorer:
    """Sliders in ``controls`` that redraw ``draw(**values)``; ``values`` follow the sliders."""
    import ipywidgets as widgets
    from IPython.display import HTML, display

    out = widgets.Output()
    view = Explorer(name=name, values={}, summary="")

    def update(**kwargs: Any) -> None:
        fig, values, summary = draw(**kwargs)
        view.values.clear()
        view.values.update(values)
        view.summary = summary
        with out:
            out.clear_output(wait=True)
            display(HTML(figure_html(fig, name=name, caption=summary)))

    widgets.interactive_output(update, controls)  # draws once now, then on every change
    view.widget = widgets.VBox([widgets.HBox(list(controls.values())), out])
    return view


def _check_unit(name: str, value: float, *, upper: float = 1.0) -> float:
    v = float(value)
    if not (np.isfinite(v) and 0.0 <= v <= upper):
        raise ValueError(f"{name} must lie in [0, {upper}], got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# ε <-> (FPR, FNR)


def _draw_rates(*, fpr: float, fnr: float, delta: float, cap: float = 5.0) -> tuple[Figure, dict[str, Any], str]:
    grid = np.linspace(0.0, 1.0, 201)
    g_fpr, g_fnr = np.meshgrid(grid, grid)
    eps_grid = np.minimum(audit.eps_from_rates(g_fpr, g_fnr, delta=delta), cap)
    eps = float(audit.eps_from_rates(fpr, fnr, delta=delta))
    fig = Figure(figsize=(4.8, 4.0), layout="constrained")
    ax = fig.add_subplot()
    filled = ax.contourf(g_fpr, g_fnr, eps_grid, levels=np.linspace(0, cap, 21), cmap="magma_r")
    lines = ax.contour(g_fpr, g_fnr, eps_grid, levels=[0.25, 0.5, 1, 2, 3, 4], colors="0.3", linewidths=0.7)
    ax.clabel(lines, fmt="%g", fontsize=7)
    ax.plot([fpr], [fnr], "o", color="white", mec="black", ms=8)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("false-negative rate")
    ax.set_aspect("equal")
    ax.grid(False)
    fig.colorbar(filled, ax=ax, label=f"certified ε (capped at {cap:g})")
    summary = f"FPR {fpr:.3f}, FNR {fnr:.3f}, δ {delta:g}: the test certifies ε ≥ {eps:.3f}"
    ax.set_title(summary, fontsize=9)
    return fig, {"epsilon": eps, "fpr": fpr, "fnr": fnr, "delta": delta}, summary


def rates_explorer(*, fpr: float = 0.1, fnr: float = 0.1, delta: float = 0.0,
                   interactive: bool | None = None) -> Explorer:
    """The ε that a test with error rates (FPR, FNR) certifies, on a map of the whole square.

    The map and the point are :func:`mu_lib.audit.eps_from_rates` on a 201 x 201 grid and at the
    chosen rates (Kairouz et al. 2015). Sliders: FPR, FNR and δ.

    Args:
        fpr: false-positive rate in [0, 1].
        fnr: false-negative rate in [0, 1].
        delta: the δ of (ε, δ), in [0, 0.3].
        interactive: ``None`` follows :func:`mu_lib.runtime.live_session`; ``True`` forces the
            sliders (needs ipywidgets); ``False`` the static figure.

    Returns:
        An :class:`Explorer` whose ``values["epsilon"]`` is the certified ε.

    Example:
        >>> rates_explorer(fpr=0.5, fnr=0.5, interactive=False).values["epsilon"]
        0.0
    """
    fpr, fnr, delta = _check_unit("fpr", fpr), _check_unit("fnr", fnr), _check_unit("delta", delta, upper=0.3)
    if not _live(interactive):
        fig, values, summary = _draw_rates(fpr=fpr, fnr=fnr, delta=delta)
        return Explorer("rates", values, summary, figure=fig)
    import ipywidgets as widgets

    style = {"step": 0.005, "readout_format": ".3f", "continuous_update": False}
    controls = {"fpr": widgets.FloatSlider(value=fpr, min=0.0, max=1.0, description="FPR", **style),
                "fnr": widgets.FloatSlider(value=fnr, min=0.0, max=1.0, description="FNR", **style),
                "delta": widgets.FloatSlider(value=delta, min=0.0, max=0.3, description="δ", **style)}
    return _interactive("rates", _draw_rates, controls)


# --------------------------------------------------------------------------------------------
# certified removal: removals before retraining


def _removals(task: convex.BinaryTask, order: np.ndarray, *, lam: float, sigma: float, eps: float, delta: float,
              seed: int) -> tuple[convex.CertifiedRemover, int | None, float]:
    """Remove points in ``order`` until the remover's first retrain; the count is the library's."""
    remover = convex.CertifiedRemover(task.X_train, task.y_train, lam=lam, sigma=sigma, eps=eps, delta=delta,
                                      seed=seed)
    accuracy = task.accuracy(remover.w)
    for i in order:
        remover.remove(int(i))
        if remover.retrains:
            return remover, remover.removals_before_retrain[0], accuracy
    return remover, None, accuracy


def _draw_removal(task: convex.BinaryTask, order: np.ndarray, sigmas: Sequence[float], *, lam: float, sigma: float,
                  eps: float, delta: float, seed: int, memo: dict[tuple[float, float, float], int | None]
                  ) -> tuple[Figure, dict[str, Any], str]:
    cap = len(order)
    remover, count, accuracy = _removals(task, order, lam=lam, sigma=sigma, eps=eps, delta=delta, seed=seed)
    memo[lam, sigma, eps] = count
    beta = [step.beta for step in remover.history if not step.retrained]
    fig = Figure(figsize=(9.6, 3.6), layout="constrained")
    ax_b, ax_s = fig.subplots(1, 2)
    ax_b.plot(np.arange(1, len(beta) + 1), beta, color=viz.color("a", 0), label="accumulated bound β")
    ax_b.axhline(remover.budget, ls="--", color="0.4", lw=1, label=f"budget σε/c = {remover.budget:.3g}")
    ax_b.set_xlabel("points removed by Newton steps")
    ax_b.set_ylabel("gradient-residual bound")
    ax_b.legend(fontsize=8, loc="lower right")
    counts = []
    for s in sigmas:  # the same library call for each σ of the sweep, remembered across redraws
        if (lam, s, eps) not in memo:
            memo[lam, s, eps] = _removals(task, order, lam=lam, sigma=s, eps=eps, delta=delta, seed=seed)[1]
        c = memo[lam, s, eps]
        counts.append(cap if c is None else c)
    ax_s.plot(sigmas, counts, "o-", color=viz.color("a", 1), ms=4)
    ax_s.plot([sigma], [cap if count is None else count], "o", color="black", ms=7)
    ax_s.set_xscale("log")
    ax_s.set_xlabel("σ (noise of the loss perturbation)")
    ax_s.set_ylabel(f"removals before retraining (cap {cap})")
    shown = f"≥ {cap}" if count is None else str(count)
    summary = (f"λ = {lam:g}, σ = {sigma:g}, ε = {eps:g}: budget {remover.budget:.3g}, {shown} removals before "
               f"retraining, test accuracy {100 * accuracy:.1f} %")
    fig.suptitle(summary, fontsize=9)
    values = {"budget": remover.budget, "removals_before_retraining": count, "test_accuracy": accuracy,
              "cap": cap, "lam": lam, "sigma": sigma, "eps": eps, "delta": delta,
              "sweep": dict(zip((float(s) for s in sigmas), counts))}
    return fig, values, summary


def removal_explorer(task: convex.BinaryTask, *, lam: float = 0.03, sigma: float = 1.0, eps: float = 1.0,
                     delta: float = 1e-4, cap: int = 150, sigmas: Sequence[float] = (0.3, 1.0, 3.0, 10.0),
                     seed: int = 0, interactive: bool | None = None) -> Explorer:
    """How many points certified removal deletes before it must retrain, for λ, σ and ε.

    A :class:`mu_lib.convex.CertifiedRemover` (Guo et al. 2020) is trained on ``task`` with the
    chosen λ, σ, ε and δ and removes training points one request at a time, in a seeded random
    order, until it retrains for the first time or ``cap`` requests were made. The left panel is
    its accumulated bound β against the budget σε/c; the right panel repeats the count for each
    σ of ``sigmas`` at the same λ (the black dot is the chosen σ). Sliders: λ, σ and ε (log scales).

    Args:
        task: a binary task from :func:`mu_lib.convex.binary_task`.
        lam: regularisation strength λ > 0.
        sigma: standard deviation σ > 0 of the loss perturbation.
        eps: ε > 0 of the certificate.
        delta: δ in (0, 1).
        cap: the largest number of removal requests tried.
        sigmas: the σ values of the right panel.
        seed: seed of the removal order and of the perturbation.
        interactive: ``None`` follows :func:`mu_lib.runtime.live_session`; ``True`` forces the
            sliders; ``False`` the static figure.

    Returns:
        An :class:`Explorer`; ``values["removals_before_retraining"]`` is the remover's count
        (``None`` if it never retrained within ``cap``).

    Example:
        >>> task = convex.binary_task("digits", classes=(3, 8), seed=0)
        >>> view = removal_explorer(task, cap=5, sigmas=(1.0,), interactive=False)
        >>> view.values["budget"] == convex.removal_budget(sigma=1.0, eps=1.0, delta=1e-4)
        True
    """
    if not isinstance(task, convex.BinaryTask):
        raise TypeError(f"task must be a mu_lib.convex.BinaryTask, got {type(task).__name__}")
    if isinstance(cap, bool) or int(cap) != cap or not 1 <= cap < task.X_train.shape[0]:
        raise ValueError(f"cap must be an integer in [1, {task.X_train.shape[0]}), got {cap!r}")
    sigmas = sorted(float(s) for s in sigmas)
    for name, v in (("lam", lam), ("sigma", sigma), ("eps", eps), *(("sigmas", s) for s in sigmas)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    order = np.random.default_rng(seed + 1).permutation(task.X_train.shape[0])[:cap]
    memo: dict[tuple[float, float, float], int | None] = {}

    def draw(lam: float, sigma: float, eps: float) -> tuple[Figure, dict[str, Any], str]:
        return _draw_removal(task, order, sigmas, lam=lam, sigma=sigma, eps=eps, delta=delta, seed=seed, memo=memo)

    if not _live(interactive):
        fig, values, summary = draw(lam, sigma, eps)
        return Explorer("removal", values, summary, figure=fig)
    import ipywidgets as widgets

    style = {"continuous_update": False, "readout_format": ".3g"}
    controls = {"lam": widgets.FloatLogSlider(value=lam, base=10, min=-3, max=0, step=0.25, description="λ", **style),
                "sigma": widgets.FloatLogSlider(value=sigma, base=10, min=-1, max=2, step=0.25, description="σ",
                                                **style),
                "eps": widgets.FloatLogSlider(value=eps, base=10, min=-1, max=1, step=0.1, description="ε", **style)}
    return _interactive("removal", draw, controls)


# --------------------------------------------------------------------------------------------
# per-example distributions -> the organisers' ε, its points and the calibrated bound


def _draw_distribution(unlearned: np.ndarray, retrained: np.ndarray, *, alpha: float, seed: int
                       ) -> tuple[Figure, dict[str, Any], str]:
    u, r = unlearned[:, None], retrained[:, None]
    n = u.shape[0]
    eps = float(audit.per_example_epsilons(u, r)[0])
    rule = audit.best_decision_rules(u, r)[0]
    points = float(audit.forget_points([eps], num_models=n)[0])
    cal = audit.calibrated_epsilons(u, r, alpha=alpha, seed=seed)
    eps_cal = float(cal.epsilons[0])
    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax = fig.add_subplot()
    both = np.r_[unlearned, retrained]
    bins = np.linspace(both.min(), both.max() + 1e-9, 30)
    ax.hist(retrained, bins=bins, alpha=0.6, color=viz.color("retrain"), label="retrained")
    ax.hist(unlearned, bins=bins, alpha=0.6, color=viz.color("unlearned", 1), label="unlearned")
    if rule.family == "interval":
        ax.axvspan(rule.lower, rule.upper, color="k", alpha=0.12, label=f"best rule: interval, {rule.side}")
    elif rule.family == "single":
        ax.axvline(rule.lower, color="k", ls="--", label=f"best rule: {rule.side} above")
    elif rule.family == "range_guard":
        ax.text(0.98, 0.9, "range guard: ε = 50", transform=ax.transAxes, ha="right", fontsize=8)
    ax.set_xlabel("confidence of the forget example")
    ax.set_ylabel(f"models (of {n} per side)")
    ax.legend(fontsize=7, loc="upper left")
    summary = (f"N = {n}: organisers' ε = {eps:.2f} ({points:g} points); calibrated ε ≥ {eps_cal:.2f} "
               f"(α = {alpha:g}, at most {cal.max_epsilon:.2f} with N = {n})")
    ax.set_title(summary.replace("; ", "\n"), fontsize=9)
    values = {"epsilon": eps, "points": points, "calibrated_epsilon": eps_cal, "max_calibrated": cal.max_epsilon,
              "rule": rule.family, "num_models": n, "alpha": alpha}
    return fig, values, summary


def _populations(*, shift: float, spread: float, num_models: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded Gaussian confidences: retrained N(0, 1), unlearned N(shift, spread²)."""
    rng = np.random.default_rng(seed)
    return shift + spread * rng.standard_normal(num_models), rng.standard_normal(num_models)


def distribution_explorer(unlearned: Any = None, retrained: Any = None, *, shift: float = 1.0, spread: float = 1.0,
                          num_models: int = 64, alpha: float = 0.05, seed: int = 0,
                          interactive: bool | None = None) -> Explorer:
    """One forget example: two populations of confidences -> ε, points and the calibrated bound.

    Given N confidences of the example under unlearned models and N under retrained ones (or,
    by default, seeded Gaussian populations: retrained N(0, 1), unlearned N(shift, spread²)),
    it shows both histograms with the decision rule that attains the organisers' ε
    (:func:`mu_lib.audit.best_decision_rules`), and states that ε
    (:func:`mu_lib.audit.per_example_epsilons`), its points in the forget score
    (:func:`mu_lib.audit.forget_points`) and the calibrated lower bound
    (:func:`mu_lib.audit.calibrated_epsilons`). Sliders (generated populations only): shift,
    spread and N; given populations are drawn once, without sliders.

    Args:
        unlearned: ``[N]`` confidences under unlearned models (with ``retrained``), or ``None``.
        retrained: ``[N]`` confidences under retrained models.
        shift: mean of the generated unlearned population (retrained: 0).
        spread: its standard deviation (> 0; retrained: 1).
        num_models: N of the generated populations (>= 4).
        alpha: error probability of the calibrated bound.
        seed: seed of the populations and of the calibrated split.
        interactive: ``None`` follows :func:`mu_lib.runtime.live_session`; ``True`` forces the
            sliders; ``False`` the static figure.

    Returns:
        An :class:`Explorer` with ``values`` ``epsilon``, ``points`` and ``calibrated_epsilon``.

    Example:
        >>> view = distribution_explorer(shift=6.0, num_models=32, interactive=False)
        >>> view.values["epsilon"], view.values["points"]
        (50.0, 0.0)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if (unlearned is None) != (retrained is None):
        raise ValueError("give both unlearned and retrained confidences, or neither")
    if unlearned is not None:
        u, r = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
        if u.ndim != 1 or u.shape != r.shape or u.size < 4:
            raise ValueError(f"unlearned and retrained must be 1-D arrays of the same length >= 4, got shapes "
                             f"{u.shape} and {r.shape}")
        fig, values, summary = _draw_distribution(u, r, alpha=alpha, seed=seed)  # given data: nothing to slide
        return Explorer("distribution", values, summary, figure=fig)
    if isinstance(num_models, bool) or int(num_models) != num_models or num_models < 4:
        raise ValueError(f"num_models must be an integer >= 4, got {num_models!r}")
    if not (np.isfinite(spread) and spread > 0) or not np.isfinite(shift):
        raise ValueError(f"need a finite shift and a positive spread, got shift={shift!r}, spread={spread!r}")

    def draw(shift: float, spread: float, num_models: int) -> tuple[Figure, dict[str, Any], str]:
        u_, r_ = _populations(shift=shift, spread=spread, num_models=int(num_models), seed=seed)
        return _draw_distribution(u_, r_, alpha=alpha, seed=seed)

    if not _live(interactive):
        fig, values, summary = draw(shift, spread, num_models)
        return Explorer("distribution", values, summary, figure=fig)
    import ipywidgets as widgets

    style = {"continuous_update": False}
    controls = {"shift": widgets.FloatSlider(value=shift, min=-4.0, max=8.0, step=0.1, description="shift", **style),
                "spread": widgets.FloatLogSlider(value=spread, base=10, min=-3, max=1, step=0.1, description="spread",
                                                 **style),
                "num_models": widgets.IntSlider(value=int(num_models), min=4, max=512, step=4, description="N",
                                                **style)}
    return _interactive("distribution", draw, controls)
