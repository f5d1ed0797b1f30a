"""A hint names the idea and the API and leaves the student something to think about: it is not
the answer's code (DESIGN.md, "Shape of a lab notebook").

What a student reads before answering a TODO is the TODO cell's comments and the markdown of
its task. No line of the answer (or the expression it assigns or returns) may appear there word
for word. Short pieces (a function name, ``name="model"``) are what a hint is for, so only
pieces of ``MIN_CHARS`` or more count.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from autograder.course import LABS
from autograder.notebook import grade_id

#: The labs whose hints were rewritten to this rule (issue #9); the others follow as they are.
LABS_CHECKED = ["01_tracking", "02_tuning", "03a_candidates", "03b_selection", "04_registry", "05a_testing", "05b_pipeline", "06a_drift", "06b_retraining",
                "07a_pipeline", "07b_lineage", "08a_service", "08b_production",
                "09a_access", "09b_operations"]
#: Shorter pieces of the answer may appear: an API name, an argument, a metric's key.
MIN_CHARS = 20
#: Lines of an answer that its task's example may show word for word, per lab and TODO, each with
#: its reason. Lab 05b's TODO 2 (a GitHub Actions workflow): the example shows what every job of a
#: workflow repeats (get the code, set up Python, install the packages on GitHub only) and what a job
#: runs on. The answer is the rest: which jobs, which steps in what order, `needs`, the commands
#: and their variables, none of which the example gives.
SAME_AS_EXAMPLE = {
    ("05b_pipeline", "todo2"): {
        "- uses: actions/checkout@v4",
        "- uses: actions/setup-python@v5",
        'python-version: "3.11"',
        "- name: Install the packages",
        "run: pip install -r requirements.txt",
        "runs-on: ubuntu-latest",
    },
}
_REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL)


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def answer_pieces(source: str) -> set[str]:
    """Each line of the answer, and what it assigns or returns, without a trailing comma."""
    pieces = set()
    for region in _REGION.findall(source):
        for line in region.splitlines():
            line = _squeeze(line).rstrip(",").rstrip()
            if line.startswith("#"):
                continue
            pieces.add(line)
            pieces.add(line.removeprefix("return "))
            if re.match(r"^[\w.,\[\]\"' ]+ = ", line):
                pieces.add(line.split(" = ", 1)[1])
    return {p for p in pieces if len(p) >= MIN_CHARS}


def what_the_student_reads(cells: list, index: int) -> str:
    """The TODO cell's comments and code outside the answer, and the markdown above it."""
    source = _REGION.sub("", cells[index].source)
    comments = " ".join(line.strip().lstrip("#") for line in source.splitlines() if line.strip().startswith("#"))
    above = []
    for cell in reversed(cells[:index]):
        if cell.cell_type != "markdown":
            break
        above.append(cell.source)
    return _squeeze(comments + " " + " ".join(above))


def leaks(lab_id: str) -> dict[str, list[str]]:
    """TODO cell -> the pieces of its answer that its hint gives away."""
    cells = nbformat.read(LABS[lab_id].master, as_version=4).cells
    found = {}
    for i, cell in enumerate(cells):
        gid = grade_id(cell) or ""
        if not gid.startswith("todo"):
            continue
        text = what_the_student_reads(cells, i)
        allowed = SAME_AS_EXAMPLE.get((lab_id, gid), set())
        given = sorted(p for p in answer_pieces(cell.source) if p in text and p not in allowed)
        if given:
            found[gid] = given
    return found


@pytest.mark.parametrize("lab_id", LABS_CHECKED)
def test_no_hint_is_the_answers_code(lab_id: str) -> None:
    assert leaks(lab_id) == {}


def test_the_rule_catches_the_hints_that_issue_9_reported() -> None:
    """The hints as they were (Lab 02's TODO 4 and its markdown, Lab 06's TODO 4) fail the rule."""
    answer = '### BEGIN SOLUTION\nchildren = mlflow.search_runs(\n    experiment_ids=[experiment.experiment_id],\n' \
             '    order_by=["metrics.cv_r2_mean DESC"],\n)\n### END SOLUTION\n'
    old_hint = "# Hint: mlflow.search_runs(experiment_ids=[experiment.experiment_id], filter_string=..., order_by=[...])\n"
    cells = [nbformat.v4.new_markdown_cell('`order_by=["metrics.cv_r2_mean DESC"]` puts the best first.'),
             nbformat.v4.new_code_cell(old_hint + answer)]
    text = what_the_student_reads(cells, 1)
    assert sorted(p for p in answer_pieces(cells[1].source) if p in text) == [
        'experiment_ids=[experiment.experiment_id]', 'order_by=["metrics.cv_r2_mean DESC"]']

    answer = "### BEGIN SOLUTION\n    errors = (data[labkit.TARGET] - model.predict(data[labkit.FEATURES])).abs()\n" \
             "    return errors.groupby(np.arange(len(errors)) // window).mean()\n### END SOLUTION\n"
    old_hint = "# Hint: errors = (data[labkit.TARGET] - model.predict(data[labkit.FEATURES])).abs();\n" \
               "#       errors.groupby(np.arange(len(errors)) // window).mean() averages each window.\n"
    cells = [nbformat.v4.new_code_cell(old_hint + answer)]
    assert len([p for p in answer_pieces(cells[0].source) if p in what_the_student_reads(cells, 0)]) == 3


def test_each_exception_is_a_line_of_the_answer_that_its_example_shows() -> None:
    """An exception that is no longer in the answer, or no longer in the example, is dropped
    here rather than left to excuse something else."""
    for (lab_id, gid), lines in SAME_AS_EXAMPLE.items():
        cells = nbformat.read(LABS[lab_id].master, as_version=4).cells
        index = next(i for i, c in enumerate(cells) if grade_id(c) == gid)
        assert lines <= answer_pieces(cells[index].source), lines - answer_pieces(cells[index].source)
        text = what_the_student_reads(cells, index)
        assert all(line in text for line in lines), [line for line in lines if line not in text]
