"""What a class grading leaves in its output folder: ``grades.csv``, one feedback file per
submission, ``class_report.html`` with the plots a teacher looks at first (and the similarity
report), and the exports for Canvas, Moodle and Gradescope."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from autograder import exports, late
from autograder.kit.i18n import Messages
from autograder.report import feedback_markdown
from autograder.results import GradeResult
from autograder.roster import Student

# Every sentence of the report, in one place (for translation).
TEXT = Messages({
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
})


def _result(record: dict[str, Any]) -> GradeResult:
    return GradeResult.from_json(record)


def _defused(table: Any) -> Any:
    """A spreadsheet runs a cell that starts with = + - @ as a formula (one that can send its
    neighbours to a web address): such text cells get a leading apostrophe."""
    return table.map(exports.defuse)


def grades_table(records: list[dict[str, Any]], due: datetime | None = None,
                 policy: late.LatePolicy | None = None) -> Any:
    """One row per student and lab: ``student_id, lab, score, max_score``, the points of each
    check; with a due date or a late policy ``late``, ``days_late``, ``late_penalty`` and
    ``final_score`` (the score less the penalty); then ``regrades``, ``seconds`` and the first error."""
    import pandas as pd

    if policy is None and due is not None:
        policy = late.LatePolicy.everywhere(due)
    late.annotate(records, policy)
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "student_id": r["student_id"],
            "lab": r.get("lab") or "",
            "score": r["score"],
            "max_score": r["max_score"],
        }
        row.update({c["id"]: c["points"] for c in r.get("checks", [])})
        if policy is not None:
            decided = r.get("late_policy") or {}
            row["late"] = decided.get("days_late", 0) > 0
            row["days_late"] = decided.get("days_late", 0)
            row["late_penalty"] = decided.get("penalty", 0.0)
            row["final_score"] = r["final_score"]
        row["regrades"] = len(r.get("regrades", []))
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


def class_report_html(records: list[dict[str, Any]], similarity_html: str = "") -> str:
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
    parts.append(similarity_html)
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}img{max-width:100%}"
             "table.pair{border-collapse:collapse;width:100%}table.pair td{vertical-align:top;border:1px solid #ccc;"
             "width:50%}pre{white-space:pre-wrap;font-size:85%;margin:0}")
    return f"<!doctype html><meta charset='utf-8'><title>{TEXT['title']}</title><style>{style}</style>" + "".join(parts)


def write_outputs(
    records: list[dict[str, Any]],
    out: Path,
    due: datetime | None = None,
    policy: late.LatePolicy | None = None,
    roster: dict[str, Student] | None = None,
    similarity_html: str = "",
    regrade_log: list[dict[str, Any]] | None = None,
) -> None:
    """grades.csv, feedback/<student>/<lab>.md, class_report.html, and the exports
    (canvas.csv, moodle.csv, gradescope/<student>/<lab>/results.json) in ``out``. Each record
    gets its late decision and the regrade log's entries for its student and lab."""
    out.mkdir(parents=True, exist_ok=True)
    for r in records:
        r["regrades"] = [e for e in regrade_log or []
                         if e["student_id"] == r["student_id"] and e["lab"] == (r.get("lab") or "")]
    _defused(grades_table(records, due, policy)).to_csv(out / "grades.csv", index=False, lineterminator="\n")
    for r in records:
        lab = exports.folder_name(r.get("lab") or Path(r["path"]).stem)
        target = out / "feedback" / exports.folder_name(r["student_id"]) / f"{lab}.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        notes = [r["late_policy"]["note"]] if r.get("late_policy") else []
        target.write_text(feedback_markdown(_result(r), notes=notes, regrades=r["regrades"],
                                            final_score=r["final_score"]), encoding="utf-8")
    (out / "class_report.html").write_text(class_report_html(records, similarity_html), encoding="utf-8")
    exports.write_exports(records, out, roster)
