"""The grader on Lab 04 (registry and serving): full marks, zero, typical mistakes that each
lose exactly their task's points, and no model server left running, even when the serving
cell fails.

Every test here executes the notebook, most of them with a model server (about 30-60 s each).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder.course import LABS
from autograder.notebook import grade_id
from tests.conftest import make_submission, points

pytestmark = pytest.mark.slow

LAB04 = LABS["04_registry"]
MAX = {
    "check_todo1_register": 1,
    "check_todo2_aliases": 2,
    "check_todo3_load": 1,
    "check_todo4_promote": 2,
    "check_todo5_rollback": 2,
    "check_todo6_serve": 2,
}
ALL = {1, 2, 3, 4, 5, 6}
SERVED = "models:/devops-response-time@champion"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"

# TODO 6 as a student might get it wrong.
_COMMAND = (
    'command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL_NAME}@champion",\n'
    '           "--env-manager", "local", "-h", HOST, "-p", str(port)]\n'
)
FAILING_REQUEST = _COMMAND + (
    "request = {'data': sample.values.tolist()}  # the pre-2.0 format: the server answers 400\n"
    "with model_server(command, port) as url:\n"
    "    response = requests.post(f'{url}/invocations', json=request, timeout=30)\n"
    "    response.raise_for_status()\n"
)
LEAKED_SERVER = _COMMAND + (
    "request = {'dataframe_split': sample.to_dict(orient='split')}\n"
    "server = subprocess.Popen(command, env=server_env())  # started, never stopped\n"
    "url = f'http://{HOST}:{port}'\n"
    "deadline = time.monotonic() + 90\n"
    "while not answers(url) and time.monotonic() < deadline:\n"
    "    time.sleep(0.25)\n"
    "response = requests.post(f'{url}/invocations', json=request, timeout=30)\n"
)


def todo6_answered(answer: str) -> str:
    """The student's TODO 6 cell (given lines included) with ``answer`` in place of the stub."""
    stub = next(c.source for c in nbformat.read(LAB04.student, as_version=4).cells if grade_id(c) == "todo6")
    assert STUB in stub
    return stub.replace(STUB, answer.rstrip("\n"))


def probe(path: Path) -> str:
    """A cell that writes the kernel's live model-server child processes to ``path``."""
    return (
        "import json as _json, psutil as _psutil\n"
        "def _servers():\n"
        "    found = []\n"
        "    for child in _psutil.Process().children(recursive=True):\n"
        "        try:\n"
        "            cmd = ' '.join(child.cmdline())\n"
        "            if child.status() != _psutil.STATUS_ZOMBIE and ('serve' in cmd or 'uvicorn' in cmd):\n"
        "                found.append(cmd)\n"
        "        except _psutil.NoSuchProcess:\n"
        "            pass\n"
        "    return found\n"
        f"open({str(path)!r}, 'w').write(_json.dumps(_servers()))\n"
    )


def servers_started_since(since: float) -> list[str]:
    """Live model-server processes (the mlflow CLI or its uvicorn) started after ``since``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] == psutil.STATUS_ZOMBIE or (proc.info["create_time"] or 0) < since - 1:
            continue
        if SERVED in cmd or "mlflow.pyfunc.scoring_server" in cmd:
            found.append(f"{proc.pid}: {cmd}")
    return found


def assert_no_server_left(since: float) -> None:
    deadline = time.monotonic() + 15  # killed processes may take a moment to go
    while (left := servers_started_since(since)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"model servers left running: {left}"


def message(result, check_id: str) -> str:
    return next(c.message for c in result.checks if c.id == check_id)


def test_solution_earns_full_marks_and_stops_its_server(grade, tmp_path: Path) -> None:
    since = time.time()
    alive = tmp_path / "alive.json"
    result = grade(make_submission(done=ALL, add_after={"todo6": probe(alive)}, lab=LAB04))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert (result.score, result.max_score) == (10, 10)
    assert result.errors == []
    assert json.loads(alive.read_text()) == []  # stopped by the notebook, while the kernel ran
    assert_no_server_left(since)


def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB04))
    assert (result.score, result.max_score) == (0, 10)
    assert [c.passed for c in result.checks] == [False] * 6
    assert "mlflow.register_model" in message(result, "check_todo1_register")
    assert "register the two models first" in message(result, "check_todo2_aliases")
    assert "load the champion by alias" in message(result, "check_todo3_load").lower()
    assert "TODO 1" in message(result, "check_todo4_promote")
    assert "TODO 1" in message(result, "check_todo5_rollback")
    assert "serve the champion" in message(result, "check_todo6_serve").lower()
    assert sum("NotImplementedError" in e for e in result.errors) == 6


def test_a_deprecated_stage_instead_of_the_challenger_alias_loses_only_task2(grade) -> None:
    stage = (
        'client.set_registered_model_alias(MODEL_NAME, "champion", old_version.version)\n'
        'client.transition_model_version_stage(MODEL_NAME, new_version.version, "Staging")\n'
        'client.set_model_version_tag(MODEL_NAME, old_version.version, "validation_status", "passed")\n'
        'client.set_model_version_tag(MODEL_NAME, new_version.version, "validation_status", "pending")\n'
    )
    result = grade(make_submission(done=ALL, replace={"todo2": stage}, lab=LAB04))
    assert points(result) == {**MAX, "check_todo2_aliases": 0}, [c.message for c in result.checks]
    text = message(result, "check_todo2_aliases")
    assert "deprecated stage 'Staging'" in text and "set_registered_model_alias" in text


@pytest.mark.parametrize(
    ("rollback", "expected"),
    [
        (
            'current = client.get_model_version_by_alias(MODEL_NAME, "champion")\n'
            "restored = mlflow.register_model(model_infos[IN_SERVICE_RUN].model_uri, MODEL_NAME)\n"
            'client.set_registered_model_alias(MODEL_NAME, "champion", restored.version)\n'
            'client.set_model_version_tag(MODEL_NAME, current.version, "validation_status", "rolled_back")\n',
            "does not register the model again",
        ),
        (
            'current = client.get_model_version_by_alias(MODEL_NAME, "champion")\n'
            'client.set_model_version_tag(MODEL_NAME, current.version, "validation_status", "rolled_back")\n',
            "champion still points to the promoted version 2",
        ),
    ],
    ids=["registers-a-new-version", "alias-not-moved"],
)
def test_a_wrong_rollback_loses_only_task5(grade, rollback: str, expected: str) -> None:
    result = grade(make_submission(done=ALL, replace={"todo5": rollback}, lab=LAB04))
    assert points(result) == {**MAX, "check_todo5_rollback": 0}, [c.message for c in result.checks]
    assert expected in message(result, "check_todo5_rollback")


def test_a_failing_request_loses_only_task6_and_the_server_is_stopped(grade, tmp_path: Path) -> None:
    since = time.time()
    alive = tmp_path / "alive.json"
    nb = make_submission(done=ALL, replace={"todo6": todo6_answered(FAILING_REQUEST)}, add_after={"todo6": probe(alive)}, lab=LAB04)
    result = grade(nb)
    assert points(result) == {**MAX, "check_todo6_serve": 0}, [c.message for c in result.checks]
    assert any(e.startswith("todo6 raised HTTPError") for e in result.errors), result.errors
    assert json.loads(alive.read_text()) == []  # the with block stopped it although the cell failed
    assert_no_server_left(since)


def test_a_server_left_running_fails_task6_and_dies_with_the_kernel(grade) -> None:
    since = time.time()
    result = grade(make_submission(done=ALL, replace={"todo6": todo6_answered(LEAKED_SERVER)}, lab=LAB04))
    assert points(result) == {**MAX, "check_todo6_serve": 0}, [c.message for c in result.checks]
    assert "still answers on port" in message(result, "check_todo6_serve")
    assert_no_server_left(since)
