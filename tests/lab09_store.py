"""Lab 09's seeded registry and the masters' answers, for the fast tests of both parts (09a, 09b).

A fresh store holding the history ``lab09_history`` writes from a seed other than the notebook's,
read back by the kit's own evidence; a master's function is taken from its TODO cell (the
``def`` block only, no side effects).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat

from autograder import store
from autograder.course import LABS, Lab
from autograder.kit import lab09_history, lab09_registry, lab09a, lab09b, labkit
from autograder.notebook import grade_id, parameters_of
from tests.conftest import solution_code

LAB09A, LAB09B = LABS["09a_access"], LABS["09b_operations"]
#: Part b's parameters hold part a's and the reports'.
PARAMS = parameters_of(nbformat.read(LAB09B.master, as_version=4))
USERS = {
    "data_scientist": PARAMS["DS_USER"],
    "reviewer": PARAMS["REVIEWER_USER"],
    "viewer": PARAMS["VIEWER_USER"],
}
NAMES = {k: PARAMS[k] for k in ("EXPERIMENT_NAME", "AUDIT_EXPERIMENT", "MODEL_NAME")}


def master_cells(lab: Lab) -> dict[str | None, Any]:
    """grade_id -> cell of a part's master."""
    return {grade_id(c): c for c in nbformat.read(lab.master, as_version=4).cells}


def master_function(lab: Lab, todo: int, name: str) -> Any:
    """A function the master's TODO cell defines (its ``def`` block only, no side effects)."""
    definitions = re.split(r"^with ", solution_code(master_cells(lab)[f"todo{todo}"]), flags=re.MULTILINE)[0]
    assert f"def {name}(" in definitions, f"no def {name} in todo{todo}"
    from datetime import UTC, datetime

    namespace: dict[str, Any] = {
        "lab09a": lab09a,
        "lab09b": lab09b,
        "datetime": datetime,
        "UTC": UTC,
        **PARAMS,
    }
    exec(definitions, namespace)  # noqa: S102 (the course's own master)
    return namespace[name]


def seed_store(work: Path, seed: int) -> dict[str, Any]:
    """A fresh store in ``work`` holding the seeded history of ``seed``."""
    uri = store.fresh_store(work, store.template())
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = labkit.artifact_root_for(uri) or ""
    history = lab09_history.write(uri, seed, NAMES, work / lab09_registry.CI_FILE)
    return {"uri": uri, "work": work, "history": history, "params": {**PARAMS, "SEED": seed}}
