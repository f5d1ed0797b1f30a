"""The grader on Lab 08a (a model service: the models loaded once, validation, Prometheus
metrics, an audit trail).

Fast tests judge recorded evidence (``lab08a_evidence.json.gz``): the real service app made
of the master's solution parts, on a real MLflow store with the set-up's two forests
registered, driven with the grader's driver and hooks (the model's files really hidden), in
this process through FastAPI's ``TestClient`` and as the grader's driver serves it (a real
process started through its launcher, which counts model loads). Each typical mistake is one
part changed, and costs its own task only: the model loaded per request, a ``/health`` that
hard-codes a version, no validation, metrics never incremented, an audit line without real
hashes; a model copied at start-up and loaded from the copy per request passes the hidden store
but not the counted loads. Slow tests drive and serve them live (the recording is not stale)
and grade three notebooks sandboxed on hidden inputs: the solution, the untouched student
notebook, and the partial submission (Tasks 1 and 2) the nbgrader test shares.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder import hidden, store
from autograder.course import LABS
from autograder.kit import lab08_serve, lab08a, labkit
from autograder.kit import lab08_service as lab08
from autograder.kit.checking import CheckResult
from autograder.notebook import grade_id, parameters_of
from autograder.references import lab08_service as shared
from autograder.references import lab08a as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code

LAB08A = LABS["08a_service"]
MAX = {"check_todo1_model": 2, "check_todo2_validate": 2, "check_todo3_metrics": 2, "check_todo4_audit": 1}
CHECKS = list(lab08a.CHECKS)
PARAMS = parameters_of(nbformat.read(LAB08A.master, as_version=4))
MASTER = {grade_id(c): c for c in nbformat.read(LAB08A.master, as_version=4).cells}
TRAFFIC = 40
RECORDED = Path(__file__).with_name("lab08a_evidence.json.gz")
#: What part a's drive leaves out, as the grader's references say.
DRIVE = references.DRIVE

Changes = dict[int, list[tuple[str, str]]]


def part_source(todo: int) -> tuple[str, str]:
    """(file name, solution source) of the part a TODO cell writes with %%writefile."""
    first, _, body = solution_code(MASTER[f"todo{todo}"]).partition("\n")
    return Path(first.split()[1]).name, body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_served(tmp_path_factory.mktemp("lab08a"))


def make_served(work: Path) -> dict[str, Any]:
    """A store with the set-up's two forests registered (rf-v1 then rf-v2), and a service folder
    with the master's solution parts and the given wiring."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.model_selection import train_test_split

    uri = store.fresh_store(work, store.template())
    labkit.connect(uri)
    mlflow.set_experiment("lab08a-test")
    df = pd.read_csv(labkit.MAIN_DATASET)
    x_train, _, y_train, _ = train_test_split(df[labkit.FEATURES], df[labkit.TARGET],
                                              test_size=PARAMS["TEST_SIZE"], random_state=PARAMS["SEED"])
    forests = shared._forests(str(labkit.MAIN_DATASET), PARAMS["SEED"], PARAMS["TEST_SIZE"])
    versions = {}
    for run, model in forests.items():
        with mlflow.start_run(run_name=run):
            info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x_train, y_train),
                                            skops_trusted_types=["sklearn.tree._tree.Tree"],
                                            pip_requirements=["mlflow", "scikit-learn", "skops"])
        versions[run] = str(mlflow.register_model(info.model_uri, PARAMS["MODEL_NAME"]).version)
    folder = work / lab08.SERVICE_DIR
    folder.mkdir()
    lab08a.install_app(folder)
    for todo in MAX_TODOS:
        name, body = part_source(todo)
        (folder / name).write_text(body, encoding="utf-8")
    x_train.to_csv(folder / lab08.REFERENCE_FILE, index=False)
    rows = lab08.drive_rows(labkit.MAIN_DATASET, PARAMS["SEED"], PARAMS["TEST_SIZE"], TRAFFIC, 0)
    frame = pd.DataFrame(rows["traffic"])
    predictions = {versions[run]: {"traffic": [float(v) for v in model.predict(frame)]}
                   for run, model in forests.items()}
    # As the grader does: the model of the challenger's run serves as champion.
    aliases = {lab08.CHAMPION: versions[lab08.CHALLENGER_RUN], lab08.CHALLENGER: versions[lab08.CHAMPION_RUN]}
    exp = {"aliases": aliases, "rows": rows, "predictions": predictions, "share": 0.0, "window": 0}
    return {"work": work, "uri": uri, "folder": folder, "exp": exp, "versions": versions, "cache": {}}


MAX_TODOS = sorted(todo for todo, _ in lab08a.CHECKS.values())


def changed_folder(served: dict[str, Any], folder: Path, changes: Changes | None) -> None:
    """A copy of the solution's service folder at ``folder``, with ``changes`` made to its parts."""
    shutil.copytree(served["folder"], folder)
    for todo, edits in (changes or {}).items():
        name, body = part_source(todo)
        for old, new in edits:
            assert old in body, (todo, old)
            body = body.replace(old, new)
        (folder / name).write_text(body, encoding="utf-8")


def drive_with(served: dict[str, Any], changes: Changes | None = None) -> dict[str, Any]:
    """Drive the service made of the solution parts, with ``changes`` (TODO -> [(old, new)] text
    of its part), in this process, with the grader's driver and its hidden store."""
    key = json.dumps(changes or {}, sort_keys=True)
    if key in served["cache"]:
        return served["cache"][key]
    from fastapi.testclient import TestClient

    folder = served["work"] / f"service-{len(served['cache'])}"
    changed_folder(served, folder, changes)
    db = labkit.sqlite_path(served["uri"])
    for alias, version in served["exp"]["aliases"].items():
        lab08_serve.set_alias(db, PARAMS["MODEL_NAME"], alias, version)
    audit = folder / "audit.jsonl"
    app = lab08.in_kernel_app(folder, {"MODEL_NAME": PARAMS["MODEL_NAME"]}, audit)
    with TestClient(app, raise_server_exceptions=False) as http:
        found = lab08.drive(http, served["exp"]["rows"], audit, {"hide_model": lambda: lab08_serve.hidden_artifacts(db)},
                            drift=False)
    served["cache"][key] = found
    return found


def serve_with(served: dict[str, Any], changes: Changes | None = None) -> dict[str, Any]:
    """Serve the solution parts with ``changes`` as the grader's driver does (a real process
    started through its launcher; not sandboxed here); the service's evidence."""
    key = "serve " + json.dumps(changes or {}, sort_keys=True)
    if key in served["cache"]:
        return served["cache"][key]
    work = served["work"] / f"serve-{len(served['cache'])}"
    changed_folder(served, work / lab08.SERVICE_DIR, changes)
    job = {"model_name": PARAMS["MODEL_NAME"], "aliases": served["exp"]["aliases"], "share": 0.0, "window": 0,
           "rows": served["exp"]["rows"], **DRIVE}
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = served["uri"]
    try:
        found = lab08_serve.serve(job, work)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
    served["cache"][key] = found
    return found


def verdicts(found: dict[str, Any], exp: dict[str, Any]) -> dict[str, CheckResult]:
    return {check: lab08.judge_safely(judge, {"service": found}, exp) for check, (_, judge) in lab08a.CHECKS.items()}


def failing(results: dict[str, CheckResult]) -> set[str]:
    return {k for k, r in results.items() if not r.passed}


def recorded() -> dict[str, Any]:
    """The evidence of every drive below, recorded by ``python -m tests.test_lab08a`` (the slow
    tests drive them live and check the same verdicts)."""
    return json.loads(gzip.decompress(RECORDED.read_bytes()))


def check_solution(found: dict[str, Any], exp: dict[str, Any]) -> None:
    results = verdicts(found, exp)
    assert failing(results) == set(), {k: r.message for k, r in results.items()}


MISTAKES: dict[str, tuple[Changes, str, str]] = {
    "model loaded per request": (
        {1: [('return float(loaded["model"].predict(', f'model = mlflow.pyfunc.load_model(f"models:/{PARAMS["MODEL_NAME"]}/'
              '{loaded[\'version\']}")\n    return float(model.predict(')]},
        "check_todo1_model", "loads the model for each request"),
    "a health that hard-codes the version": (
        {1: [('models[alias] = {"version": version,', 'models[alias] = {"version": "1",')]},
        "check_todo1_model", "never write a version number"),
    "no validation": (
        {2: [("    if not isinstance(payload, dict):", "    return payload\n    if not isinstance(payload, dict):")]},
        "check_todo2_validate", "not 422"),
    "metrics never incremented": (
        {3: [('    metrics["requests"].labels(status=str(status)).inc()\n', "")]},
        "check_todo3_metrics", "count every request"),
    "an audit line without a real hash": (
        {4: [('hashlib.sha256(json.dumps(features, sort_keys=True).encode()).hexdigest()', '"0" * 64')]},
        "check_todo4_audit", "sha256"),
    "an audit line with the input instead of the output": (
        {4: [('"prediction": prediction}', '"prediction": features}')]},
        "check_todo4_audit", "no audit line records"),
}

COPIED = "the model copied at start-up, loaded from the copy per request"
#: A cheat the grader's driver must catch: the copy lies in the service's folder (in tmp_path).
CHEATS: dict[str, Changes] = {
    COPIED: {1: [('models[alias] = {"version": version, "model": mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")}',
                  'uri = f"models:/{model_name}/{version}"\n        models[alias] = {"version": version, '
                  '"model": mlflow.pyfunc.load_model(uri), "path": mlflow.artifacts.download_artifacts(uri, '
                  'dst_path=__import__("tempfile").mkdtemp(dir=__import__("os").path.dirname(__file__)))}'),
                 ('return float(loaded["model"].predict(', 'return float(mlflow.pyfunc.load_model(loaded["path"]).predict(')]},
}


def check_mistake(mistake: str, found: dict[str, Any], exp: dict[str, Any]) -> None:
    _, check, words = MISTAKES[mistake]
    results = verdicts(found, exp)
    assert failing(results) == {check}, {k: r.message for k, r in results.items()}
    assert words in results[check].message, results[check].message


def record_all() -> None:
    """Drive the solution and every mistake, serve the solution and the cheat, and write what
    they answered to ``RECORDED``."""
    import tempfile

    live = make_served(Path(tempfile.mkdtemp(prefix="lab08a-record-")))
    drives = {"solution": drive_with(live), COPIED: drive_with(live, CHEATS[COPIED])}
    drives.update({mistake: drive_with(live, changes) for mistake, (changes, _, _) in MISTAKES.items()})
    serves = {"solution": serve_with(live), COPIED: serve_with(live, CHEATS[COPIED])}
    text = json.dumps({"exp": live["exp"], "drives": drives, "serves": serves}, sort_keys=True) + "\n"
    RECORDED.write_bytes(gzip.compress(text.encode(), mtime=0))


# --- The service, judged on recorded drives --------------------------------------------------


def test_the_solution_parts_pass_every_check_driven_and_served() -> None:
    record = recorded()
    check_solution(record["drives"]["solution"], record["exp"])
    check_solution(record["serves"]["solution"], record["exp"])
    assert record["serves"]["solution"]["probe_loads"] == 0
    assert "drift_a" not in record["serves"]["solution"] and "rollback" not in record["serves"]["solution"]


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.replace(" ", "-"))
def test_each_typical_mistake_costs_its_own_task_only(mistake: str) -> None:
    record = recorded()
    check_mistake(mistake, record["drives"][mistake], record["exp"])


def test_a_422_that_names_every_field_in_its_message_names_none() -> None:
    """A validation that says "one of cpu_usage, memory_usage, ... is wrong" for any bad request
    must name the wrong field as its answer's field, not merely mention all of them."""
    record = recorded()
    found = copy.deepcopy(record["drives"]["solution"])
    every = ", ".join(labkit.FEATURES)
    for case in found["malformed"]:
        if case["field"]:
            case["text"] = json.dumps({"detail": {"field": None, "message": f"one of {every} is wrong"}},
                                      separators=(",", ":"))
    results = verdicts(found, record["exp"])
    assert failing(results) == {"check_todo2_validate"}, {k: r.message for k, r in results.items()}
    assert "does not name the field" in results["check_todo2_validate"].message


def test_a_model_copied_and_loaded_per_request_passes_the_hidden_store_but_not_the_counted_loads() -> None:
    """Hiding the store's artifacts alone lets a copy made at start-up keep answering; the
    driver's launcher counts every call of MLflow's loaders after start-up."""
    record = recorded()
    hidden_only = verdicts(record["drives"][COPIED], record["exp"])
    assert failing(hidden_only) == set(), {k: r.message for k, r in hidden_only.items()}
    counted = verdicts(record["serves"][COPIED], record["exp"])
    assert failing(counted) == {"check_todo1_model"}, {k: r.message for k, r in counted.items()}
    assert "loaded" in counted["check_todo1_model"].message and record["serves"][COPIED]["probe_loads"] >= 1


def test_a_service_that_does_not_start_fails_each_check_with_its_own_message() -> None:
    results = verdicts({"started": False, "error": "NotImplementedError"}, {})
    assert failing(results) == set(CHECKS)
    assert len({r.message for r in results.values()}) == len(CHECKS)


@pytest.mark.slow
def test_live_drives_and_serves_give_the_recorded_verdicts(served: dict[str, Any]) -> None:
    """The real app, with each mistake, driven now, and the driver's real launcher: the
    verdicts the fast tests check on the recording hold live too."""
    check_solution(drive_with(served), served["exp"])
    for mistake, (changes, _, _) in MISTAKES.items():
        check_mistake(mistake, drive_with(served, changes), served["exp"])
    check_solution(serve_with(served), served["exp"])
    assert failing(verdicts(serve_with(served, CHEATS[COPIED]), served["exp"])) == {"check_todo1_model"}


# --- Inputs and answers ----------------------------------------------------------------------


def test_the_drive_rows_follow_the_hidden_data() -> None:
    ours = lab08.drive_rows(labkit.MAIN_DATASET, 42, 0.25, 10, 5)
    other = hidden.hidden_inputs(12345)
    theirs = lab08.drive_rows(other.dataset, 42, 0.25, 10, 5)
    assert ours["traffic"] != theirs["traffic"] and ours["drift_b"] != theirs["drift_b"]
    assert all(isinstance(r["concurrent_users"], int) and isinstance(r["cpu_usage"], float) for r in ours["traffic"])


def test_an_answer_of_megabytes_keeps_only_its_fields_cut_short() -> None:
    import httpx

    large = httpx.Response(200, json={"prediction": 1.5, "version": "9" * 10**4, "junk": ["x"] * 10**4})
    kept = lab08._answer(large)
    assert kept["body"] == {"prediction": 1.5, "version": "9" * lab08.MAX_FIELD}
    assert len(kept["text"]) <= 300
    huge = httpx.Response(200, json={"prediction": 1.5, "junk": "y" * 2 * lab08.MAX_TEXT})
    assert lab08._answer(huge)["body"] is None  # not even parsed


def test_the_metrics_page_is_read_as_text_and_garbage_is_refused() -> None:
    text = '# TYPE predict_requests counter\npredict_requests_total{status="200"} 3.0\n'
    assert lab08.metric_samples(text) == {'predict_requests_total{status="200"}': 3.0}
    assert lab08.metric_samples("not { a metrics page") is None


def test_part_a_drives_no_canary_drift_rollback_or_load_test() -> None:
    exp = references.expected(labkit.MAIN_DATASET, PARAMS)
    assert (exp["share"], exp["window"]) == (0.0, 0) and "load_requests" not in exp
    assert set(references.DRIVE) == {"drift", "rollback", "load_test"} and not any(references.DRIVE.values())


# --- Sandboxed gradings ----------------------------------------------------------------------


def result_message(result: Any, check: str) -> str:
    return next(c.message for c in result.checks if c.id == check)


@grading
def test_solution_earns_full_marks_on_fresh_hidden_inputs(grade) -> None:
    result = grade(make_submission(done=set(MAX_TODOS), lab=LAB08A))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB08A), inputs=hidden.hidden_inputs(12345))
    assert (result.score, result.max_score) == (0, sum(MAX.values()))
    assert len({c.message for c in result.checks}) == len(MAX), [c.message for c in result.checks]
    assert "load_models" in result_message(result, "check_todo1_model") or "NotImplementedError" in \
        result_message(result, "check_todo1_model")


@grading
def test_the_partial_submission_keeps_exactly_its_tasks(grade) -> None:
    done = partial_todos(LAB08A)
    result = grade(make_submission(done=done, lab=LAB08A))  # the nbgrader test grades it too
    earned = {k for k, v in points(result).items() if v}
    assert earned == {k for k, (todo, _) in lab08a.CHECKS.items() if todo in done}, \
        [c.message for c in result.checks]


if __name__ == "__main__":
    record_all()
