"""Wall time of grading the Lab 01 solution against a bare papermill run of it.

Both run as a user would, as separate processes, on a fresh MLflow store each time:
``papermill`` (migrating a new store, as any plain run does) and
``python -m autograder grade``. One untimed round first warms the disk cache and the
grader's store template (made once per MLflow version). Prints each run and the medians.

    python benchmarks/grade_vs_papermill.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.course import LABS  # noqa: E402
from autograder.kit import labkit  # noqa: E402

MASTER = LABS["01_tracking"].master
BIN = Path(sys.executable).parent


def bare_papermill() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        uri = labkit.sqlite_uri(Path(tmp) / "mlflow.db")
        cmd = [str(BIN / "papermill"), str(MASTER), str(Path(tmp) / "out.ipynb"),
               "-p", "TRACKING_URI", uri, "--cwd", tmp, "--no-progress-bar"]
        return _timed(cmd)


def grade() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        # Sandboxed, on hidden inputs of one seed (as a class is graded: one seed for all).
        cmd = [sys.executable, "-m", "autograder", "grade", str(MASTER), "--feedback-dir", tmp, "--seed", "4242"]
        return _timed(cmd)


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or ("grade" in cmd and "Score: 10 / 10" not in proc.stdout):
        sys.exit(f"benchmark run failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args()
    print("warm-up round (untimed) ...", flush=True)
    bare_papermill()
    grade()
    bare, graded = [], []
    for i in range(1, args.repeat + 1):
        bare.append(bare_papermill())
        graded.append(grade())
        print(f"round {i}/{args.repeat}: papermill {bare[-1]:5.1f} s   grade {graded[-1]:5.1f} s", flush=True)
    mb, mg = statistics.median(bare), statistics.median(graded)
    print(f"\nmedian bare papermill run : {mb:5.1f} s")
    print(f"median grading            : {mg:5.1f} s")
    print(f"ratio grade / papermill   : {mg / mb:5.2f}x   (target <= 1.15x)")


if __name__ == "__main__":
    main()
