"""The book's plumbing: glue, tables, Colab cells derived from _config.yml, clean notebooks."""

import json

import pytest
import yaml
from conftest import REPO

from mu_lib import book


def _toc_files() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def chapters() -> list[str]:
    """Notebook chapters listed in _toc.yml (the smoke run in test_chapters.py uses this list)."""
    return [f for f in _toc_files() if (REPO / f"{f}.ipynb").exists()]


def test_every_toc_entry_exists():
    for f in _toc_files():
        assert (REPO / f"{f}.ipynb").exists() or (REPO / f"{f}.md").exists(), f"{f} is in _toc.yml but missing"


def test_every_chapter_is_in_the_toc():
    listed = set(chapters())
    on_disk = {f"book/{p.stem}" for p in (REPO / "book").glob("*.ipynb")}
    assert on_disk <= listed, f"chapters missing from _toc.yml: {sorted(on_disk - listed)}"


def test_chapters_are_committed_without_outputs():
    for f in chapters():
        nb = json.loads((REPO / f"{f}.ipynb").read_text())
        dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
                 and (c.get("outputs") or c.get("execution_count"))]
        assert not dirty, f"{f}.ipynb has outputs in cells {dirty}: clear them before committing"


def test_colab_cells_follow_the_config():
    assert book.sync_chapters(REPO, check=True) == [], "run: python -m mu_lib.book sync"
    url, branch = book.repository(REPO / "_config.yml")
    assert url in book.install_cell_source(REPO / "_config.yml") and branch in book.install_cell_source(
        REPO / "_config.yml")


def test_sync_repairs_a_stale_install_cell(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/a/b\n  branch: dev\n")
    path = book.new_chapter("demo", "Demo", root=tmp_path)
    assert book.sync_chapters(tmp_path, check=True) == []
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/c/d\n  branch: main\n")
    assert book.sync_chapters(tmp_path, check=True) == [path]
    assert book.sync_chapters(tmp_path) == [path]
    text = path.read_text()
    assert "git+https://github.com/c/d@main" in text and "github/c/d/blob/main/book/demo.ipynb" in text
    with pytest.raises(FileExistsError):
        book.new_chapter("demo", "Demo", root=tmp_path)


def test_glue_outside_jupyter_prints(capsys):
    assert book.glue("answer", 42) == 42
    assert "answer = 42" in capsys.readouterr().out
    from IPython.display import Markdown

    book.glue("best", Markdown("`eu_k`"))
    assert "best = `eu_k`" in capsys.readouterr().out
    with pytest.raises(ValueError, match="alphanumeric"):
        book.glue("bad name!", 1)


def test_results_table_percentages():
    t = book.results_table({"a": {"acc": 0.12345, "t": 1.23456}}, percent=["acc"], digits=2)
    assert t.loc["a", "acc"] == 12.3 and t.loc["a", "t"] == 1.23
