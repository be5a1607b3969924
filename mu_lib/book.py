"""Helpers for the book: ``glue`` that works inside and outside Jupyter Book, result tables, and
headless execution of a chapter.

Every number in the prose of a chapter is computed above it and inserted with :func:`glue`; in the
rendered book MyST's ``{glue:text}`` role prints it, and in Colab (where the MyST roles are not
rendered) :func:`glue` prints ``name = value`` below the cell so that the reader still sees it.

Example:
    >>> glue("demo_accuracy", 0.8766, quiet=True)
    0.8766
    >>> fmt_pct(0.8766)
    '87.7 %'
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mu_lib import runtime, viz

__all__ = ["setup", "glue", "fmt_pct", "results_table", "execute_notebook", "NotebookRun", "repository",
           "install_cell_source", "colab_badge", "sync_chapters", "new_chapter"]


def setup(*, chapter: str, seed: int = 0, profile: str | None = None, device: str | None = None,
          verbose: bool = True) -> runtime.Profile:
    """Prepare a chapter: :func:`mu_lib.runtime.setup` (profile, device, seeds, banner), then the
    book's plotting style (:func:`mu_lib.viz.use_style`).

    Args:
        chapter: the chapter's short name, printed in the banner.
        seed: the seed of every generator.
        profile: a profile name; ``None`` reads ``MU_PROFILE`` or follows the hardware.
        device: a device name; ``None`` reads ``MU_DEVICE`` or follows the hardware.
        verbose: print the one-line banner.

    Returns:
        The profile, with ``device`` and ``seed`` filled in.

    Example:
        >>> setup(chapter="doctest", profile="smoke", device="cpu", verbose=False).name
        'smoke'
    """
    prof = runtime.setup(chapter=chapter, seed=seed, profile=profile, device=device, verbose=verbose)
    viz.use_style()
    return prof


def _in_myst_build() -> bool:
    """Whether we run in a kernel that Jupyter Book or nbclient executes (myst_nb can glue)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def glue(name: str, value: Any, *, display: bool = False, quiet: bool = False) -> Any:
    """Store ``value`` under ``name`` for ``{glue:text}`` / ``{glue:figure}`` and return it.

    In a Jupyter kernel it calls ``myst_nb.glue`` (which records the value in the cell outputs);
    elsewhere, or when myst-nb is not installed (Colab), it prints ``name = value`` unless
    ``quiet``.

    Args:
        name: the key used in the chapter's markdown.
        value: a number, a string, a figure or a table.
        display: also display the value in the cell output.
        quiet: do not print the fallback line outside Jupyter Book.

    Returns:
        ``value`` (numpy and torch scalars converted to Python numbers), so that
        ``acc = glue("acc", compute())`` reads naturally.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"glue name must be alphanumeric with '_' or '-', got {name!r}")
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy/torch scalars: glue a plain number, which {glue:text} can format
    if _in_myst_build():
        try:
            from myst_nb import glue as myst_glue
        except ImportError:
            myst_glue = None
        if myst_glue is not None:
            myst_glue(name, value, display=display)
            return value
    if not quiet:
        if hasattr(value, "savefig"):
            shown = "<figure>"
        elif type(value).__name__ == "Markdown" and isinstance(getattr(value, "data", None), str):
            shown = value.data  # IPython.display.Markdown: show the text, not the object's repr
        else:
            shown = repr(value)
        print(f"{name} = {shown}")
    return value


def fmt_pct(x: float, digits: int = 1) -> str:
    """Format a fraction as a percentage string: ``0.8766 -> "87.7 %"``."""
    return f"{100.0 * float(x):.{digits}f} %"


def results_table(rows: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]], *,
                  index: str | None = None, percent: Sequence[str] = (), digits: int = 3):
    """A pandas ``DataFrame`` of results with rounded numbers and fractions shown as percentages.

    Args:
        rows: a list of dicts (one per row) or a dict of dicts (row name -> columns).
        index: the column to use as index (for a list of dicts).
        percent: columns holding fractions in [0, 1], shown in percent with one decimal.
        digits: decimals of the other float columns.

    Example:
        >>> t = results_table([{"method": "retrain", "test": 0.9123}], index="method", percent=["test"])
        >>> float(t.loc["retrain", "test"])
        91.2
    """
    import pandas as pd

    if isinstance(rows, Mapping):
        df = pd.DataFrame.from_dict(rows, orient="index")
    else:
        df = pd.DataFrame(list(rows))
        if index is not None:
            df = df.set_index(index)
    for col in df.columns:
        if col in percent:
            df[col] = (100.0 * df[col].astype(float)).round(1)
        elif pd.api.types.is_float_dtype(df[col]):
            df[col] = df[col].round(digits)
    return df


class NotebookRun:
    """The outcome of :func:`execute_notebook`: the executed notebook and its wall time."""

    def __init__(self, notebook: Any, seconds: float) -> None:
        self.notebook = notebook
        self.seconds = seconds

    def glued(self) -> dict[str, Any]:
        """Values glued by the chapter, as their ``text/plain`` representation."""
        out: dict[str, Any] = {}
        for cell in self.notebook.cells:
            for o in cell.get("outputs", []):
                meta = o.get("metadata", {}).get("scrapbook")
                if meta and "name" in meta:
                    data = o.get("data", {})
                    text = next((v for k, v in data.items() if k.endswith("text/plain")), None)
                    out[meta["name"]] = text
        return out


def execute_notebook(path: str | os.PathLike, *, profile: str = "smoke", timeout: int = 600,
                     env: Mapping[str, str] | None = None) -> NotebookRun:
    """Execute a chapter headless (nbclient, kernel ``python3``) with ``MU_PROFILE=profile``.

    The notebook runs in its own directory, as the book build runs it. A cell that raises makes
    this function raise ``nbclient.exceptions.CellExecutionError`` unless the cell carries the
    ``raises-exception`` tag.

    Args:
        path: the ``.ipynb`` file.
        profile: the run profile.
        timeout: seconds allowed per cell.
        env: extra environment variables for the kernel.

    Returns:
        A :class:`NotebookRun`.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in ("MU_PROFILE", "MU_PROGRESS", *(env or {}))}
    os.environ["MU_PROFILE"] = profile
    os.environ["MU_PROGRESS"] = "0"
    os.environ.update(env or {})
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return NotebookRun(nb, seconds)


INSTALL_TAG = "remove-cell"
_BADGE_PREFIX = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"


def repository(config: str | os.PathLike = "_config.yml") -> tuple[str, str]:
    """The book's repository URL and branch, read from ``_config.yml`` (their only home)."""
    import yaml

    with open(config) as fh:
        repo = yaml.safe_load(fh)["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def install_cell_source(config: str | os.PathLike = "_config.yml") -> str:
    """Source of every chapter's first code cell: install ``mu_lib`` when running in Colab.

    Colab brings its own torch and torchvision (built for its GPU), and the package accepts them
    (lower bounds only). The cell also pins them to the versions already installed, so that pip's
    resolver can never replace them: it installs ``mu_lib`` and whichever of its lighter
    dependencies are missing, and if a dependency needed another torch it would stop with a
    conflict instead of downloading one (``tests/test_install.py`` checks this with pip's
    resolver in dry-run mode).

    Example:
        >>> src = install_cell_source(Path(__file__).resolve().parents[1] / "_config.yml")
        >>> "torch=={torch.__version__}" in src and "%pip install" in src
        True
    """
    url, branch = repository(config)
    return ("# Colab only: install mu_lib from the book's repository over Colab's own torch and\n"
            "# torchvision, pinned to the installed versions so that pip never replaces them.\n"
            "import sys\n"
            "\n"
            "if \"google.colab\" in sys.modules:\n"
            "    import torch\n"
            "    import torchvision\n"
            "\n"
            f"    repo = \"git+{url}@{branch}\"\n"
            "    keep = f\"torch=={torch.__version__} torchvision=={torchvision.__version__}\"\n"
            "    %pip install -q \"mu_lib @ {repo}\" {keep}")


def colab_badge(chapter: str | os.PathLike, config: str | os.PathLike = "_config.yml") -> str:
    """Markdown of the "Open in Colab" badge of a chapter file (path relative to the repository)."""
    url, branch = repository(config)
    slug = url.split("github.com/", 1)[-1]
    return f"{_BADGE_PREFIX}(https://colab.research.google.com/github/{slug}/blob/{branch}/{Path(chapter).as_posix()})"


def _chapter_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "book").glob("*.ipynb"))


def sync_chapters(root: str | os.PathLike = ".", *, check: bool = False) -> list[Path]:
    """Make every chapter's Colab badge and install cell agree with ``_config.yml``.

    The install cell is the first code cell (tagged ``remove-cell``, so it is hidden in the HTML);
    the badge is the line of the first markdown cell that starts with the badge image.

    Args:
        root: the repository root.
        check: only report which chapters disagree; change nothing.

    Returns:
        The chapters that were (or, with ``check``, would be) changed.
    """
    import nbformat

    root = Path(root)
    config = root / "_config.yml"
    source = install_cell_source(config)
    changed = []
    for path in _chapter_files(root):
        nb = nbformat.read(path, as_version=4)
        dirty = False
        code = [c for c in nb.cells if c.cell_type == "code"]
        if not code:
            raise ValueError(f"{path} has no code cell")
        first = code[0]
        if first.source != source or INSTALL_TAG not in first.metadata.get("tags", []):
            first.source = source
            first.metadata["tags"] = sorted(set(first.metadata.get("tags", [])) | {INSTALL_TAG})
            dirty = True
        md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
        badge = colab_badge(path.relative_to(root), config)
        if md is not None:
            lines = md.source.split("\n")
            hits = [i for i, line in enumerate(lines) if line.startswith(_BADGE_PREFIX)]
            if not hits:
                lines.insert(1, "\n" + badge if lines and lines[0].startswith("#") else badge)
                md.source, dirty = "\n".join(lines), True
            elif lines[hits[0]] != badge:
                lines[hits[0]] = badge
                md.source, dirty = "\n".join(lines), True
        if dirty:
            changed.append(path)
            if not check:
                nbformat.write(nb, path)
    return changed


def new_chapter(name: str, title: str, *, root: str | os.PathLike = ".") -> Path:
    """Create ``book/<name>.ipynb`` with the chapter template of DESIGN.md §5 (no outputs).

    The sections after the setup cell are headings for the author to fill in; the template's
    admonitions, install cell and setup cell are complete.
    """
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    root = Path(root)
    path = root / "book" / f"{name}.ipynb"
    if path.exists():
        raise FileExistsError(f"{path} exists")
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "language_info": {"name": "python"}})
    nb.cells = [
        new_markdown_cell(f"# {title}\n\n{colab_badge(path.relative_to(root), root / '_config.yml')}\n\n"
                          "*One-line hook.*"),
        new_markdown_cell(":::{admonition} Learning objectives\n:class: tip\nAfter this chapter you can\n- ...\n:::"),
        new_markdown_cell(":::{admonition} Prerequisites, time and compute\n:class: note\n- ...\n:::"),
        new_code_cell(install_cell_source(root / "_config.yml"), metadata={"tags": [INSTALL_TAG]}),
        new_code_cell(f"from mu_lib import book\n\nprof = book.setup(chapter={name!r}, seed=0)"),
    ]
    nbformat.write(nb, path)
    return path


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mu_lib.book", description="Book maintenance commands.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run_p = sub.add_parser("run", help="execute a chapter headless and print its time and glued values")
    run_p.add_argument("chapter")
    run_p.add_argument("--profile", default="smoke", choices=list(runtime.PROFILES))
    sync_p = sub.add_parser("sync", help="align Colab badges and install cells with _config.yml")
    sync_p.add_argument("--check", action="store_true", help="report only; exit 1 if anything disagrees")
    new_p = sub.add_parser("new", help="create a chapter from the template")
    new_p.add_argument("name")
    new_p.add_argument("title")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        run = execute_notebook(args.chapter, profile=args.profile)
        print(f"{args.chapter}: executed under MU_PROFILE={args.profile} in {run.seconds:.1f} s")
        for k, v in run.glued().items():
            print(f"  {k} = {v}")
        return 0
    if args.cmd == "sync":
        changed = sync_chapters(".", check=args.check)
        for p in changed:
            print(("disagrees: " if args.check else "updated: ") + str(p))
        return 1 if (args.check and changed) else 0
    print(new_chapter(args.name, args.title))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
