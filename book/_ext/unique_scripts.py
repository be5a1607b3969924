"""Sphinx extension of the book: each page loads each script once.

Jupyter Book 1.x registers the inline configuration scripts of sphinx-thebe and
sphinx-togglebutton twice, so every page declared ``const THEBE_JS_URL`` twice: an
error in the browser's console (found by ``make book-check``). This drops repeated
entries (same file, same attributes; an inline script's "file" is registered once as
``None`` and once as ``""``) from each page's script list and keeps the first, so the
page runs what it ran before, without the error.
"""

from __future__ import annotations

from typing import Any


def _key(script: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    filename = getattr(script, "filename", script) or ""  # None and "" alike
    attributes = getattr(script, "attributes", {}) or {}
    return str(filename), tuple(sorted((str(k), str(v)) for k, v in attributes.items()))


def unique_scripts(app: Any, pagename: str, templatename: str, context: dict,
                   doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set = set()
    kept = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
