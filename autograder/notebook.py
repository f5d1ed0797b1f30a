"""Read a submission and rebuild it on its master.

What a student may change is the code in solution cells and any cells they add. Everything
else (test cells with their hidden tests, the parameters cell, locked set-up and markdown)
comes back from the master, in the master's order, and each restored cell is noted so
that the feedback can say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from autograder.course import LABS, SOURCE_LANGUAGE, Lab, lab_for_notebook
from autograder.kit import i18n
from autograder.kit.i18n import _

#: A submission file larger than this is refused before it is read (a lab notebook with its
#: outputs is well under 5 MB).
MAX_NOTEBOOK_BYTES = 50 * 1024**2


class GradingError(Exception):
    """The notebook cannot be graded at all; the message is the one-line reason."""


@dataclass
class Restored:
    """A submission rebuilt on its master, and what had to be put back."""

    notebook: NotebookNode
    restored: list[str] = field(default_factory=list)


def grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_solution(cell: NotebookNode) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def read_submission(path: Path) -> NotebookNode:
    """Parse a notebook file, with a one-line reason when it is not one."""
    if not path.is_file():
        raise GradingError(_("{path}: no such file").format(path=path))
    limit = MAX_NOTEBOOK_BYTES
    shown = f"{limit / 1024**2:g} MiB" if limit >= 1024**2 else f"{limit} bytes"
    too_big = _("{path}: too large to be a notebook (the limit is {limit})").format(path=path, limit=shown)
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise GradingError(too_big)
    with open(path, "rb") as f:
        data = f.read(MAX_NOTEBOOK_BYTES + 1)  # the file may have grown since stat
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise GradingError(too_big)
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise GradingError(_("{path}: not a notebook (not UTF-8 text)").format(path=path)) from None
    except json.JSONDecodeError as exc:
        raise GradingError(_("{path}: not a notebook (invalid JSON at line {line})").format(path=path, line=exc.lineno)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise GradingError(_("{path}: not a notebook (no list of cells)").format(path=path))
    try:
        return nbformat.reads(json.dumps(raw), as_version=4)
    except Exception as exc:  # nbformat raises several types for malformed cells
        raise GradingError(_("{path}: not a valid notebook ({error})").format(path=path, error=type(exc).__name__)) from None


def identify_lab(path: Path, nb: NotebookNode) -> Lab:
    """The lab a submission belongs to: its metadata first, then its file name."""
    course = nb.get("metadata", {}).get("course")
    lab_id = course.get("lab") if isinstance(course, dict) else None
    lab = LABS.get(lab_id) if isinstance(lab_id, str) else lab_for_notebook(path.name)
    if lab is None:
        known = ", ".join(LABS)
        raise GradingError(_("{path}: not a notebook of this course's labs ({known})").format(path=path, known=known))
    return lab


def notebook_language(nb: NotebookNode) -> str:
    """The language a notebook is written in, from its metadata (English when it names none
    or one the course does not have). A submission may claim another: it then gets that
    edition's cells back and its feedback in that language, nothing else."""
    course = nb.get("metadata", {}).get("course")
    return i18n.normalize(course.get("language") if isinstance(course, dict) else None)


def edition_master(path: Path, lab: Lab, lang: str) -> Path:
    """The master of ``lab`` in ``lang``, with a one-line reason when it or that edition's
    student notebook is missing."""
    master = lab.master_in(lang)
    if lang == SOURCE_LANGUAGE and not master.exists():
        raise GradingError(_("{path}: the master of lab {lab} is missing ({master})").format(
            path=path, lab=lab.lab_id, master=master))
    if not master.exists() or not lab.student_in(lang).exists():
        name = i18n.LANGUAGES.get(lang, lang)
        raise GradingError(_("{path}: lab {lab} has no {language} edition here ({missing} is missing)").format(
            path=path, lab=lab.lab_id, language=name, missing=lab.student_in(lang)))
    return master


def restore(submission: NotebookNode, master: NotebookNode, student: NotebookNode) -> Restored:
    """The master's cells in the master's order, with the student's solution cells and
    added cells in place. ``student`` is the generated student version of the master:
    a solution cell the student deleted comes back as it has it (a stub), so it fails its
    check rather than passes it."""
    visible = {grade_id(c): c.source for c in student.cells}
    submitted = {gid: c for c in submission.cells if (gid := grade_id(c))}
    known = {grade_id(c) for c in master.cells}
    # Cells the student added, keyed by the grade_id of the known cell just before them.
    added: dict[str | None, list[NotebookNode]] = {}
    anchor: str | None = None
    for cell in submission.cells:
        gid = grade_id(cell)
        if gid in known:
            anchor = gid
        elif cell.cell_type == "code" or cell.cell_type == "markdown":
            added.setdefault(anchor, []).append(_added(cell))
    out = nbformat.from_dict(master)
    out.cells = list(added.get(None, []))
    restored: list[str] = []
    for cell in master.cells:
        gid = grade_id(cell)
        mine = submitted.get(gid)
        if is_solution(cell):
            new = nbformat.from_dict(cell)
            new.source = mine.source if mine is not None else visible[gid]
            if mine is None:
                restored.append(_("{cell} (deleted; put back empty)").format(cell=gid))
        else:
            new = nbformat.from_dict(cell)
            if mine is None:
                restored.append(_("{cell} (deleted)").format(cell=gid))
            elif mine.source not in (visible[gid], cell.source):
                restored.append(_("{cell} (edited)").format(cell=gid))
        out.cells.append(_clean(new))
        out.cells.extend(added.get(gid, []))
    return Restored(out, restored)


def _added(cell: NotebookNode) -> NotebookNode:
    """A cell the student added, without papermill's tags: it cannot take the parameters
    cell's place (papermill injects the grader's values after the first one it finds)."""
    cell = _clean(cell)
    tags = cell.get("metadata", {}).get("tags")
    if tags:
        cell.metadata["tags"] = [t for t in tags if t not in ("parameters", "injected-parameters")]
    return cell


def _clean(cell: NotebookNode) -> NotebookNode:
    """A cell without outputs or execution state, so stale outputs are never graded."""
    cell = nbformat.from_dict(cell)
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    cell.pop("attachments", None) if cell.cell_type == "code" else None
    return cell


def parameters_of(master: NotebookNode) -> dict[str, Any]:
    """The values the master's parameters cell sets (the master is trusted code)."""
    for cell in master.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            namespace: dict[str, Any] = {}
            exec(compile(cell.source, "<parameters>", "exec"), namespace)  # noqa: S102
            return {k: v for k, v in namespace.items() if k.isupper()}
    return {}


def graded_cells(master: NotebookNode) -> dict[str, float]:
    """grade_id -> points for every graded (test) cell of a master, in order."""
    return {
        grade_id(c): float(c.metadata["nbgrader"].get("points", 0))
        for c in master.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade")
    }
