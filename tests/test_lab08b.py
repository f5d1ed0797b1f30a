"""The grader on Lab 08b (operating the service: a canary and a rollback, a drift gauge, a load
test, a Dockerfile).

Fast tests judge recorded evidence (``lab08b_evidence.json.gz``): the real service app made of
the given wiring, the kit's given model part (``lab08_base.py``) and the master's solution
parts, on a real MLflow store with the set-up's two forests registered, driven with the
grader's driver and hooks (the alias really moved in the store, then ``/reload``), in this
process through FastAPI's ``TestClient`` and as the grader's driver serves it (a real process
started through its launcher, the student's load test run through its relay). Each typical
mistake is one part changed, and costs its own task only: the canary share ignored, a constant
drift gauge, a gauge over every request. The driver catches load-test records made up, records
of half the rows repeated, and a model part of the student's own (it copies the kit's over
it). The notebook's own load-test records and the Dockerfile are judged on hand-made records and
real ``hadolint``.

Slow tests drive and serve live (the recording is not stale), run the notebook's
``running_service`` helper, check that the service cannot forge the driver's answer in the
sandbox, and grade three notebooks sandboxed on hidden inputs: the solution, the untouched
student notebook, and the partial submission (Tasks 1 and 4) the nbgrader test shares.
"""

from __future__ import annotations

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
from autograder.kit import lab08_serve, lab08b, labkit
from autograder.kit import lab08_service as lab08
from autograder.kit.checking import CheckResult
from autograder.notebook import grade_id, parameters_of
from autograder.references import lab08_service as references
from autograder.references import lab08b as part_references
from tests.conftest import grading, make_submission, partial_todos, points, sandbox_slot, solution_code

LAB08B = LABS["08b_production"]
MAX = {"check_todo1_canary": 2, "check_todo2_drift": 2, "check_todo3_load": 2, "check_todo4_docker": 1}
SERVICE_CHECKS = ["check_todo1_canary", "check_todo2_drift"]
LOAD_CHECKS = [*SERVICE_CHECKS, "check_todo3_load"]
PARAMS = parameters_of(nbformat.read(LAB08B.master, as_version=4))
MASTER = {grade_id(c): c for c in nbformat.read(LAB08B.master, as_version=4).cells}
SHARE, WINDOW, TRAFFIC, LOAD = 0.45, 20, 40, 60
RECORDED = Path(__file__).with_name("lab08b_evidence.json.gz")
MAX_TODOS = {todo for todo, _ in lab08b.CHECKS.values()}
#: The parts of the service part b writes (the Dockerfile, TODO 4, is not one).
PART_TODOS = (1, 2, 3)

Changes = dict[int, list[tuple[str, str]]]


def part_source(todo: int) -> tuple[str, str]:
    """(file name, solution source) of the part a TODO cell writes with %%writefile."""
    first, _, body = solution_code(MASTER[f"todo{todo}"]).partition("\n")
    return Path(first.split()[1]).name, body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_served(tmp_path_factory.mktemp("lab08b"))


def make_served(work: Path) -> dict[str, Any]:
    """A store with the set-up's two forests registered (rf-v1 then rf-v2), and a service folder
    with the given wiring and model part and the master's solution parts."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.model_selection import train_test_split

    uri = store.fresh_store(work, store.template())
    labkit.connect(uri)
    mlflow.set_experiment("lab08b-test")
    df = pd.read_csv(labkit.MAIN_DATASET)
    x_train, _, y_train, _ = train_test_split(df[labkit.FEATURES], df[labkit.TARGET],
                                              test_size=PARAMS["TEST_SIZE"], random_state=PARAMS["SEED"])
    forests = references._forests(str(labkit.MAIN_DATASET), PARAMS["SEED"], PARAMS["TEST_SIZE"])
    versions = {}
    for run, model in forests.items():
        with mlflow.start_run(run_name=run):
            info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x_train, y_train),
                                            skops_trusted_types=["sklearn.tree._tree.Tree"],
                                            pip_requirements=["mlflow", "scikit-learn", "skops"])
        versions[run] = str(mlflow.register_model(info.model_uri, PARAMS["MODEL_NAME"]).version)
    folder = work / lab08.SERVICE_DIR
    folder.mkdir()
    lab08b.install_app(folder)
    lab08b.install_base(folder)
    for todo in PART_TODOS:
        name, body = part_source(todo)
        (folder / name).write_text(body, encoding="utf-8")
    x_train.to_csv(folder / lab08.REFERENCE_FILE, index=False)
    rows = lab08.drive_rows(labkit.MAIN_DATASET, PARAMS["SEED"], PARAMS["TEST_SIZE"], TRAFFIC, WINDOW, LOAD)
    frames = {"traffic": pd.DataFrame(rows["traffic"]), "rollback": pd.DataFrame(rows["rollback"][lab08.ROLLBACK_BEFORE:]),
              "load": pd.DataFrame(rows["load"])}
    predictions = {versions[run]: {k: [float(v) for v in model.predict(f)] for k, f in frames.items()}
                   for run, model in forests.items()}
    # As the grader does: the model of the challenger's run serves as champion.
    aliases = {lab08.CHAMPION: versions[lab08.CHALLENGER_RUN], lab08.CHALLENGER: versions[lab08.CHAMPION_RUN]}
    ks = {which: references._ks(x_train, rows[f"drift_{which}"]) for which in ("a", "b")}
    exp = {"aliases": aliases, "rows": rows, "predictions": predictions, "share": SHARE, "window": WINDOW, "ks": ks}
    return {"work": work, "uri": uri, "folder": folder, "exp": exp, "versions": versions, "cache": {}}


def drive_with(served: dict[str, Any], changes: Changes | None = None) -> dict[str, Any]:
    """Drive the service made of the solution parts, with ``changes`` (TODO -> [(old, new)] text
    of its part), as the grader's client does; the service's evidence."""
    key = json.dumps(changes or {}, sort_keys=True)
    if key in served["cache"]:
        return served["cache"][key]
    from fastapi.testclient import TestClient

    folder = served["work"] / f"service-{len(served['cache'])}"
    changed_folder(served, folder, changes)
    db = labkit.sqlite_path(served["uri"])
    for alias, version in served["exp"]["aliases"].items():
        lab08_serve.set_alias(db, PARAMS["MODEL_NAME"], alias, version)
    champion = served["exp"]["aliases"][lab08.CHAMPION]

    def rollback() -> str:
        lab08_serve.set_alias(db, PARAMS["MODEL_NAME"], lab08.CHALLENGER, champion)
        return champion

    audit = folder / "audit.jsonl"
    namespace = {"MODEL_NAME": PARAMS["MODEL_NAME"], "CANARY_SHARE": SHARE, "DRIFT_WINDOW": WINDOW}
    app = lab08.in_kernel_app(folder, namespace, audit)
    with TestClient(app, raise_server_exceptions=False) as http:
        found = lab08.drive(http, served["exp"]["rows"], audit,
                            {"hide_model": lambda: lab08_serve.hidden_artifacts(db), "rollback": rollback})
    served["cache"][key] = found
    return found


def changed_folder(served: dict[str, Any], folder: Path, changes: Changes | None) -> None:
    """A copy of the solution's service folder at ``folder``, with ``changes`` made to its parts
    (TODO 0: the given model part, ``svc_model.py``, replaced by the text given)."""
    shutil.copytree(served["folder"], folder)
    for todo, edits in (changes or {}).items():
        if todo == 0:
            (folder / lab08.PART_FILES[0]).write_text(edits[0][1], encoding="utf-8")
            continue
        name, body = part_source(todo)
        for old, new in edits:
            assert old in body, (todo, old)
            body = body.replace(old, new)
        (folder / name).write_text(body, encoding="utf-8")


def serve_with(served: dict[str, Any], changes: Changes | None = None) -> dict[str, Any]:
    """Serve the solution parts with ``changes`` as the grader's driver does, a real process
    started through the driver's launcher, the student's load test run through its relay (not
    sandboxed here); the service's evidence."""
    key = "serve " + json.dumps(changes or {}, sort_keys=True)
    if key in served["cache"]:
        return served["cache"][key]
    work = served["work"] / f"serve-{len(served['cache'])}"
    changed_folder(served, work / lab08.SERVICE_DIR, changes)
    job = {"model_name": PARAMS["MODEL_NAME"], "aliases": served["exp"]["aliases"], "share": SHARE,
           "window": WINDOW, "rows": served["exp"]["rows"], **part_references.DRIVE}
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


def verdicts(found: dict[str, Any], exp: dict[str, Any], checks: list[str] = SERVICE_CHECKS) -> dict[str, CheckResult]:
    return {check: lab08.judge_safely(lab08b.CHECKS[check][1], {"service": found}, exp) for check in checks}


def failing(results: dict[str, CheckResult]) -> set[str]:
    return {k for k, r in results.items() if not r.passed}


def recorded() -> dict[str, Any]:
    """The evidence of every drive below, recorded by ``python -m tests.test_lab08b`` (the slow
    tests drive and serve them live and check the same verdicts)."""
    return json.loads(gzip.decompress(RECORDED.read_bytes()))


def check_solution(found: dict[str, Any], exp: dict[str, Any]) -> None:
    results = verdicts(found, exp)
    assert failing(results) == set(), {k: r.message for k, r in results.items()}
    assert "rollback under traffic" in results["check_todo1_canary"].message


def test_the_solution_parts_pass_every_service_check() -> None:
    record = recorded()
    check_solution(record["drives"]["solution"], record["exp"])


MISTAKES: dict[str, tuple[Changes, str, str]] = {
    "the canary share ignored": (
        {1: [("rng.random() < share", "rng.random() < 0.05")]},
        "check_todo1_canary", "the challenger"),
    "a constant drift gauge": (
        {2: [(".set(ks_2samp(self.reference[column], recent[column]).statistic)", ".set(0.5)")]},
        "check_todo2_drift", "did not change"),
    "a drift gauge over every request, not the last ones": (
        {2: [("deque(maxlen=size)", "deque()")]},
        # (no validation in part b: the unbounded window still holds the malformed rows, a NaN)
        "check_todo2_drift", "KS statistic"),
}


def check_mistake(mistake: str, found: dict[str, Any], exp: dict[str, Any]) -> None:
    _, check, words = MISTAKES[mistake]
    results = verdicts(found, exp)
    assert failing(results) == {check}, {k: r.message for k, r in results.items()}
    assert words in results[check].message, results[check].message


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.replace(" ", "-"))
def test_each_typical_mistake_costs_its_own_task_only(mistake: str) -> None:
    record = recorded()
    check_mistake(mistake, record["drives"][mistake], record["exp"])


@pytest.mark.slow
def test_live_drives_give_the_recorded_verdicts(served: dict[str, Any]) -> None:
    """The real app, with each mistake, driven now: the verdicts the fast tests check on the
    recording hold live too (and the recording is not stale)."""
    check_solution(drive_with(served), served["exp"])
    for mistake, (changes, _, _) in MISTAKES.items():
        check_mistake(mistake, drive_with(served, changes), served["exp"])


@pytest.mark.slow
def test_the_notebooks_service_is_stopped_when_a_line_in_its_block_fails(served: dict[str, Any]) -> None:
    """The given ``running_service`` of the notebook, run as the notebook runs it: a real
    process on loopback, which answers, then an error inside the ``with`` block: afterwards no
    process of ours is left and nothing listens on the port."""
    import os
    import socket
    import sys
    import time

    import httpx
    import psutil

    namespace: dict[str, Any] = {"os": os, "sys": sys, "time": time, "httpx": httpx,
                                 "TRACKING_URI": served["uri"], "MODEL_NAME": PARAMS["MODEL_NAME"],
                                 "SERVICE": served["folder"]}
    exec(MASTER["service_helpers"].source, namespace)  # the notebook's own helper, as given
    for alias, version in served["exp"]["aliases"].items():
        lab08_serve.set_alias(labkit.sqlite_path(served["uri"]), PARAMS["MODEL_NAME"], alias, version)
    seen: dict[str, Any] = {}
    # Only the processes the block started are the service's: this pytest worker may hold
    # others from earlier tests (a Dask cluster's workers, a kernel), which are not the test's.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    service = namespace["running_service"](0.5, 10, served["work"] / "audit-helper.jsonl")
    with pytest.raises(ZeroDivisionError), service as url:  # the failure happens inside the block
        seen["url"] = url
        seen["health"] = httpx.get(f"{url}/health", timeout=10).status_code
        seen["children"] = [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in before]
        1 / 0  # noqa: B018
    assert seen["health"] == 200 and seen["children"]
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in seen["children"])
    port = int(seen["url"].rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex((lab08.HOST, port)) != 0


def record_all() -> None:
    """Drive the solution and every mistake, serve the solution and the cheats, and write what
    they answered to ``RECORDED``."""
    import tempfile

    live = make_served(Path(tempfile.mkdtemp(prefix="lab08b-record-")))
    drives = {"solution": drive_with(live)}
    drives.update({mistake: drive_with(live, changes) for mistake, (changes, _, _) in MISTAKES.items()})
    serves = {"solution": serve_with(live)}
    serves.update({cheat: serve_with(live, changes) for cheat, changes in CHEATS.items()})
    text = json.dumps({"exp": live["exp"], "drives": drives, "serves": serves}, sort_keys=True) + "\n"
    RECORDED.write_bytes(gzip.compress(text.encode(), mtime=0))


def test_a_service_that_does_not_start_fails_each_service_check_with_its_own_message() -> None:
    found = {"started": False, "error": "NotImplementedError"}
    results = verdicts(found, {}, LOAD_CHECKS)
    assert failing(results) == set(LOAD_CHECKS)
    assert len({r.message for r in results.values()}) == len(LOAD_CHECKS)


# --- The load test (TODO 3), judged on its records -------------------------------------------

ROLES = {"registry": {"roles": {"1": lab08.CHAMPION_RUN, "2": lab08.CHALLENGER_RUN}}}


def load_evidence(share: float = 0.2, n: int = 200, failures: int = 0, stale_after: bool = False) -> dict[str, Any]:
    requests = [{"latency_ms": 10.0 + (i * 7919 % 97), "status": 200,
                 "version": "2" if i % round(1 / share) == 0 else "1"} for i in range(n)]
    rollback = [{"status": 200, "version": "2" if i % 3 == 0 else "1", "after_reload": False} for i in range(9)]
    rollback += [{"status": 200, "version": "2" if stale_after else "1", "after_reload": True} for _ in range(9)]
    for r in rollback[:failures]:
        r["status"] = 500
    latencies = [r["latency_ms"] for r in requests]
    metrics = {"p50_ms": lab08.percentile(latencies, 50), "p95_ms": lab08.percentile(latencies, 95),
               "error_rate": 0.0, "challenger_share": sum(r["version"] == "2" for r in requests) / n,
               "rollback_failures": float(failures)}
    return {**ROLES, "load": {"file": True, "missing": [], "requests": requests, "rollback": rollback,
                              "metrics": metrics}}


LOAD_EXP = lab08.expected_from_params(PARAMS)


def test_a_load_test_whose_metrics_follow_its_records_passes() -> None:
    result = lab08.judge_load(load_evidence(), LOAD_EXP)
    assert result.passed, result.message


def test_records_with_made_up_predictions_fail_task_7() -> None:
    ev = load_evidence()
    exp = {**LOAD_EXP, "load_predictions": {lab08.CHAMPION_RUN: [100.0 + i for i in range(200)],
                                            lab08.CHALLENGER_RUN: [300.0 + i for i in range(200)]}}
    for i, record in enumerate(ev["load"]["requests"]):
        record["prediction"] = (100.0 if record["version"] == "1" else 300.0) + i
    assert lab08.judge_load(ev, exp).passed
    ev["load"]["requests"][7]["prediction"] = 250.0  # not what either model says for row 7
    result = lab08.judge_load(ev, exp)
    assert not result.passed and "request 7" in result.message
    swapped = load_evidence()
    for i, record in enumerate(swapped["load"]["requests"]):  # the other model's answers
        record["prediction"] = (300.0 if record["version"] == "1" else 100.0) + i
    assert not lab08.judge_load(swapped, exp).passed


def test_a_made_up_p95_an_ignored_share_or_a_failed_rollback_fail_task_7() -> None:
    ev = load_evidence()
    ev["load"]["metrics"]["p95_ms"] = 50.0
    assert "p95_ms" in lab08.judge_load(ev, LOAD_EXP).message
    wrong_share = lab08.judge_load(load_evidence(share=0.5), LOAD_EXP)
    assert not wrong_share.passed and "binomial" in wrong_share.message
    failed = lab08.judge_load(load_evidence(failures=2), LOAD_EXP)
    assert not failed.passed and "2 failed requests" in failed.message
    stale = lab08.judge_load(load_evidence(stale_after=True), LOAD_EXP)
    assert not stale.passed and "other than the champion" in stale.message
    short = load_evidence(n=150)
    assert "150 requests" in lab08.judge_load(short, LOAD_EXP).message


# --- The grader's own load test, and its own model part (recorded serves) ----------------------

MADE_UP = "records made up, no request sent"
HALF = "half the rows sent, their records repeated"
OWN_MODEL = "a model part of one's own, which answers 0"
#: Cheats the grader's driver must catch, each a change to the solution's parts (0: the model part).
CHEATS: dict[str, Changes] = {
    MADE_UP: {3: [("    with httpx.Client(timeout=30) as http:\n",
                   '    return [{"latency_ms": 40.0 + i % 9, "status": 200, "version": "1" if i % 3 else "2", '
                   '"prediction": 180.0 + i} for i, _ in enumerate(rows)]\n    with httpx.Client(timeout=30) as http:\n')]},
    HALF: {3: [("            return list(pool.map(call, rows))",
                "            half = list(pool.map(call, rows[: len(rows) // 2]))\n"
                "            return (half * 2)[: len(rows)]")]},
    OWN_MODEL: {0: [("", "def load_models(model_name):\n    return {'champion': {'version': '1', 'model': None}, "
                         "'challenger': {'version': '2', 'model': None}}\n\n\ndef predict(loaded, features):\n"
                         "    return 0.0\n")]},
}


def served_load(found: dict[str, Any], exp: dict[str, Any]) -> CheckResult:
    return lab08.judge_load({"service": found}, exp)


def test_the_solution_served_by_the_driver_passes_every_service_check_and_its_load_test() -> None:
    record = recorded()
    found = record["serves"]["solution"]
    results = verdicts(found, record["exp"], LOAD_CHECKS)
    assert failing(results) == set(), {k: r.message for k, r in results.items()}
    assert found["probe_loads"] == 0 and found["load_test"]["max_in_flight"] >= 2
    assert len(found["load_test"]["relayed"]) == LOAD == len(found["load_test"]["records"])


def test_a_model_part_of_ones_own_is_replaced_by_the_kits_before_the_service_starts() -> None:
    """Part b's model part is given: the driver copies the kit's over the folder's, so a model
    part that answers what it likes serves the real models all the same."""
    record = recorded()
    results = verdicts(record["serves"][OWN_MODEL], record["exp"], LOAD_CHECKS)
    assert failing(results) == set(), {k: r.message for k, r in results.items()}


def test_made_up_records_pass_the_notebooks_own_check_but_not_the_graders_load_test() -> None:
    """Judged on the records the notebook logged, made-up records pass (``load_evidence`` makes
    them up); the grader runs the load test on its own service, and its relay saw no request."""
    assert lab08.judge_load(load_evidence(), LOAD_EXP).passed
    record = recorded()
    result = served_load(record["serves"][MADE_UP], record["exp"])
    assert not result.passed and f"received 0 prediction requests from your load test, for {LOAD} rows" in \
        result.message, result.message
    others = verdicts(record["serves"][MADE_UP], record["exp"])
    assert failing(others) == set(), {k: r.message for k, r in others.items()}


def test_records_of_half_the_rows_repeated_fail_the_graders_load_test() -> None:
    record = recorded()
    result = served_load(record["serves"][HALF], record["exp"])
    assert not result.passed and f"received {LOAD // 2} prediction requests" in result.message, result.message


def solution_load(**changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import copy

    record = recorded()
    found = copy.deepcopy(record["serves"]["solution"])
    found["load_test"].update(changes)
    return found, record["exp"]


def test_a_share_reported_from_the_setting_fails_the_graders_load_test() -> None:
    """CANARY_SHARE written as the share, not measured: the records give another share, and
    records rewritten to fit it no longer say what the service answered."""
    found, exp = solution_load()
    found["load_test"]["summary"]["challenger_share"] = PARAMS["CANARY_SHARE"]
    result = served_load(found, exp)
    assert not result.passed and "challenger_share=0.2" in result.message, result.message
    fitted, exp = solution_load()
    records, challenger = fitted["load_test"]["records"], exp["aliases"][lab08.CHALLENGER]
    for i, r in enumerate(records):
        r["version"] = challenger if i < round(PARAMS["CANARY_SHARE"] * len(records)) else exp["aliases"][lab08.CHAMPION]
    fitted["load_test"]["summary"]["challenger_share"] = sum(r["version"] == challenger for r in records) / len(records)
    result = served_load(fitted, exp)
    assert not result.passed and "the service answered" in result.message, result.message


def test_latencies_below_the_services_or_a_sequential_load_fail_the_graders_load_test() -> None:
    found, exp = solution_load()
    records = found["load_test"]["records"]
    for r in records:
        r["latency_ms"] = 0.1
    found["load_test"]["summary"].update(p50_ms=0.1, p95_ms=0.1)
    result = served_load(found, exp)
    assert not result.passed and "the service alone took" in result.message, result.message
    slow, exp = solution_load()
    for r in slow["load_test"]["records"]:
        r["latency_ms"] *= 50
    latencies = [r["latency_ms"] for r in slow["load_test"]["records"]]
    slow["load_test"]["summary"].update(p50_ms=lab08.percentile(latencies, 50), p95_ms=lab08.percentile(latencies, 95))
    result = served_load(slow, exp)
    assert not result.passed and "median latency" in result.message, result.message
    sequential, exp = solution_load(max_in_flight=1)
    result = served_load(sequential, exp)
    assert not result.passed and "one at a time" in result.message, result.message


def test_a_load_test_that_fails_or_is_missing_fails_task_7_with_its_reason() -> None:
    found, exp = solution_load(error="NameError: name 'np' is not defined")
    assert "NameError" in served_load(found, exp).message
    assert "did not start" in served_load({"started": False, "error": "boom"}, exp).message


@pytest.mark.slow
def test_live_serves_give_the_recorded_verdicts(served: dict[str, Any]) -> None:
    """The driver's real launcher and relay, now: the solution passes, each cheat fails its task."""
    exp = served["exp"]
    solution = verdicts(serve_with(served), exp, LOAD_CHECKS)
    assert failing(solution) == set(), {k: r.message for k, r in solution.items()}
    assert failing(verdicts(serve_with(served, CHEATS[OWN_MODEL]), exp, LOAD_CHECKS)) == set()
    for cheat in (MADE_UP, HALF):
        assert failing(verdicts(serve_with(served, CHEATS[cheat]), exp, LOAD_CHECKS)) == {"check_todo3_load"}


# --- The Dockerfile (TODO 4), linted by the real hadolint ------------------------------------

GOOD_DOCKERFILE = solution_code(MASTER["todo4"]).partition("\n")[2]


def docker_verdict(tmp_path: Path, text: str) -> CheckResult:
    path = tmp_path / "Dockerfile"
    path.write_text(text, encoding="utf-8")
    return lab08.judge_docker({"docker": {"text": text, "hadolint": lab08.lint(path)}}, {})


def test_the_solution_dockerfile_passes_hadolint_and_the_reading(tmp_path: Path) -> None:
    result = docker_verdict(tmp_path, GOOD_DOCKERFILE)
    assert result.passed, result.message


@pytest.mark.parametrize(("old", "new", "words"), [
    ("FROM python:3.11-slim", "FROM python:latest", "DL3007"),
    ("--no-cache-dir ", "", "DL3042"),
    ("USER 10001\n", "", "root"),
    ("USER 10001\n", "ARG RUNNER=root\nUSER $RUNNER\n", "root"),
    ("USER 10001\n", "USER ${NOBODY_KNOWS}\n", "root"),
    ('CMD ["python", "-m", "uvicorn", "--factory", "service:from_env", "--host", "0.0.0.0", "--port", "8000"]',
     "CMD python -m uvicorn --factory service:from_env --host 0.0.0.0", "DL3025"),
    ('"--host", "0.0.0.0", ', "", "0.0.0.0"),
    ("EXPOSE 8000\n", "", "EXPOSE"),
    # A CMD that merely names uvicorn and 0.0.0.0, and an image without the service's files.
    ('CMD ["python", "-m", "uvicorn", "--factory", "service:from_env", "--host", "0.0.0.0", "--port", "8000"]',
     'CMD ["echo", "uvicorn", "0.0.0.0"]', "uvicorn"),
    ('"--factory", "service:from_env", ', "", "service:from_env"),
    ("COPY service.py svc_model.py svc_canary.py svc_drift.py reference.csv ./", "COPY reference.csv ./", "service.py and svc_model.py"),
])
def test_a_dockerfile_mistake_fails_task_4(tmp_path: Path, old: str, new: str, words: str) -> None:
    assert old in GOOD_DOCKERFILE
    result = docker_verdict(tmp_path, GOOD_DOCKERFILE.replace(old, new))
    assert not result.passed and words in result.message, result.message


CMD_LINE = 'CMD ["python", "-m", "uvicorn", "--factory", "service:from_env", "--host", "0.0.0.0", "--port", "8000"]'


@pytest.mark.parametrize(("old", "new"), [
    ("COPY service.py svc_model.py svc_canary.py svc_drift.py reference.csv ./", "COPY --chown=10001 *.py reference.csv ./"),
    ("COPY service.py svc_model.py svc_canary.py svc_drift.py reference.csv ./", "COPY . ."),
    (CMD_LINE, 'ENTRYPOINT ["python", "-m", "uvicorn"]\nCMD ["--factory", "service:from_env", "--host=0.0.0.0"]'),
    (CMD_LINE, 'CMD ["/usr/local/bin/uvicorn", "--factory", "service:from_env", "--host", "0.0.0.0"]'),
    ("WORKDIR /app\n", 'WORKDIR /app\nSHELL ["/bin/bash", "-o", "pipefail", "-c"]\n'),
    ("USER 10001\n", "ARG UID=10001\nUSER ${UID}\n"),
])
def test_other_honest_ways_to_copy_and_start_the_service_pass_task_4(tmp_path: Path, old: str, new: str) -> None:
    assert old in GOOD_DOCKERFILE
    result = docker_verdict(tmp_path, GOOD_DOCKERFILE.replace(old, new))
    assert result.passed, result.message


def test_a_dockerfile_that_is_not_one_is_refused_by_hadolint(tmp_path: Path) -> None:
    result = docker_verdict(tmp_path, "# YOUR CODE HERE\nraise NotImplementedError()\n")
    assert not result.passed and "DL1000" in result.message


# --- Settings ---------------------------------------------------------------------------------


def test_the_grader_settings_are_far_from_the_notebook_and_change_with_the_seed() -> None:
    settings = {references.grader_settings(seed) for seed in range(1000, 1050)}
    assert len(settings) > 20
    for share, window in settings:
        assert 0.3 <= share < 0.5 and share - PARAMS["CANARY_SHARE"] >= 0.1 - 1e-9
        assert 35 <= window < 65 and window != PARAMS["DRIFT_WINDOW"]


# --- Sandboxed gradings ----------------------------------------------------------------------


def result_message(result: Any, check: str) -> str:
    return next(c.message for c in result.checks if c.id == check)


@grading
def test_solution_earns_full_marks_on_fresh_hidden_inputs(grade) -> None:
    result = grade(make_submission(done=set(MAX_TODOS), lab=LAB08B))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB08B), inputs=hidden.hidden_inputs(12345))
    assert (result.score, result.max_score) == (0, sum(MAX.values()))
    assert len({c.message for c in result.checks}) == len(MAX), [c.message for c in result.checks]
    assert "challenger" in result_message(result, "check_todo1_canary")  # the service starts: Task 1 is given


@grading
def test_the_partial_submission_keeps_exactly_its_tasks(grade) -> None:
    done = partial_todos(LAB08B)
    result = grade(make_submission(done=done, lab=LAB08B))  # the nbgrader test grades it too
    earned = {k for k, v in points(result).items() if v}
    assert earned == {k for k, (todo, _) in lab08b.CHECKS.items() if todo in done}, \
        [c.message for c in result.checks]


if __name__ == "__main__":
    record_all()


@pytest.mark.parametrize("trick", ["inline pragma", "global pragma", "config in the folder", "config in HOME"])
def test_hadolint_cannot_be_talked_out_of_its_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       trick: str) -> None:
    """The submission's folder is the sandbox's working folder and its HOME: a .hadolint.yaml
    there, or a pragma in the file, must not silence what hadolint finds."""
    bad = GOOD_DOCKERFILE.replace("FROM python:3.11-slim", "FROM python:latest")
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    if trick == "inline pragma":
        bad = bad.replace("FROM python:latest", "# hadolint ignore=DL3007\nFROM python:latest")
    elif trick == "global pragma":
        bad = "# hadolint global ignore=DL3007\n" + bad
    elif trick == "config in the folder":
        (tmp_path / ".hadolint.yaml").write_text("override:\n  info: [DL3007]\n", encoding="utf-8")
    else:
        (home / ".config" / "hadolint.yaml").write_text("ignored: [DL3007]\n", encoding="utf-8")
    result = docker_verdict(tmp_path, bad)
    assert not result.passed and "DL3007" in result.message, result.message


SHELLCHECKED = GOOD_DOCKERFILE.replace("-r requirements.txt", "-r $(cat requirements.txt)")


@pytest.mark.parametrize(("text", "words"), [
    (SHELLCHECKED, "SC2046"),
    ("# hadolint shell=powershell\n" + SHELLCHECKED, "SC2046"),
    (SHELLCHECKED.replace("WORKDIR /app\n", 'WORKDIR /app\nSHELL ["pwsh", "-c"]\n'), "SHELL"),
])
def test_shellcheck_cannot_be_turned_off(tmp_path: Path, text: str, words: str) -> None:
    """A shell pragma, or a SHELL hadolint cannot check, turned off ShellCheck's findings."""
    result = docker_verdict(tmp_path, text)
    assert not result.passed and words in result.message, result.message


#: A "service" that forges the driver's answer: ``python -m uvicorn`` in the service folder
#: imports this file (the folder comes first on its path), which writes a made-up answer into
#: the driver's own output through /proc, reads the driver's memory where the job (and its
#: nonce) lies, and kills the driver so that its made-up line is the last one.
FORGER = '''
import json, os, signal
driver = os.getppid()
forged = {"service": {"started": True, "forged": True}, "hadolint": {"findings": []}}
for what, mode in (("mem", "rb"), ("fd/1", "a")):
    try:
        with open(f"/proc/{driver}/{what}", mode) as f:
            forged[what] = True
            if mode == "a":
                f.write("\\n" + json.dumps(forged) + "\\n")
    except OSError as exc:
        forged[what] = str(exc)
with open("reached.json", "w") as f:
    json.dump(forged, f)
os.kill(driver, signal.SIGKILL)
'''


@pytest.mark.slow  # (sandboxed, although it takes seconds: the sandboxed tests run in the slow lane)
def test_the_service_cannot_write_or_read_the_drivers_answer(tmp_path: Path) -> None:
    """The service runs as the driver's child, same user, in the same sandbox: the driver must
    not be open to it (/proc/<driver>/fd, /mem, ptrace), and the grader keeps only the line
    with its nonce. Run as the grader runs it: in the sandbox, without capabilities."""
    import sqlite3

    from autograder import sandbox
    from autograder.labspec import SandboxRunner

    sandbox.require()
    folder = tmp_path / lab08.SERVICE_DIR
    folder.mkdir()
    (folder / "uvicorn.py").write_text(FORGER, encoding="utf-8")
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE registered_model_aliases (alias TEXT, version INTEGER, name TEXT)")
    (tmp_path / ".tmp").mkdir()
    uri = labkit.sqlite_uri(db)
    box = sandbox.Sandbox(tmp_path, extra_env={"MLFLOW_TRACKING_URI": uri}, slot=sandbox_slot())
    box.prepare()
    job = {"model_name": "m", "aliases": {"champion": "2", "challenger": "1"}, "share": 0.4, "window": 40,
           "rows": {}, "nonce": "n0nce-of-the-grader", "dockerfile": GOOD_DOCKERFILE}
    done = SandboxRunner(tmp_path, uri, box).run_kit("autograder.kit.lab08_serve", [], json.dumps(job).encode())
    reached = json.loads((folder / "reached.json").read_text(encoding="utf-8"))
    assert reached["mem"] is not True and reached["fd/1"] is not True, reached
    assert "forged" not in done.stdout, done.stdout
    answer = references._answer(done.returncode, done.stdout, done.stderr, job["nonce"])
    assert not (answer.get("service") or {}).get("started"), answer


def test_only_the_line_with_the_grader_s_nonce_is_the_driver_s_answer() -> None:
    mine = json.dumps({"nonce": "abc", "service": {"started": False, "error": "it exited"}})
    forged = json.dumps({"nonce": "guess", "service": {"started": True}})
    for stdout in (f"{mine}\n{forged}\n", f"{forged}\n{mine}\n{{not json\n"):
        assert references._answer(0, stdout, "", "abc")["service"] == {"started": False, "error": "it exited"}
    assert "error" in references._answer(-9, f"{forged}\n", "Killed", "abc")


def test_a_drive_stopped_at_the_time_limit_keeps_the_lint_said_before_it() -> None:
    early = json.dumps({"nonce": "abc", "service": {"started": False, "error": "the drive did not finish"},
                        "hadolint": {"findings": []}})
    answer = references._answer(None, f"{early}\n", "", "abc")
    assert answer["hadolint"] == {"findings": []} and not answer["service"]["started"]
    assert "took longer" in references._answer(None, "", "", "abc")["error"]
