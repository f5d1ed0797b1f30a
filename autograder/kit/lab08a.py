"""Lab 08a, a model service: evidence and judgments (no reference computation here).

The student writes the first parts of a small FastAPI service (``svc_model.py``,
``svc_validate.py``, ``svc_metrics.py``, ``svc_audit.py`` in ``SERVICE_DIR``) around the given
wiring (``lab08_app.py``). Evidence, driver and judgments are Lab 08's shared ones
(``autograder.kit.lab08_service``): at grading the service runs as a real process in the sandbox, with
the aliases swapped and the model's files hidden for a few requests, and with no canary, drift
window, rollback or load test (part b's tasks). Part b (``lab08b``) operates the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autograder.kit import lab08_service as lab08
from autograder.kit.checking import Judge
from autograder.kit.lab08_service import SERVICE_DIR, evidence, expected_from_params, import_part, install_app

LAB = "08a_service"
PARAMS = ["EXPERIMENT_NAME", "MODEL_NAME", "SEED", "TEST_SIZE"]
#: Every student-facing sentence of this part's checks (Lab 08's, shared by both parts).
MESSAGES = lab08.MESSAGES

#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_model": (1, lab08.judge_model),
    "check_todo2_validate": (2, lab08.judge_validate),
    "check_todo3_metrics": (3, lab08.judge_metrics),
    "check_todo4_audit": (4, lab08.judge_audit),
}

__all__ = ["CHECKS", "LAB", "PARAMS", "SERVICE_DIR", "evidence", "expected_from_params", "import_part",
           "install_app", "self_check"]


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: the service made of the folder's files, driven in this
    kernel (the grader starts it as a process in its sandbox)."""
    lab08.self_check(check_id, namespace, strict, lab=LAB, checks=CHECKS, params=PARAMS)
