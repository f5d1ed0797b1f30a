"""How long each lab takes a student: measured where it can be, estimated with a stated model.

For each master in ``solutions/`` it measures

* **words to read**: the markdown cells and the comments of the code cells (the TODO texts and
  hints), the solutions left out, as a student sees them;
* **lines to write**: the code lines of each TODO's answer (between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION``, blank and comment lines left out);
* **UI visits**: the "In the UI" pointers the student is asked to follow;
* **execution**: the solution's wall time under papermill, run once, on a fresh MLflow store, in
  a temporary folder (kernel start included);

and turns them into a range of minutes with ``MODEL``:

    minutes = words / reading speed + lines x minutes per line + TODOs x minutes per TODO
              + UI visits x minutes per visit + execution x runs

The constants are stated with their sources in ``MODEL``. They are a model, not a timing of
students: replace them with what a class measures (``--model`` takes a JSON file of the same
keys). Re-run after editing a lab:

    python benchmarks/lab_times.py                      # measure and execute every lab
    python benchmarks/lab_times.py --labs 01_tracking   # some labs only
    python benchmarks/lab_times.py --json times.json    # keep the measurements
    python benchmarks/lab_times.py --from-json times.json   # re-estimate without executing
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.course import LABS  # noqa: E402
from autograder.kit import labkit  # noqa: E402

BIN = Path(sys.executable).parent
#: (low, high) of each constant: the low end gives the short estimate.
MODEL: dict[str, Any] = {
    # Adults read non-fiction silently at about 238 words a minute (Brysbaert 2019, "How many
    # words do we read per minute? A review and meta-analysis of reading rate", Journal of
    # Memory and Language 109). Technical text with code, formulas and names to keep in mind
    # is read slower: 150-200.
    "words_per_minute": (200, 150),
    # Writing one line of an answer: reading the hint, looking the API up, typing, a typo
    # fixed. An assumption of this course (about a line a minute for a student with hints),
    # not a measurement: calibrate it on a class.
    "minutes_per_line": (0.75, 1.5),
    # Per TODO: run the cell, run its self-check, read the message, one round of fixes.
    "minutes_per_todo": (2.0, 4.0),
    # Per "In the UI" pointer: switch to the browser, find the run, look.
    "minutes_per_ui_visit": (0.5, 1.5),
    # The notebook runs once top to bottom; cells re-run while fixing add up to once more.
    "executions": (1, 2),
}
#: A lab whose estimate starts past this many minutes runs past an hour for every student the
#: model covers: a candidate for splitting (issue #9). One that only ends past it may.
SPLIT_ABOVE_MINUTES = 60

_SOLUTION = re.compile(r"^\s*### BEGIN SOLUTION\s*$(.*?)^\s*### END SOLUTION\s*$", re.MULTILINE | re.DOTALL)
_HIDDEN = re.compile(r"^\s*### BEGIN HIDDEN TESTS\s*$.*?^\s*### END HIDDEN TESTS\s*$", re.MULTILINE | re.DOTALL)
_WORD = re.compile(r"[A-Za-zÀ-ÿ0-9_'’-]+")
_URL = re.compile(r"https?://\S+|\]\([^)]*\)")


def _grade_id(cell: Any) -> str:
    return str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", ""))


def _todo_number(grade_id: str) -> int | None:
    match = re.match(r"todo(\d+)", grade_id)
    return int(match.group(1)) if match else None


def prose_words(nb: Any) -> int:
    """Words a student reads: markdown, and the comments of code cells (the answers and hidden
    tests removed; links counted as their text, not their address)."""
    words = 0
    for cell in nb.cells:
        text = _HIDDEN.sub("", _SOLUTION.sub("", cell.source))
        if cell.cell_type == "code":
            text = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
        words += len(_WORD.findall(_URL.sub(" ", text)))
    return words


def solution_lines(nb: Any) -> dict[int, int]:
    """TODO number -> code lines of its answer (a TODO may span cells: todo5a, todo5b)."""
    lines: dict[int, int] = {}
    for cell in nb.cells:
        number = _todo_number(_grade_id(cell))
        if number is None:
            continue
        body = "\n".join(_SOLUTION.findall(cell.source))
        code = [ln for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        lines[number] = lines.get(number, 0) + len(code)
    return dict(sorted(lines.items()))


def ui_visits(nb: Any) -> int:
    """The "In the UI" pointers (and the UI tours) the lab asks the student to follow."""
    return sum(1 for c in nb.cells if c.cell_type == "markdown" and ("In the UI" in c.source
                                                                    or _grade_id(c).startswith("ui")))


def execute(master: Path, timeout: int) -> dict[str, Any]:
    """The solution's wall time under papermill, on a fresh store in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        uri = labkit.sqlite_uri(Path(tmp) / "mlflow-store" / "mlflow.db")
        out = Path(tmp) / "out.ipynb"
        cmd = [str(BIN / "papermill"), str(master), str(out), "-p", "TRACKING_URI", uri, "--cwd", tmp,
               "--no-progress-bar", "--log-level", "ERROR"]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - started
        cells = 0.0
        if out.is_file():
            executed = nbformat.read(out, as_version=4)
            cells = sum(float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0) for c in executed.cells)
    return {"seconds": round(wall, 1), "cells_seconds": round(cells, 1), "ok": proc.returncode == 0,
            "error": "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1:]}


def measure(lab_id: str, run: bool, timeout: int) -> dict[str, Any]:
    master = LABS[lab_id].master
    nb = nbformat.read(master, as_version=4)
    lines = solution_lines(nb)
    found: dict[str, Any] = {"lab": lab_id, "words": prose_words(nb), "todos": len(lines),
                             "lines": sum(lines.values()), "lines_per_todo": lines, "ui_visits": ui_visits(nb)}
    found["execution"] = execute(master, timeout) if run else None
    return found


def estimate(m: dict[str, Any], model: dict[str, Any]) -> tuple[float, float]:
    """(low, high) minutes for one lab's measurements."""
    seconds = (m.get("execution") or {}).get("seconds", 0.0)
    bounds = []
    for i in (0, 1):
        minutes = (m["words"] / model["words_per_minute"][i] + m["lines"] * model["minutes_per_line"][i]
                   + m["todos"] * model["minutes_per_todo"][i] + m["ui_visits"] * model["minutes_per_ui_visit"][i]
                   + seconds / 60 * model["executions"][i])
        bounds.append(minutes)
    return bounds[0], bounds[1]


def rounded(minutes: float) -> int:
    """To the nearest 5 minutes: the model is not more precise than that."""
    return max(5, int(5 * round(minutes / 5)))


def table(measured: list[dict[str, Any]], model: dict[str, Any]) -> str:
    rows = ["| Lab | words | TODOs | lines (per TODO) | UI | execution | estimate |", "|---|---|---|---|---|---|---|"]
    for m in measured:
        low, high = estimate(m, model)
        ex = m.get("execution")
        run = "not run" if ex is None else f"{ex['seconds']:.0f} s" + ("" if ex["ok"] else " (FAILED)")
        per = ", ".join(f"{n}: {k}" for n, k in m["lines_per_todo"].items())
        flag = " (past an hour)" if low > SPLIT_ABOVE_MINUTES else ""
        rows.append(f"| {m['lab']} | {m['words']} | {m['todos']} | {m['lines']} ({per}) | {m['ui_visits']} | {run} | "
                    f"{rounded(low)}-{rounded(high)} min{flag} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", nargs="*", default=sorted(LABS), help="lab ids (default: every lab)")
    parser.add_argument("--no-execute", action="store_true", help="measure the text only (no papermill run)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds one notebook may run")
    parser.add_argument("--json", type=Path, help="write the measurements and the model here")
    parser.add_argument("--from-json", type=Path, help="re-estimate from measurements written by --json")
    parser.add_argument("--model", type=Path, help="a JSON file of MODEL's keys, to replace the constants")
    args = parser.parse_args(argv)
    model = {**MODEL, **(json.loads(args.model.read_text()) if args.model else {})}
    unknown = [lab for lab in args.labs if lab not in LABS]
    if unknown:
        parser.error(f"unknown lab(s): {', '.join(unknown)}; known: {', '.join(sorted(LABS))}")
    if args.from_json:
        measured = json.loads(args.from_json.read_text())["labs"]
        for m in measured:
            m["lines_per_todo"] = {int(k): v for k, v in m["lines_per_todo"].items()}
    else:
        measured = []
        for lab_id in args.labs:  # one after the other: the execution times must not compete
            measured.append(measure(lab_id, not args.no_execute, args.timeout))
            print(f"measured {lab_id}", file=sys.stderr, flush=True)
    print(table(measured, model))
    print(f"\nModel (low, high): {json.dumps(model)}")
    if args.json:
        args.json.write_text(json.dumps({"model": model, "labs": measured}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
