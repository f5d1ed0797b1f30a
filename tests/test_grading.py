"""The grader on Lab 01: full marks, zero, partial credit, tampering, hangs and crashes.

Every test here executes a notebook (about 10-15 s each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.notebook import grade_id
from tests.conftest import LAB01, make_submission, partial_todos, points, solution_code

pytestmark = pytest.mark.slow

MAX = {
    "check_todo1_experiment": 1,
    "check_todo2_params": 2,
    "check_todo3_metrics": 2,
    "check_todo4_figure": 2,
    "check_todo5_model": 3,
}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}


def test_solution_earns_full_marks_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(LAB01.master), "--json", str(out),
         "--feedback-dir", str(tmp_path / "fb")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(out.read_text())
    assert set(result) >= {"path", "lab", "score", "max_score", "checks", "errors"}
    assert result["lab"] == "01_tracking"
    assert (result["score"], result["max_score"]) == (10, 10), result
    assert [c["id"] for c in result["checks"]] == list(MAX)
    assert all(c["passed"] and c["points"] == c["max_points"] == MAX[c["id"]] for c in result["checks"])
    assert result["errors"] == []
    assert "Score: 10 / 10" in proc.stdout
    feedback = (tmp_path / "fb" / "01_tracking.feedback.md").read_text()
    assert "**Score:** 10 / 10" in feedback


def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set()))
    assert (result.score, result.max_score) == (0, 10)
    assert [c.passed for c in result.checks] == [False] * 5
    messages = {c.id: c.message for c in result.checks}
    assert "mlflow.set_experiment" in messages["check_todo1_experiment"]
    assert "mlflow.start_run" in messages["check_todo2_params"]
    assert "mlflow.log_metrics" in messages["check_todo3_metrics"]
    assert "mlflow.log_figure" in messages["check_todo4_figure"]
    assert "log_model" in messages["check_todo5_model"]
    assert sum("NotImplementedError" in e for e in result.errors) == 5


def test_partial_work_earns_exactly_the_points_of_the_done_todos(grade) -> None:
    done = partial_todos(LAB01)
    result = grade(make_submission(done=done))
    expected = {TODO_CHECK[n]: (MAX[TODO_CHECK[n]] if n in done else 0) for n in TODO_CHECK}
    assert points(result) == expected, [c.message for c in result.checks]


# A session of its own, as a careful server launcher makes: killing the kernel's process group
# does not reach it. It names itself, so that it can be found in /proc.
LEFT_SERVER = (
    "import subprocess, sys\n"
    "code = 'import ctypes, time; ctypes.CDLL(None).prctl(15, b\"left-server\", 0, 0, 0); time.sleep(600)'\n"
    "server = subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n"
)
# Without skops_trusted_types the random forest fails to log and leaves a FAILED model in the
# run; the student's correct call, before or after it, must be the one graded. Four failed
# tries: a run lists its models in no particular order, so a check that took the last one
# listed would grade a failed model 4 times out of 5.
FAILED_TRIES = (
    "\nfor _ in range(4):\n"
    "    try:\n"
    "        mlflow.sklearn.log_model(model, name='model', pip_requirements=REQUIREMENTS)\n"
    "    except Exception as exc:\n"
    "        print('this try failed:', type(exc).__name__)\n"
)


def test_tampered_test_cells_failed_attempts_and_a_left_process_are_handled(grade) -> None:
    """One notebook, four things a grader must survive, each in a task of its own: TODO 3 not
    done but its test cell edited to print a pass, TODO 4's test cell deleted, TODO 5's model
    logged next to four failed tries, and a server left running after TODO 1."""
    master = {grade_id(c): c for c in nbformat.read(LAB01.master, as_version=4).cells}
    nb = make_submission(
        done={1, 2, 4, 5},
        replace={"check_todo3_metrics": "print('✔ TODO 3: passed')",
                 "todo5": solution_code(master["todo5"]) + FAILED_TRIES},
        delete={"check_todo4_figure"},
        add_after={"todo1": LEFT_SERVER},
    )
    result = grade(nb)
    assert result.restored == ["check_todo3_metrics (edited)", "check_todo4_figure (deleted)"]
    # The faked check does not pass TODO 3; the deleted one still grades TODO 4; the failed
    # tries do not hide the model; the server is gone.
    assert points(result) == {**MAX, "check_todo3_metrics": 0}, [c.message for c in result.checks]
    alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _named(p, "left-server")]
    assert alive == []


def _named(proc: Path, name: str) -> bool:
    try:
        return (proc / "comm").read_text().strip() == name
    except OSError:
        return False


def test_a_wrong_metric_and_a_cell_that_loops_forever_lose_only_their_tasks(grade) -> None:
    wrong = (
        "metrics = {'rmse': mean_absolute_error(y_test, y_pred), 'mae': mean_absolute_error(y_test, y_pred),"
        " 'r2': r2_score(y_test, y_pred)}\nmlflow.log_metrics(metrics)"
    )
    nb = make_submission(done={1, 2, 5}, replace={"todo3": wrong, "todo4": "while True:\n    pass"})
    result = grade(nb, cell_timeout=15)  # a loaded 2-core machine needs seconds for a real cell
    assert points(result) == {**MAX, "check_todo3_metrics": 0, "check_todo4_figure": 0}
    message = next(c.message for c in result.checks if c.id == "check_todo3_metrics")
    assert "rmse=" in message and "y_test" in message


def test_an_input_transformer_that_neuters_test_cells_earns_nothing_for_undone_work(grade) -> None:
    attack = (
        "def _neuter(lines):\n"
        "    return ['pass\\n'] if any('self_check' in line for line in lines) else lines\n"
        "get_ipython().input_transformers_post.append(_neuter)"
    )
    # TODO 3 not done: its neutered test cell "runs" without error, and still earns nothing,
    # since the grader judges the work itself; the neutering costs the done TODOs nothing either.
    result = grade(make_submission(done={1, 2, 4, 5}, add_after={"setup": attack}))
    assert points(result) == {**MAX, "check_todo3_metrics": 0}, [c.message for c in result.checks]


def test_a_loop_that_swallows_interrupts_keeps_the_points_before_it(grade) -> None:
    stubborn = "import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass"
    nb = make_submission(done={1, 2, 3, 4, 5}, replace={"todo4": stubborn})
    result = grade(nb, cell_timeout=5, total_timeout=30)
    assert points(result) == {**MAX, "check_todo4_figure": 0, "check_todo5_model": 0}
    assert result.errors and ("limit" in result.errors[0] or "time" in result.errors[0])


def test_a_cell_that_kills_the_kernel_costs_only_the_points_after_it(grade) -> None:
    nb = make_submission(done={1, 2, 3, 4, 5}, replace={"todo3": "import os\nos._exit(1)"})
    result = grade(nb)
    assert points(result) == {**MAX, "check_todo3_metrics": 0, "check_todo4_figure": 0, "check_todo5_model": 0}
    assert "kernel died" in result.errors[0]
