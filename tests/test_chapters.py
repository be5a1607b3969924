"""Every chapter of the book executes under MU_PROFILE=smoke (the book build runs the cpu profile)."""

import pytest

from conftest import REPO
from test_book import chapters
from mu_lib import book


@pytest.mark.chapter
@pytest.mark.parametrize("chapter", chapters())
def test_chapter_runs_in_smoke_profile(chapter):
    run = book.execute_notebook(REPO / f"{chapter}.ipynb", profile="smoke", timeout=300)
    assert run.seconds < 300
