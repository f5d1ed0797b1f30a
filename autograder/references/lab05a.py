"""Lab 05a references: the R² the quality gate must measure, and the grader's cases for the data
validation, the gate and the behavioural tests (``references.lab05``, shared with Lab 05b)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab05a
from autograder.labspec import LabSpec
from autograder.references.lab05 import expected_r2, run_code


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of Lab 05a on these inputs (the cases are added by ``run_code``)."""
    return {**lab05a.expected_from_params(params), **expected_r2(data_path, params)}


SPEC = LabSpec(lab=lab05a, expected=expected, run_code=run_code)
