"""The grader on Lab 06 (drift and retraining): full marks, zero, partial credit, and typical
mistakes that each lose exactly the points of their own task.

Every test but the first two executes the notebook (about 25-40 s each on 2 cores).
"""

from __future__ import annotations

import nbformat
import numpy as np
import pytest

from autograder.checks import lab06
from autograder.course import LABS
from autograder.notebook import grade_id
from tests.conftest import make_submission, points, solution_code

pytestmark = pytest.mark.slow

LAB06 = LABS["06_drift"]
MAX = {
    "check_todo1_tests": 2,
    "check_todo2_psi": 2,
    "check_todo3_report": 2,
    "check_todo4_concept": 2,
    "check_todo5_decision": 1,
    "check_todo6_retrain": 2,
}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}
ALL = set(TODO_CHECK)

# TODO 6 done without the comparison: the challenger is registered and promoted blindly.
PROMOTED_WITHOUT_COMPARISON = """
mlflow.end_run()
training_data = pd.concat([reference, recent_train])
with mlflow.start_run(run_name=RETRAIN_RUN):
    info = log_and_register(train_model(training_data), training_data)
client.set_registered_model_alias(MODEL_NAME, "challenger", info.registered_model_version)
client.set_registered_model_alias(MODEL_NAME, "champion", info.registered_model_version)
promoted = True
"""


def solved(todo: str, old: str, new: str) -> str:
    """The master's answer to a TODO with one piece of it changed (the piece must exist)."""
    master = {grade_id(c): c for c in nbformat.read(LAB06.master, as_version=4).cells}
    code = solution_code(master[todo])
    assert old in code, f"{old!r} is not in the answer to {todo}"
    return code.replace(old, new)


def message(result, check_id: str) -> str:
    return next(c.message for c in result.checks if c.id == check_id)


def test_the_grader_psi_is_zero_on_itself_and_tells_equal_width_bins_apart() -> None:
    rng = np.random.default_rng(0)
    reference, shifted = rng.lognormal(3, 0.5, 4000), rng.lognormal(3.1, 0.5, 1000)
    assert lab06.psi(reference, reference, 10, 1e-4) == pytest.approx(0, abs=1e-12)
    edges = np.linspace(min(reference.min(), shifted.min()), max(reference.max(), shifted.max()), 11)
    ref_share = np.clip(np.histogram(reference, edges)[0] / len(reference), 1e-4, None)
    cur_share = np.clip(np.histogram(shifted, edges)[0] / len(shifted), 1e-4, None)
    equal_width = float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))
    assert not np.isclose(lab06.psi(reference, shifted, 10, 1e-4), equal_width, rtol=lab06.PSI_RTOL)


def test_the_batches_drift_as_the_checks_expect() -> None:
    """The facts the checks rely on (data/README.md): only feature_drift moves its inputs."""
    from autograder import course

    expected = lab06._expected_tests(str(course.MAIN_DATASET))
    p_values = {b: [v for k, v in expected[b].items() if "_pvalue_" in k] for b in lab06.BATCHES}
    assert min(p_values["no_drift"]) > 0.01 and min(p_values["concept_drift"]) > 0.01
    assert max(p_values["feature_drift"]) < 1e-10


def test_solution_earns_full_marks(grade) -> None:
    result = grade(make_submission(done=ALL, lab=LAB06))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert (result.score, result.max_score) == (11, 11)
    assert result.errors == []
    assert "promoted" in message(result, "check_todo6_retrain")


def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB06))
    assert (result.score, result.max_score) == (0, 11)
    assert [c.passed for c in result.checks] == [False] * 6
    assert "stats.ks_2samp" in message(result, "check_todo1_tests")
    assert "Complete psi()" in message(result, "check_todo2_psi")
    assert "mlflow.log_dict" in message(result, "check_todo3_report")
    assert "page_hinkley()" in message(result, "check_todo4_concept")
    assert "should_retrain()" in message(result, "check_todo5_decision")
    assert "no alias 'challenger'" in message(result, "check_todo6_retrain")
    assert sum("NotImplementedError" in e for e in result.errors) == 6


def test_monitoring_and_retraining_do_not_need_the_data_drift_tasks(grade) -> None:
    done = {4, 5, 6}
    result = grade(make_submission(done=done, lab=LAB06))
    expected = {TODO_CHECK[n]: (MAX[TODO_CHECK[n]] if n in done else 0) for n in TODO_CHECK}
    assert points(result) == expected, [c.message for c in result.checks]


@pytest.mark.parametrize(
    ("todo", "code", "expected"),
    [
        (
            "todo1",
            solved("todo1", "for feature in labkit.FEATURES:", "for feature in [labkit.TARGET]:"),
            "not an input feature",
        ),
        (
            "todo2",
            solved(
                "todo2",
                "edges = np.quantile(reference, np.linspace(0, 1, bins + 1))",
                "edges = np.linspace(min(np.min(reference), np.min(current)), "
                "max(np.max(reference), np.max(current)), bins + 1)",
            ),
            "reference-decile bins give",
        ),
        (
            "todo4",
            solved("todo4", "cumulative += value - mean - delta", "cumulative += value - delta"),
            "the change detector fired on 'feature_drift'",
        ),
        (
            "todo5",
            solved("todo5", "    if concept_drift:\n", "    if True:  # retrain, whatever the evidence\n"),
            "run 'drift-no_drift' has retrain=true",
        ),
        ("todo6", PROMOTED_WITHOUT_COMPARISON, "Compare the models before promoting"),
    ],
    ids=[
        "ks-on-the-target",
        "psi-equal-width-bins",
        "page-hinkley-without-mean",
        "always-retrain",
        "promotion-without-comparison",
    ],
)
def test_a_typical_mistake_loses_only_its_task(grade, todo: str, code: str, expected: str) -> None:
    result = grade(make_submission(done=ALL, replace={todo: code}, lab=LAB06))
    check_id = TODO_CHECK[int(todo[len("todo"):])]
    assert points(result) == {**MAX, check_id: 0}, [c.message for c in result.checks]
    assert expected in message(result, check_id)
