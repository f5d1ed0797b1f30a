"""Lab 05a, testing an ML model: data validation (TODO 1), the quality gate (TODO 2) and the
behavioural tests (TODO 3). The evidence and judgments are Lab 05's (``lab05``), shared with
Lab 05b; this module says which files and checks are this part's."""

from __future__ import annotations

from typing import Any

from autograder.kit import lab05
from autograder.kit.lab05 import DATA_SCRIPT, GATE_SCRIPT, MESSAGES, PARAMS, TEST_FILE, Part  # noqa: F401

LAB = "05a_testing"
PART = Part(
    lab=LAB,
    todos={DATA_SCRIPT: 1, GATE_SCRIPT: 2, TEST_FILE: 3},
    checks={
        "check_todo1_data": (1, lab05.judge_data),
        "check_todo2_gate": (2, lab05.judge_gate),
        "check_todo3_tests": (3, lab05.judge_tests),
    },
)
CHECKS = PART.checks
evidence = PART.evidence
expected_from_params = PART.expected_from_params


def self_check(check_id: str, namespace: Any) -> None:
    """A test cell's self-check (see ``lab05.Part.self_check``)."""
    PART.self_check(check_id, namespace)
