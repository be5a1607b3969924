"""The assignments' master notebooks are well formed for Otter Assign.

Grading itself (the solution scores full marks, an untouched student notebook less) is
``make grade-check``, which CI runs; these tests check the structure that makes it possible,
without running otter: the assignment configuration, matched BEGIN/END blocks, a solution and
both public and hidden tests in every question, points that add up, and the conventions the
students rely on (a Colab set-up cell, the grader object, no call of the library function that a
question asks them to write).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MASTERS = sorted(p / f"{p.name}.ipynb" for p in (ROOT / "assignments").iterdir()
                 if p.is_dir() and (p / f"{p.name}.ipynb").exists())
_BLOCK = re.compile(r"#\s*(BEGIN|END)\s+(QUESTION|SOLUTION|TESTS|PROMPT)\b", re.IGNORECASE)
RETURN_NONE = {"backward", "step", "zero_grad"}  # calls whose value (None) prints nothing
_TEST_CONFIG = re.compile(r'^"""\s*#\s*BEGIN TEST CONFIG\n(?P<yaml>.*?)"""\s*#\s*END TEST CONFIG\n', re.DOTALL)


def test_there_are_three_assignments():
    assert [m.stem for m in MASTERS] == ["beat-finetuning", "epsilon", "neggrad-plus"]


def _questions(nb):
    """Parse the master: a list of questions with their solution and test cells."""
    questions, stack, current = [], [], None
    for i, cell in enumerate(nb.cells):
        first = cell.source.split("\n", 1)[0]
        m = _BLOCK.match(first) if cell.cell_type == "raw" else None
        if m:
            kind, what = m[1].upper(), m[2].upper()
            if kind == "BEGIN":
                stack.append(what)
                if what == "QUESTION":
                    current = {"config": yaml.safe_load(cell.source.split("\n", 1)[1]), "solutions": [],
                               "tests": [], "cell": i}
            else:
                assert stack and stack[-1] == what, f"cell {i}: END {what} closes {stack[-1:] or 'nothing'}"
                stack.pop()
                if what == "QUESTION":
                    questions.append(current)
                    current = None
            continue
        if cell.cell_type == "code" and stack[-1:] == ["SOLUTION"]:
            current["solutions"].append(cell.source)
        elif cell.cell_type == "code" and stack[-1:] == ["TESTS"]:
            cfg = _TEST_CONFIG.match(cell.source)
            assert cfg, f"cell {i}: a test cell must start with a TEST CONFIG block"
            current["tests"].append({**yaml.safe_load(cfg["yaml"]), "code": cell.source[cfg.end():]})
    assert not stack, f"unclosed blocks: {stack}"
    return questions


@pytest.mark.parametrize("master", MASTERS, ids=[m.stem for m in MASTERS])
def test_master_is_well_formed(master):
    nb = nbformat.read(master, as_version=4)
    nbformat.validate(nb)
    head = nb.cells[0]
    assert head.cell_type == "raw" and head.source.startswith("# ASSIGNMENT CONFIG")
    config = yaml.safe_load(head.source.split("\n", 1)[1])
    assert config["name"] == master.stem and config["generate"] is True and config["init_cell"] is False
    # The set-up cell installs in Colab and creates the grader that the check cells use.
    setup = next(c.source for c in nb.cells if c.cell_type == "code")
    assert 'if "google.colab" in sys.modules:' in setup and "otter-grader" in setup
    assert f'grader = otter.Notebook("{master.name}")' in setup
    questions = _questions(nb)
    assert questions, "no question"
    names = [q["config"]["name"] for q in questions]
    assert names == [f"q{i}" for i in range(1, len(names) + 1)]
    for q in questions:
        label = f"{master.stem} {q['config']['name']}"
        assert q["solutions"], f"{label}: no solution cell"
        assert any("# BEGIN SOLUTION" in s or "# SOLUTION" in s for s in q["solutions"]), label
        public = [t for t in q["tests"] if not t.get("hidden")]
        hidden = [t for t in q["tests"] if t.get("hidden")]
        assert public and hidden, f"{label}: needs public and hidden tests"
        assert sum(t["points"] for t in q["tests"]) == q["config"]["points"], f"{label}: points do not add up"
        for t in q["tests"]:
            tree = ast.parse(t["code"])  # every test is valid Python
            assert "assert" in t["code"], f"{label}: a test that asserts nothing"
            # Otter runs a test as a doctest, statement by statement: a bare expression whose value
            # is printed fails it ("Expected nothing"), and a decorator is split from its function.
            bare = [ast.unparse(n)[:60] for n in tree.body if isinstance(n, ast.Expr)
                    and not (isinstance(n.value, ast.Call) and getattr(n.value.func, "attr", "") in RETURN_NONE)]
            assert not bare, f"{label}: bare expressions in a test print their value: {bare}"
            decorated = [n.name for n in ast.walk(tree) if getattr(n, "decorator_list", None)]
            assert not decorated, f"{label}: decorators in a test break otter's doctests: {decorated}"
            assert t.get("failure_message"), f"{label}: every test tells the student what failed"
        for s in q["solutions"]:
            ast.parse(s)
    # Code that students read fits the page, as in the chapters.
    for c in nb.cells:
        if c.cell_type == "code":
            long = [line for line in c.source.split("\n") if len(line) > 100
                    and "%pip install" not in line and not line.startswith("failure_message:")]
            assert not long, f"{master.stem}: lines over 100 characters: {long[:2]}"


def _solution_calls(master, name):
    nb = nbformat.read(master, as_version=4)
    return "\n".join(s for q in _questions(nb) for s in q["solutions"]).count(name)


def test_answers_do_not_call_the_library_they_reimplement():
    assert _solution_calls(ROOT / "assignments/neggrad-plus/neggrad-plus.ipynb", "unlearn.") == 0
    assert _solution_calls(ROOT / "assignments/epsilon/epsilon.ipynb", "audit.") == 0


def test_hidden_tests_compare_with_the_library_and_grade_on_hidden_seeds():
    eps = _questions(nbformat.read(ROOT / "assignments/epsilon/epsilon.ipynb", as_version=4))
    hidden = "\n".join(t["code"] for q in eps for t in q["tests"] if t.get("hidden"))
    for needed in ("per_example_epsilons", "best_decision_rules", '"range_guard"', '"interval"'):
        assert needed in hidden
    ng = _questions(nbformat.read(ROOT / "assignments/neggrad-plus/neggrad-plus.ipynb", as_version=4))
    assert any('_unlearn.get("neggrad_plus"' in t["code"] for q in ng for t in q["tests"] if t.get("hidden"))
    beat = _questions(nbformat.read(ROOT / "assignments/beat-finetuning/beat-finetuning.ipynb", as_version=4))
    graded = [t["code"] for q in beat for t in q["tests"] if t.get("hidden")]
    seeds = {int(m) for code in graded for m in re.findall(r"_grade\(my_unlearn, (\d+)\)", code)}
    assert len(seeds) == 2 and 0 not in seeds  # the student's own scoring cell uses seed 0
    assert all("num_models=16" in code and 'device="cpu"' in code for code in graded)
