"""The explorers: every number they show is the library's, the static figure is an HTML figure the
browser check can find, and the sliders of a live session redraw with the library's new values.
"""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from mu_lib import audit, convex, explore, runtime


@pytest.fixture(scope="module")
def task():
    return convex.binary_task("digits", classes=(3, 8), test_fraction=0.2, seed=0)


def _png_of(view) -> bytes:
    html = view._repr_html_()
    assert html.startswith('<figure class="mu-explorer"') and f'data-explorer="{view.name}"' in html
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    png = base64.b64decode(data)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return png


@pytest.mark.parametrize("fpr,fnr,delta", [(0.1, 0.1, 0.0), (0.5, 0.5, 0.0), (0.001, 0.5, 1e-5), (0.0, 0.0, 0.0),
                                           (0.9, 0.05, 0.2)])
def test_rates_explorer_shows_the_library_epsilon(fpr, fnr, delta):
    view = explore.rates_explorer(fpr=fpr, fnr=fnr, delta=delta, interactive=False)
    assert view.widget is None and view.figure is not None
    assert view.values["epsilon"] == audit.eps_from_rates(fpr, fnr, delta=delta)
    assert f"ε ≥ {view.values['epsilon']:.3f}" in view.summary and view.summary in str(view)
    _png_of(view)


def test_removal_explorer_counts_what_the_certified_remover_counts(task):
    view = explore.removal_explorer(task, lam=0.03, sigma=1.0, eps=1.0, cap=60, sigmas=(0.3, 1.0), interactive=False)
    order = np.random.default_rng(1).permutation(task.X_train.shape[0])[:60]
    for sigma in (0.3, 1.0):
        rm = convex.CertifiedRemover(task.X_train, task.y_train, lam=0.03, sigma=sigma, eps=1.0, delta=1e-4, seed=0)
        for i in order:
            rm.remove(int(i))
            if rm.retrains:
                break
        expected = rm.removals_before_retrain[0] if rm.retrains else None
        assert view.values["sweep"][sigma] == (60 if expected is None else expected)
        if sigma == 1.0:
            assert view.values["removals_before_retraining"] == expected
            assert view.values["budget"] == rm.budget == convex.removal_budget(sigma=1.0, eps=1.0, delta=1e-4)
    assert view.values["sweep"][0.3] <= view.values["sweep"][1.0]  # more noise, a larger budget
    _png_of(view)


def test_distribution_explorer_reports_the_library_epsilon_points_and_bound():
    rng = np.random.default_rng(5)
    u, r = 0.8 + rng.standard_normal(64), rng.standard_normal(64)
    view = explore.distribution_explorer(u, r, alpha=0.1, seed=3, interactive=False)
    eps = audit.per_example_epsilons(u[:, None], r[:, None])[0]
    assert view.values["epsilon"] == eps
    assert view.values["points"] == audit.forget_points([eps], num_models=64)[0]
    assert view.values["calibrated_epsilon"] == audit.calibrated_epsilons(u[:, None], r[:, None], alpha=0.1,
                                                                          seed=3).epsilons[0]
    assert view.values["rule"] == audit.best_decision_rules(u[:, None], r[:, None])[0].family
    _png_of(view)
    same = explore.distribution_explorer(shift=0.0, spread=1.0, num_models=128, interactive=False)
    far = explore.distribution_explorer(shift=8.0, spread=1.0, num_models=128, interactive=False)
    peaky = explore.distribution_explorer(shift=0.0, spread=0.001, num_models=128, interactive=False)
    assert same.values["calibrated_epsilon"] <= far.values["calibrated_epsilon"]
    assert far.values["epsilon"] == peaky.values["epsilon"] == audit.EPSILON_CAP
    assert peaky.values["rule"] == "range_guard"


def test_outside_a_live_session_the_default_is_the_static_figure(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not runtime.live_session()
    assert explore.rates_explorer().widget is None


def test_in_a_live_session_sliders_redraw_with_the_library_values(monkeypatch, task):
    pytest.importorskip("ipywidgets")
    monkeypatch.setenv("JPY_SESSION_NAME", "test.ipynb")
    view = explore.rates_explorer(fpr=0.2, fnr=0.3)
    assert view.figure is None and view.widget is not None and view._repr_html_() is None
    sliders = {w.description: w for w in view.widget.children[0].children}
    assert view.values["epsilon"] == audit.eps_from_rates(0.2, 0.3)
    sliders["FPR"].value = 0.01
    assert view.values["epsilon"] == audit.eps_from_rates(0.01, 0.3) and "FPR 0.010" in view.summary
    dist = explore.distribution_explorer(shift=2.0, num_models=32)
    n_slider = {w.description: w for w in dist.widget.children[0].children}["N"]
    n_slider.value = 64
    assert dist.values["num_models"] == 64
    rem = explore.removal_explorer(task, cap=20, sigmas=(1.0,))
    {w.description: w for w in rem.widget.children[0].children}["σ"].value = 10.0
    assert rem.values["budget"] == pytest.approx(convex.removal_budget(sigma=10.0, eps=1.0, delta=1e-4))


def test_bad_input_is_refused_early_with_the_value(task):
    with pytest.raises(ValueError, match="fpr must lie in"):
        explore.rates_explorer(fpr=1.5, interactive=False)
    with pytest.raises(ValueError, match="delta must lie in"):
        explore.rates_explorer(delta=0.5, interactive=False)
    with pytest.raises(TypeError, match="BinaryTask"):
        explore.removal_explorer("digits", interactive=False)
    with pytest.raises(ValueError, match="cap must be"):
        explore.removal_explorer(task, cap=0, interactive=False)
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        explore.removal_explorer(task, sigma=-1.0, interactive=False)
    with pytest.raises(ValueError, match="both unlearned and retrained"):
        explore.distribution_explorer(np.zeros(8), interactive=False)
    with pytest.raises(ValueError, match="same length >= 4"):
        explore.distribution_explorer(np.zeros(8), np.zeros(7), interactive=False)
    with pytest.raises(ValueError, match="num_models must be an integer >= 4"):
        explore.distribution_explorer(num_models=2, interactive=False)
    with pytest.raises(ValueError, match="positive spread"):
        explore.distribution_explorer(spread=0.0, interactive=False)
