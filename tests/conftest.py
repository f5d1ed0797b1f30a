"""Shared helpers: build lab submissions the way students would produce them."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from filelock import FileLock
from nbformat import NotebookNode

from autograder import sandbox
from autograder.course import LABS, Lab
from autograder.grade import GradeResult, grade_notebook
from autograder.hidden import HiddenInputs
from autograder.notebook import grade_id

LAB01 = LABS["01_tracking"]
_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


def grading(test: Callable[..., None]) -> Callable[..., None]:
    """Marks a test that executes a notebook in the sandbox: slow (``make test-fast`` leaves it
    out), and skipped, with the reason, where bubblewrap is missing (``.ci/run`` installs it)."""
    needs_bwrap = pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                                     reason=f"needs bubblewrap: {sandbox.unavailable_reason()}")
    return pytest.mark.slow(needs_bwrap(test))


def solution_code(master_cell: NotebookNode) -> str:
    """What a student who solved the TODO would have in the cell: the answer, no markup."""
    return _MARKERS.sub("", master_cell.source)


#: The partial submission of each lab that its tests grade, where one of them needs a particular
#: set (Lab 06a: the tests and the PSI without the report;
#: Lab 06b: the decision and the retraining without the change detector;
#: Labs 04 and 07: the first half, as each task builds on the one before).
#: Lab 03b: the latency and the decision (the test split's word needs a decision, so TODO 4 waits for TODO 3).
#: Lab 08a: the loader and the validation; Lab 08b: the canary and the Dockerfile, without the drift gauge and load test.
#: Lab 09a: the model card; Lab 09b: the audit and the workflow, without the DORA report.
PARTIAL: dict[str, set[int]] = {"02_tuning": {1, 3, 5}, "03b_selection": {1, 3}, "04_registry": {1, 2, 3},
                               "06a_drift": {1, 2}, "06b_retraining": {2, 3},
                               "07a_pipeline": {1, 2}, "07b_lineage": {1, 2},
                               "08a_service": {1, 2}, "08b_production": {1, 4},
                               "09a_access": {2}, "09b_operations": {1, 3}}


def partial_todos(lab: Lab) -> set[int]:
    """The TODOs done in ``lab``'s partial submission: ``PARTIAL``'s, else every other TODO (the
    2nd, 4th, ...). The per-lab tests and the nbgrader test grade this same notebook, so it is
    executed once per session."""
    if lab.lab_id in PARTIAL:
        return PARTIAL[lab.lab_id]
    todos = sorted(int(gid[4:]) for c in nbformat.read(lab.master, as_version=4).cells
                   if (gid := grade_id(c) or "").startswith("todo"))
    return set(todos[1::2])


def make_submission(
    done: set[int],
    replace: dict[str, str] | None = None,
    add_after: dict[str, str] | None = None,
    delete: set[str] | None = None,
    lab: Lab = LAB01,
) -> NotebookNode:
    """The student notebook of ``lab`` with TODOs ``done`` answered as the master does
    (solution cells are named ``todoN``), cells in ``replace`` given new source, a new cell
    added after each key of ``add_after``, and the cells in ``delete`` removed. Keys are
    nbgrader grade_ids."""
    master = {grade_id(c): c for c in nbformat.read(lab.master, as_version=4).cells}
    nb = nbformat.read(lab.student, as_version=4)
    cells = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid in (delete or set()):
            continue
        if gid and gid.startswith("todo") and int(gid[4:]) in done:
            cell.source = solution_code(master[gid])
        if gid in (replace or {}):
            cell.source = replace[gid]
        cells.append(cell)
        if gid in (add_after or {}):
            cells.append(nbformat.v4.new_code_cell(add_after[gid]))
    nb.cells = cells
    return nb


def _worker_number() -> int:
    """0 for a serial run, N for pytest-xdist's worker ``gwN``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker[2:].isdigit() else 0


def sandbox_slot() -> int:
    """The uid slot for a test that runs a kit program in the sandbox itself, not through
    ``grading``: apart from every worker's grading slot (0..N), because RLIMIT_NPROC counts a
    uid's processes machine-wide, and a grading's server threads on the other worker would
    leave the test's sandbox no process to fork (a flaky failure seen in CI)."""
    return 1000 + _worker_number()


@pytest.fixture(scope="session")
def graded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by every xdist worker of this session (their base temps are siblings),
    where each distinct grading's result is kept once."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "graded-once"
    folder.mkdir(exist_ok=True)
    return folder


def grading_key(nb: NotebookNode, name: str, kwargs: dict[str, Any]) -> str:
    """What makes two gradings the same: the notebook's content, its file name and the
    options. No ``inputs`` means "fresh hidden inputs", which one draw per session serves."""
    options = {k: (v.seed if isinstance(v, HiddenInputs) else v) for k, v in sorted(kwargs.items())}
    text = json.dumps([nbformat.writes(nb), name, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@pytest.fixture
def grade(tmp_path: Path, graded_cache: Path) -> Callable[..., GradeResult]:
    """Grade a notebook in-process, once per session: a test that grades the same notebook
    with the same options as an earlier test (in any xdist worker) gets that result. Each
    worker grades with its own sandbox slot (uid), as the class grader's workers do."""

    def _grade(nb: NotebookNode, name: str | None = None, **kwargs: Any) -> GradeResult:
        name = name or f"{nb.metadata['course']['lab']}.ipynb"
        key = grading_key(nb, name, kwargs)
        record = graded_cache / f"{key}.json"
        with FileLock(graded_cache / f"{key}.lock"):
            if record.exists():
                return GradeResult.from_json(json.loads(record.read_text(encoding="utf-8")))
            path = tmp_path / name
            nbformat.write(nb, path)
            result = grade_notebook(path, slot=_worker_number(), **kwargs)
            record.write_text(json.dumps(result.to_json()), encoding="utf-8")
            return result

    return _grade


def points(result: GradeResult) -> dict[str, float]:
    """check id -> points earned."""
    return {c.id: c.points for c in result.checks}


@pytest.fixture(autouse=True)
def _english_unless_a_test_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests compare English messages: a shell with ``COURSE_LANG=es`` exported (as
    README.es.md suggests to Spanish students) must not turn them Spanish."""
    from autograder.kit import i18n

    monkeypatch.delenv(i18n.ENV, raising=False)
    i18n.set_language(None)
