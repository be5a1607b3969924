"""The book tools of the classroom: the link resolution of the browser check, and the student
edition's configuration and its search for solution text.

The browser itself runs in ``make book-check`` (CI, after the book build); here are the parts
that decide what counts as broken or as leaked, on small hand-made inputs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


book_check = _load("book_check")
student_edition = _load("student_edition")


@pytest.fixture
def site(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "index.html").write_text('<a href="book/a.html">a</a>')
    (tmp_path / "book" / "a.html").write_text('<h2 id="sec-1">S</h2><a href="b.html#x">b</a>')
    (tmp_path / "book" / "b.html").write_text('<span id="x"></span>')
    (tmp_path / "_static" / "style.html").write_text("asset")
    return tmp_path


def test_pages_skip_the_asset_folders(site):
    assert [p.relative_to(site).as_posix() for p in book_check.pages(site)] == [
        "book/a.html", "book/b.html", "index.html"]


@pytest.mark.parametrize("href,problem", [
    ("b.html", None), ("b.html#x", None), ("#sec-1", None), ("../index.html", None),
    ("https://example.org/missing", None), ("mailto:someone@example.org", None),
    ("c.html", "no such file"), ("b.html#y", "no element with id 'y'"), ("#nope", "no element with id 'nope'"),
    ("../../outside.html", "outside the book"),
])
def test_internal_links_resolve_or_say_why_not(site, href, problem):
    got = book_check.check_link(site.resolve(), (site / "book" / "a.html").resolve(), href)
    assert (got is None) if problem is None else (problem in got), got


def test_student_config_hides_solutions_and_ships_no_notebook():
    cfg = student_edition.student_config(ROOT)
    sphinx = cfg["sphinx"]["config"]
    assert sphinx["hide_solutions"] is True and sphinx["html_copy_source"] is False
    assert sphinx["html_theme_options"]["use_download_button"] is False
    assert "launch_buttons" not in cfg
    assert cfg["execute"]["cache"] == str(ROOT / "_build" / ".jupyter_cache")  # the main build's cache
    for path in cfg["sphinx"].get("local_extensions", {}).values():
        assert Path(path).is_absolute() and Path(path).is_dir()


def test_solution_text_is_found_in_every_fence_style():
    text = "\n".join([
        "Before.", ":::{solution} ex-1", ":class: dropdown", "```python", "for m in (100, 1000):",
        "    print(audit.epsilon_lower_bound(ones, zeros).epsilon)", "```",
        "The bound grows only logarithmically with the number of models.", ":::",
        "Between.", "::::{solution-start} ex-2", "::::", "````{solution} ex-3", "Proof by the theorem.", "````",
    ])
    blocks = student_edition.solution_blocks(text)
    assert len(blocks) == 3 and "logarithmically" in blocks[0] and "Before" not in "".join(blocks)
    runs = student_edition.phrases(blocks[0])
    assert "the bound grows only logarithmically with" in runs
    assert all(len(r.split()) == 6 for r in runs)


def test_the_check_finds_a_leaked_solution_and_passes_a_clean_edition(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(
        ":::{exercise}\n:label: e\nWhy?\n:::\n\n:::{solution} e\n:class: dropdown\n"
        "Because the retrained model never saw the forgotten examples at all.\n:::")]
    nbformat.write(nb, book / "ch.ipynb")
    main = tmp_path / "_build" / "html"
    main.mkdir(parents=True)
    (main / "index.html").write_text("<p>Because the <em>retrained</em> model never saw the forgotten examples</p>")
    leaked = tmp_path / "student"
    leaked.mkdir()
    (leaked / "index.html").write_text("<p>Why?</p>")
    (leaked / "searchindex.js").write_text("because the retrained model never saw the")
    problems = student_edition.check(leaked, root=tmp_path)
    assert problems and "is in the student edition" in problems[0]
    (leaked / "searchindex.js").write_text("why")
    assert student_edition.check(leaked, root=tmp_path) == []
    (main / "index.html").write_text("<p>nothing</p>")  # the phrase must exist in the main build
    assert "vacuous" in student_edition.check(leaked, root=tmp_path)[0]
