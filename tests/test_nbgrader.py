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
from autograder.kit.labkit import sqlite_uri
from tests.conftest import make_submission, partial_todos, points

pytestmark = pytest.mark.slow


def _nbgrader(course: Path, *args: str) -> None:
    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` by name
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    # What earlier in-process tests left in this worker's environment (mlflow.set_experiment exports
    # MLFLOW_EXPERIMENT_ID) must not reach nbgrader's kernels.
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("lab", LABS.values(), ids=lambda lab: lab.lab_id)
def test_nbgrader_autograde_gives_the_same_points_per_cell(tmp_path: Path, lab: Lab, grade) -> None:
    course = tmp_path / "course"
    (course / "solutions" / lab.lab_id).mkdir(parents=True)
    shutil.copy(lab.master, course / "solutions" / lab.lab_id)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    _nbgrader(course, "generate_assignment", lab.lab_id, "--force")
    generated = nbformat.read(course / "labs" / lab.lab_id / f"{lab.lab_id}.ipynb", as_version=4)
    assert [c.source for c in generated.cells] == [c.source for c in nbformat.read(lab.student, as_version=4).cells]

    # One submission per lab, with every other TODO done: it has cells that pass and cells
    # that fail. The per-lab tests grade the same notebook (shared, graded once per session).
    nb = make_submission(done=partial_todos(lab), lab=lab)
    folder = course / "submitted" / "partial" / lab.lab_id
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{lab.lab_id}.ipynb")
    ours = {"partial": points(grade(nb))}
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
    assert 0 < sum(ours["partial"].values()) < sum(c.max_points for c in grade(nb).checks)
    # Each submission had its own MLflow store under nbgrader too (nbgrader_config.py), in its own
    # folder: at its top, or for Lab 09, which runs its own server, in lab09-server/. A lab that
    # writes nothing to MLflow (07a: Git and DVC only) makes none.
    if any("import mlflow" in c.source for c in generated.cells):
        stores = {s: sorted((course / "autograded" / s / lab.lab_id).rglob("mlflow.db")) for s in ours}
        assert all(stores.values()), stores
