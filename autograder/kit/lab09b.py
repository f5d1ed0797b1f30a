"""Lab 09b, audit and operations on a real MLflow server: set-up, evidence and judgments.

The notebook starts the same server as part a on a store seeded with the lab's history, and
starts from part a's end state without part a's answers: ``govern`` creates the three users
with the grants ``ACCESS`` asks for, attaches the candidate's model card and promotes it as the
reviewer, all with the kit's own code (``lab09_ops``). The student answers the audit question
from the store (Task 1), logs the DORA metrics and cost with a dashboard (Task 2) and writes the
scheduled retraining workflow (Task 3). Evidence and judgments are Lab 09's shared ones
(``autograder.kit.lab09_registry``): the reports are read from the store; at grading the
workflow runs in the sandbox against stand-in operations (``lab09_probe``, ``lab09_flow``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from autograder.kit import lab09_ops, lab09_server
from autograder.kit import lab09_registry as registry
from autograder.kit.checking import Judge
from autograder.kit.lab09_registry import (
    AUDIT_FILE,
    CARD_TAG,
    CI_FILE,
    DASHBOARD_FILE,
    GOVERNANCE_DIR,
    SERVER_DIR,
    dashboard,
    evidence,
    expected_from_params,
    install_ops,
)

LAB = "09b_operations"
PARAMS = [
    "EXPERIMENT_NAME",
    "AUDIT_EXPERIMENT",
    "REPORTS_EXPERIMENT",
    "MODEL_NAME",
    "SEED",
    "PRICE_PER_HOUR",
    "DS_USER",
    "REVIEWER_USER",
    "VIEWER_USER",
    "AUDIT_RUN",
    "DORA_RUN",
]
#: Every student-facing sentence of this part's checks (Lab 09's, shared by both parts).
MESSAGES = registry.MESSAGES
#: Why the set-up's promotion moved @champion (the audit event's reason).
SETUP_REASON = "reviewed: the candidate's card is current"

#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_audit": (1, registry.judge_audit),
    "check_todo2_dora": (2, registry.judge_dora),
    "check_todo3_workflow": (3, registry.judge_workflow),
}

__all__ = [
    "AUDIT_FILE",
    "CHECKS",
    "CI_FILE",
    "DASHBOARD_FILE",
    "GOVERNANCE_DIR",
    "LAB",
    "PARAMS",
    "SERVER_DIR",
    "dashboard",
    "evidence",
    "expected_from_params",
    "govern",
    "install_ops",
    "self_check",
]


def govern(
    running: lab09_server.Server, passwords: Mapping[str, str], candidate: str, namespace: Mapping[str, Any]
) -> str:
    """Part a's end state, made by the kit on the running server: the users ``DS_USER``,
    ``REVIEWER_USER`` and ``VIEWER_USER`` of ``namespace`` with their ``passwords`` and the
    grants of their roles, the ``candidate`` version's model card, and the candidate promoted by
    the reviewer with an audit event. Says what it did, in one line."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    model = namespace["MODEL_NAME"]
    users = {role: user for role, (user, _) in registry._users(namespace).items()}
    with lab09_server.credentials(running.admin, running.admin_password):
        client = MlflowClient(running.url)
        auth = get_app_client("basic-auth", tracking_uri=running.url)
        resources = {
            "training": (
                "experiment",
                client.get_experiment_by_name(namespace["EXPERIMENT_NAME"]).experiment_id,
            ),
            "model": ("registered_model", model),
            "audit": (
                "experiment",
                client.get_experiment_by_name(namespace["AUDIT_EXPERIMENT"]).experiment_id,
            ),
        }
        for role, user in users.items():
            try:
                auth.create_user(user, passwords[user])
            except MlflowException:  # a re-run of the set-up: the user exists
                auth.update_user_password(user, passwords[user])
            for resource, level in registry.role_levels(role).items():
                if level:
                    registry._grant(auth, user, *resources[resource], level)
        client.set_model_version_tag(model, candidate, CARD_TAG, lab09_ops.card(client, model, candidate))
    os.environ["MLFLOW_TRACKING_URI"] = running.url
    reviewer = users["reviewer"]
    with lab09_server.credentials(reviewer, passwords[reviewer]):
        left = lab09_ops.move_champion(
            model, candidate, "promote", SETUP_REASON, namespace["AUDIT_EXPERIMENT"]
        )
    return (
        f"users {', '.join(users.values())} granted their roles; version {candidate} carded and promoted "
        f"by {reviewer} (@champion was version {left or 'none'})"
    )


def self_check(check_id: str, namespace: Mapping[str, Any]) -> None:
    """Run one check from a test cell: the reports are read from the store, the workflow is run
    against stand-in operations."""
    registry.self_check(check_id, namespace, lab=LAB, checks=CHECKS, params=PARAMS)
