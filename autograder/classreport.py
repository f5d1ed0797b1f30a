"""What a class grading leaves in its output folder: ``grades.csv``, one feedback file per
submission, and ``class_report.html`` with the plots a teacher looks at first."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from autograder.report import feedback_markdown
from autograder.results import GradeResult

# Every sentence of the report, in one place (for translation).
TEXT = {
    "title": "Class report",
    "summary": "{n} submissions, {students} students, {failed} could not be graded. Mean score {mean:.1f} / {max:g}.",
    "scores": "Score distribution",
    "pass_rate": "Pass rate per check (the hardest first)",
    "time": "Grading time per submission",
    "problems": "Submissions with errors",
    "x_score": "score",
    "y_count": "submissions",
    "x_rate": "share of submissions passing",
    "x_seconds": "seconds",
}


def _result(record: dict[str, Any]) -> GradeResult:
    return GradeResult.from_json(record)


def _defused(table: Any) -> Any:
    """A spreadsheet runs a cell that starts with = + - @ as a formula (one that can send its
    neighbours to a web address): such text cells get a leading apostrophe."""
    def cell(value: Any) -> Any:
        return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value

    return table.map(cell)


def grades_table(records: list[dict[str, Any]], due: datetime | None) -> Any:
    """One row per student and lab: ``student_id, lab, score, max_score``, the points of each
    check, ``late`` when a due date is set, then ``seconds`` and the first error."""
    import pandas as pd

    rows = []
    for r in records:
        row: dict[str, Any] = {
            "student_id": r["student_id"],
            "lab": r.get("lab") or "",
            "score": r["score"],
            "max_score": r["max_score"],
        }
        row.update({c["id"]: c["points"] for c in r.get("checks", [])})
        if due is not None:
            submitted = r.get("submitted_at")
            row["late"] = bool(submitted and datetime.fromisoformat(submitted) > due)
        row["seconds"] = r.get("seconds", 0.0)
        row["error"] = (r.get("errors") or [""])[0]
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["lab", "student_id"], kind="stable").reset_index(drop=True)


def _figure_tag(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{encoded}">'


def class_report_html(records: list[dict[str, Any]]) -> str:
    """A single self-contained HTML page (plots embedded), readable offline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    graded = [r for r in records if r.get("checks")]
    parts = [f"<h1>{TEXT['title']}</h1>"]
    max_score = max((r["max_score"] for r in graded), default=0)
    mean = sum(r["score"] for r in graded) / len(graded) if graded else 0.0
    parts.append(
        "<p>"
        + TEXT["summary"].format(
            n=len(records),
            students=len({r["student_id"] for r in records}),
            failed=len(records) - len(graded),
            mean=mean,
            max=max_score,
        )
        + "</p>"
    )
    if graded:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist([r["score"] for r in graded], bins=range(int(max_score) + 2), align="left", rwidth=0.8)
        ax.set(xlabel=TEXT["x_score"], ylabel=TEXT["y_count"])
        parts += [f"<h2>{TEXT['scores']}</h2>", _figure_tag(fig)]
        plt.close(fig)

        checks = pd.DataFrame([c for r in graded for c in r["checks"]])
        rate = checks.groupby("id")["passed"].mean().sort_values()
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(rate) + 1))
        ax.barh(rate.index, rate.values)
        ax.set(xlim=(0, 1), xlabel=TEXT["x_rate"])
        parts += [f"<h2>{TEXT['pass_rate']}</h2>", _figure_tag(fig)]
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist([r.get("seconds", 0.0) for r in graded], bins=20)
        ax.set(xlabel=TEXT["x_seconds"], ylabel=TEXT["y_count"])
        parts += [f"<h2>{TEXT['time']}</h2>", _figure_tag(fig)]
        plt.close(fig)
    problems = [r for r in records if r.get("errors")]
    if problems:
        items = "".join(
            f"<li><b>{html.escape(r['student_id'])}</b> ({html.escape(str(r.get('lab') or '?'))}): "
            f"{html.escape(r['errors'][0])}</li>"
            for r in sorted(problems, key=lambda r: r["student_id"])
        )
        parts += [f"<h2>{TEXT['problems']}</h2>", f"<ul>{items}</ul>"]
    style = "body{font-family:sans-serif;max-width:52em;margin:2em auto}img{max-width:100%}"
    return f"<!doctype html><meta charset='utf-8'><title>{TEXT['title']}</title><style>{style}</style>" + "".join(parts)


def write_outputs(records: list[dict[str, Any]], out: Path, due: datetime | None) -> None:
    """grades.csv, feedback/<student>/<lab>.md and class_report.html in ``out``."""
    _defused(grades_table(records, due)).to_csv(out / "grades.csv", index=False, lineterminator="\n")
    for r in records:
        target = out / "feedback" / r["student_id"] / f"{r.get('lab') or Path(r['path']).stem}.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(feedback_markdown(_result(r)), encoding="utf-8")
    (out / "class_report.html").write_text(class_report_html(records), encoding="utf-8")
