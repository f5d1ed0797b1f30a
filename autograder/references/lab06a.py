"""Lab 06a references: the drift tests, the PSI and the report's rule, computed the way the
TODOs ask."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab06a, labkit
from autograder.labspec import LabSpec, SandboxRunner


@functools.lru_cache(maxsize=4)
def _data(data_path: str) -> tuple[Any, dict[str, Any]]:
    """The reference data and the production batches next to it (``production/``)."""
    import pandas as pd

    folder = Path(data_path).parent / "production"
    return pd.read_csv(data_path), {b: pd.read_csv(folder / f"batch_{b}.csv") for b in lab06a.BATCHES}


@functools.lru_cache(maxsize=4)
def _tests(data_path: str) -> dict[str, dict[str, float]]:
    """batch -> {ks_stat_<feature>, ks_pvalue_<feature>, chi2_stat_region, chi2_pvalue_region}."""
    import pandas as pd
    from scipy import stats

    reference, batches = _data(data_path)
    expected: dict[str, dict[str, float]] = {}
    for batch, current in batches.items():
        values = {}
        for feature in labkit.FEATURES:
            result = stats.ks_2samp(reference[feature], current[feature])
            values[f"ks_stat_{feature}"] = float(result.statistic)
            values[f"ks_pvalue_{feature}"] = float(result.pvalue)
        column = lab06a.CATEGORICAL
        counts = pd.DataFrame(
            {"reference": reference[column].value_counts(), "current": current[column].value_counts()}
        ).fillna(0)
        result = stats.chi2_contingency(counts.T)
        values[f"chi2_stat_{column}"] = float(result.statistic)
        values[f"chi2_pvalue_{column}"] = float(result.pvalue)
        expected[batch] = values
    return expected


def psi(reference: Any, current: Any, bins: int, eps: float) -> float:
    """The population stability index on the reference's quantile bins (the lab's definition)."""
    import numpy as np

    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    ref_share = np.clip(np.histogram(reference, edges)[0] / len(reference), eps, None)
    cur_share = np.clip(np.histogram(current, edges)[0] / len(current), eps, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


@functools.lru_cache(maxsize=4)
def _psi(data_path: str, bins: int, eps: float) -> dict[str, dict[str, float]]:
    reference, batches = _data(data_path)
    return {
        batch: {f"psi_{f}": psi(reference[f], current[f], bins, eps) for f in labkit.FEATURES}
        for batch, current in batches.items()
    }


def drifted(p_value: float, psi_value: float | None, alpha: float, threshold: float) -> bool:
    """TODO 3's rule for one column."""
    return p_value < alpha or (psi_value is not None and psi_value > threshold)


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs."""
    path, alpha, threshold = str(data_path), float(params["ALPHA"]), float(params["PSI_SIGNIFICANT"])
    _, batches = _data(path)
    tests, psi_values = _tests(path), _psi(path, int(params["PSI_BINS"]), float(params["PSI_EPS"]))
    columns = [*labkit.FEATURES, lab06a.CATEGORICAL]
    verdicts = {
        batch: {
            c: drifted(
                next(v for k, v in tests[batch].items() if k.endswith(f"_pvalue_{c}")),
                psi_values[batch].get(f"psi_{c}"),
                alpha,
                threshold,
            )
            for c in columns
        }
        for batch in batches
    }
    return {
        **lab06a.expected_from_params(params),
        "tests": tests,
        "psi": psi_values,
        "rows": {b: len(current) for b, current in batches.items()},
        "verdicts": verdicts,
    }


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def rules(ev: Mapping[str, Any], exp: Mapping[str, Any]) -> dict[str, Any]:
    """What the lab's rule says about the submission's own values: for each report row, its
    p-value and PSI."""
    alpha, threshold = exp["alpha"], exp["psi_threshold"]
    found: dict[str, Any] = {}
    for batch, run in (ev.get("batches") or {}).items():
        if not run:
            continue
        report = run.get("report")
        features = report.get("features") if isinstance(report, dict) else None
        verdicts = {}
        for column, row in features.items() if isinstance(features, dict) else []:
            p = _finite(row.get("p_value")) if isinstance(row, dict) else None
            if p is None:
                continue
            verdicts[column] = drifted(p, _finite(row.get("psi")), alpha, threshold)
        found[batch] = {"report": verdicts}
    return found


def run_code(ev: dict[str, Any], exp: Mapping[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Apply the lab's rule to the submission's own report values (no code of the submission runs)."""
    ev["rules"] = rules(ev, exp)


SPEC = LabSpec(lab=lab06a, expected=expected, run_code=run_code)
