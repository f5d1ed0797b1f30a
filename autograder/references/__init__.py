"""The trusted half of each lab: how its expected values are computed, on any inputs.

Never shipped to students and never visible inside a sandbox: these functions hold the
answers of the TODOs (a metric's recipe, a statistic's formula). Each lab module exposes
``SPEC``, a :class:`autograder.labspec.LabSpec`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autograder.labspec import LabSpec

#: Every lab the grader can grade, and the module that declares it (``SPEC``). Imported on
#: demand: a grading needs one lab's references, not six.
MODULES: dict[str, str] = {
    "01_tracking": "autograder.references.lab01",
    "02_tuning": "autograder.references.lab02",
    "03a_candidates": "autograder.references.lab03a",
    "03b_selection": "autograder.references.lab03b",
    "04_registry": "autograder.references.lab04",
    "05a_testing": "autograder.references.lab05a",
    "05b_pipeline": "autograder.references.lab05b",
    "06a_drift": "autograder.references.lab06a",
    "06b_retraining": "autograder.references.lab06b",
    "07a_pipeline": "autograder.references.lab07a",
    "07b_lineage": "autograder.references.lab07b",
    "08a_service": "autograder.references.lab08a",
    "08b_production": "autograder.references.lab08b",
    "09a_access": "autograder.references.lab09a",
    "09b_operations": "autograder.references.lab09b",
}


def spec(lab_id: str) -> LabSpec:
    """The declared spec of one lab."""
    return importlib.import_module(MODULES[lab_id]).SPEC
