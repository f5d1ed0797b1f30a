"""Shared helpers: build lab submissions the way students would produce them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from autograder.course import LABS, Lab
from autograder.grade import GradeResult, grade_notebook
from autograder.notebook import grade_id

LAB01 = LABS["01_tracking"]
_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


def solution_code(master_cell: NotebookNode) -> str:
    """What a student who solved the TODO would have in the cell: the answer, no markup."""
    return _MARKERS.sub("", master_cell.source)


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


@pytest.fixture
def grade(tmp_path: Path) -> Callable[..., GradeResult]:
    """Write a notebook into tmp_path and grade it in-process."""

    def _grade(nb: NotebookNode, name: str | None = None, **kwargs: float) -> GradeResult:
        path = tmp_path / (name or f"{nb.metadata['course']['lab']}.ipynb")
        nbformat.write(nb, path)
        return grade_notebook(path, **kwargs)

    return _grade


def points(result: GradeResult) -> dict[str, float]:
    """check id -> points earned."""
    return {c.id: c.points for c in result.checks}
