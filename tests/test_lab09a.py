"""The grader on Lab 09a (access, model cards and promotion on an MLflow server with logins).

Fast tests read a store seeded with the lab's history (``tests/lab09_store.py``), run the
master's card on it and judge it (a made-up metric, another version's card, a card without
limitations each fail). The access and promotion judgments are fed recorded server answers (a
viewer who may move @champion, a promote that uses an admin's client or refuses by user name).

One test starts the real server (``mlflow server --app-name basic-auth``): the master's grants
and promote.py, then the access and promotion probes, the same code the grader runs in its
sandbox; a grant too strong is caught by the server's answers. Slow tests grade three notebooks
sandboxed on hidden inputs: the solution, the untouched student notebook, and the partial
submission (Task 2) that the nbgrader test shares.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder import store
from autograder.kit import lab09_history, lab09_probe, lab09_server, lab09a, labkit
from autograder.kit import lab09_registry as registry
from autograder.references import lab09a as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code
from tests.lab09_store import LAB09A, NAMES, PARAMS, USERS, master_cells, master_function, seed_store

MASTER = master_cells(LAB09A)
MAX = {"check_todo1_access": 2, "check_todo2_card": 2, "check_todo3_promote": 2}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fresh store holding the seeded history of seed 1234 (not the notebook's 42)."""
    return seed_store(tmp_path_factory.mktemp("lab09a"), 1234)


def expected(params: dict[str, Any]) -> dict[str, Any]:
    return {**references.expected(labkit.MAIN_DATASET, params), "users": USERS}


# --- The seeded history --------------------------------------------------------------------


def test_the_store_holds_the_history_as_lab_07_logs_lineage(seeded: dict[str, Any]) -> None:
    ev = lab09a.evidence(seeded["uri"], {k: seeded["params"][k] for k in lab09a.PARAMS})
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
    assert "audit" not in ev and "dora" not in ev  # part a logs no reports


def test_a_used_store_is_refused_with_one_line(seeded: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="fresh store"):
        lab09_history.write(seeded["uri"], 1, NAMES, seeded["work"] / "again.json")


# --- Task 2: model cards -------------------------------------------------------------------


def test_the_masters_card_matches_the_registry_and_a_made_up_metric_does_not(seeded: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(seeded["uri"])
    model_card = master_function(LAB09A, 2, "model_card")
    exp = expected(seeded["params"])
    candidate = exp["candidate"]
    card = model_card(client, PARAMS["MODEL_NAME"], candidate)
    ev = lab09a.evidence(seeded["uri"], seeded["params"])
    assert not registry.judge_card(ev, exp).passed  # no card attached yet
    ev["versions"][candidate]["tags"][registry.CARD_TAG] = card
    assert registry.judge_card(ev, exp).passed
    made_up = re.sub(r"^rmse: .*$", "rmse: 12.0000", card, flags=re.MULTILINE)
    ev["versions"][candidate]["tags"][registry.CARD_TAG] = made_up
    assert "rmse" in registry.judge_card(ev, exp).message
    other = model_card(client, PARAMS["MODEL_NAME"], "1")  # another version's card, copied
    ev["versions"][candidate]["tags"][registry.CARD_TAG] = other
    assert "Model version" in registry.judge_card(ev, exp).message
    ev["versions"][candidate]["tags"][registry.CARD_TAG] = card.split("## Limitations")[0]
    assert "Limitations" in registry.judge_card(ev, exp).message


# --- Tasks 1 and 3: recorded server answers --------------------------------------------------


def right_access() -> dict[str, dict[str, str]]:
    return {
        role: {a: "allowed" if ok else "denied" for a, ok in rules.items()}
        for role, rules in registry.ACCESS.items()
    }


def test_access_judged_on_the_servers_answers() -> None:
    exp = {"users": USERS}
    assert registry.judge_access({"access": right_access()}, exp).passed
    viewer_edits = right_access()
    viewer_edits["viewer"]["move_champion"] = "allowed"  # EDIT on the model: a viewer who can promote
    assert "viewer could move @champion" in registry.judge_access({"access": viewer_edits}, exp).message
    scientist_promotes = right_access()
    scientist_promotes["data_scientist"]["move_champion"] = "allowed"
    assert "data scientist" in registry.judge_access({"access": scientist_promotes}, exp).message
    default_read = right_access()
    default_read["outsider"]["read_experiment"] = "allowed"
    assert "nobody granted" in registry.judge_access({"access": default_read}, exp).message
    reviewer_reads_only = right_access()
    reviewer_reads_only["reviewer"]["write_audit"] = "denied"
    message = registry.judge_access({"access": reviewer_reads_only}, exp).message
    assert "reviewer could not write to the audit log (denied), but should be able to" in message
    no_users = right_access()
    no_users["reviewer"] = dict.fromkeys(no_users["reviewer"], "login failed")
    assert "create the user 'rui'" in registry.judge_access({"access": no_users}, exp).message


def right_promote() -> dict[str, Any]:
    refused = "PromotionRefused: no card"
    event = {"action": "promote", "version": "1", "previous": "", "actor": "rui", "reason": "probe 1"}
    return {
        "reviewer": "rui",
        "reason": "probe 1",
        "model": "m-probe",
        "steps": {
            "stale": {"version": "3", "raised": refused, "alias": None},
            "none": {"version": "2", "raised": refused, "alias": None},
            "good": {"version": "1", "raised": None, "alias": "1", "event": event},
            "ds": {"version": "4", "raised": "MlflowException: 403", "alias": "1"},
            "ds_granted": {"version": "4", "raised": None, "alias": "4"},
        },
    }


def test_promotion_judged_on_what_the_store_shows() -> None:
    exp = {"audit_experiment": PARAMS["AUDIT_EXPERIMENT"]}
    assert registry.judge_promote({"promote": right_promote()}, exp).passed
    no_card_check = right_promote()
    no_card_check["steps"]["none"] = {"version": "2", "raised": None, "alias": "2"}
    assert "no model card" in registry.judge_promote({"promote": no_card_check}, exp).message
    stale_accepted = right_promote()
    stale_accepted["steps"]["stale"] = {"version": "3", "raised": None, "alias": "3"}
    assert "stale" in registry.judge_promote({"promote": stale_accepted}, exp).message
    as_admin = right_promote()  # an admin's client: the data scientist's call goes through
    as_admin["steps"]["ds"] = {"version": "4", "raised": None, "alias": "4"}
    assert "caller's own" in registry.judge_promote({"promote": as_admin}, exp).message
    by_name = right_promote()  # refusing by user name: still refused once the server allows it
    by_name["steps"]["ds_granted"] = {"version": "4", "raised": "PermissionError: only rui", "alias": "1"}
    assert "let the server decide" in registry.judge_promote({"promote": by_name}, exp).message
    someone_else = right_promote()
    someone_else["steps"]["good"]["event"]["actor"] = "admin"
    assert "audit.actor" in registry.judge_promote({"promote": someone_else}, exp).message


def test_a_self_check_without_the_server_says_so() -> None:
    namespace = {**PARAMS, "SERVER": None, "PASSWORDS": {}}
    with pytest.raises(AssertionError, match="server is not running"):
        lab09a.self_check("check_todo1_access", namespace)


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
        with registry.no_run_links():
            access = registry.probe_access(running.url, admin, users, params)
        assert registry.judge_access({"access": access}, {"users": USERS}).passed, access
        promote_file = tmp_path / "gov" / "promote.py"
        promote_file.parent.mkdir()
        promote_file.write_text(solution_code(MASTER["todo3"]).partition("\n")[2], encoding="utf-8")
        os.environ["MLFLOW_TRACKING_URI"] = running.url
        with registry.no_run_links():
            found = registry.probe_promote(
                running.url, admin, users, params, registry.load_promote(promote_file.parent)
            )
        result = registry.judge_promote({"promote": found}, {"audit_experiment": PARAMS["AUDIT_EXPERIMENT"]})
        assert result.passed, (result.message, found)
        with lab09_server.credentials(*admin):  # the mistake: the viewer gets EDIT on the model
            auth = get_app_client("basic-auth", tracking_uri=running.url)
            registry._grant(auth, USERS["viewer"], "registered_model", PARAMS["MODEL_NAME"], "EDIT")
        with registry.no_run_links():
            access = registry.probe_access(running.url, admin, users, params)
        assert access["viewer"]["move_champion"] == "allowed"
        assert (
            "viewer could move @champion"
            in registry.judge_access({"access": access}, {"users": USERS}).message
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        running.stop()
    assert not running.running


def test_the_graders_probe_runs_promote_in_a_process_of_its_own(tmp_path: Path) -> None:
    """What the student's promote prints cannot pass for its answer, and it sees only the caller's login."""
    from types import SimpleNamespace

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
    result = grade(nbformat.read(LAB09A.master, as_version=4), name="09a_access.ipynb")
    assert points(result) == MAX, [(c.id, c.message) for c in result.checks]


@grading
def test_untouched_notebook_gets_zero(grade: Any) -> None:
    result = grade(nbformat.read(LAB09A.student, as_version=4))
    assert result.score == 0, [(c.id, c.message) for c in result.checks]


@grading
def test_partial_submission_earns_only_its_tasks(grade: Any) -> None:
    done = partial_todos(LAB09A)
    result = grade(make_submission(done, lab=LAB09A))
    earned = {check_id for check_id, p in points(result).items() if p}
    assert earned == {k for k, (todo, _) in lab09a.CHECKS.items() if todo in done}, [
        (c.id, c.message) for c in result.checks
    ]
