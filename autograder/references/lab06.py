"""Lab 06 references: the drift tests, the PSI, the champion's error per window and its change
point, both models of Task 6, and the lab's rules, computed the way the TODOs ask."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab06, labkit
from autograder.labspec import LabSpec, SandboxRunner


@functools.lru_cache(maxsize=4)
def _data(data_path: str) -> tuple[Any, dict[str, Any]]:
    """The reference data and the production batches next to it (``production/``)."""
    import pandas as pd

    folder = Path(data_path).parent / "production"
    return pd.read_csv(data_path), {b: pd.read_csv(folder / f"batch_{b}.csv") for b in lab06.BATCHES}


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
        column = lab06.CATEGORICAL
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


@functools.lru_cache(maxsize=8)
def _model(data_path: str, seed: int, n_estimators: int, max_depth: int, recent_rows: int, eval_rows: int) -> Any:
    """A forest trained as the notebook's train_model does (forests with a seed are
    deterministic): on the reference data plus the recent_train rows (none: the champion)."""
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor

    reference, batches = _data(data_path)
    frame = reference
    if recent_rows:
        recent = batches[lab06.RECENT_BATCH].tail(recent_rows)
        frame = pd.concat([reference, recent.head(recent_rows - eval_rows)])
    model = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=-1)
    return model.fit(frame[labkit.FEATURES], frame[labkit.TARGET])


def page_hinkley(values: list[float], delta: float, threshold: float) -> int | None:
    """The index of the first value at which the Page-Hinkley test raises its alarm."""
    mean = cumulative = lowest = 0.0
    for t, value in enumerate(values, start=1):
        mean += (value - mean) / t
        cumulative += value - mean - delta
        lowest = min(lowest, cumulative)
        if cumulative - lowest > threshold:
            return t - 1
    return None


def drifted(p_value: float, psi_value: float | None, alpha: float, threshold: float) -> bool:
    """TODO 3's rule for one column."""
    return p_value < alpha or (psi_value is not None and psi_value > threshold)


def retrain(psi_values: list[float], concept: bool, threshold: float) -> bool:
    """TODO 5's rule for one batch."""
    return concept or any(v > threshold for v in psi_values)


@functools.lru_cache(maxsize=4)
def _reference(data_path: str, seed: int, n_estimators: int, max_depth: int, bins: int, eps: float,
               window: int, delta: float, ph_threshold: float, recent_rows: int, eval_rows: int,
               alpha: float, threshold: float) -> dict[str, Any]:
    import numpy as np

    _, batches = _data(data_path)
    tests, psi_values = _tests(data_path), _psi(data_path, bins, eps)
    champion = _model(data_path, seed, n_estimators, max_depth, 0, 0)
    challenger = _model(data_path, seed, n_estimators, max_depth, recent_rows, eval_rows)
    windows, alarms, verdicts, decisions = {}, {}, {}, {}
    for batch, current in batches.items():
        errors = np.abs(current[labkit.TARGET].to_numpy() - champion.predict(current[labkit.FEATURES]))
        windows[batch] = [float(errors[i : i + window].mean()) for i in range(0, len(errors), window)]
        alarm = page_hinkley(windows[batch], delta, ph_threshold)
        alarms[batch] = None if alarm is None else alarm * window
        columns = [*labkit.FEATURES, lab06.CATEGORICAL]
        verdicts[batch] = {
            c: drifted(next(v for k, v in tests[batch].items() if k.endswith(f"_pvalue_{c}")),
                       psi_values[batch].get(f"psi_{c}"), alpha, threshold)
            for c in columns
        }
        decisions[batch] = retrain(list(psi_values[batch].values()), alarm is not None, threshold)
    recent_eval = batches[lab06.RECENT_BATCH].tail(eval_rows)
    X, y = recent_eval[labkit.FEATURES], recent_eval[labkit.TARGET].to_numpy()
    champion_pred, challenger_pred = champion.predict(X), challenger.predict(X)
    return {
        "tests": tests,
        "psi": psi_values,
        "rows": {b: len(current) for b, current in batches.items()},
        "windows": windows,
        "alarms": alarms,
        "verdicts": verdicts,
        "decisions": decisions,
        "champion_pred": [float(v) for v in champion_pred],
        "challenger_pred": [float(v) for v in challenger_pred],
        "champion_mae": float(np.mean(np.abs(champion_pred - y))),
        "challenger_mae": float(np.mean(np.abs(challenger_pred - y))),
    }


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs."""
    p = params
    ref = _reference(str(data_path), int(p["SEED"]), int(p["N_ESTIMATORS"]), int(p["MAX_DEPTH"]),
                     int(p["PSI_BINS"]), float(p["PSI_EPS"]), int(p["WINDOW"]), float(p["PH_DELTA"]),
                     float(p["PH_THRESHOLD"]), int(p["RECENT_ROWS"]), int(p["RECENT_EVAL_ROWS"]),
                     float(p["ALPHA"]), float(p["PSI_SIGNIFICANT"]))
    return {**lab06.expected_from_params(params), **ref}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def rules(ev: Mapping[str, Any], exp: Mapping[str, Any]) -> dict[str, Any]:
    """What the lab's rules say about the submission's own values: for each report row, its
    p-value and PSI; for each batch run, its PSI metrics and its detector's tag."""
    alpha, threshold = exp["alpha"], exp["psi_threshold"]
    found: dict[str, Any] = {}
    for batch, run in (ev.get("batches") or {}).items():
        if not run:
            continue
        report = run.get("report")
        features = report.get("features") if isinstance(report, dict) else None
        verdicts = {}
        for column, row in (features.items() if isinstance(features, dict) else []):
            p = _finite(row.get("p_value")) if isinstance(row, dict) else None
            if p is None:
                continue
            verdicts[column] = drifted(p, _finite(row.get("psi")), alpha, threshold)
        psi_values = [v for k, v in run["metrics"].items() if k.startswith("psi_")]
        concept = run["tags"].get("concept_drift_detected") == "true"
        found[batch] = {"report": verdicts, "retrain": retrain(psi_values, concept, threshold)}
    return found


def run_code(ev: dict[str, Any], exp: Mapping[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Apply the lab's rules to the submission's values, and ask the registered versions,
    inside the sandbox, for their predictions on the hidden recent_eval rows."""
    ev["rules"] = rules(ev, exp)
    registry = ev.get("registry") or {}
    if not registry.get("exists"):
        return
    rows = lab06.recent_eval_rows(data_path, exp["recent_eval_rows"])
    for version in registry.get("to_predict") or []:
        registry["predictions"][str(version)] = runner.predict(f"models:/{registry['name']}/{version}", rows)


SPEC = LabSpec(lab=lab06, expected=expected, run_code=run_code, predicts=True)
