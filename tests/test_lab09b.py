"""The grader on Lab 09b (audit and operations on an MLflow server with logins).

Fast tests read a store seeded with the lab's history (``tests/lab09_store.py``), run the
master's audit on it and judge it, and the DORA numbers against the references; each typical
mistake costs its own task only (a hard-coded audit, a deleted history, DORA figures of another
history). The workflow check runs the real workflow runner on the master's file and on broken
ones, against the stand-in operations, and a workflow that forges the record of calls fails.

One test starts the real server and runs part b's given set-up (``lab09b.govern``): the grants
it makes pass part a's access probe, and its promotion leaves the reviewer's audit event. Slow
tests grade three notebooks sandboxed on hidden inputs: the solution, the untouched student
notebook, and the partial submission (Tasks 1 and 3) that the nbgrader test shares.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder.kit import lab09_flow, lab09_history, lab09_server, lab09b, labkit
from autograder.kit import lab09_registry as registry
from autograder.references import lab09b as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code
from tests.lab09_store import LAB09B, PARAMS, USERS, master_cells, master_function, seed_store

MASTER = master_cells(LAB09B)
MAX = {"check_todo1_audit": 2, "check_todo2_dora": 2, "check_todo3_workflow": 2}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fresh store holding the seeded history of seed 1234 (not the notebook's 42)."""
    return seed_store(tmp_path_factory.mktemp("lab09b"), 1234)


def expected(params: dict[str, Any]) -> dict[str, Any]:
    return {**references.expected(labkit.MAIN_DATASET, params), "users": USERS}


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


# --- Task 1: the audit trail ---------------------------------------------------------------


def _audit_evidence(seeded: dict[str, Any], rows: Any) -> dict[str, Any]:
    ev = lab09b.evidence(seeded["uri"], seeded["params"])
    ev["audit"] = {"run": {"start_time": seeded["history"]["report_end_ms"]}, "rows": registry._rows(rows)}
    return ev


def test_the_masters_audit_passes_and_a_hard_coded_one_does_not(seeded: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    audit_trail = master_function(LAB09B, 1, "audit_trail")
    exp = expected(seeded["params"])
    rows = audit_trail(MlflowClient(seeded["uri"]), PARAMS["MODEL_NAME"])
    assert registry.judge_audit(_audit_evidence(seeded, rows), exp).passed
    # The answer of the notebook's own seed (what a student who copied the output would have).
    copied = [
        {**r, "version": e["version"]}
        for r, e in zip(rows, lab09_history.history(42)["events"], strict=False)
    ]
    assert not registry.judge_audit(_audit_evidence(seeded, copied), exp).passed
    promotions_only = [r for r in rows if r["action"] == "promote"]
    assert "rows" in registry.judge_audit(_audit_evidence(seeded, promotions_only), exp).message
    wrong_trainer = copy.deepcopy(rows)
    wrong_trainer[0]["trained_by"] = wrong_trainer[0]["promoted_by"]
    assert "trained_by" in registry.judge_audit(_audit_evidence(seeded, wrong_trainer), exp).message
    no_zone = copy.deepcopy(rows)  # a local time without its zone: not a time the store can match
    no_zone[1]["promoted_at"] = no_zone[1]["promoted_at"].split("+")[0]
    assert (
        "row 1 of 'audit.json' says promoted_at"
        in registry.judge_audit(_audit_evidence(seeded, no_zone), exp).message
    )


def test_an_audit_of_a_store_whose_history_was_deleted_fails(seeded: dict[str, Any]) -> None:
    exp = expected(seeded["params"])
    ev = _audit_evidence(seeded, [])
    ev["events"] = []
    assert "lost events" in registry.judge_audit(ev, exp).message


# --- Task 2: DORA and cost -----------------------------------------------------------------


def test_dora_figures_of_another_history_fail() -> None:
    own = {**PARAMS, "SEED": 99}
    exp = expected(own)
    figure = {"decodes": True, "width": 900, "height": 300, "drawn": 0.2, "levels": 40}
    right = {"dora": {"metrics": dict(exp["dora"]), "figure": figure}}
    assert registry.judge_dora(right, exp).passed
    copied = {"dora": {"metrics": dict(expected(PARAMS)["dora"]), "figure": figure}}
    assert not registry.judge_dora(copied, exp).passed
    no_plot = {"dora": {"metrics": dict(exp["dora"]), "figure": None}}
    assert "dashboard.png" in registry.judge_dora(no_plot, exp).message


def test_the_references_count_a_rollback_as_a_failed_change() -> None:
    hour = lab09_history.HOUR_MS
    past = {
        "report_end_ms": 28 * lab09_history.DAY_MS,
        "ci_runs": [],
        "runs": [
            {"version": "1", "commit_ms": 0, "start_ms": -1, "end_ms": 0},
            {"version": "2", "commit_ms": 10 * hour, "start_ms": 1, "end_ms": 3_600_001},
        ],
        "events": [
            {"action": "promote", "version": "1", "previous": "", "time_ms": 2 * hour},
            {"action": "promote", "version": "2", "previous": "1", "time_ms": 20 * hour},
            {"action": "rollback", "version": "1", "previous": "2", "time_ms": 23 * hour},
        ],
    }
    values = references.dora(past, 2.0)
    assert values["deployment_frequency"] == 0.5 and values["change_failure_rate"] == 0.5
    assert values["lead_time_hours"] == 6.0 and values["time_to_restore_hours"] == 3.0
    assert values["compute_hours"] == 1.0 and values["cost_usd"] == 2.0


def test_expected_values_are_the_references_on_the_course_data() -> None:
    shipped = json.loads((Path(lab09b.__file__).with_name("expected") / "09b_operations.json").read_text())
    assert shipped["expected"]["dora"] == pytest.approx(
        references.expected(labkit.MAIN_DATASET, PARAMS)["dora"]
    )


# --- Task 3: the workflow against stand-in operations ----------------------------------------


def workflow_text() -> str:
    first, _, body = solution_code(MASTER["todo3"]).partition("\n")
    assert first.startswith("%%writefile")
    return body


def judge_flow(text: str, tmp_path: Path) -> Any:
    path = tmp_path / "retrain.yml"
    path.write_text(text, encoding="utf-8")
    found = lab09_flow.run(
        path, tmp_path / "work", {"ds": USERS["data_scientist"], "reviewer": USERS["reviewer"]}
    )
    return registry.judge_workflow({"flow": found}, {"users": USERS})


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
            "logged in as 'dana' with the password of the data scientist; it must log in as the reviewer",
        ),
    ],
)
def test_a_broken_workflow_fails_with_a_reason(tmp_path: Path, old: str, new: str, says: str) -> None:
    text = workflow_text()
    assert old in text
    result = judge_flow(text.replace(old, new, 1), tmp_path)
    assert not result.passed and says in result.message, result.message


#: A workflow that writes the record of calls itself: it reads the scenario the stand-in works
#: from, writes the calls a right workflow would make, asks the runner from a script of its own,
#: and runs a copy of the stand-in. None of it runs an operation.
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


# --- Part b's given set-up on the real server --------------------------------------------------


@pytest.mark.slow
def test_the_set_up_grants_what_part_a_asks_and_promotes_as_the_reviewer(tmp_path: Path) -> None:
    """``lab09b.govern``'s users pass part a's access probe, and its promotion is the reviewer's,
    with the audit event part a's promote() writes."""
    from mlflow import MlflowClient

    seeded = seed_store(tmp_path, 5)
    candidate = seeded["history"]["runs"][-1]["version"]
    running = lab09_server.start(
        tmp_path / "server", seeded["uri"], labkit.artifact_root_for(seeded["uri"]) or ""
    )
    try:
        admin = (running.admin, running.admin_password)
        passwords = {user: secrets.token_urlsafe(12) for user in USERS.values()}
        with registry.no_run_links():
            said = lab09b.govern(running, passwords, candidate, PARAMS)
            users = {role: (name, passwords[name]) for role, name in USERS.items()}
            access = registry.probe_access(running.url, admin, users, {**PARAMS, "SEED": 5})
        assert f"version {candidate} carded and promoted by {USERS['reviewer']}" in said
        assert registry.judge_access({"access": access}, {"users": USERS}).passed, access
        with lab09_server.credentials(*admin):
            client = MlflowClient(running.url)
            assert client.get_model_version_by_alias(PARAMS["MODEL_NAME"], "champion").version == candidate
            card = client.get_model_version(PARAMS["MODEL_NAME"], candidate).tags[registry.CARD_TAG]
            record = registry.version_records(client, PARAMS["MODEL_NAME"])[candidate]
            event = registry.audit_events(client, PARAMS["AUDIT_EXPERIMENT"], PARAMS["MODEL_NAME"])[-1]
        assert registry.card_problem(candidate, card, record) is None
        assert (event["action"], event["version"], event["actor"]) == (
            "promote",
            candidate,
            USERS["reviewer"],
        )
        assert event["previous"] == seeded["history"]["events"][-1]["version"]
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        running.stop()


# --- Sandboxed gradings ----------------------------------------------------------------------


@grading
def test_solution_gets_full_marks(grade: Any) -> None:
    result = grade(nbformat.read(LAB09B.master, as_version=4), name="09b_operations.ipynb")
    assert points(result) == MAX, [(c.id, c.message) for c in result.checks]


@grading
def test_untouched_notebook_gets_zero(grade: Any) -> None:
    result = grade(nbformat.read(LAB09B.student, as_version=4))
    assert result.score == 0, [(c.id, c.message) for c in result.checks]


@grading
def test_partial_submission_earns_only_its_tasks(grade: Any) -> None:
    done = partial_todos(LAB09B)
    result = grade(make_submission(done, lab=LAB09B))
    earned = {check_id for check_id, p in points(result).items() if p}
    assert earned == {k for k, (todo, _) in lab09b.CHECKS.items() if todo in done}, [
        (c.id, c.message) for c in result.checks
    ]
