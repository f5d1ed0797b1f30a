"""The class roster: who the students are, and how each learning platform names them.

A CSV file with one row per student. Only ``student_id`` is required: it is the name of the
student's folder in the submissions (nbgrader's ``submitted/<student_id>/``) and the key of
their variant. The other columns are used where present: ``name`` and ``section``, and what
each platform matches a row on when grades are imported: ``canvas_id``, ``sis_user_id`` and
``sis_login_id`` (Canvas), ``email`` and ``idnumber`` (Moodle).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("student_id", "name", "email", "section", "canvas_id", "sis_user_id", "sis_login_id", "idnumber")


@dataclass(frozen=True)
class Student:
    """One roster row; empty strings where the roster has no such column."""

    student_id: str
    name: str = ""
    email: str = ""
    section: str = ""
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    idnumber: str = ""


def read_roster(path: Path) -> dict[str, Student]:
    """student_id -> Student. Bad input (no ``student_id`` column, an empty or repeated id):
    a one-line ``ValueError`` naming the file and line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(c or "").strip() for c in reader.fieldnames or []]
            if "student_id" not in header:
                raise ValueError(f"{path}: a roster needs a student_id column; found {', '.join(header) or 'nothing'}")
            students: dict[str, Student] = {}
            for line, row in enumerate(reader, start=2):
                clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
                sid = clean.get("student_id", "")
                if not sid:
                    raise ValueError(f"{path}, line {line}: empty student_id")
                if sid in (".", "..") or any(ch in sid for ch in "/\\\0") or sid != sid.strip(". "):
                    raise ValueError(f"{path}, line {line}: student_id {sid!r} cannot be a folder name")
                if sid in students:
                    raise ValueError(f"{path}, line {line}: student_id {sid!r} appears twice")
                students[sid] = Student(**{c: clean.get(c, "") for c in COLUMNS})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    if not students:
        raise ValueError(f"{path}: the roster has no students")
    return students
