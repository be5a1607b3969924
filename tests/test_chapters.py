"""Every chapter executes under MU_PROFILE=gpu_smoke here, and under MU_PROFILE=smoke with its
exercises' solutions appended in ``tests/test_solutions.py`` (one execution serves both; the book
build runs the cpu profile).

``gpu_smoke`` is the gpu profile's code path on the CPU: its model family (ResNet-9), CIFAR-shaped
generated images (``cifar10_like``) with crops and flips, and bf16 autocast with channels-last,
at the smoke profile's sizes. A chapter that runs under it runs the code a Colab GPU runs.
"""

import re

import pytest
from conftest import REPO
from test_book import chapters

from mu_lib import book

GLUE_ROLE = re.compile(r"\{glue:(text|md)\}`([\w-]+)")

BUDGET_S = {"gpu_smoke": 420}
"""Seconds one chapter may take (one core of the two that the test command's workers share)."""


@pytest.mark.chapter
@pytest.mark.parametrize("profile", list(BUDGET_S))
@pytest.mark.parametrize("chapter", chapters())
def test_chapter_runs(chapter, profile):
    run = book.execute_notebook(REPO / f"{chapter}.ipynb", profile=profile, timeout=BUDGET_S[profile])
    assert run.seconds < BUDGET_S[profile], f"{chapter} took {run.seconds:.0f} s under {profile}"
    check_glue_roles(chapter, run.notebook)
    if profile == "gpu_smoke":  # the banner shows the gpu code path: bf16 on the CPU
        banner = "".join(o.get("text", "") for c in run.notebook.cells if c.cell_type == "code"
                         for o in c.get("outputs", []) if o.get("output_type") == "stream")
        if "| profile " in banner:
            assert "profile gpu_smoke" in banner and "precision bf16" in banner


def check_glue_roles(chapter: str, notebook) -> None:
    """Every glue role in the prose names a value the run glued, with the role that renders it:
    a Markdown value under {glue:text} would print its Python repr in the book."""
    kinds = {}
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                kinds[name] = "md" if any(k.endswith("text/markdown") for k in out.get("data", {})) else "text"
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for role, name in GLUE_ROLE.findall(cell.source):
                assert name in kinds, f"{chapter}: {{glue:{role}}}`{name}` is never glued"
                assert not (role == "text" and kinds[name] == "md"), \
                    f"{chapter}: {name} is Markdown; use {{glue:md}}`{name}`"
