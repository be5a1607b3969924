"""Grade every assignment's reference solution and untouched student notebook (``make grade-check``).

With the autograder bundle of ``make assignments`` and Otter's local grading (``otter run``: no
Docker, this machine's Python environment, CPU only), each assignment's solved notebook must score
full marks and its untouched student notebook must score less. The wall time and the CPU time of
every grading are printed and written, with the scores, to ``_build/assignments/grade-check.json``.

Usage: ``python assignments/grade_check.py [NAME ...]`` (default: every built assignment).
Exit status 1 if any check fails.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "assignments"


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: a load-independent cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def grade(name: str, notebook: Path, label: str) -> dict:
    """``otter run`` one notebook against the assignment's autograder zip; its score and time."""
    zips = sorted((OUT / name / "autograder").glob("*-autograder_*.zip"))
    if not zips:
        raise SystemExit(f"{name}: no autograder bundle; run `make assignments` first")
    result_dir = OUT / name / "grades" / label
    shutil.rmtree(result_dir, ignore_errors=True)
    result_dir.mkdir(parents=True)
    env = {**os.environ, "MU_PROGRESS": "0"}
    start, cpu_start = time.perf_counter(), _children_cpu()
    proc = subprocess.run([str(Path(sys.executable).parent / "otter"), "run", "--no-logo", "-a", str(zips[-1]),
                           "-o", str(result_dir), str(notebook)], capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
    results = result_dir / "results.json"
    if proc.returncode != 0 or not results.exists():
        raise SystemExit(f"{name}: otter run failed on {notebook}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    tests = [t for t in json.loads(results.read_text())["tests"] if t.get("max_score") is not None]
    score = sum(float(t["score"]) for t in tests)
    total = sum(float(t["max_score"]) for t in tests)
    failed = {t["name"]: t.get("output", "") for t in tests if float(t["score"]) < float(t["max_score"])}
    return {"notebook": str(notebook.relative_to(ROOT)), "score": score, "max_score": total,
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "failed": failed}


def main(argv: list[str]) -> int:
    built = sorted(p.name for p in OUT.iterdir() if (p / "autograder").is_dir()) if OUT.exists() else []
    names = argv or built
    if not names:
        raise SystemExit("no built assignment under _build/assignments; run `make assignments` first")
    report, ok = {}, True
    for name in names:
        solution = grade(name, OUT / name / "autograder" / f"{name}.ipynb", "solution")
        blank = grade(name, OUT / name / "student" / f"{name}.ipynb", "student")
        full = solution["score"] == solution["max_score"] > 0
        below = blank["score"] < blank["max_score"]
        ok &= full and below
        report[name] = {"solution": solution, "student": blank, "ok": full and below}
        print(f"{name}: solution {solution['score']:g}/{solution['max_score']:g} in {solution['seconds']:.0f} s "
              f"({solution['cpu_seconds']:.0f} CPU s){'' if full else '  FAIL (not full marks)'}; untouched "
              f"student notebook {blank['score']:g}/{blank['max_score']:g} in {blank['seconds']:.0f} s "
              f"({blank['cpu_seconds']:.0f} CPU s)"
              f"{'' if below else '  FAIL (full marks without an answer)'}", flush=True)
        if not full:
            for test, output in solution["failed"].items():
                print(f"  {test}:\n{output}")
    (OUT / "grade-check.json").write_text(json.dumps(report, indent=2))
    print("grade-check: " + ("all assignments grade as expected" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
