"""Lab 08b, operating the service in production: evidence and judgments (no reference computation here).

The student writes the canary (``svc_canary.py``), the drift monitor (``svc_drift.py``), the
load test (``loadtest.py``) and the ``Dockerfile`` of the service part a built. The service
starts from the given wiring (``lab08_app.py``) and the kit's given model part
(``lab08_base.py``, in place of part a's Task 1; part a's validation, metrics and audit are
optional parts the wiring skips). Evidence, driver and judgments are Lab 08's shared ones
(``autograder.kit.lab08_service``): at grading the service runs as a real process in the sandbox with
the grader's canary share and drift window, the alias is rolled back under traffic, the
student's load test runs through the grader's relay, and the Dockerfile is linted by hadolint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autograder.kit import lab08_service as lab08
from autograder.kit.checking import Judge
from autograder.kit.lab08_service import (
    LOAD_FILE,
    SERVICE_DIR,
    evidence,
    expected_from_params,
    import_part,
    install_app,
    install_base,
    lint,
)

LAB = "08b_production"
PARAMS = ["EXPERIMENT_NAME", "MODEL_NAME", "SEED", "TEST_SIZE", "CANARY_SHARE", "DRIFT_WINDOW",
          "LOAD_REQUESTS", "LOAD_RUN"]
#: Every student-facing sentence of this part's checks (Lab 08's, shared by both parts).
MESSAGES = lab08.MESSAGES

#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_canary": (1, lab08.judge_canary),
    "check_todo2_drift": (2, lab08.judge_drift),
    "check_todo3_load": (3, lab08.judge_load),
    "check_todo4_docker": (4, lab08.judge_docker),
}

__all__ = ["CHECKS", "LAB", "LOAD_FILE", "PARAMS", "SERVICE_DIR", "evidence", "expected_from_params",
           "import_part", "install_app", "install_base", "lint", "self_check"]


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: the service made of the folder's files, driven in this
    kernel, or the logged load test, or the Dockerfile (the grader starts the service as a
    process in its sandbox, rolls it back under traffic and runs the load test itself)."""
    lab08.self_check(check_id, namespace, strict, lab=LAB, checks=CHECKS, params=PARAMS)
