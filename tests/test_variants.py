"""Per-student variants, graded for real (sandboxed, Lab 01, three gradings in one class):
each solution earns full marks on its own student's variant, and results copied from a
classmate's run earn the copier nothing where they were copied."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nbformat

from autograder import classroom, variants
from tests.conftest import LAB01, grading, make_submission


def _results_of(secret: bytes, student: str) -> tuple[int, dict[str, float]]:
    """What the student's own run shows them: their notebook's SEED and the metrics of their variant."""
    variant = variants.variant_seed(secret, student)
    seed = variants.notebook_seed(variant)
    shipped = json.loads(variants.expected_for(LAB01.lab_id, variants.variant_dir(variant), seed) or "{}")
    return seed, shipped["expected"]["metrics"]


def _copy_of_results(seed: int, metrics: dict[str, float]) -> dict[str, str]:
    """TODOs 2 and 3 with a classmate's numbers typed in, as one copies an executed notebook's outputs."""
    return {
        "todo2": "mlflow.end_run()\nrun = mlflow.start_run(run_name=RUN_NAME)\n"
                 f"mlflow.log_params({{'model_type': 'RandomForestRegressor', 'n_estimators': 100, "
                 f"'max_depth': 12, 'random_state': {seed}, 'test_size': 0.25}})\n",
        "todo3": f"metrics = {metrics!r}\nmlflow.log_metrics(metrics)\n",
    }


@grading
def test_each_solution_earns_full_marks_on_its_own_variant_and_copied_results_earn_nothing(tmp_path: Path) -> None:
    secret = os.urandom(32)
    alice_seed, alice_metrics = _results_of(secret, "alice")
    students = {
        "alice": make_submission({1, 2, 3, 4, 5}),
        "bob": make_submission({1, 2, 3, 4, 5}),
        "carol": make_submission({1, 4, 5}, replace=_copy_of_results(alice_seed, alice_metrics)),
    }
    source, out = tmp_path / "submitted", tmp_path / "out"
    for student, nb in students.items():
        folder = source / student / LAB01.lab_id
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{LAB01.lab_id}.ipynb")

    classroom.grade_class(source, out, jobs=2, cell_timeout=120, total_timeout=300, progress=False,
                          options=classroom.ClassOptions(secret=secret))

    with open(out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert float(rows["alice"]["score"]) == float(rows["bob"]["score"]) == 10.0, rows
    carol = rows["carol"]
    assert float(carol["check_todo2_params"]) == 0.0 and float(carol["check_todo3_metrics"]) == 0.0, carol
    feedback = (out / "feedback" / "carol" / f"{LAB01.lab_id}.md").read_text()
    assert "random_state" in feedback and "the test split gives" in feedback
    graded_on = {}
    for path in (out / "results").glob("*.json"):
        record = json.loads(path.read_text())
        graded_on[record["student_id"]] = record["variant"]
    assert graded_on == {s: variants.variant_seed(secret, s) for s in students}
    # alice and bob handed in the same code (the textbook answer): not a copy to report.
    assert "No pair of students" in (out / "class_report.html").read_text()
    assert (out / "gradescope" / "carol" / LAB01.lab_id / "results.json").is_file()
