"""Every chapter of the book executes under MU_PROFILE=smoke (the book build runs the cpu profile)."""

import re

import pytest
from conftest import REPO
from test_book import chapters

from mu_lib import book

GLUE_ROLE = re.compile(r"\{glue:(text|md)\}`([\w-]+)")


@pytest.mark.chapter
@pytest.mark.parametrize("chapter", chapters())
def test_chapter_runs_in_smoke_profile(chapter):
    run = book.execute_notebook(REPO / f"{chapter}.ipynb", profile="smoke", timeout=300)
    assert run.seconds < 300
    # Every glue role in the prose names a value the run glued, with the role that renders it:
    # a Markdown value under {glue:text} would print its Python repr in the book.
    kinds = {}
    for cell in run.notebook.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                kinds[name] = "md" if any(k.endswith("text/markdown") for k in out.get("data", {})) else "text"
    for cell in run.notebook.cells:
        if cell.cell_type == "markdown":
            for role, name in GLUE_ROLE.findall(cell.source):
                assert name in kinds, f"{chapter}: {{glue:{role}}}`{name}` is never glued"
                assert not (role == "text" and kinds[name] == "md"), \
                    f"{chapter}: {name} is Markdown; use {{glue:md}}`{name}`"
