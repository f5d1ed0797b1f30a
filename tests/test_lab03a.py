"""The grader on Lab 03a (the candidates): full marks, zero, partial credit, the typical mistakes
(each costing exactly the points of its own task) and hostile answers (metrics copied from a run
on the course data).

The notebook tests execute four notebooks in all (30-90 s each on 2 shared cores); each one
serves several assertions. The judgments are also tested on hand-made evidence, which is fast.
"""

from __future__ import annotations

import json

import nbformat

from autograder import hidden
from autograder.course import LABS
from autograder.kit import lab03a
from autograder.kit.checking import EXPECTED_DIR
from autograder.notebook import grade_id
from tests.conftest import grading, make_submission, partial_todos, points, solution_code

LAB = LABS["03a_candidates"]
MAX = {"check_todo1_metrics": 2, "check_todo2_models": 3}
#: One hidden seed for every notebook test here: its data variant is made once and cached.
SEED = 12345


def solved(todo: str, old: str, new: str) -> str:
    """The master's answer to a TODO with one piece of it changed (the piece must exist)."""
    master = {grade_id(c): c for c in nbformat.read(LAB.master, as_version=4).cells}
    code = solution_code(master[todo])
    assert old in code, f"{old!r} is not in the answer to {todo}"
    return code.replace(old, new)


def messages(result) -> dict[str, str]:  # noqa: ANN001
    return {c.id: c.message for c in result.checks}


# --- The judgments, on hand-made evidence (fast) -------------------------------------------


def test_the_kit_holds_no_reference_computation() -> None:
    import inspect

    source = inspect.getsource(lab03a)
    for recipe in ("r2_score", "mean_absolute_error", "fit(", "cross_validate(", "get_untrusted_types("):
        assert recipe not in source, recipe


EXP = {"experiment_name": "lab03a-candidates", "parent_run_name": "model-comparison", "cv_folds": 3}
CV_R2 = {"linear": 0.60, "random_forest": 0.90, "gradient_boosting": 0.80, "hist_gradient_boosting": 0.70}


def _reference_values() -> dict:
    """What the grader's references would compute: each model's cross-validated scores."""
    cv = {name: {"cv_r2_mean": r2, "cv_r2_std": 0.04, "cv_r2_std_sample": 0.049, "cv_rmse_mean": 40 - 20 * r2,
                 "cv_mae_mean": 20 - 10 * r2} for name, r2 in CV_R2.items()}
    return {**EXP, "metrics": cv}


def _submission(ref: dict) -> dict:
    """The evidence of a submission that logged the right cross-validated metrics."""
    runs = {name: {"id": f"id-{name}", "name": name, "tags": {},
                   "metrics": {m: ref["metrics"][name][m] for m in lab03a.METRICS}} for name in CV_R2}
    return {"experiment": {"id": "1"}, "parent": {"id": "p"}, "candidates": runs}


def test_cross_validated_errors_are_positive_and_computed_on_the_training_folds() -> None:
    ref = _reference_values()
    ev = _submission(ref)
    assert lab03a.judge_metrics(ev, ref).passed
    assert "grader checks" in lab03a.judge_metrics(ev, EXP).message  # the self-check on hidden inputs
    ev["candidates"]["linear"]["metrics"]["cv_rmse_mean"] *= -1  # a "neg_" scorer, sign kept
    negated = lab03a.judge_metrics(ev, ref)
    assert not negated.passed and "flip its sign" in negated.message, negated.message
    ev["candidates"]["linear"]["metrics"]["cv_rmse_mean"] = 56.26  # on the test split
    on_test = lab03a.judge_metrics(ev, ref)
    assert not on_test.passed and "3-fold cross-validation" in on_test.message and "flip" not in on_test.message
    # pandas' sample standard deviation is as good as NumPy's population one.
    ev = _submission(ref)
    ev["candidates"]["linear"]["metrics"]["cv_r2_std"] = ref["metrics"]["linear"]["cv_r2_std_sample"]
    assert lab03a.judge_metrics(ev, ref).passed
    # A metric under another name is missing, and the message names what was found.
    ev["candidates"]["linear"]["metrics"]["cv_mean_absolute_error"] = ev["candidates"]["linear"]["metrics"].pop(
        "cv_mae_mean")
    renamed = lab03a.judge_metrics(ev, ref)
    assert not renamed.passed and "lacks metric(s) cv_mae_mean" in renamed.message
    assert "cv_mean_absolute_error" in renamed.message


def test_a_model_saved_as_pickle_or_without_a_signature_fails_task_2() -> None:
    ev = _submission(_reference_values())
    for run in ev["candidates"].values():
        run["model"] = {"state": "ready", "format": "skops", "input_names": list(lab03a.labkit.FEATURES),
                        "has_example": True}
    assert lab03a.judge_models(ev, EXP).passed
    ev["candidates"]["random_forest"]["model"]["format"] = "cloudpickle"
    assert "skops_trusted_types" in lab03a.judge_models(ev, EXP).message
    ev["candidates"]["random_forest"]["model"].update(format="skops", input_names=[])
    assert "no signature" in lab03a.judge_models(ev, EXP).message
    ev["candidates"]["random_forest"]["model"] = {"state": "failed"}
    failed = lab03a.judge_models(ev, EXP)
    assert not failed.passed and "TRUSTED_TYPES['random_forest']" in failed.message


# --- Notebooks ----------------------------------------------------------------------------


@grading
def test_solution_earns_full_marks_with_the_shipped_values(grade) -> None:
    # On the course's own inputs the self-checks compare with the shipped values (the hidden
    # test asks each model about all 1000 test rows), and the grader with its references.
    result = grade(make_submission(done={1, 2}, lab=LAB), inputs=hidden.course_inputs())
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []
    assert "1000 test rows" in messages(result)["check_todo2_models"]


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB), inputs=hidden.hidden_inputs(SEED))
    assert (result.score, result.max_score) == (0, 5)
    found = messages(result)
    assert "mlflow.start_run(run_id=...)" in found["check_todo1_metrics"]
    assert "log_model" in found["check_todo2_models"]
    assert sum("NotImplementedError" in e for e in result.errors) == 2, result.errors


@grading
def test_a_partial_notebook_earns_the_points_of_its_done_tasks(grade) -> None:
    # The nbgrader test grades the same notebook (shared, graded once per session).
    done = partial_todos(LAB)
    result = grade(make_submission(done=done, lab=LAB))
    expected = {k: (v if int(k[len("check_todo")]) in done else 0) for k, v in MAX.items()}
    assert 0 < sum(expected.values()) < sum(MAX.values())
    assert points(result) == expected, [c.message for c in result.checks]


@grading
def test_copied_metrics_and_missing_trusted_types_earn_nothing(grade) -> None:
    """Metrics copied from a run on the course data (right names, wrong values on the hidden
    inputs), and the histogram model logged with the forest's trusted type (log_model fails)."""
    ref = json.loads((EXPECTED_DIR / f"{LAB.lab_id}.json").read_text(encoding="utf-8"))["expected"]
    copied_metrics = (
        f"COPIED = {json.dumps(ref['metrics'])}  # from a run on the course data\n"
        "for name, values in COPIED.items():\n"
        "    with mlflow.start_run(run_id=runs[name]):\n"
        "        mlflow.log_metrics(values)\n"
    )
    # The histogram model does not hold sklearn.tree._tree.Tree: log_model fails for it.
    wrong_types = solved("todo2", '["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]',
                         '["sklearn.tree._tree.Tree"]')
    submission = make_submission(done=set(), replace={"todo1": copied_metrics, "todo2": wrong_types}, lab=LAB)
    result = grade(submission, inputs=hidden.hidden_inputs(SEED))
    assert points(result) == dict.fromkeys(MAX, 0)
    found = messages(result)
    assert "but its model gives" in found["check_todo1_metrics"]
    assert "hist_gradient_boosting" in found["check_todo2_models"]
    assert "skops_trusted_types" in found["check_todo2_models"]
    assert any("todo2 raised MlflowException" in e for e in result.errors)
    assert not any(e.startswith("todo1") for e in result.errors), result.errors
