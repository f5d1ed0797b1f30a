"""The Spanish edition (issue #16): every lab in Spanish, generated from the same masters.

Proved here: every cell a student reads has a current Spanish translation and no English
sentence left in it; every message of the catalogs is translated; the Spanish notebooks are
what the masters and translations generate; a Spanish solution earns full marks and an
untouched Spanish notebook none, with its feedback in Spanish.
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat import NotebookNode

from autograder import catalog, generate, report, translation
from autograder.course import LABS, Lab
from autograder.kit import checking, i18n, lab01
from autograder.notebook import grade_id
from tests.conftest import grading, points, solution_code

ES = "es"
EVERY_LAB = [pytest.param(lab, id=lab.lab_id) for lab in LABS.values()]


def spanish_texts(lab: Lab) -> list[tuple[str, str]]:
    """(where, text) of everything a student reads in the Spanish student notebook."""
    nb = nbformat.read(lab.student_in(ES), as_version=4)
    out = []
    for cell in nb.cells:
        where = f"{lab.lab_id} {cell.id} ({grade_id(cell) or cell.cell_type})"
        if cell.cell_type == "markdown":
            out.append((where, cell.source))
        elif cell.cell_type == "code":
            out.append((where, translation.comments(cell.source)))
    return out


@pytest.mark.parametrize("lab", EVERY_LAB)
def test_every_cell_a_student_reads_is_translated_and_current(lab: Lab) -> None:
    assert translation.problems(lab, ES) == []


@pytest.mark.parametrize("lab", EVERY_LAB)
def test_the_spanish_notebooks_are_what_the_master_and_its_translation_generate(lab: Lab) -> None:
    assert lab.student_in(ES).read_text(encoding="utf-8") == generate.render(lab, ES), "run `make labs`"
    assert lab.master_in(ES).read_text(encoding="utf-8") == generate.render_master(lab, ES), "run `make labs`"
    master = nbformat.read(lab.master_in(ES), as_version=4)
    english = nbformat.read(lab.master, as_version=4)
    assert [c.id for c in master.cells] == [c.id for c in english.cells]
    assert master.metadata["course"] == {**english.metadata["course"], "language": ES}


@pytest.mark.parametrize("lab", EVERY_LAB)
def test_no_english_sentence_is_left_in_the_spanish_notebook(lab: Lab) -> None:
    left = [f"{where}: {s}" for where, text in spanish_texts(lab) for s in translation.english_sentences(text)]
    assert left == []


def test_every_message_of_the_course_has_a_current_spanish_translation() -> None:
    assert catalog.problems(ES) == []


def test_no_english_sentence_is_left_in_the_spanish_messages() -> None:
    left = [f"{ctx or ''}: {s}" for _en, es, ctx in catalog.translations(ES) for s in translation.english_sentences(es)]
    assert left == []


def test_a_changed_english_cell_makes_its_translation_stale() -> None:
    lab = LABS["01_tracking"]
    master = nbformat.read(lab.master, as_version=4)
    assert translation.problems(lab, ES, master) == []
    intro = next(c for c in master.cells if c.cell_type == "markdown")
    intro.source += "\nOne more sentence."
    assert translation.problems(lab, ES, master) == [f"{lab.lab_id} cell {intro.id} (intro): stale (the English "
                                                      "changed since it was translated)"]
    with pytest.raises(translation.TranslationError, match="stale"):
        translation.translated_master(lab, ES, master)


def test_a_translated_code_cell_may_change_only_its_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = LABS["01_tracking"]
    entries = translation.load(lab, ES)
    master = nbformat.read(lab.master, as_version=4)
    todo = next(c for c in master.cells if grade_id(c) == "todo1")
    text = entries[todo.id]["text"]
    assert translation.code_tokens(text) == translation.code_tokens(todo.source)
    cheat = {**entries, todo.id: {**entries[todo.id], "text": text.replace("EXPERIMENT_NAME)", '"otro")')}}
    monkeypatch.setattr(translation, "load", lambda *_: cheat)
    assert translation.problems(lab, ES, master) == [
        f"{lab.lab_id} cell {todo.id} (todo1): its code differs from the English cell's (only comments may change)"]


def test_kit_messages_follow_the_language_and_keep_their_values() -> None:
    english = checking.message(lab01.MESSAGES, "wrong_run_name", found="x", expected="rf-baseline")
    with i18n.using(ES):
        spanish = checking.message(lab01.MESSAGES, "wrong_run_name", found="x", expected="rf-baseline")
        assert i18n.language() == ES
    assert i18n.language() == i18n.SOURCE
    assert spanish != english and "'x'" in spanish and "rf-baseline" in spanish
    assert translation.english_sentences(spanish) == []


def _spanish_solution(lab: Lab) -> NotebookNode:
    """The Spanish student notebook with every TODO answered as the Spanish master does."""
    master = {grade_id(c): c for c in nbformat.read(lab.master_in(ES), as_version=4).cells}
    nb = nbformat.read(lab.student_in(ES), as_version=4)
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid and gid.startswith("todo"):
            cell.source = solution_code(master[gid])
    return nb


@grading
@pytest.mark.parametrize("lab", EVERY_LAB)
def test_a_spanish_solution_earns_full_marks_with_its_feedback_in_spanish(lab: Lab, grade) -> None:
    result = grade(_spanish_solution(lab), name=f"{lab.lab_id}.ipynb")
    assert result.language == ES
    assert result.score == result.max_score > 0, [(c.id, c.message) for c in result.checks if not c.passed]
    feedback = report.feedback_markdown(result)
    assert translation.english_sentences(feedback) == [], feedback
    assert "Feedback" not in feedback.splitlines()[0] and "Score" not in feedback
    assert [m for c in result.checks for m in translation.english_sentences(c.message)] == []


@grading
@pytest.mark.parametrize("lab", EVERY_LAB)
def test_an_untouched_spanish_notebook_earns_zero(lab: Lab, grade) -> None:
    nb = nbformat.read(lab.student_in(ES), as_version=4)
    result = grade(nb, name=f"{lab.lab_id}.ipynb")
    assert result.language == ES
    assert result.score == 0, points(result)
    assert [m for c in result.checks for m in translation.english_sentences(c.message)] == []


def test_the_programs_a_spanish_notebook_starts_speak_spanish(monkeypatch: pytest.MonkeyPatch) -> None:
    """The set-up cell's set_language reaches the workflow runner and the services the notebook
    starts as processes of their own (they inherit $COURSE_LANG)."""
    import subprocess
    import sys

    monkeypatch.setenv(i18n.ENV, "en")  # recorded, so the test's Spanish is undone after it
    try:
        i18n.set_language(ES)
        child = subprocess.run([sys.executable, "-c", "from autograder.kit import i18n; print(i18n.language())"],
                               capture_output=True, text=True, timeout=60, check=True)
    finally:
        i18n.set_language(None)
    assert child.stdout.strip() == ES


@pytest.mark.parametrize("edit", ["marker moved", "dedented", "yaml indent"])
def test_a_translation_cannot_move_an_answer_out_of_its_region_or_change_indentation(edit: str) -> None:
    """A translated cell whose markers or indentation differ would ship an answer (or change
    what runs) in the Spanish student notebook: the tokens say so."""
    english = ("# TODO 1: sum the rows.\nfor row in rows:\n    ### BEGIN SOLUTION\n    total += row\n"
               "    ### END SOLUTION\n")
    spanish = english.replace("sum the rows", "suma las filas")
    assert translation.code_tokens(spanish) == translation.code_tokens(english)
    cheat = {
        "marker moved": spanish.replace("    ### BEGIN SOLUTION\n    total += row\n    ### END SOLUTION\n",
                                        "    ### BEGIN SOLUTION\n    ### END SOLUTION\n    total += row\n"),
        "dedented": "# TODO 1: suma.\nfor row in rows:\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION\ntotal += row\n",
        "yaml indent": None,
    }[edit]
    if edit == "yaml indent":
        english = "%%writefile ci.yml\njobs:  # the jobs\n  test:\n    runs-on: ubuntu-latest\n"
        spanish = english.replace("the jobs", "los jobs")
        assert translation.code_tokens(spanish) == translation.code_tokens(english)
        cheat = spanish.replace("    runs-on", "  runs-on")
    assert translation.code_tokens(cheat) != translation.code_tokens(english)


def test_the_late_policy_note_in_a_spanish_students_feedback_is_spanish(tmp_path) -> None:
    """The note goes into the student's own feedback: it is written in the notebook's language,
    whatever the instructor's is."""
    from datetime import UTC, datetime, timedelta

    from autograder import late

    due = datetime(2026, 11, 1, 12, tzinfo=UTC)
    (tmp_path / "policy.csv").write_text(f"lab,due,penalty_per_day\n01_tracking,{due.isoformat()},0.1\n")
    policy = late.read_policy(tmp_path / "policy.csv", None)
    records = [{"student_id": s, "lab": "01_tracking", "score": 10.0, "max_score": 10.0, "language": lang,
                "submitted_at": (due + timedelta(days=2)).isoformat()} for s, lang in (("ana", ES), ("bob", "en"))]
    late.annotate(records, policy)
    spanish, english = (r["late_policy"]["note"] for r in records)
    assert spanish != english and translation.english_sentences(spanish) == []
    assert translation.english_sentences(english) != []
