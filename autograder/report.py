"""Human-readable output of a grade: the terminal table and the student's feedback file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autograder.kit import i18n
from autograder.kit.i18n import _
from autograder.results import GradeResult


def _points(value: float) -> str:
    return f"{value:g}"


def table(result: GradeResult) -> str:
    """A plain-text table of one notebook's checks, for the terminal."""
    width = max([len(c.id) for c in result.checks] + [5])
    lines = [f"{result.path}  ({result.lab})"]
    for c in result.checks:
        mark = "PASS" if c.passed else "FAIL"
        lines.append(
            f"  {mark}  {c.id:<{width}}  {_points(c.points):>3}/{_points(c.max_points):<3} {c.message}"
        )
    lines.append(f"  Score: {_points(result.score)} / {_points(result.max_score)}   ({result.seconds:.1f} s)")
    lines += [f"  restored: {r}" for r in result.restored]
    lines += [f"  error: {e}" for e in result.errors]
    return "\n".join(lines)


def _score(value: float | None) -> str:
    return _("not graded before") if value is None else _points(value)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def feedback_markdown(
    result: GradeResult,
    notes: list[str] | None = None,
    regrades: list[dict[str, Any]] | None = None,
    final_score: float | None = None,
) -> str:
    """The feedback a student reads: score, each check with its message, restored cells, errors;
    in a class, also the late policy's decision (``notes``, ``final_score``) and the regrade
    log's entries for this lab (who, when, why, the score before and after). Written in the
    notebook's language (``result.language``)."""
    with i18n.using(result.language):
        return _feedback(result, notes, regrades, final_score)


def _feedback(result: GradeResult, notes: list[str] | None, regrades: list[dict[str, Any]] | None,
              final_score: float | None) -> str:
    score = _("**Score:** {score} / {max}").format(score=_points(result.score), max=_points(result.max_score))
    out = [
        _("# Feedback: {name}").format(name=Path(result.path).name),
        "",
        _("**Lab:** {lab}").format(lab=result.lab) + "  ",
        score + ("  " if notes else ""),
    ]
    if notes and final_score is not None:
        out.append(_("**Final score (after the late policy):** {final} / {max}").format(
            final=_points(final_score), max=_points(result.max_score)))
    out += [
        "",
        _("| check | points | result | message |"),
        "|---|---|---|---|",
    ]
    for c in result.checks:
        mark = _("✔ passed") if c.passed else _("✘ failed")
        message = c.message.replace("|", "\\|")
        out.append(f"| `{c.id}` | {_points(c.points)} / {_points(c.max_points)} | {mark} | {message} |")
    if result.restored:
        out += ["", _("## Cells put back"), "", _("These cells may not be changed; the grader used the originals:"), ""]
        out += [f"- `{r}`" for r in result.restored]
    if result.errors:
        out += ["", _("## Errors while your notebook ran"), ""]
        out += [f"- {e}" for e in result.errors]
    if notes:
        out += ["", _("## Late policy"), ""] + [f"- {n}" for n in notes]
    if regrades:
        every_check = _("all checks")
        out += ["", _("## Regrades"), "", _("| when (UTC) | by | why | check | score before | score after |"),
                "|---|---|---|---|---|---|"]
        out += [
            f"| {_cell(e['when'])} | {_cell(e['who'])} | {_cell(e['why'])} | {_cell(e.get('check') or every_check)}"
            f" | {_score(e['old_score'])} | {_score(e['new_score'])} |"
            for e in regrades
        ]
    return "\n".join(out) + "\n"


def write_feedback(result: GradeResult, directory: Path, taken: set[Path]) -> Path:
    """Write the feedback file; notebooks with the same name in one call get ``-2``, ``-3``...
    (``taken`` holds the files written so far) rather than overwriting each other."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = Path(result.path).stem
    target, n = directory / f"{stem}.feedback.md", 2
    while target in taken:
        target, n = directory / f"{stem}-{n}.feedback.md", n + 1
    taken.add(target)
    target.write_text(feedback_markdown(result), encoding="utf-8")
    return target
