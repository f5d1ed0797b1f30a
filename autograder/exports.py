"""Grades in the formats the learning platforms import, next to ``grades.csv``.

- ``canvas.csv``: Canvas's gradebook import. Canvas matches a row on ``ID``, ``SIS User ID`` or
  ``SIS Login ID`` (its gradebook export has the columns ``Student, ID, SIS User ID, SIS Login ID,
  Section``, then one column per assignment, and a second row ``Points Possible``); a column
  whose header is not an existing assignment becomes a new one. Canvas guides, "How do I import
  grades in the Gradebook?"; OSU's CarmenCanvas guide "Import a CSV file to Carmen grades".
- ``moodle.csv``: Moodle's "Import grades from CSV file" (grade/import/csv): any columns; on
  import you map one column to a user field (``Email address`` or ``ID number``) and each grade
  column to a grade item, and a ``... feedback`` column to that item's feedback.
- ``gradescope/<student>/<lab>/results.json``: Gradescope's autograder output format
  (gradescope-autograders.readthedocs.io, "Autograder Specifications"): ``score``,
  ``execution_time``, ``output`` and ``tests`` with ``name``, ``score``, ``max_score``,
  ``status`` and ``output``.

Every score exported is the final one, after the late policy; every text cell that a
spreadsheet could run as a formula is defused as in ``grades.csv``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from autograder.kit.i18n import Messages
from autograder.roster import Student

#: Words of the exports a student may read (Moodle feedback, Gradescope output), in one place.
TEXT = Messages({
    "summary": "{score:g} / {max:g}",
    "before_late": "{raw:g} / {max:g} before the late penalty. {note}",
    "errors": "Errors while the notebook ran: {errors}",
    "regraded": "Regraded: {why}",
})

CANVAS_IDS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


def defuse(value: Any) -> Any:
    """A spreadsheet runs a cell that starts with = + - @ (or a tab or carriage return) as a
    formula, one that can send its neighbours to a web address: such text gets an apostrophe."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def folder_name(text: str) -> str:
    """A student id or lab as one folder name: separators out, never ``.`` or ``..`` (ids come
    from folder and file names, which cannot hold these, but a result file is only data)."""
    name = text.replace("/", "_").replace("\\", "_").replace("\0", "_")
    return "_" if name in ("", ".", "..") else name


def _csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([defuse(v) for v in row])
    return buffer.getvalue()


def _final(record: dict[str, Any]) -> float:
    return float(record.get("final_score", record["score"]))


def _labs(records: list[dict[str, Any]]) -> list[str]:
    return sorted({r.get("lab") or "" for r in records} - {""})


def _students(records: list[dict[str, Any]], roster: dict[str, Student] | None) -> list[Student]:
    """Everyone on the roster (a student with no submission gets empty cells, not a zero: the
    instructor decides), then anyone graded who is not on it."""
    known = dict(roster or {})
    for r in records:
        known.setdefault(r["student_id"], Student(r["student_id"]))
    return [known[s] for s in sorted(known)]


def _by_student_lab(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """One record per student and lab: the best final score, if a student handed in twice."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["student_id"], r.get("lab") or "")
        if key not in best or _final(r) > _final(best[key]):
            best[key] = r
    return best


def canvas_csv(records: list[dict[str, Any]], roster: dict[str, Student] | None = None) -> str:
    """Canvas gradebook import: identity columns, one column per lab, a Points Possible row."""
    labs, cells = _labs(records), _by_student_lab(records)
    possible = {lab: max((r["max_score"] for r in records if r.get("lab") == lab), default=0) for lab in labs}
    rows: list[list[Any]] = [[*CANVAS_IDS, *labs], ["Points Possible", "", "", "", "", *(possible[lab] for lab in labs)]]
    for s in _students(records, roster):
        ids = [s.name or s.student_id, s.canvas_id, s.sis_user_id or s.student_id, s.sis_login_id or s.student_id,
               s.section]
        rows.append([*ids, *(_final(cells[(s.student_id, lab)]) if (s.student_id, lab) in cells else ""
                             for lab in labs)])
    return _csv(rows)


def feedback_line(record: dict[str, Any]) -> str:
    """One line on a grade for a platform's feedback field: the score, lateness, regrades, errors."""
    parts = [TEXT["summary"].format(score=_final(record), max=record["max_score"])]
    late = record.get("late_policy")
    if late and late.get("penalty"):
        parts.append(TEXT["before_late"].format(raw=record["score"], max=record["max_score"], note=late["note"]))
    elif late:
        parts.append(late["note"])
    parts += [TEXT["regraded"].format(why=e["why"]) for e in record.get("regrades", [])]
    if record.get("errors"):
        parts.append(TEXT["errors"].format(errors="; ".join(record["errors"][:3])))
    return " ".join(parts)


def moodle_csv(records: list[dict[str, Any]], roster: dict[str, Student] | None = None) -> str:
    """Moodle grade import: who (ID number, email, name), then per lab its grade and feedback."""
    labs, cells = _labs(records), _by_student_lab(records)
    header = ["ID number", "Email address", "Full name"]
    for lab in labs:
        header += [lab, f"{lab} feedback"]
    rows: list[list[Any]] = [header]
    for s in _students(records, roster):
        row: list[Any] = [s.idnumber or s.student_id, s.email, s.name or s.student_id]
        for lab in labs:
            record = cells.get((s.student_id, lab))
            row += [_final(record), feedback_line(record)] if record else ["", ""]
        rows.append(row)
    return _csv(rows)


def gradescope_result(record: dict[str, Any]) -> dict[str, Any]:
    """One submission in Gradescope's ``results.json`` format."""
    tests = [
        {"name": c["id"], "score": c["points"], "max_score": c["max_points"],
         "status": "passed" if c["passed"] else "failed", "output": c["message"]}
        for c in record.get("checks", [])
    ]
    return {
        "score": _final(record),
        "execution_time": round(float(record.get("seconds", 0.0)), 2),
        "output": feedback_line(record),
        "tests": tests,
    }


def write_exports(records: list[dict[str, Any]], out: Path, roster: dict[str, Student] | None = None) -> list[Path]:
    """Write canvas.csv, moodle.csv and gradescope/<student>/<lab>/results.json into ``out``."""
    written = []
    for name, text in (("canvas.csv", canvas_csv(records, roster)), ("moodle.csv", moodle_csv(records, roster))):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    for record in records:
        lab = record.get("lab") or Path(record["path"]).stem
        target = out / "gradescope" / folder_name(record["student_id"]) / folder_name(lab) / "results.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(gradescope_result(record), indent=2) + "\n", encoding="utf-8")
        written.append(target)
    return written
