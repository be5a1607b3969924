"""The student edition of the book: the same pages with the exercises' solutions removed.

``config`` writes ``_build/student/_config.yml``: the book's ``_config.yml`` with

* ``hide_solutions: true`` (sphinx-exercise drops every ``{solution}`` directive from the pages);
* no copies of the sources (``html_copy_source: false``), no download button and no launch
  buttons, since the notebooks themselves hold the solutions;
* the execution cache of the main build (``_build/.jupyter_cache``), so that chapters already
  executed by ``make book`` are not executed again.

``check HTML_DIR`` asserts that no solution text is left anywhere in the built edition: from every
``{solution}`` of every chapter it takes runs of six plain words, and none of them may occur in
the text of any HTML, JavaScript, JSON or notebook file of the edition. When the main build
(``_build/html``) exists, the same runs must occur there, so the check cannot pass vacuously.

Usage (``--root DIR`` for another book): ``python tools/student_edition.py config`` then ``jupyter-book build . --config
_build/student/_config.yml --path-output _build/student``, then ``python
tools/student_edition.py check _build/student/_build/html`` (``make book-student`` does all three).
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{solution(?:-start)?\}")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def student_config(root: Path = ROOT) -> dict:
    """The book's configuration with solutions hidden and the notebooks not shipped."""
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    cfg.setdefault("execute", {})["cache"] = str(root / "_build" / ".jupyter_cache")
    cfg["title"] = f"{cfg.get('title', 'Book')} (student edition)"
    cfg.pop("launch_buttons", None)
    sphinx = cfg.setdefault("sphinx", {}).setdefault("config", {})
    sphinx["hide_solutions"] = True
    sphinx["html_copy_source"] = False
    sphinx["html_show_sourcelink"] = False
    sphinx.setdefault("html_theme_options", {})["use_download_button"] = False
    local = cfg["sphinx"].get("local_extensions") or {}
    cfg["sphinx"]["local_extensions"] = {k: str((root / v).resolve()) for k, v in local.items()}
    return cfg


def write_config(root: Path = ROOT) -> Path:
    out = root / "_build" / "student"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "_config.yml"
    path.write_text("# Written by tools/student_edition.py from _config.yml; do not edit.\n"
                    + yaml.safe_dump(student_config(root), sort_keys=False))
    return path


def solution_blocks(markdown: str) -> list[str]:
    """The bodies of the ``{solution}`` directives of a Markdown text."""
    lines, out, i = markdown.split("\n"), [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence, body, i = m["fence"], [], i + 1
        while i < len(lines) and not (set(lines[i].strip()) == {fence[0]} and len(lines[i].strip()) >= len(fence)):
            body.append(lines[i])
            i += 1
        out.append("\n".join(body))
        i += 1
    return out


def phrases(text: str, *, size: int = 6) -> list[str]:
    """Runs of ``size`` plain words (letters only, lower case) from a solution's text and code."""
    plain = re.sub(r"\{[a-z:-]+\}`[^`]*`", " ", text)  # roles such as {glue:text}`x` render differently
    plain = re.sub(r"\$[^$]*\$", " ", plain)  # math is typeset, not text
    out = []
    for line in plain.split("\n"):
        if line.strip().startswith(":") or line.strip().startswith("```"):
            continue
        words = [w.lower() for w in _WORD.findall(line)]
        out += [" ".join(words[k:k + size]) for k in range(0, len(words) - size + 1, size)]
    return out


def _visible_words(nb) -> str:
    """The chapter's words that both editions show: its Markdown without the solutions, and the
    code of the cells that are not removed, as lower-case words separated by spaces."""
    parts = []
    for c in nb.cells:
        if c.cell_type == "markdown":
            text = c.source
            for block in solution_blocks(text):
                text = text.replace(block, " ")
            parts.append(text)
        elif "remove-cell" not in c.get("metadata", {}).get("tags", []):
            parts.append(c.source)
    return " ".join(w.lower() for w in _WORD.findall("\n".join(parts)))


def chapter_phrases(book: Path = ROOT / "book") -> dict[str, list[str]]:
    """Chapter -> the six-word runs of all its solutions, except those that the book also shows
    outside its solutions (a solution reuses chapters' code, e.g. their call signatures)."""
    found = {}
    notebooks = {path.stem: nbformat.read(path, as_version=4) for path in sorted(book.glob("*.ipynb"))}
    shown = "\n".join(_visible_words(nb) for nb in notebooks.values())
    for stem, nb in notebooks.items():
        runs = [p for c in nb.cells if c.cell_type == "markdown" for b in solution_blocks(c.source)
                for p in phrases(b) if p not in shown]
        if runs:
            found[stem] = runs
    return found


def site_text(html_dir: Path) -> str:
    """Everything a reader of the folder can get, as lower-case words separated by spaces."""
    parts = []
    for path in html_dir.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".js", ".json", ".ipynb", ".txt", ".md", ".py"}:
            text = re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8", errors="replace"))
            parts.append(" ".join(w.lower() for w in _WORD.findall(html.unescape(text))))
    return "\n".join(parts)


def check(html_dir: Path, *, root: Path = ROOT) -> list[str]:
    """Problems: solution text found in the student edition (or missing from the main build)."""
    if not (html_dir / "index.html").exists():
        return [f"no built book at {html_dir}"]
    main_html = root / "_build" / "html"
    runs = chapter_phrases(root / "book")
    if not runs:
        return ["no {solution} text found in the chapters: nothing to check"]
    student = site_text(html_dir)
    problems = [f"{chapter}: solution text {p!r} is in the student edition"
                for chapter, ps in runs.items() for p in ps if p in student]
    if (main_html / "index.html").exists():
        main = site_text(main_html)
        for chapter, ps in runs.items():
            if not any(p in main for p in ps):
                problems.append(f"{chapter}: no solution text found in the main build either; the check is vacuous")
    return problems


def main(argv: list[str]) -> int:
    root = ROOT
    if "--root" in argv:  # another book (the tests use a tiny one)
        i = argv.index("--root")
        root, argv = Path(argv[i + 1]).resolve(), argv[:i] + argv[i + 2:]
    if argv[:1] == ["config"]:
        print(f"wrote {write_config(root)}")
        return 0
    if argv[:1] == ["check"] and len(argv) == 2:
        problems = check(Path(argv[1]), root=root)
        for p in problems[:50]:
            print("FAIL", p)
        n = sum(len(v) for v in chapter_phrases(root / "book").values())
        print(f"student edition: {n} solution phrases checked, {len(problems)} problems")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
