"""Lab 05b references: the grader's cases for the promotion, and the workflow run with probes
(``references.lab05``, shared with Lab 05a). Nothing is trained: the promotion is judged on
the registry's tags and alias, the workflow on what its steps ran."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab05b
from autograder.labspec import LabSpec
from autograder.references.lab05 import run_code


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of Lab 05b on these inputs (the cases are added by ``run_code``)."""
    return lab05b.expected_from_params(params)


SPEC = LabSpec(lab=lab05b, expected=expected, run_code=run_code)
