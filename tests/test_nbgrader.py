"""The course also works with nbgrader itself: same submissions, same points per cell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import LABS, ROOT, Lab
from autograder.grade import grade_notebook
from autograder.kit.labkit import sqlite_uri
from tests.conftest import make_submission, points

pytestmark = pytest.mark.slow


def students(lab: Lab) -> dict[str, set[int]]:
    """A complete submission and one with every other TODO done."""
    todos = sorted(int(c.metadata["nbgrader"]["grade_id"][4:]) for c in nbformat.read(lab.master, as_version=4).cells
                   if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("todo"))
    return {"full": set(todos), "partial": set(todos[1::2])}


def _nbgrader(course: Path, *args: str) -> None:
    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` by name
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("lab", LABS.values(), ids=lambda lab: lab.lab_id)
def test_nbgrader_autograde_gives_the_same_points_per_cell(tmp_path: Path, lab: Lab) -> None:
    course = tmp_path / "course"
    (course / "solutions" / lab.lab_id).mkdir(parents=True)
    shutil.copy(lab.master, course / "solutions" / lab.lab_id)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    _nbgrader(course, "generate_assignment", lab.lab_id, "--force")
    generated = nbformat.read(course / "labs" / lab.lab_id / f"{lab.lab_id}.ipynb", as_version=4)
    assert [c.source for c in generated.cells] == [c.source for c in nbformat.read(lab.student, as_version=4).cells]

    ours = {}
    for student, done in students(lab).items():
        folder = course / "submitted" / student / lab.lab_id
        folder.mkdir(parents=True)
        path = folder / f"{lab.lab_id}.ipynb"
        nbformat.write(make_submission(done=done, lab=lab), path)
        ours[student] = points(grade_notebook(path))
    _nbgrader(course, "autograde", lab.lab_id, "--create")

    from nbgrader.api import Gradebook

    with Gradebook(sqlite_uri(course / "gradebook.db")) as gradebook:
        theirs = {
            student: {
                g.name: g.score
                for g in gradebook.find_submission_notebook(lab.lab_id, lab.lab_id, student).grades
            }
            for student in ours
        }
    assert theirs == ours
    # Each submission had its own MLflow store under nbgrader too (nbgrader_config.py).
    assert all((course / "autograded" / s / lab.lab_id / "mlflow.db").exists() for s in ours)
