"""Lab 08b references: Lab 08's (the two forests' predictions on the grader's rows, the drift
windows' Kolmogorov-Smirnov statistics, the grader's own canary share, drift window and
load-test size). The service is driven whole, with the kit's own model part in place of part
a's Task 1 (``lab08_base.py``, copied over ``svc_model.py`` by the driver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autograder.kit import lab08b
from autograder.labspec import LabSpec, SandboxRunner
from autograder.references import lab08_service as shared

#: Part b's drive: everything, on the kit's model part.
DRIVE = {"base": True}


def run_code(ev: dict[str, Any], exp: dict[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Start the submission's service in its sandbox and drive it (see ``references.lab08_service``)."""
    shared.run_code(ev, exp, data_path, runner, drive=DRIVE)


SPEC = LabSpec(lab=lab08b, expected=shared.expected, run_code=run_code)
