"""Lab 07b references: DVC's md5 of both data versions and of the pipeline's split, and the
pipeline's MAE on each, computed on the grader's data as for part a (``references.lab07a``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab07b
from autograder.labspec import LabSpec
from autograder.references.lab07a import versions


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    n = int(params["N_ESTIMATORS"])
    return {**lab07b.expected_from_params(params), **versions(data_path, params, [("v1", n), ("v2", n)])}


SPEC = LabSpec(lab=lab07b, expected=expected)
