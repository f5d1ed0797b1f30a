"""Wall time of grading a class of Lab 01 submissions: the course grader against
``nbgrader autograde``, on the same submissions, with the scores compared.

A third of the synthetic submissions are complete, a third partial, a third untouched.
The course grader uses one worker per core; nbgrader grades one notebook at a time (it
has no parallel autograde: nbgrader issue #174). nbgrader's ``generate_assignment`` (its
one-time set-up) is not timed.

    python benchmarks/class_vs_nbgrader.py [-n 12] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from autograder.course import LABS  # noqa: E402
from autograder.kit.labkit import sqlite_uri  # noqa: E402
from tests.conftest import make_submission  # noqa: E402

LAB = LABS["01_tracking"]
MIX = [{1, 2, 3, 4, 5}, {1, 3, 5}, set()]


def _run(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=12, help="submissions (default 12)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="course grader workers (default: cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        course = Path(tmp)
        (course / "solutions" / LAB.lab_id).mkdir(parents=True)
        shutil.copy(LAB.master, course / "solutions" / LAB.lab_id)
        shutil.copy(ROOT / "nbgrader_config.py", course)
        for i in range(args.n):
            folder = course / "submitted" / f"student{i:03d}" / LAB.lab_id
            folder.mkdir(parents=True)
            nbformat.write(make_submission(done=MIX[i % len(MIX)]), folder / f"{LAB.lab_id}.ipynb")
        print(f"{args.n} submissions; nbgrader set-up (untimed) ...", flush=True)
        _run([sys.executable, "-m", "nbgrader", "generate_assignment", LAB.lab_id, "--force"], course)

        print(f"course grader, {args.jobs} workers ...", flush=True)
        ours = _run([sys.executable, "-m", "autograder", "class", "submitted", "--out", "grading",
                     "--jobs", str(args.jobs)], course)
        print("nbgrader autograde ...", flush=True)
        theirs = _run([sys.executable, "-m", "nbgrader", "autograde", LAB.lab_id, "--create"], course)

        import pandas as pd
        from nbgrader.api import Gradebook

        grades = pd.read_csv(course / "grading" / "grades.csv").set_index("student_id")
        with Gradebook(sqlite_uri(course / "gradebook.db")) as gb:
            nbgrader_scores = {s: gb.find_submission_notebook(LAB.lab_id, LAB.lab_id, s).score for s in grades.index}
        same = all(abs(grades.loc[s, "score"] - nbgrader_scores[s]) < 1e-9 for s in grades.index)
    print(f"\ncourse grader     : {ours:6.1f} s  ({ours / args.n:.1f} s per submission)")
    print(f"nbgrader autograde: {theirs:6.1f} s  ({theirs / args.n:.1f} s per submission)")
    print(f"speed-up          : {theirs / ours:6.2f}x   (target >= 2x)")
    print(f"identical scores  : {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
