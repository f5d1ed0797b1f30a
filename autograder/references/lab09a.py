"""Lab 09a references: nothing to recompute from the data (the cards are compared with the
registry the evidence reads); the server is started again in the submission's sandbox and asked
what each role may do and what the student's promote() does with each role's client."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab09a
from autograder.labspec import LabSpec, SandboxRunner
from autograder.references import lab09_registry as shared


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the part on these inputs (the data file is not used)."""
    return shared.base_expected(params, lab09a.PARAMS)


def run_code(ev: dict[str, Any], exp: dict[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Ask the submission's server, started again in its sandbox (``lab09_probe``)."""
    shared.run_probe(ev, exp, runner, ("access", "promote"))


SPEC = LabSpec(lab=lab09a, expected=expected, run_code=run_code)
