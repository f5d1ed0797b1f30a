"""Lab 09a, access, model cards and promotion on a real MLflow server: evidence and judgments.

The notebook starts ``mlflow server --app-name basic-auth`` on the lab's store (the seeded
history of ``lab09_history`` in it); the student grants three roles their permissions (Task 1),
generates model cards from the registry (Task 2) and writes ``promote`` (Task 3). Evidence,
judgments and probes are Lab 09's shared ones (``autograder.kit.lab09_registry``): at grading,
``lab09_probe`` starts the server again in the sandbox on the submission's store and users and
asks it what each role may do, and what ``promote`` does with each role's client. Part b
(``lab09b``) audits and operates the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autograder.kit import lab09_registry as registry
from autograder.kit.checking import Judge
from autograder.kit.lab09_registry import (
    CARD_TAG,
    CI_FILE,
    GOVERNANCE_DIR,
    SERVER_DIR,
    card_fields,
    card_markdown,
    evidence,
    expected_from_params,
    whoami,
)

LAB = "09a_access"
PARAMS = [
    "EXPERIMENT_NAME",
    "AUDIT_EXPERIMENT",
    "MODEL_NAME",
    "SEED",
    "DS_USER",
    "REVIEWER_USER",
    "VIEWER_USER",
]
#: Every student-facing sentence of this part's checks (Lab 09's, shared by both parts).
MESSAGES = registry.MESSAGES

#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_access": (1, registry.judge_access),
    "check_todo2_card": (2, registry.judge_card),
    "check_todo3_promote": (3, registry.judge_promote),
}

__all__ = [
    "CARD_TAG",
    "CHECKS",
    "CI_FILE",
    "GOVERNANCE_DIR",
    "LAB",
    "PARAMS",
    "SERVER_DIR",
    "card_fields",
    "card_markdown",
    "evidence",
    "expected_from_params",
    "self_check",
    "whoami",
]


def self_check(check_id: str, namespace: Mapping[str, Any]) -> None:
    """Run one check from a test cell: the access and promotion checks ask the lab's running
    server (``SERVER``), the card check reads its store."""
    registry.self_check(check_id, namespace, lab=LAB, checks=CHECKS, params=PARAMS)
