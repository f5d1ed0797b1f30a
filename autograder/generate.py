"""Generate the student notebooks in ``labs/`` from the masters in ``solutions/``.

nbgrader's own preprocessors do the work (the ones ``nbgrader generate_assignment``
runs), without its gradebook database: the student notebook then depends only on the
master, so a test can regenerate it in memory and compare it with the committed one.
"""

from __future__ import annotations

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

from autograder.course import LABS, Lab

# The same order as nbgrader's GenerateAssignment, minus the database and header steps.
PIPELINE: list[type[Preprocessor]] = [
    LockCells,
    ClearSolutions,
    ClearOutput,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ComputeChecksums,
    CheckCellMetadata,
]


def student_version(master: NotebookNode) -> NotebookNode:
    """The student notebook for a master: solutions and hidden tests removed, no outputs."""
    nb = nbformat.from_dict(master)  # a copy: the preprocessors edit in place
    resources: dict = {}
    for step in PIPELINE:
        nb, resources = step().preprocess(nb, resources)
    return nb


def render(lab: Lab) -> str:
    """The exact text of the student notebook file for a lab."""
    master = nbformat.read(lab.master, as_version=4)
    return nbformat.writes(student_version(master)) + "\n"


def stale_labs() -> list[Lab]:
    """Labs whose committed student notebook differs from what the master generates."""
    return [
        lab
        for lab in LABS.values()
        if not lab.student.exists() or lab.student.read_text(encoding="utf-8") != render(lab)
    ]


def write_all() -> list[Lab]:
    """Regenerate every student notebook; return the labs whose file changed."""
    changed = stale_labs()
    for lab in changed:
        lab.student.parent.mkdir(parents=True, exist_ok=True)
        lab.student.write_text(render(lab), encoding="utf-8", newline="\n")
    return changed
