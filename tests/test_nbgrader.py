"""The course also works with nbgrader itself: same submissions, same points per cell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT
from autograder.grade import grade_notebook
from autograder.labkit import sqlite_uri
from tests.conftest import LAB01, make_submission, points

pytestmark = pytest.mark.slow

STUDENTS = {
    "full": {1, 2, 3, 4, 5},
    "partial": {2, 4},
    "empty": set(),
}


def _nbgrader(course: Path, *args: str) -> None:
    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` by name
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_nbgrader_autograde_gives_the_same_points_per_cell(tmp_path: Path) -> None:
    course = tmp_path / "course"
    (course / "solutions" / LAB01.lab_id).mkdir(parents=True)
    shutil.copy(LAB01.master, course / "solutions" / LAB01.lab_id)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    _nbgrader(course, "generate_assignment", LAB01.lab_id, "--force")
    generated = nbformat.read(course / "labs" / LAB01.lab_id / f"{LAB01.lab_id}.ipynb", as_version=4)
    assert [c.source for c in generated.cells] == [c.source for c in nbformat.read(LAB01.student, as_version=4).cells]

    ours = {}
    for student, done in STUDENTS.items():
        folder = course / "submitted" / student / LAB01.lab_id
        folder.mkdir(parents=True)
        path = folder / f"{LAB01.lab_id}.ipynb"
        nbformat.write(make_submission(done=done), path)
        ours[student] = points(grade_notebook(path))
    _nbgrader(course, "autograde", LAB01.lab_id, "--create")

    from nbgrader.api import Gradebook

    with Gradebook(sqlite_uri(course / "gradebook.db")) as gradebook:
        theirs = {
            student: {
                g.name: g.score
                for g in gradebook.find_submission_notebook(LAB01.lab_id, LAB01.lab_id, student).grades
            }
            for student in STUDENTS
        }
    assert theirs == ours
    # Each submission had its own MLflow store under nbgrader too (nbgrader_config.py).
    assert all((course / "autograded" / s / LAB01.lab_id / "mlflow.db").exists() for s in STUDENTS)
