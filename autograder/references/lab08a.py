"""Lab 08a references: the two forests of the notebook's set-up cell, retrained on the grader's
inputs (each one's predictions on the grader's rows). The service is driven by Lab 08's shared
driver with no canary, drift window, rollback or load test: part a's service has none."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab08_service as lab08
from autograder.kit import lab08a, labkit
from autograder.labspec import LabSpec, SandboxRunner
from autograder.references import lab08_service as shared

#: What part a's drive leaves out (the driver's job keys).
DRIVE = {"drift": False, "rollback": False, "load_test": False}


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs."""
    import pandas as pd

    seed, test_size = int(params["SEED"]), float(params["TEST_SIZE"])
    rows = lab08.drive_rows(data_path, seed, test_size, lab08.GRADER_TRAFFIC, 0)
    frame = pd.DataFrame(rows["traffic"], columns=labkit.FEATURES)
    return {
        **lab08.expected_from_params(params),
        "share": 0.0,
        "window": 0,
        "role_predictions": {run: {"traffic": [float(v) for v in model.predict(frame)]}
                             for run, model in shared._forests(str(data_path), seed, test_size).items()},
    }


def run_code(ev: dict[str, Any], exp: dict[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Start the submission's service in its sandbox and drive it (see ``references.lab08_service``)."""
    shared.run_code(ev, exp, data_path, runner, drive=DRIVE)


SPEC = LabSpec(lab=lab08a, expected=expected, run_code=run_code)
