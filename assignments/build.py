"""Build the student and autograder bundles of every assignment (``make assignments``).

For each master notebook ``assignments/<name>/<name>.ipynb`` this runs Otter Assign and writes

* ``_build/assignments/<name>/student/<name>.ipynb``: the notebook to hand out (solutions and
  hidden tests removed, public tests kept in its metadata);
* ``_build/assignments/<name>/autograder/<name>.ipynb``: the solved notebook;
* ``_build/assignments/<name>/autograder/<name>-autograder_<time>.zip``: the autograder bundle,
  for ``otter run`` (local grading, no Docker) or an upload to Gradescope.

Usage: ``python assignments/build.py [NAME ...]`` (default: every assignment).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "assignments"


def masters() -> list[Path]:
    """The master notebooks, one per folder of ``assignments/``, in name order."""
    found = sorted(p / f"{p.name}.ipynb" for p in (ROOT / "assignments").iterdir() if p.is_dir()
                   and (p / f"{p.name}.ipynb").exists())
    if not found:
        raise SystemExit("no master notebook found under assignments/<name>/<name>.ipynb")
    return found


def otter() -> str:
    exe = Path(sys.executable).parent / "otter"
    if not exe.exists():
        raise SystemExit(f"otter-grader is not installed next to {sys.executable}: "
                         "pip install -e '.[classroom]'")
    return str(exe)


def build(master: Path) -> Path:
    """Run Otter Assign on one master; returns the output folder (replaced if it existed)."""
    dest = OUT / master.stem
    tmp = OUT / f".{master.stem}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    # --no-run-tests: `make grade-check` grades the solution with the real autograder instead.
    proc = subprocess.run([otter(), "assign", "--no-run-tests", "--no-pdfs", str(master), str(tmp)],
                          cwd=master.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"otter assign failed on {master}:\n{proc.stdout}\n{proc.stderr}")
    for part in ("student", "autograder"):
        if not (tmp / part / master.name).exists():
            raise SystemExit(f"otter assign wrote no {part}/{master.name} for {master}")
    if not list((tmp / "autograder").glob("*-autograder_*.zip")):
        raise SystemExit(f"otter assign wrote no autograder zip for {master}")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)  # the finished bundle appears at once
    return dest


def main(argv: list[str]) -> int:
    chosen = masters()
    if argv:
        unknown = sorted(set(argv) - {m.stem for m in chosen})
        if unknown:
            raise SystemExit(f"unknown assignment(s) {unknown}; available: {[m.stem for m in chosen]}")
        chosen = [m for m in chosen if m.stem in argv]
    for master in chosen:
        start = time.perf_counter()
        dest = build(master)
        print(f"{master.stem}: bundles in {dest.relative_to(ROOT)} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
