"""Colab installs what it needs and nothing more.

The wheel is built from the sources, then pip's resolver (dry run, no index: only what is already
installed may satisfy a requirement) installs it the way the chapters' first cell does, into an
environment that already has torch and torchvision (this project's): neither may be installed
again. The wheel must hold every module and data file the chapters import.
"""

import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest
from conftest import REPO
from test_book import chapters

from mu_lib import book

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The mu_lib wheel, built from a copy of the sources (so that no build folder lands in the repo)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "mu_lib", src / "mu_lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
                          str(root / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (path,) = (root / "dist").glob("mu_lib-*.whl")
    return path


def _chapter_imports() -> set[str]:
    """Every ``mu_lib`` module the chapters import (``from mu_lib import x``, ``import mu_lib.x``, ...)."""
    import nbformat

    found = set()
    for ch in chapters():
        nb = nbformat.read(REPO / f"{ch}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mu_lib":
                    found.add(node.module)
                    found.update(f"{node.module}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    found.update(a.name for a in node.names if a.name.split(".")[0] == "mu_lib")
    return found


def test_the_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "mu_lib").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert sources <= names, f"files of mu_lib missing from the wheel: {sorted(sources - names)}"
    assert "mu_lib/py.typed" in names
    imported = _chapter_imports()
    assert "mu_lib.book" in imported  # the scan sees the chapters' setup cells
    for module in sorted(imported):
        path = module.replace(".", "/")
        is_module = f"{path}.py" in names or f"{path}/__init__.py" in names
        parent = module.rsplit(".", 1)[0].replace(".", "/")
        is_attribute = f"{parent}.py" in names or f"{parent}/__init__.py" in names  # from mu_lib.x import name
        assert is_module or is_attribute, f"the chapters import {module}, which the wheel does not hold"


def test_requirements_on_torch_are_lower_bounds_only(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in reqs if "extra ==" not in r]
    for name in ("torch", "torchvision"):
        (spec,) = [r for r in core if re.match(rf"{name}\b(?![-_])", r)]
        assert re.fullmatch(rf"{name}\s*\(?>=[\d.]+\)?", spec), f"{spec!r}: Colab's {name} must satisfy it as it is"


def test_installing_over_torch_reinstalls_neither_torch_nor_torchvision(wheel, tmp_path):
    torch_v, vision_v = metadata.version("torch"), metadata.version("torchvision")
    # What the Colab cell runs: the wheel, with torch and torchvision pinned to the installed versions.
    # Without the pins too: the package's own requirements must not pull another torch.
    for pins in ([f"torch=={torch_v}", f"torchvision=={vision_v}"], []):
        report = tmp_path / f"report{len(pins)}.json"
        out = subprocess.run([*PIP, "install", "--dry-run", "--no-index", "-q", "--report", str(report),
                              str(wheel), *pins], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"pip's resolver failed with only the installed packages:\n{out.stderr}"
        installs = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())
                    ["install"]}
        assert installs == {"mu-lib"}, f"installing the wheel would also install {sorted(installs - {'mu-lib'})}"


def test_the_colab_cell_pins_the_installed_torch():
    src = book.install_cell_source(REPO / "_config.yml")
    assert "torch=={torch.__version__}" in src and "torchvision=={torchvision.__version__}" in src
    assert max(len(line) for line in src.splitlines()) <= 88
    assert re.search(r"%pip install -q \"mu_lib @ \{repo\}\" \{keep\}", src)
