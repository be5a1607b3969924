"""Every exercise's solution runs, after its chapter, and states its prediction as an ``assert``.

The conventions (also in DESIGN.md §5, the chapter template):

* A solution's code is every fenced block opened with ```` ```python ```` (or ```` ```ipython ````)
  inside a ``{solution}`` directive. Those blocks run, in the order of the chapter, in the kernel
  that has just executed the whole chapter under ``MU_PROFILE=smoke``: they may use every name
  the chapter defines (as it stands after its last cell) and the names earlier solutions define.
* A block that is shown but must not run uses another fence: ```` ```{code-block} python ```` (it
  renders the same) or ```` ```text ````.
* A solution with code states its prediction as an ``assert`` in that code ("the gap shrinks" is
  ``assert gap_short < gap``), so that a solution whose claim stops holding fails the tests. A
  solution without code (a proof, an argument) is not executed.
* Solution code follows the notebooks' lint (``book/ruff.toml``: the library's rules, lines of at
  most 88 characters), checked here because ruff does not read code inside Markdown.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from test_book import chapters
from test_chapters import check_glue_roles

from mu_lib import book

RUNNABLE = {"python", "ipython", "python3", "ipython3"}
_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{solution\}(?P<rest>.*)$")
_CODE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


@dataclass(frozen=True)
class Solution:
    """One ``{solution}`` directive of a chapter and its runnable code blocks."""

    chapter: str
    label: str
    blocks: tuple[str, ...]

    @property
    def code(self) -> str:
        return "\n\n".join(self.blocks)


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return bool(s) and set(s) == {fence[0]} and len(s) >= len(fence)


def parse_solutions(markdown: str, chapter: str = "?") -> list[Solution]:
    """The ``{solution}`` directives of a Markdown text (one cell), each with its ``python`` blocks."""
    lines = markdown.split("\n")
    out, i = [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence = m["fence"]
        label = m["rest"].strip() or f"solution-{len(out) + 1}"
        blocks, i = [], i + 1
        while i < len(lines) and not _closes(lines[i], fence):
            c = _CODE.match(lines[i].strip())
            if c:
                code_fence, info = c["fence"], c["info"].lower()
                body, i = [], i + 1
                while i < len(lines) and not _closes(lines[i], code_fence):
                    body.append(lines[i])
                    i += 1
                if info in RUNNABLE:
                    blocks.append("\n".join(body))
            i += 1
        out.append(Solution(chapter, label, tuple(blocks)))
        i += 1
    return out


def chapter_solutions(chapter: str) -> list[Solution]:
    nb = nbformat.read(REPO / f"{chapter}.ipynb", as_version=4)
    return [s for c in nb.cells if c.cell_type == "markdown" for s in parse_solutions(c.source, chapter)]


def with_solutions(chapter: str) -> tuple[nbformat.NotebookNode, dict[int, str]]:
    """The chapter with one code cell per solution appended, and their (1-based) cell numbers."""
    nb = nbformat.read(REPO / f"{chapter}.ipynb", as_version=4)
    cells = {}
    for s in chapter_solutions(chapter):
        if s.blocks:
            nb.cells.append(nbformat.v4.new_code_cell(f"# solution {s.label} ({chapter})\n{s.code}",
                                                      metadata={"solution": s.label}))
            cells[len(nb.cells)] = s.label
    return nb, cells


def _parse(source: str) -> ast.Module:
    """IPython source (magics translated to Python) as an AST."""
    from IPython.core.inputtransformer2 import TransformerManager

    return ast.parse(TransformerManager().transform_cell(source))


def _has_assert(code: str) -> bool:
    return any(isinstance(node, ast.Assert) for node in ast.walk(_parse(code)))


def test_the_parser_finds_runnable_blocks_only():
    text = "\n".join([
        "::::{solution} ex-a", ":class: dropdown", "```python", "x = 1", "```",
        ":::{note}", "inside", ":::", "```{code-block} python", "never_run()", "```",
        "```text", "neither", "```", "````ipython", "```", "assert x == 1", "````", "::::",
        "````{solution} ex-b", "```python", "assert True", "```", "````",
        ":::{solution} ex-c", "Only prose: $1 + 1 = 2$.", ":::", "```python", "outside()", "```",
    ])
    got = {s.label: s.blocks for s in parse_solutions(text)}
    assert got == {"ex-a": ("x = 1", "```\nassert x == 1"), "ex-b": ("assert True",), "ex-c": ()}
    # As in MyST, a directive left open closes at the end of its cell.
    assert parse_solutions(":::{solution} ex-d\n```python\nx = 1\n```")[0].blocks == ("x = 1",)


@pytest.mark.parametrize("chapter", chapters())
def test_solutions_state_their_prediction_as_an_assert(chapter):
    silent = [s.label for s in chapter_solutions(chapter) if s.blocks and not _has_assert(s.code)]
    assert not silent, (f"{chapter}: the code of solutions {silent} asserts nothing; state the "
                        "solution's prediction as an assert (see tests/test_solutions.py)")


@pytest.mark.parametrize("chapter", chapters())
def test_solution_code_passes_the_notebook_lint(chapter, tmp_path):
    nb, cells = with_solutions(chapter)
    path = tmp_path / Path(chapter).name
    nbformat.write(nb, path.with_suffix(".ipynb"))
    proc = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "--config",
                           str(REPO / "book" / "ruff.toml"), "--output-format", "json", "--no-cache",
                           str(path.with_suffix(".ipynb"))], capture_output=True, text=True)
    assert proc.returncode in (0, 1), f"ruff failed to run: {proc.stderr}"
    found = json.loads(proc.stdout)
    # F811: a solution may redefine what the chapter defined (it often rewrites the same function)
    bad = [f"{cells[d['cell']]} line {d['location']['row'] - 1}: {d['code']} {d['message']}"
           for d in found if d.get("cell") in cells and d["code"] != "F811"]
    assert not bad, f"{chapter}: solution code fails the notebook lint:\n" + "\n".join(bad)


SMOKE_BUDGET_S = 300
"""Seconds a chapter and its solutions may take under smoke (one core of the two that the test
command's workers share)."""


@pytest.mark.chapter
@pytest.mark.parametrize("chapter", chapters())
def test_solutions_run_after_their_chapter(chapter, tmp_path):
    nb, _ = with_solutions(chapter)
    path = tmp_path / f"{Path(chapter).name}.ipynb"
    nbformat.write(nb, path)
    # A failing solution raises CellExecutionError, whose message shows the cell: its first line
    # names the solution and the chapter.
    run = book.execute_notebook(path, profile="smoke", timeout=SMOKE_BUDGET_S)
    assert run.seconds < SMOKE_BUDGET_S, f"{chapter} and its solutions took {run.seconds:.0f} s under smoke"
    # The chapter's smoke run (tests/test_chapters.py runs gpu_smoke): its glue roles, checked on
    # this same execution.
    check_glue_roles(chapter, run.notebook)


HIDDEN = {"remove-cell", "remove-input"}


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines, names it reads) in IPython source, magics translated."""
    tree = _parse(source)
    defined, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
            defined.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        elif isinstance(node, ast.Lambda):
            defined.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    return defined, used


@pytest.mark.parametrize("chapter", chapters())
def test_visible_code_uses_no_name_defined_only_in_a_removed_cell(chapter):
    """A reader who copies the code they see (cells, collapsed ones too, and solutions) must not
    meet a name that only a removed cell defines (issue 11 §6)."""
    nb = nbformat.read(REPO / f"{chapter}.ipynb", as_version=4)
    visible, hidden = [], []
    for c in nb.cells:
        if c.cell_type == "code":
            (hidden if HIDDEN & set(c.metadata.get("tags", [])) else visible).append(c.source)
    visible += [s.code for s in chapter_solutions(chapter) if s.blocks]
    seen = set().union(*(_names(src)[0] for src in visible)) if visible else set()
    only_hidden = set().union(*(_names(src)[0] for src in hidden)) - seen if hidden else set()
    bad = sorted(set().union(*(_names(src)[1] for src in visible)) & only_hidden) if visible else []
    assert not bad, (f"{chapter}: visible code uses {bad}, defined only in cells tagged "
                     f"{sorted(HIDDEN)}; define them in a visible cell")
