"""benchmarks/lab_times.py counts what a student reads and writes, not what the master hides.

No notebook is executed here: the counts are checked on a small notebook whose answer, hidden
tests and links would each change the counts if they were miscounted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lab_times  # noqa: E402


def _cell(kind: str, source: str, grade_id: str | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade_id": grade_id}
    return cell


NB = nbformat.v4.new_notebook(cells=[
    _cell("md", "Read these five words. See [the docs](https://example.org/a/very/long/path)."),
    _cell("md", "**In the UI:** open the run.", "ui1"),
    _cell("code", "x = 1  # given\n# TODO 1: two words\n### BEGIN SOLUTION\n# a comment in the answer\n"
                  "y = x + 1\n\nz = y * 2\n### END SOLUTION\n", "todo1"),
    _cell("code", "### BEGIN SOLUTION\nw = 3\n### END SOLUTION\n", "todo2a"),
    _cell("code", "# part b\n### BEGIN SOLUTION\nv = 4\nu = 5\n### END SOLUTION\n", "todo2b"),
    _cell("code", "check()  # self-check\n### BEGIN HIDDEN TESTS\n# many hidden words here\n### END HIDDEN TESTS\n",
          "check_todo1"),
])


def test_words_are_what_the_student_sees() -> None:
    # "Read these five words. See the docs" (7) + "In the UI open the run" (6) + "given TODO 1 two words" (5)
    # + "part b" (2) + "self-check" (1): the answer, the hidden test and the link's address are not read.
    assert lab_times.prose_words(NB) == 21


def test_lines_are_the_answers_code_per_todo() -> None:
    assert lab_times.solution_lines(NB) == {1: 2, 2: 3}  # blank and comment lines left out; 2a + 2b
    assert lab_times.ui_visits(NB) == 1


def test_the_estimate_follows_the_model_and_rounds_to_five_minutes() -> None:
    measured = {"words": 300, "lines": 10, "todos": 2, "ui_visits": 2, "execution": {"seconds": 60.0}}
    model = {"words_per_minute": (150, 100), "minutes_per_line": (1, 2), "minutes_per_todo": (2, 3),
             "minutes_per_ui_visit": (1, 1), "executions": (1, 2)}
    low, high = lab_times.estimate(measured, model)
    assert (low, high) == pytest.approx((2 + 10 + 4 + 2 + 1, 3 + 20 + 6 + 2 + 2))
    assert (lab_times.rounded(low), lab_times.rounded(high)) == (20, 35)
    assert lab_times.rounded(1.0) == 5  # never "0 min"
