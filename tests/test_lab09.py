"""The grader on Lab 09 (governance and operations on an MLflow server with logins).

Fast tests read a store seeded with the lab's history (``lab09_history``), run the master's
answers on it, and judge: the model card against the registry, the audit trail against the audit
log, the DORA numbers against the references; then each typical mistake costs its own task only
(a made-up metric in a card, a hard-coded audit, DORA figures of another history). The access
and promotion judgments are fed recorded server answers (a viewer who may move @champion, a
promote that uses an admin's client or refuses by user name). The workflow check runs the real
workflow runner on the master's file and on broken ones, against the probe operations.

One test starts the real server (``mlflow server --app-name basic-auth``): the master's grants
and promote.py, then the access and promotion probes, the same code the grader runs in its
sandbox; a grant too strong is caught by the server's answers. Slow tests grade three notebooks
sandboxed on hidden inputs: the solution, the untouched student notebook, and the partial
submission (Tasks 2, 4 and 6) that the nbgrader test shares.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder import store
from autograder.course import LABS
from autograder.kit import lab09, lab09_flow, lab09_history, lab09_server, labkit
from autograder.notebook import grade_id, parameters_of
from autograder.references import lab09 as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code

LAB09 = LABS["09_governance"]
PARAMS = parameters_of(nbformat.read(LAB09.master, as_version=4))
MASTER = {grade_id(c): c for c in nbformat.read(LAB09.master, as_version=4).cells}
MAX = {
    "check_todo1_access": 2,
    "check_todo2_card": 2,
    "check_todo3_promote": 2,
    "check_todo4_audit": 2,
    "check_todo5_dora": 2,
    "check_todo6_workflow": 2,
}
USERS = {
    "data_scientist": PARAMS["DS_USER"],
    "reviewer": PARAMS["REVIEWER_USER"],
    "viewer": PARAMS["VIEWER_USER"],
}
NAMES = {k: PARAMS[k] for k in ("EXPERIMENT_NAME", "AUDIT_EXPERIMENT", "MODEL_NAME")}


def master_function(todo: int, name: str) -> Any:
    """A function the master's TODO cell defines (its ``def`` block only, no side effects)."""
    definitions = re.split(r"^with ", solution_code(MASTER[f"todo{todo}"]), flags=re.MULTILINE)[0]
    assert f"def {name}(" in definitions, f"no def {name} in todo{todo}"
    from datetime import UTC, datetime

    namespace: dict[str, Any] = {"lab09": lab09, "datetime": datetime, "UTC": UTC, **PARAMS}
    exec(definitions, namespace)  # noqa: S102 (the course's own master)
    return namespace[name]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fresh store holding the seeded history of seed 1234 (not the notebook's 42)."""
    work = tmp_path_factory.mktemp("lab09")
    uri = store.fresh_store(work, store.template())
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = labkit.artifact_root_for(uri) or ""
    history = lab09_history.write(uri, 1234, NAMES, work / "ci_runs.json")
    return {"uri": uri, "work": work, "history": history, "params": {**PARAMS, "SEED": 1234}}


def expected(params: dict[str, Any]) -> dict[str, Any]:
    return {**references.expected(labkit.MAIN_DATASET, params), "users": USERS}


# --- The seeded history --------------------------------------------------------------------


def test_history_is_a_function_of_the_seed() -> None:
    assert lab09_history.history(7) == lab09_history.history(7)
    assert lab09_history.history(7)["events"] != lab09_history.history(8)["events"]
    for seed in range(30):
        past = lab09_history.history(seed)
        window = [
            e for e in past["events"] if e["time_ms"] > past["report_end_ms"] - 28 * lab09_history.DAY_MS
        ]
        assert (
            any(e["action"] == "rollback" for e in window)
            and sum(e["action"] == "promote" for e in window) >= 2
        )
        assert past["events"][-1]["time_ms"] <= past["report_end_ms"]


def test_the_store_holds_the_history_as_lab_07_logs_lineage(seeded: dict[str, Any]) -> None:
    ev = lab09.evidence(seeded["uri"], seeded["params"])
    runs = seeded["history"]["runs"]
    assert sorted(ev["versions"], key=int) == [r["version"] for r in runs]
    first = ev["versions"]["1"]
    assert (first["digest"], first["commit"], first["user"]) == (
        runs[0]["digest"],
        runs[0]["commit"],
        runs[0]["user"],
    )
    assert [(e["action"], e["version"]) for e in ev["events"]] == [
        (e["action"], e["version"]) for e in seeded["history"]["events"]
    ]


def test_a_used_store_is_refused_with_one_line(seeded: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="fresh store"):
        lab09_history.write(seeded["uri"], 1, NAMES, seeded["work"] / "again.json")


# --- Task 2: model cards -------------------------------------------------------------------


def test_the_masters_card_matches_the_registry_and_a_made_up_metric_does_not(seeded: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(seeded["uri"])
    model_card = master_function(2, "model_card")
    exp = expected(seeded["params"])
    candidate = exp["candidate"]
    card = model_card(client, PARAMS["MODEL_NAME"], candidate)
    ev = lab09.evidence(seeded["uri"], seeded["params"])
    assert not lab09.judge_card(ev, exp).passed  # no card attached yet
    ev["versions"][candidate]["tags"][lab09.CARD_TAG] = card
    assert lab09.judge_card(ev, exp).passed
    made_up = re.sub(r"^rmse: .*$", "rmse: 12.0000", card, flags=re.MULTILINE)
    ev["versions"][candidate]["tags"][lab09.CARD_TAG] = made_up
    assert "rmse" in lab09.judge_card(ev, exp).message
    other = model_card(client, PARAMS["MODEL_NAME"], "1")  # another version's card, copied
    ev["versions"][candidate]["tags"][lab09.CARD_TAG] = other
    assert "Model version" in lab09.judge_card(ev, exp).message
    ev["versions"][candidate]["tags"][lab09.CARD_TAG] = card.split("## Limitations")[0]
    assert "Limitations" in lab09.judge_card(ev, exp).message


# --- Task 4: the audit trail ---------------------------------------------------------------


def _audit_evidence(seeded: dict[str, Any], rows: Any) -> dict[str, Any]:
    ev = lab09.evidence(seeded["uri"], seeded["params"])
    ev["audit"] = {"run": {"start_time": seeded["history"]["report_end_ms"]}, "rows": lab09._rows(rows)}
    return ev


def test_the_masters_audit_passes_and_a_hard_coded_one_does_not(seeded: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    audit_trail = master_function(4, "audit_trail")
    exp = expected(seeded["params"])
    rows = audit_trail(MlflowClient(seeded["uri"]), PARAMS["MODEL_NAME"])
    assert lab09.judge_audit(_audit_evidence(seeded, rows), exp).passed
    # The answer of the notebook's own seed (what a student who copied the output would have).
    copied = [
        {**r, "version": e["version"]}
        for r, e in zip(rows, lab09_history.history(42)["events"], strict=False)
    ]
    assert not lab09.judge_audit(_audit_evidence(seeded, copied), exp).passed
    promotions_only = [r for r in rows if r["action"] == "promote"]
    assert "rows" in lab09.judge_audit(_audit_evidence(seeded, promotions_only), exp).message
    wrong_trainer = copy.deepcopy(rows)
    wrong_trainer[0]["trained_by"] = wrong_trainer[0]["promoted_by"]
    assert "trained_by" in lab09.judge_audit(_audit_evidence(seeded, wrong_trainer), exp).message


def test_an_audit_of_a_store_whose_history_was_deleted_fails(seeded: dict[str, Any]) -> None:
    exp = expected(seeded["params"])
    ev = _audit_evidence(seeded, [])
    ev["events"] = []
    assert "lost events" in lab09.judge_audit(ev, exp).message


# --- Task 5: DORA and cost -----------------------------------------------------------------


def test_dora_figures_of_another_history_fail() -> None:
    own = {**PARAMS, "SEED": 99}
    exp = expected(own)
    figure = {"decodes": True, "width": 900, "height": 300, "drawn": 0.2, "levels": 40}
    right = {"dora": {"metrics": dict(exp["dora"]), "figure": figure}}
    assert lab09.judge_dora(right, exp).passed
    copied = {"dora": {"metrics": dict(expected(PARAMS)["dora"]), "figure": figure}}
    assert not lab09.judge_dora(copied, exp).passed
    no_plot = {"dora": {"metrics": dict(exp["dora"]), "figure": None}}
    assert "dashboard.png" in lab09.judge_dora(no_plot, exp).message


def test_the_references_count_a_rollback_as_a_failed_change() -> None:
    past = {
        "report_end_ms": 28 * lab09_history.DAY_MS,
        "ci_runs": [],
        "runs": [
            {"version": "1", "commit_ms": 0, "start_ms": -1, "end_ms": 0},
            {"version": "2", "commit_ms": 10 * lab09_history.HOUR_MS, "start_ms": 1, "end_ms": 3_600_001},
        ],
        "events": [
            {"action": "promote", "version": "1", "previous": "", "time_ms": 2 * lab09_history.HOUR_MS},
            {"action": "promote", "version": "2", "previous": "1", "time_ms": 20 * lab09_history.HOUR_MS},
            {"action": "rollback", "version": "1", "previous": "2", "time_ms": 23 * lab09_history.HOUR_MS},
        ],
    }
    values = references.dora(past, 2.0)
    assert values["deployment_frequency"] == 0.5 and values["change_failure_rate"] == 0.5
    assert values["lead_time_hours"] == 6.0 and values["time_to_restore_hours"] == 3.0
    assert values["compute_hours"] == 1.0 and values["cost_usd"] == 2.0


# --- Tasks 1 and 3: recorded server answers --------------------------------------------------


def right_access() -> dict[str, dict[str, str]]:
    return {
        role: {a: "allowed" if ok else "denied" for a, ok in rules.items()}
        for role, rules in lab09.ACCESS.items()
    }


def test_access_judged_on_the_servers_answers() -> None:
    exp = {"users": USERS}
    assert lab09.judge_access({"access": right_access()}, exp).passed
    viewer_edits = right_access()
    viewer_edits["viewer"]["move_champion"] = "allowed"  # EDIT on the model: a viewer who can promote
    assert "viewer could move @champion" in lab09.judge_access({"access": viewer_edits}, exp).message
    scientist_promotes = right_access()
    scientist_promotes["data_scientist"]["move_champion"] = "allowed"
    assert "data scientist" in lab09.judge_access({"access": scientist_promotes}, exp).message
    default_read = right_access()
    default_read["outsider"]["read_experiment"] = "allowed"
    assert "nobody granted" in lab09.judge_access({"access": default_read}, exp).message
    no_users = right_access()
    no_users["reviewer"] = dict.fromkeys(no_users["reviewer"], "login failed")
    assert "create the user 'rui'" in lab09.judge_access({"access": no_users}, exp).message


def right_promote() -> dict[str, Any]:
    refused = "PromotionRefused: no card"
    return {
        "reviewer": "rui",
        "reason": "probe 1",
        "model": "m-probe",
        "steps": {
            "stale": {"version": "3", "raised": refused, "alias": None},
            "none": {"version": "2", "raised": refused, "alias": None},
            "good": {
                "version": "1",
                "raised": None,
                "alias": "1",
                "event": {
                    "action": "promote",
                    "version": "1",
                    "previous": "",
                    "actor": "rui",
                    "reason": "probe 1",
                },
            },
            "ds": {"version": "4", "raised": "MlflowException: 403", "alias": "1"},
            "ds_granted": {"version": "4", "raised": None, "alias": "4"},
        },
    }


def test_promotion_judged_on_what_the_store_shows() -> None:
    exp = {"audit_experiment": PARAMS["AUDIT_EXPERIMENT"]}
    assert lab09.judge_promote({"promote": right_promote()}, exp).passed
    no_card_check = right_promote()
    no_card_check["steps"]["none"] = {"version": "2", "raised": None, "alias": "2"}
    assert "no model card" in lab09.judge_promote({"promote": no_card_check}, exp).message
    stale_accepted = right_promote()
    stale_accepted["steps"]["stale"] = {"version": "3", "raised": None, "alias": "3"}
    assert "stale" in lab09.judge_promote({"promote": stale_accepted}, exp).message
    as_admin = right_promote()  # an admin's client: the data scientist's call goes through
    as_admin["steps"]["ds"] = {"version": "4", "raised": None, "alias": "4"}
    assert "caller's own" in lab09.judge_promote({"promote": as_admin}, exp).message
    by_name = right_promote()  # refusing by user name: still refused once the server allows it
    by_name["steps"]["ds_granted"] = {"version": "4", "raised": "PermissionError: only rui", "alias": "1"}
    assert "let the server decide" in lab09.judge_promote({"promote": by_name}, exp).message
    someone_else = right_promote()
    someone_else["steps"]["good"]["event"]["actor"] = "admin"
    assert "audit.actor" in lab09.judge_promote({"promote": someone_else}, exp).message


# --- Task 6: the workflow against probe operations -------------------------------------------


def workflow_text() -> str:
    first, _, body = solution_code(MASTER["todo6"]).partition("\n")
    assert first.startswith("%%writefile")
    return body


def judge_flow(text: str, tmp_path: Path) -> Any:
    path = tmp_path / "retrain.yml"
    path.write_text(text, encoding="utf-8")
    found = lab09_flow.run(
        path, tmp_path / "work", {"ds": USERS["data_scientist"], "reviewer": USERS["reviewer"]}
    )
    return lab09.judge_workflow({"flow": found}, {"users": USERS})


def test_the_masters_workflow_passes(tmp_path: Path) -> None:
    result = judge_flow(workflow_text(), tmp_path)
    assert result.passed, result.message


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("  workflow_dispatch:\n", "", "workflow_dispatch"),
        ('    - cron: "0 3 * * 1"', '    - cron: "weekly"', "five fields"),
        ("if: failure() && steps.promote.outcome == 'success'", "if: always()", "rollback"),
        ("if: needs.drift.outputs.drifted == 'true'", "if: true", "no drift"),
        ('retrain --batch "${{ vars.BATCH }}"', "retrain --batch data/latest.csv", "--batch"),
        (
            "MLFLOW_TRACKING_USERNAME: ${{ vars.REVIEWER_USER }}\n          MLFLOW_TRACKING_PASSWORD: "
            "${{ secrets.REVIEWER_PASSWORD }}\n        run: python lab09-governance/ops.py promote",
            "MLFLOW_TRACKING_USERNAME: ${{ vars.DS_USER }}\n          MLFLOW_TRACKING_PASSWORD: "
            "${{ secrets.DS_PASSWORD }}\n        run: python lab09-governance/ops.py promote",
            "reviewer",
        ),
    ],
)
def test_a_broken_workflow_fails_with_a_reason(tmp_path: Path, old: str, new: str, says: str) -> None:
    text = workflow_text()
    assert old in text
    result = judge_flow(text.replace(old, new, 1), tmp_path)
    assert not result.passed and says in result.message, result.message


#: A workflow that writes the record of calls itself: it reads the scenario the probe works
#: from, writes the calls a right workflow would make, asks the runner from a script of its own,
#: and runs a copy of the probe. None of it runs an operation.
FORGED_FLOW = """name: retrain
on:
  schedule:
    - cron: "0 3 * * 1"
  workflow_dispatch:
jobs:
  forge:
    runs-on: ubuntu-latest
    steps:
      - shell: python
        env:
          DS: ${{ vars.DS_USER }}
          REVIEWER: ${{ vars.REVIEWER_USER }}
        run: |
          import json, os, pathlib, shutil, socket, subprocess, sys
          here = pathlib.Path("lab09-governance")
          if (here / "scenario.json").is_file():
              s = json.loads((here / "scenario.json").read_text())
              ds, rv = (os.environ["DS"], "ds"), (os.environ["REVIEWER"], "reviewer")
              calls = [("drift", ["--batch", s["batch"]], (None, "none"))]
              if s["drifted"] == "true":
                  calls += [("retrain", ["--batch", s["batch"]], ds), ("promote", ["--run", s["run_id"]], rv),
                            ("verify", ["--version", s["version"], "--max-rmse", s["max_rmse"]], rv)]
                  if s["gate_fails"]:
                      calls.append(("rollback", ["--to", s["previous"], "--reason", "gate"], rv))
              with open(here / "calls.jsonl", "w") as f:
                  for command, args, (user, password) in calls:
                      f.write(json.dumps({"command": command, "args": args, "user": user, "password": password}) + "\\n")
          for name, value in os.environ.items():
              if name.startswith("LAB09") and os.path.exists(value):
                  with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                      s.connect(value)
                      s.sendall(b"?")
                      s.recv(4096)
          shutil.copy(here / "ops.py", "copy.py")
          subprocess.run([sys.executable, "copy.py", "drift", "--batch", "x.csv"], check=False)
"""


def test_a_workflow_cannot_write_the_record_of_calls_itself(tmp_path: Path) -> None:
    """The calls are what the runner saw run (a Python running ops.py), never what a step writes."""
    result = judge_flow(FORGED_FLOW, tmp_path)
    assert not result.passed and "no drift" in result.message, result.message


# --- The real server -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_server_enforces_the_masters_grants_and_refuses_a_too_strong_one(tmp_path: Path) -> None:
    """The master's TODO 1 and promote.py against a real basic-auth server, probed as the grader does."""
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    uri = store.fresh_store(tmp_path, store.template())
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = labkit.artifact_root_for(uri) or ""
    lab09_history.write(uri, 5, NAMES, tmp_path / "ci_runs.json")
    running = lab09_server.start(tmp_path / "server", uri, labkit.artifact_root_for(uri) or "")
    try:
        admin = (running.admin, running.admin_password)
        passwords = {user: secrets.token_urlsafe(12) for user in USERS.values()}
        source = solution_code(MASTER["todo1"]).replace(
            'get_app_client("basic-auth", tracking_uri=SERVER.url)',
            'get_app_client("basic-auth", tracking_uri=URL)',
        )
        namespace = {
            **PARAMS,
            "PASSWORDS": passwords,
            "URL": running.url,
            "get_app_client": get_app_client,
            "MlflowException": __import__("mlflow").exceptions.MlflowException,
            "as_admin": lambda: lab09_server.credentials(*admin),
            "SERVER": running,
        }
        with lab09_server.credentials(*admin):
            client = MlflowClient(running.url)
            namespace.update(
                client=client,
                contextlib=contextlib,
                TRAINING_ID=client.get_experiment_by_name(PARAMS["EXPERIMENT_NAME"]).experiment_id,
                AUDIT_ID=client.get_experiment_by_name(PARAMS["AUDIT_EXPERIMENT"]).experiment_id,
            )
            exec(source, namespace)  # noqa: S102 (the course's own master)
        users = {role: (name, passwords[name]) for role, name in USERS.items()}
        params = {**PARAMS, "SEED": 5}
        with lab09.no_run_links():
            access = lab09.probe_access(running.url, admin, users, params)
        assert lab09.judge_access({"access": access}, {"users": USERS}).passed, access
        promote_file = tmp_path / "gov" / "promote.py"
        promote_file.parent.mkdir()
        promote_file.write_text(solution_code(MASTER["todo3"]).partition("\n")[2], encoding="utf-8")
        os.environ["MLFLOW_TRACKING_URI"] = running.url
        with lab09.no_run_links():
            found = lab09.probe_promote(
                running.url, admin, users, params, lab09.load_promote(promote_file.parent)
            )
        result = lab09.judge_promote({"promote": found}, {"audit_experiment": PARAMS["AUDIT_EXPERIMENT"]})
        assert result.passed, (result.message, found)
        with lab09_server.credentials(*admin):  # the mistake: the viewer gets EDIT on the model
            auth = get_app_client("basic-auth", tracking_uri=running.url)
            lab09._grant(auth, USERS["viewer"], "registered_model", PARAMS["MODEL_NAME"], "EDIT")
        with lab09.no_run_links():
            access = lab09.probe_access(running.url, admin, users, params)
        assert access["viewer"]["move_champion"] == "allowed"
        assert (
            "viewer could move @champion" in lab09.judge_access({"access": access}, {"users": USERS}).message
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        running.stop()
    assert not running.running


def test_the_graders_probe_runs_promote_in_a_process_of_its_own(tmp_path: Path) -> None:
    """What the student's promote prints cannot pass for its answer, and it sees only the caller's login."""
    from types import SimpleNamespace

    from autograder.kit import lab09_probe

    path = tmp_path / "promote.py"
    path.write_text(
        "import os\nprint('{\"raised\": null}')\n\n\n"
        "def promote(client, name, version, reason):\n"
        "    print('{\"raised\": null}')\n"
        "    assert os.environ['MLFLOW_TRACKING_USERNAME'] == 'rui' and client.tracking_uri.endswith(':9')\n"
        "    if version == 'bad':\n"
        "        raise ValueError('no card')\n",
        encoding="utf-8",
    )
    remote = lab09_probe.RemotePromote(path)
    try:
        with lab09_server.credentials("rui", "secret"):
            remote(SimpleNamespace(tracking_uri="http://127.0.0.1:9"), "m", "1", "why")
            with pytest.raises(RuntimeError, match="ValueError: no card"):
                remote(SimpleNamespace(tracking_uri="http://127.0.0.1:9"), "m", "bad", "why")
    finally:
        remote.close()


# --- Sandboxed gradings ----------------------------------------------------------------------


@grading
def test_solution_gets_full_marks(grade: Any) -> None:
    result = grade(nbformat.read(LAB09.master, as_version=4), name="09_governance.ipynb")
    assert points(result) == MAX, [(c.id, c.message) for c in result.checks]


@grading
def test_untouched_notebook_gets_zero(grade: Any) -> None:
    result = grade(nbformat.read(LAB09.student, as_version=4))
    assert result.score == 0, [(c.id, c.message) for c in result.checks]


@grading
def test_partial_submission_earns_only_its_tasks(grade: Any) -> None:
    done = partial_todos(LAB09)
    result = grade(make_submission(done, lab=LAB09))
    earned = {check_id for check_id, p in points(result).items() if p}
    assert earned == {k for k, (todo, _) in lab09.CHECKS.items() if todo in done}, [
        (c.id, c.message) for c in result.checks
    ]


def test_expected_values_are_the_references_on_the_course_data() -> None:
    shipped = json.loads((Path(lab09.__file__).with_name("expected") / "09_governance.json").read_text())
    assert shipped["expected"]["dora"] == pytest.approx(
        references.expected(labkit.MAIN_DATASET, PARAMS)["dora"]
    )
