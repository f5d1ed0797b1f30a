"""The feedback a student reads, written without overwriting another notebook's."""

from __future__ import annotations

from pathlib import Path

from autograder.report import feedback_markdown, write_feedback
from autograder.results import CheckOutcome, GradeResult


def _result(path: str, passed: bool) -> GradeResult:
    check = CheckOutcome("check_todo1_x", 1.0 if passed else 0.0, 1.0, passed, "a | message")
    return GradeResult(path, "01_tracking", check.points, 1.0, [check], ["todo2 raised ValueError: no"], ["x (edited)"])


def test_same_named_notebooks_get_their_own_feedback_files(tmp_path: Path) -> None:
    taken: set[Path] = set()
    first = write_feedback(_result("a/01_tracking.ipynb", True), tmp_path, taken)
    second = write_feedback(_result("b/01_tracking.ipynb", False), tmp_path, taken)
    assert first != second
    assert "1 / 1" in first.read_text() and "0 / 1" in second.read_text()


def test_feedback_lists_checks_restored_cells_and_errors() -> None:
    text = feedback_markdown(_result("a/01_tracking.ipynb", False))
    assert "| `check_todo1_x` | 0 / 1 | ✘ failed | a \\| message |" in text
    assert "`x (edited)`" in text and "todo2 raised ValueError: no" in text


def test_feedback_shows_the_late_decision_and_each_regrade() -> None:
    regrades = [{"when": "2026-12-03 10:00:00", "who": "prof", "why": "kernel died | load", "check": None,
                 "old_score": None, "new_score": 1.0},
                {"when": "2026-12-04 10:00:00", "who": "ta", "why": "check fixed", "check": "check_todo1_x",
                 "old_score": 1.0, "new_score": 0.0}]
    text = feedback_markdown(_result("a/01_tracking.ipynb", True), notes=["Submitted 1 day(s) late."],
                             regrades=regrades, final_score=0.9)
    assert "**Final score (after the late policy):** 0.9 / 1" in text and "- Submitted 1 day(s) late." in text
    assert "| prof | kernel died \\| load | all checks | not graded before | 1 |" in text
    assert "| ta | check fixed | check_todo1_x | 1 | 0 |" in text
    assert "Regrades" not in feedback_markdown(_result("a/01_tracking.ipynb", True))
