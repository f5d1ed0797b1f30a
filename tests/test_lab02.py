"""The grader on Lab 02 (hyperparameter tuning): full marks, zero, partial credit, and the
typical mistakes, each costing the points of the task it breaks.

Every test here executes a notebook (about 25-40 s each).
"""

from __future__ import annotations

import nbformat
import pytest

from autograder.course import LABS
from autograder.notebook import grade_id
from tests.conftest import make_submission, points, solution_code

pytestmark = pytest.mark.slow

LAB = LABS["02_tuning"]
MAX = {
    "check_todo1_scores": 2,
    "check_todo2_parent": 1,
    "check_todo3_sweep": 3,
    "check_todo4_best": 2,
    "check_todo5_surface": 2,
}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}
ALL = set(TODO_CHECK)

# TODO 4 of the master, with the order of the search changed.
BEST_BY = """
children = mlflow.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string=f"tags.mlflow.parentRunId = '{{parent.info.run_id}}'",
    order_by=["{order}"],
)
best = children.iloc[0]
mlflow.set_tag("best_run_id", best["run_id"])
mlflow.log_params({{"best_n_estimators": best["params.n_estimators"], "best_max_depth": best["params.max_depth"]}})
mlflow.log_metrics({{"best_cv_r2_mean": best["metrics.cv_r2_mean"], "best_test_r2": best["metrics.test_r2"]}})
"""


def message(result, check_id: str) -> str:
    return next(c.message for c in result.checks if c.id == check_id)


def test_solution_earns_full_marks(grade) -> None:
    result = grade(make_submission(done=ALL, lab=LAB))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []
    assert "6 child run(s)" in message(result, "check_todo1_scores")  # every child re-computed


def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB))
    assert (result.score, result.max_score) == (0, 10)
    assert [c.passed for c in result.checks] == [False] * 5
    messages = {c.id: c.message for c in result.checks}
    assert "evaluate()" in messages["check_todo1_scores"]
    assert "mlflow.log_params" in messages["check_todo2_parent"]
    assert "nested=True" in messages["check_todo3_sweep"]
    assert "mlflow.search_runs" in messages["check_todo4_best"]
    assert "mlflow.log_figure" in messages["check_todo5_surface"]
    # TODO 1 defines a function: its stub raises in the given trial cell, not in its own.
    raised = [e.split()[0] for e in result.errors if "NotImplementedError" in e]
    assert raised == ["trial", "todo2", "todo3", "todo4", "todo5"], result.errors


def test_partial_work_earns_exactly_the_points_of_the_done_todos(grade) -> None:
    done = {1, 3, 5}
    result = grade(make_submission(done=done, lab=LAB))
    expected = {TODO_CHECK[n]: (MAX[TODO_CHECK[n]] if n in done else 0) for n in TODO_CHECK}
    assert points(result) == expected, [c.message for c in result.checks]


@pytest.mark.parametrize(
    ("order", "says"),
    [("metrics.cv_r2_mean ASC", "LOWEST"), ("metrics.test_r2 DESC", "highest cv_r2_mean")],
    ids=["wrong-direction", "chosen-on-the-test-split"],
)
def test_a_wrongly_picked_best_loses_only_task_4(grade, order: str, says: str) -> None:
    nb = make_submission(done=ALL, replace={"todo4": BEST_BY.format(order=order)}, lab=LAB)
    result = grade(nb)
    assert points(result) == {**MAX, "check_todo4_best": 0}, [c.message for c in result.checks]
    assert says in message(result, "check_todo4_best")


def test_a_metric_logged_under_another_name_loses_only_task_1(grade) -> None:
    todo1 = solution_code(next(c for c in nbformat.read(LAB.master, as_version=4).cells if grade_id(c) == "todo1"))
    assert '"test_rmse":' in todo1
    nb = make_submission(done=ALL, replace={"todo1": todo1.replace('"test_rmse":', '"rmse":')}, lab=LAB)
    result = grade(nb)
    assert points(result) == {**MAX, "check_todo1_scores": 0}, [c.message for c in result.checks]
    assert "lacks metric(s) test_rmse; found: cv_r2_mean, cv_r2_std, rmse, test_r2" in message(
        result, "check_todo1_scores"
    )


def test_children_not_nested_lose_the_sweep_and_what_needs_it(grade) -> None:
    """Ending the parent to get past "Run ... is already active" leaves the children on their
    own. The sweep fails, and so do the tasks that read the children through their parent
    (TODO 4) or log on the parent (TODO 5, which then lands in a new run); TODOs 1-2 keep
    their points."""
    loose = """
results = []
for n_estimators, max_depth in GRID:
    mlflow.end_run()
    with mlflow.start_run(run_name=f"rf-n{n_estimators}-d{max_depth}", nested=True):
        mlflow.log_param("n_estimators", n_estimators)
        mlflow.log_param("max_depth", max_depth)
        mlflow.set_tag("sweep", PARENT_RUN_NAME)
        metrics = evaluate(n_estimators, max_depth)
        mlflow.log_metrics(metrics)
    results.append({"n_estimators": n_estimators, "max_depth": max_depth, **metrics})
"""
    result = grade(make_submission(done=ALL, replace={"todo3": loose}, lab=LAB))
    lost = ("check_todo3_sweep", "check_todo4_best", "check_todo5_surface")
    assert points(result) == {**MAX, **dict.fromkeys(lost, 0)}, [c.message for c in result.checks]
    assert "not nested" in message(result, "check_todo3_sweep")
    assert "not in the parent run" in message(result, "check_todo5_surface")
