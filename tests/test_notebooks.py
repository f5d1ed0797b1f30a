"""The notebooks themselves: generated labs in sync, stored clean, nbgrader markup sound,
and the grader's notebook handling (validation, restore) without executing anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import generate
from autograder.course import LABS, ROOT
from autograder.kit import labkit
from autograder.notebook import grade_id, graded_cells, parameters_of, restore
from tests.conftest import LAB01, make_submission

ALL_NOTEBOOKS = sorted(p for d in ("labs", "solutions") for p in (ROOT / d).rglob("*.ipynb"))


def test_labs_are_in_sync_with_their_masters() -> None:
    stale = [str(lab.student) for lab in generate.stale_labs()]
    assert not stale, f"regenerate with `make labs`: {stale}"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"cells {dirty} have outputs: clear them before committing"


@pytest.mark.parametrize("lab", LABS.values(), ids=lambda lab: lab.lab_id)
def test_student_notebook_hides_solutions_and_hidden_tests(lab) -> None:
    text = lab.student.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    master = lab.master.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" in master


@pytest.mark.parametrize("lab", LABS.values(), ids=lambda lab: lab.lab_id)
def test_every_graded_cell_has_a_check_and_a_parameters_cell_exists(lab) -> None:

    from autograder.labspec import spec_for

    master = nbformat.read(lab.master, as_version=4)
    spec = spec_for(lab.lab_id)
    assert spec is not None, f"{lab.lab_id} has no references module"
    checks = spec.lab
    assert list(graded_cells(master)) == list(checks.CHECKS)
    params = parameters_of(master)
    assert {"TRACKING_URI", "DATA_PATH", "SEED"} <= set(params)
    assert all(name in params for name in checks.PARAMS)


def test_restore_puts_back_hidden_tests_and_keeps_student_code() -> None:
    master = nbformat.read(LAB01.master, as_version=4)
    student = nbformat.read(LAB01.student, as_version=4)
    submission = make_submission(done={1}, add_after={"todo1": "print('scratch')"})
    rebuilt = restore(submission, master, student)
    cells = {grade_id(c): c for c in rebuilt.notebook.cells if grade_id(c)}
    assert "BEGIN HIDDEN TESTS" in cells["check_todo5_model"].source
    assert "mlflow.set_experiment(EXPERIMENT_NAME)" in cells["todo1"].source
    assert "NotImplementedError" in cells["todo2"].source
    sources = [c.source for c in rebuilt.notebook.cells]
    assert sources[sources.index(cells["todo1"].source) + 1] == "print('scratch')"
    assert rebuilt.restored == []


def test_a_deleted_solution_cell_comes_back_as_its_stub() -> None:
    master = nbformat.read(LAB01.master, as_version=4)
    student = nbformat.read(LAB01.student, as_version=4)
    rebuilt = restore(make_submission(done={1, 2}, delete={"todo2"}), master, student)
    todo2 = next(c for c in rebuilt.notebook.cells if grade_id(c) == "todo2")
    assert "raise NotImplementedError()" in todo2.source
    assert rebuilt.restored == ["todo2 (deleted; put back empty)"]


def _grade_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autograder", "grade", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (json.dumps({"cells": "nope"}).encode(), "no list of cells"),
        (nbformat.writes(nbformat.v4.new_notebook()).encode(), "not a notebook of this course"),
    ],
    ids=["not-json", "binary", "no-cells", "other-notebook"],
)
def test_an_ungradable_file_gets_one_clear_line_and_exit_2(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "homework.ipynb"
    path.write_bytes(content)
    proc = _grade_cli(str(path), "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    assert reason in proc.stderr
    assert "Traceback" not in proc.stderr
    [entry] = json.loads((tmp_path / "r.json").read_text())
    assert entry["score"] == 0 and reason in entry["errors"][0]


def test_a_missing_file_gets_one_clear_line(tmp_path: Path) -> None:
    proc = _grade_cli(str(tmp_path / "nope.ipynb"))
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_sqlite_uri_follows_mlflow_rule(tmp_path: Path) -> None:
    from mlflow.utils.file_utils import path_to_local_sqlite_uri

    db = tmp_path / "with space" / "mlflow.db"
    assert labkit.sqlite_uri(db) == path_to_local_sqlite_uri(str(db))
    assert labkit.sqlite_path(labkit.sqlite_uri(db)) == db


def test_an_added_cell_cannot_take_the_parameters_cell_place() -> None:
    master = nbformat.read(LAB01.master, as_version=4)
    student = nbformat.read(LAB01.student, as_version=4)
    submission = make_submission(done=set())
    fake = nbformat.v4.new_code_cell("TRACKING_URI = 'sqlite:///elsewhere.db'", metadata={"tags": ["parameters"]})
    submission.cells.insert(0, fake)
    rebuilt = restore(submission, master, student).notebook
    tagged = [c for c in rebuilt.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert [grade_id(c) for c in tagged] == ["parameters"]
