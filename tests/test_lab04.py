"""The grader on Lab 04 (registry and serving): full marks, zero, typical mistakes that each
lose exactly their task's points, no model server left running, even when the serving cell
fails, and cheats that a check of mere presence would pass: numbers copied from a run on the
course data, tags that claim a promotion and a rollback the aliases never made, and a
serving record without a server. The test split gives its word on the chosen model (the
challenger) only, and the promotion and rollback cells can run twice.

Every test here executes the notebook, most of them with a model server (40-90 s each); each
notebook carries mistakes of different tasks, so that one execution serves several assertions.
"""

from __future__ import annotations

import json
import time

import nbformat
import psutil
import pytest

from autograder import hidden
from autograder.course import LABS, ROOT
from autograder.kit import lab04, lab04_serve
from autograder.notebook import grade_id
from tests.conftest import grading, make_submission, points, solution_code

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
KIT_EXPECTED = ROOT / "autograder" / "kit" / "expected"
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


#: Raised by ``PROBE`` when a model server the notebook started still runs.
LEFT_RUNNING = "MODEL SERVERS LEFT RUNNING"

#: A cell that fails if the kernel still has a live model-server child process (it runs inside
#: the sandbox, where only the submission's folder is writable: it reports by raising).
PROBE = (
    "import psutil as _psutil\n"
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
    "if _servers():\n"
    f"    raise RuntimeError({LEFT_RUNNING!r} + repr(_servers()))\n"
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


@grading
def test_solution_earns_full_marks_and_stops_its_server(grade) -> None:
    since = time.time()
    result = grade(make_submission(done=ALL, add_after={"todo6": PROBE}, lab=LAB04))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert (result.score, result.max_score) == (10, 10)
    assert result.errors == []  # PROBE did not raise: stopped by the notebook, while the kernel ran
    assert "the grader started your command" in message(result, "check_todo6_serve")
    assert_no_server_left(since)


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB04))
    assert (result.score, result.max_score) == (0, 10)
    assert [c.passed for c in result.checks] == [False] * 6
    assert "mlflow.register_model" in message(result, "check_todo1_register")
    assert "register the two models first" in message(result, "check_todo2_aliases")
    assert "set the aliases first (TODO 2)" in message(result, "check_todo3_load")
    assert "TODO 1" in message(result, "check_todo4_promote")
    assert "TODO 1" in message(result, "check_todo5_rollback")
    assert "serve the champion" in message(result, "check_todo6_serve").lower()
    assert sum("NotImplementedError" in e for e in result.errors) == 6


STAGE_INSTEAD_OF_CHALLENGER = (
    'client.set_registered_model_alias(MODEL_NAME, "champion", old_version.version)\n'
    'client.transition_model_version_stage(MODEL_NAME, new_version.version, "Staging")\n'
    'client.set_model_version_tag(MODEL_NAME, old_version.version, "validation_status", "passed")\n'
    'client.set_model_version_tag(MODEL_NAME, new_version.version, "validation_status", "pending")\n'
)
ROLLBACK_TAG_ONLY = (
    'current = client.get_model_version_by_alias(MODEL_NAME, "champion")\n'
    'client.set_model_version_tag(MODEL_NAME, current.version, "validation_status", "rolled_back")\n'
)
ROLLBACK_BY_REGISTERING = (
    'current = client.get_model_version_by_alias(MODEL_NAME, "champion")\n'
    "restored = mlflow.register_model(model_infos[IN_SERVICE_RUN].model_uri, MODEL_NAME)\n"
    'client.set_registered_model_alias(MODEL_NAME, "champion", restored.version)\n'
    'client.set_model_version_tag(MODEL_NAME, current.version, "validation_status", "rolled_back")\n'
)


@grading
def test_a_deprecated_stage_and_a_rollback_that_moves_no_alias_lose_tasks_2_3_and_5(grade) -> None:
    """The stage takes the place of the alias challenger, which TODO 3 loads (the chosen model,
    scored on the test split): that task builds on TODO 2's alias, and says so."""
    nb = make_submission(done=ALL, replace={"todo2": STAGE_INSTEAD_OF_CHALLENGER, "todo5": ROLLBACK_TAG_ONLY},
                         lab=LAB04)
    result = grade(nb)
    lost = {"check_todo2_aliases": 0, "check_todo3_load": 0, "check_todo5_rollback": 0}
    assert points(result) == {**MAX, **lost}, [c.message for c in result.checks]
    text = message(result, "check_todo2_aliases")
    assert "deprecated stage 'Staging'" in text and "set_registered_model_alias" in text
    assert "set the aliases first (TODO 2)" in message(result, "check_todo3_load")
    assert "champion still points to the promoted version 2" in message(result, "check_todo5_rollback")


@grading
def test_a_failing_request_and_a_rollback_that_registers_again_lose_only_tasks_5_and_6(grade) -> None:
    since = time.time()
    nb = make_submission(done=ALL, replace={"todo5": ROLLBACK_BY_REGISTERING, "todo6": todo6_answered(FAILING_REQUEST)},
                         add_after={"todo6": PROBE}, lab=LAB04)
    result = grade(nb)
    lost = {"check_todo5_rollback": 0, "check_todo6_serve": 0}
    assert points(result) == {**MAX, **lost}, [c.message for c in result.checks]
    assert "does not register the model again" in message(result, "check_todo5_rollback")
    assert any(e.startswith("todo6 raised HTTPError") for e in result.errors), result.errors
    assert not any(LEFT_RUNNING in e for e in result.errors), result.errors  # the with block stopped it
    assert_no_server_left(since)


@grading
def test_copied_rmse_and_a_server_left_running_lose_only_tasks_3_and_6(grade) -> None:
    """(a) TODO 3 answered with the challenger's test RMSE on the course data, as a constant:
    right in the self-check on the course data, wrong on the grader's hidden inputs."""
    since = time.time()
    shipped = json.loads((KIT_EXPECTED / "04_registry.json").read_text(encoding="utf-8"))["expected"]["rmse"]
    copied = (
        "challenger_pred = y_test.to_numpy()  # nothing loaded, nothing predicted\n"
        "with mlflow.start_run(run_name=EVAL_RUN):\n"
        f"    mlflow.log_metric('test_rmse', {shipped['rf-large']!r})\n"
    )
    nb = make_submission(done=ALL, replace={"todo3": copied, "todo6": todo6_answered(LEAKED_SERVER)}, lab=LAB04)
    result = grade(nb, inputs=hidden.hidden_inputs(12345))
    lost = {"check_todo3_load": 0, "check_todo6_serve": 0}
    assert points(result) == {**MAX, **lost}, [c.message for c in result.checks]
    assert f"test_rmse={shipped['rf-large']:.4g}" in message(result, "check_todo3_load")
    assert "scores test_rmse=" in message(result, "check_todo3_load")
    assert "still answers on port" in message(result, "check_todo6_serve")
    assert_no_server_left(since)


# (b) Cheats a check of presence would pass: the tags of a promotion and of a rollback, with no
# alias ever moved; and a serving record whose "server" is a command that serves nothing, its
# "answer" computed in the kernel.
PROMOTE_BY_TAGS = (
    'previous = client.get_model_version_by_alias(MODEL_NAME, "champion").version\n'
    'client.set_model_version_tag(MODEL_NAME, new_version.version, "validation_status", "passed")\n'
    'client.set_model_version_tag(MODEL_NAME, new_version.version, "previous_champion", str(previous))\n'
)
ROLLBACK_BY_TAGS = (
    'client.set_model_version_tag(MODEL_NAME, new_version.version, "validation_status", "rolled_back")\n'
)
NO_SERVER = (
    'command = [sys.executable, "-c", "pass", "-m", f"models:/{MODEL_NAME}@champion", "-h", HOST, "-p", str(port)]\n'
    "request = {'dataframe_split': sample.to_dict(orient='split')}\n"
    "class _Answer:\n"
    "    def json(self):\n"
    "        model = mlflow.pyfunc.load_model(f'models:/{MODEL_NAME}@champion')\n"
    "        return {'predictions': model.predict(sample).tolist()}\n"
    "response = _Answer()\n"
)


@grading
def test_tags_without_alias_moves_and_a_serving_record_without_a_server_earn_nothing(grade) -> None:
    nb = make_submission(
        done=ALL,
        replace={"todo4": PROMOTE_BY_TAGS, "todo5": ROLLBACK_BY_TAGS, "todo6": todo6_answered(NO_SERVER)},
        lab=LAB04,
    )
    result = grade(nb, inputs=hidden.hidden_inputs(12345))
    lost = {"check_todo4_promote": 0, "check_todo5_rollback": 0, "check_todo6_serve": 0}
    assert points(result) == {**MAX, **lost}, [c.message for c in result.checks]
    assert "never moved from version 1 to the promoted version 2" in message(result, "check_todo4_promote")
    assert "never moved to the promoted version 2 and back" in message(result, "check_todo5_rollback")
    assert "no server answered" in message(result, "check_todo6_serve")
    assert result.errors == []  # every cell ran and every self-check in the notebook passed


# --- Judgments on evidence written by hand (no notebook runs) --------------------------------

EXP = {**lab04.expected_from_params({"MODEL_NAME": "m", "IN_SERVICE_RUN": "small", "WINNER_RUN": "large",
                                     "EVAL_RUN": "eval", "SERVE_RUN": "serve", "SEED": 1, "TEST_SIZE": 0.25}),
       "rmse": {"small": 40.0, "large": 30.0}, "serve_predictions": {"small": [1.0, 2.0], "large": [3.0, 4.0]}}


def registry(aliases: dict[str, int], moves: list[list] | None, tags1: dict | None = None, tags2: dict | None = None) -> dict:
    return {"name": "m", "exists": True, "aliases": aliases, "moves": moves, "versions": [
        {"version": 1, "role": "small", "tags": tags1 or {"validation_status": "passed"}, "stage": "None"},
        {"version": 2, "role": "large", "tags": tags2 or {}, "stage": "None"}]}


PROMOTED = {"validation_status": "rolled_back", "previous_champion": "1"}
SOLVED_MOVES = [["champion", 1], ["challenger", 2], ["champion", 2], ["champion", 1]]


def test_the_registry_judgments_follow_the_alias_moves_not_the_tags() -> None:
    solved = {"registry": registry({"champion": 1, "challenger": 2}, SOLVED_MOVES, tags2=PROMOTED)}
    for judge in (lab04.judge_aliases, lab04.judge_promote, lab04.judge_rollback):
        assert judge(solved, EXP).passed, judge(solved, EXP).message
    # The same tags and final aliases, but champion never moved: neither promotion nor rollback.
    tags_only = {"registry": registry({"champion": 1, "challenger": 2}, SOLVED_MOVES[:2], tags2=PROMOTED)}
    assert lab04.judge_aliases(tags_only, EXP).passed
    assert not lab04.judge_promote(tags_only, EXP).passed
    assert not lab04.judge_rollback(tags_only, EXP).passed
    # Promoted, never rolled back (the alias stays on 2, only the tag says otherwise).
    stuck = {"registry": registry({"champion": 2, "challenger": 2}, SOLVED_MOVES[:3], tags2=PROMOTED)}
    assert lab04.judge_promote(stuck, EXP).passed
    assert "still points to the promoted version 2" in lab04.judge_rollback(stuck, EXP).message
    # Aliases on the wrong versions.
    swapped = {"registry": registry({"champion": 2, "challenger": 1}, [["champion", 2], ["challenger", 1]])}
    assert "alias 'challenger' points to version 1" in lab04.judge_aliases(swapped, EXP).message
    both = {"registry": registry({"champion": 2, "challenger": 2}, [["champion", 2], ["challenger", 2]],
                                 tags2={"validation_status": "rolled_back", "previous_champion": "2"})}
    assert "the first champion was version 2" in lab04.judge_aliases(both, EXP).message
    assert "previous_champion='2'" in lab04.judge_promote(both, EXP).message
    # A store whose record of moves is gone proves no move (the grader's store always has it).
    erased = {"registry": registry({"champion": 1, "challenger": 2}, None, tags2=PROMOTED)}
    assert "no record of the alias moves" in lab04.judge_promote(erased, EXP).message
    assert "no record of the alias moves" in lab04.judge_rollback(erased, EXP).message


def test_serving_is_judged_on_the_graders_own_rows() -> None:
    recorded = {"file": True, "missing": [], "command": ["python", "-m", "mlflow", "models", "serve", "-m",
                                                         "models:/m@champion", "-p", "5001"],
                "port": 5001, "request_keys": ["dataframe_split"], "request_rows": [{"cpu_usage": 1.0}],
                "response": [1.5], "response_text": "", "recorded_expected": [1.5]}
    reg = registry({"champion": 1, "challenger": 2}, SOLVED_MOVES, tags2=PROMOTED)
    judged = {
        "served": {"predictions": [1.0, 2.0]},
        "no server": {"serve_error": "http://127.0.0.1:4000/ping did not answer (it exited)"},
        "another model": {"predictions": [3.0, 4.0]},
    }
    results = {k: lab04.judge_serve({"registry": reg, "serving": {**recorded, "served": v}}, EXP) for k, v in judged.items()}
    assert results["served"].passed, results["served"].message
    assert "no server answered" in results["no server"].message
    assert "predicts [1.0, 2.0]" in results["another model"].message
    made_up = {**recorded, "response": [99.0], "served": {"predictions": [1.0, 2.0]}}
    assert "the recorded answer is [99.0]" in lab04.judge_serve({"registry": reg, "serving": made_up}, EXP).message
    unserved = dict(recorded)  # no answer from a server the grader started
    assert not lab04.judge_serve({"registry": reg, "serving": unserved}, EXP).passed


def test_the_serving_program_sets_its_own_port_and_reads_the_documented_formats() -> None:
    assert lab04_serve.with_port(["serve", "-p", "5001", "-h", "x"], 7) == ["serve", "-p", "7", "-h", "x"]
    assert lab04_serve.with_port(["serve", "--port=5001"], 7) == ["serve", "--port=7"]
    assert lab04_serve.with_port(["serve"], 7) is None
    row = dict.fromkeys(lab04.labkit.FEATURES, 1.0)
    split = {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}
    assert lab04.request_rows(split) == lab04.request_rows({"inputs": [row]}) == [row]
    assert lab04.request_rows({"data": [list(row.values())]}) is None  # the pre-2.0 format
    assert lab04_serve.request_body([row], "inputs") == {"inputs": [row]}
    assert "dataframe_split" in lab04_serve.request_body([row], None)


def test_the_test_split_scores_the_challenger_not_the_champion() -> None:
    """TODO 3 gives the test split's one word on the chosen model, the challenger: the champion
    it may replace (the model in service, not chosen this week) is not scored on it."""
    reg = registry({"champion": 1, "challenger": 2}, SOLVED_MOVES, tags2=PROMOTED)

    def judged(metrics: dict[str, float]) -> lab04.CheckResult:
        ev = {"registry": reg, "eval_run": {"name": "eval", "metrics": metrics}}
        return lab04.judge_load(ev, EXP)

    assert judged({"test_rmse": 30.0}).passed
    on_champion = judged({"test_rmse": 40.0})
    assert not on_champion.passed and "model of 'small', which was not chosen" in on_champion.message
    assert "metric 'test_rmse'" in judged({"rmse": 30.0}).message
    # The self-check (no references): structure only.
    ev = {"registry": reg, "eval_run": {"name": "eval", "metrics": {"test_rmse": 1.0}}}
    assert "grader checks" in lab04.judge_load(ev, {k: v for k, v in EXP.items() if k != "rmse"}).message


def _master_cell(todo: str) -> str:
    """The answer of a TODO cell as a student who solved it has it: the master's code."""
    master = next(c for c in nbformat.read(LAB04.master, as_version=4).cells if grade_id(c) == todo)
    return solution_code(master)


#: TODO 4 as it was written before the cell guarded against a second run.
UNGUARDED_PROMOTION = (
    'previous = client.get_model_version_by_alias(MODEL_NAME, "champion").version\n'
    'client.set_model_version_tag(MODEL_NAME, new_version.version, "validation_status", "passed")\n'
    'client.set_model_version_tag(MODEL_NAME, new_version.version, "previous_champion", str(previous))\n'
    'client.set_registered_model_alias(MODEL_NAME, "champion", new_version.version)\n'
)
#: TODO 5 as it was written before the cell guarded against a second run (the old master's answer).
UNGUARDED_ROLLBACK = (
    'current = client.get_model_version_by_alias(MODEL_NAME, "champion")\n'
    'client.set_registered_model_alias(MODEL_NAME, "champion", current.tags["previous_champion"])\n'
    'client.set_model_version_tag(MODEL_NAME, current.version, "validation_status", "rolled_back")\n'
)
#: The same, tagging before it moves the alias: a second run tags the version it restored, then fails.
UNGUARDED_ROLLBACK_TAG_FIRST = (
    'current = client.get_model_version_by_alias(MODEL_NAME, "champion")\n'
    'client.set_model_version_tag(MODEL_NAME, current.version, "validation_status", "rolled_back")\n'
    'client.set_registered_model_alias(MODEL_NAME, "champion", current.tags["previous_champion"])\n'
)
REAL_PARAMS = {"EXPERIMENT_NAME": "lab04-registry", "MODEL_NAME": "devops-response-time", "IN_SERVICE_RUN": "rf-small",
               "WINNER_RUN": "rf-large", "EVAL_RUN": "challenger-test", "SERVE_RUN": "serve-champion", "SEED": 42,
               "TEST_SIZE": 0.25}
REAL_EXP = lab04.expected_from_params(REAL_PARAMS)


def registered_store(folder) -> tuple[str, dict]:  # noqa: ANN001 - a pytest tmp_path child
    """A real store (a copy of the grader's migrated template, with the alias-move triggers):
    two versions registered and aliased as TODOs 1 and 2 leave them. Returns its URI and the
    names the TODO cells use."""
    from mlflow import MlflowClient

    from autograder import store

    uri = store.fresh_store(folder, store.template())
    assert lab04.record_alias_moves(uri)
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment(REAL_PARAMS["EXPERIMENT_NAME"])
    name = REAL_PARAMS["MODEL_NAME"]
    client.create_registered_model(name)
    versions = [client.create_model_version(name, f"file:///nowhere/{run}", run_id=client.create_run(
        experiment, run_name=run).info.run_id) for run in ("rf-small", "rf-large")]
    client.set_registered_model_alias(name, "champion", versions[0].version)
    client.set_registered_model_alias(name, "challenger", versions[1].version)
    client.set_model_version_tag(name, versions[0].version, "validation_status", "passed")
    client.set_model_version_tag(name, versions[1].version, "validation_status", "pending")
    return uri, {"client": client, "MODEL_NAME": name, "new_version": versions[1]}


def test_the_promotion_cell_can_run_twice_and_a_bad_tag_message_gives_the_way_out(tmp_path) -> None:  # noqa: ANN001
    """The TODO 4 cell runs twice on a real store. The master's cell finds its own promotion
    and changes nothing; the old, unguarded answer records the new champion as its own
    predecessor, and the self-check's message carries the exact call that puts it right."""

    def promote_twice(uri: str, namespace: dict, cell: str) -> lab04.CheckResult:
        for _ in range(2):
            exec(cell, namespace)  # noqa: S102 - the course's own answer, or a known mistake
        return lab04.judge_promote(lab04.evidence(uri, REAL_PARAMS), REAL_EXP)

    uri, namespace = registered_store(tmp_path / "guarded")
    result = promote_twice(uri, namespace, _master_cell("todo4"))
    assert result.passed, result.message
    moves = lab04.alias_moves(uri, REAL_PARAMS["MODEL_NAME"])
    assert [v for alias, v in moves if alias == "champion"] == [1, 2]  # promoted once, not twice

    uri, namespace = registered_store(tmp_path / "unguarded")
    result = promote_twice(uri, namespace, UNGUARDED_PROMOTION)
    assert not result.passed and "previous_champion='2'" in result.message, result.message
    way_out = result.message.split("run this self-check again: ")[1].rstrip(".")
    assert way_out == "client.set_model_version_tag(MODEL_NAME, '2', 'previous_champion', '1')"
    exec(way_out, namespace)  # noqa: S102 - the call the message tells the student to make
    fixed = lab04.judge_promote(lab04.evidence(uri, REAL_PARAMS), REAL_EXP)
    assert fixed.passed, fixed.message


def test_the_rollback_cell_can_run_twice_and_a_restored_champion_tagged_rolled_back_gets_the_way_out(
        tmp_path) -> None:  # noqa: ANN001
    """On a real store promoted by the master's TODO 4, the TODO 5 cell runs twice. The
    master's cell sees that champion left the promoted version and changes nothing; the old
    answer fails its second run with a KeyError (the restored version names no previous
    champion); an unguarded answer that tags first also tags the version it restored as rolled
    back, which the self-check names, with the exact call that puts it right."""

    def promoted(folder: str) -> tuple[str, dict]:
        uri, namespace = registered_store(tmp_path / folder)
        exec(_master_cell("todo4"), namespace)  # noqa: S102 - the course's own answer
        return uri, namespace

    def rollback(uri: str) -> lab04.CheckResult:
        return lab04.judge_rollback(lab04.evidence(uri, REAL_PARAMS), REAL_EXP)

    uri, namespace = promoted("guarded")
    for _ in range(2):
        exec(_master_cell("todo5"), namespace)  # noqa: S102 - the course's own answer
    result = rollback(uri)
    assert result.passed, result.message
    moves = lab04.alias_moves(uri, REAL_PARAMS["MODEL_NAME"])
    assert [v for alias, v in moves if alias == "champion"] == [1, 2, 1]  # rolled back once, not twice
    assert lab04.judge_promote(lab04.evidence(uri, REAL_PARAMS), REAL_EXP).passed

    uri, namespace = promoted("old")
    exec(UNGUARDED_ROLLBACK, namespace)  # noqa: S102 - the old answer: right the first time
    assert rollback(uri).passed
    with pytest.raises(KeyError, match="previous_champion"):
        exec(UNGUARDED_ROLLBACK, namespace)  # noqa: S102 - and a raw KeyError the second

    uri, namespace = promoted("tag-first")
    exec(UNGUARDED_ROLLBACK_TAG_FIRST, namespace)  # noqa: S102 - a known mistake
    assert rollback(uri).passed
    with pytest.raises(KeyError):
        exec(UNGUARDED_ROLLBACK_TAG_FIRST, namespace)  # noqa: S102
    result = rollback(uri)
    assert not result.passed and "version 1, champion again, has validation_status='rolled_back'" in result.message
    way_out = result.message.split("run this self-check again: ")[1].rstrip(".")
    assert way_out == "client.set_model_version_tag(MODEL_NAME, '1', 'validation_status', 'passed')"
    exec(way_out, namespace)  # noqa: S102 - the call the message tells the student to make
    fixed = rollback(uri)
    assert fixed.passed, fixed.message
