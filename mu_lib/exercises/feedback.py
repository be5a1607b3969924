"""Feedback of the auto-checked exercises: a verdict that renders in Jupyter, Colab, the built book
and a terminal, and the runner that tries a reader's function on tiny cases.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Feedback", "Case", "run_cases"]


@dataclass(frozen=True)
class Feedback:
    """The verdict of a check.

    Attributes:
        exercise: the name of the exercise.
        passed: whether every case passed.
        message: what passed, or the property that failed with expected against got.
        cases: how many cases were run (up to and including the first failure).
    """

    exercise: str
    passed: bool
    message: str
    cases: int

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.exercise}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        color, mark = ("#1a7f37", "✓ Correct") if self.passed else ("#b35900", "✗ Not yet")
        return (f'<div class="mu-feedback" style="border-left:4px solid {color};padding:0.3em 0.8em;'
                f'margin:0.3em 0"><strong style="color:{color}">{mark}</strong> '
                f"<code>{html.escape(self.exercise)}</code>: {html.escape(self.message)}</div>")

    def _repr_markdown_(self) -> str:
        return f"**{'✓ Correct' if self.passed else '✗ Not yet'}** `{self.exercise}`: {self.message}"


@dataclass(frozen=True)
class Case:
    """One tiny case of a check.

    Attributes:
        prop: the property it tests, in words (shown when it fails).
        args: keyword arguments passed to the reader's function.
        expected: the right answer (from the library).
        hint: what usually causes a failure here.
        shown: how to print the inputs (default: ``name=value`` of ``args``).
        slips: known mistakes as ``(the value the mistake returns, its hint)``: when the reader's
            answer equals one of them, that hint replaces the generic one.
    """

    prop: str
    args: dict[str, Any]
    expected: Any
    hint: str
    shown: str | None = None
    slips: tuple[tuple[Any, str], ...] = ()


def _fmt(x: Any) -> str:
    if x is None:
        return "None"
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        if x.size > 8:
            return f"array of shape {x.shape}"
        return np.array2string(x, precision=5, separator=", ")
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    return repr(x)


def _compare(got: Any, expected: Any, *, rtol: float, atol: float) -> str | None:
    """``None`` if ``got`` matches ``expected``, else a short reason."""
    if got is None:
        return "your function returned None (is a `return` missing?)"
    if isinstance(expected, dict):
        if not isinstance(got, Mapping):
            return f"expected a dict, got {type(got).__name__}"
        if set(got) != set(expected):
            return f"expected the keys {sorted(expected)}, got {sorted(got)}"
        return None if all(got[k] == v for k, v in expected.items()) else ""
    try:
        g = np.asarray(got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else got, dtype=np.float64)
    except (TypeError, ValueError):
        return f"expected a number or an array, got {type(got).__name__}"
    e = np.asarray(expected, dtype=np.float64)
    if g.shape != e.shape:
        return f"expected shape {e.shape}, got shape {g.shape}"
    same_inf = np.isinf(e) & (g == e)
    close = np.isclose(g, e, rtol=rtol, atol=atol) | same_inf
    return None if bool(close.all()) else ""


def run_cases(exercise: str, fn: Callable[..., Any], cases: Sequence[Case], *, success: str, rtol: float = 1e-6,
              atol: float = 1e-9) -> Feedback:
    """Run ``fn`` on each case in turn and return the feedback of the first failure, or success.

    Args:
        exercise: the exercise's name.
        fn: the reader's function, called as ``fn(**case.args)``.
        cases: the cases, simplest first.
        success: the message of a right answer.
        rtol: relative tolerance.
        atol: absolute tolerance.

    Returns:
        A :class:`Feedback`.

    Example:
        >>> run_cases("double", lambda x: 2 * x, [Case("doubles", {"x": 2}, 4, "multiply")], success="all good")
        ✓ double: all good
    """
    if not callable(fn):
        return Feedback(exercise, False, f"pass your function itself, not {type(fn).__name__} "
                        "(write check(my_function), without parentheses after its name)", 0)
    for i, case in enumerate(cases, start=1):
        hint = case.hint
        shown = case.shown or ", ".join(f"{k}={_fmt(v)}" for k, v in case.args.items())
        try:
            got = fn(**copy.deepcopy(case.args))  # a function that changes its inputs cannot spoil the next case
        except NotImplementedError:
            return Feedback(exercise, False, "not implemented yet: replace the `raise NotImplementedError` with "
                            "your code", i)
        except Exception as err:  # the reader's code may raise anything: report it as a hint
            hint = hint if hint.endswith(".") else hint + "."
            return Feedback(exercise, False, f"{case.prop}. On {shown} your function raised "
                            f"{type(err).__name__}: {err}. Hint: {hint}", i)
        reason = _compare(got, case.expected, rtol=rtol, atol=atol)
        if reason is not None:
            hint = next((h for value, h in case.slips if _compare(got, value, rtol=rtol, atol=atol) is None), hint)
            hint = hint if hint.endswith(".") else hint + "."
            detail = f" ({reason})" if reason else ""
            return Feedback(exercise, False, f"{case.prop}. On {shown} expected {_fmt(case.expected)}, got "
                            f"{_fmt(got)}{detail}. Hint: {hint}", i)
    return Feedback(exercise, True, success, len(cases))
