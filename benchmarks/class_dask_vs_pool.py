"""Wall time of grading one class on Dask (a local cluster, the default of ``class``) against
the process pool that graded classes before, on the same submissions, seed and workers.

The class: the solution and the untouched notebook of Labs 01 and 02 (by default two solutions
and one untouched of each, six submissions). Each round grades it once with each engine, in
alternating order, into a fresh output folder, sandboxed as ``class`` does; the scores of both
must agree. Prints each round and the medians.

    python benchmarks/class_dask_vs_pool.py [--repeat N] [--jobs N]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from autograder import classroom  # noqa: E402
from autograder.course import LABS  # noqa: E402
from tests.conftest import make_submission  # noqa: E402

SEED = 4242
#: lab -> (solutions, untouched)
MIX = {"01_tracking": (2, 1), "02_tuning": (2, 1)}


def write_class(root: Path) -> int:
    """nbgrader's layout; returns how many submissions."""
    n = 0
    for lab_id, (solved, untouched) in MIX.items():
        lab = LABS[lab_id]
        todos = {
            int(c.metadata["nbgrader"]["grade_id"][4:])
            for c in nbformat.read(lab.master, as_version=4).cells
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id", "").startswith("todo")
        }
        for i in range(solved + untouched):
            folder = root / "submitted" / f"student{n:03d}" / lab_id
            folder.mkdir(parents=True)
            nb = make_submission(done=todos if i < solved else set(), lab=lab)
            nbformat.write(nb, folder / f"{lab_id}.ipynb")
            n += 1
    return n


def grade(source: Path, engine: str, jobs: int) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        classroom.grade_class(
            source,
            out,
            classroom.Cluster(jobs=jobs, engine=engine),
            progress=False,
            seed=SEED,
            options=classroom.ClassOptions(similarity=False),
        )
        elapsed = time.perf_counter() - start
        with open(out / "grades.csv", newline="", encoding="utf-8") as f:
            scores = {f"{r['student_id']}/{r['lab']}": float(r["score"]) for r in csv.DictReader(f)}
    return elapsed, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers (default: cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "class"
        n = write_class(source)
        print(f"{n} submissions (Labs 01 and 02: solutions and untouched), {args.jobs} workers", flush=True)
        times: dict[str, list[float]] = {"pool": [], "dask": []}
        reference: dict[str, float] | None = None
        for i in range(1, args.repeat + 1):
            for engine in ("pool", "dask") if i % 2 else ("dask", "pool"):
                elapsed, scores = grade(source, engine, args.jobs)
                if reference is None:
                    reference = scores
                elif scores != reference:
                    sys.exit(f"the scores differ between runs: {scores} != {reference}")
                times[engine].append(elapsed)
            print(
                f"round {i}/{args.repeat}: pool {times['pool'][-1]:6.1f} s   dask {times['dask'][-1]:6.1f} s",
                flush=True,
            )
        pool, dask = statistics.median(times["pool"]), statistics.median(times["dask"])
        print(f"\nscores (same on both): {reference}")
        print(f"median process pool       : {pool:6.1f} s")
        print(f"median Dask local cluster : {dask:6.1f} s")
        print(f"ratio dask / pool         : {dask / pool:6.2f}x")


if __name__ == "__main__":
    main()
