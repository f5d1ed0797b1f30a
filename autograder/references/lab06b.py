"""Lab 06b references: the champion's error per window and its change point, the share of each
input out of range (as the given set-up computes it), the retraining rule, and both models of
Task 3, computed the way the TODOs ask."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab06b, labkit
from autograder.labspec import LabSpec, SandboxRunner


@functools.lru_cache(maxsize=4)
def _data(data_path: str) -> tuple[Any, dict[str, Any]]:
    """The reference data and the production batches next to it (``production/``)."""
    import pandas as pd

    folder = Path(data_path).parent / "production"
    return pd.read_csv(data_path), {b: pd.read_csv(folder / f"batch_{b}.csv") for b in lab06b.BATCHES}


def out_of_range(reference: Any, current: Any) -> dict[str, float]:
    """The given set-up's measure: per feature, the share of ``current`` below the reference's
    1st percentile or above its 99th."""
    features = labkit.FEATURES
    low, high = reference[features].quantile(0.01), reference[features].quantile(0.99)
    shares = ((current[features] < low) | (current[features] > high)).mean()
    return {f: float(v) for f, v in shares.items()}


@functools.lru_cache(maxsize=8)
def _model(
    data_path: str, seed: int, n_estimators: int, max_depth: int, recent_rows: int, eval_rows: int
) -> Any:
    """A forest trained as the notebook's train_model does (forests with a seed are
    deterministic): on the reference data plus the recent_train rows (none: the champion)."""
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor

    reference, batches = _data(data_path)
    frame = reference
    if recent_rows:
        recent = batches[lab06b.RECENT_BATCH].tail(recent_rows)
        frame = pd.concat([reference, recent.head(recent_rows - eval_rows)])
    model = RandomForestRegressor(
        n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=-1
    )
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


def retrain(shares: list[float], concept: bool, limit: float) -> bool:
    """TODO 2's rule for one batch."""
    return concept or any(v > limit for v in shares)


@functools.lru_cache(maxsize=4)
def _reference(
    data_path: str,
    seed: int,
    n_estimators: int,
    max_depth: int,
    window: int,
    delta: float,
    ph_threshold: float,
    recent_rows: int,
    eval_rows: int,
    limit: float,
) -> dict[str, Any]:
    import numpy as np

    reference, batches = _data(data_path)
    champion = _model(data_path, seed, n_estimators, max_depth, 0, 0)
    challenger = _model(data_path, seed, n_estimators, max_depth, recent_rows, eval_rows)
    windows, alarms, shares, decision_if = {}, {}, {}, {}
    for batch, current in batches.items():
        errors = np.abs(current[labkit.TARGET].to_numpy() - champion.predict(current[labkit.FEATURES]))
        windows[batch] = [float(errors[i : i + window].mean()) for i in range(0, len(errors), window)]
        alarm = page_hinkley(windows[batch], delta, ph_threshold)
        alarms[batch] = None if alarm is None else alarm * window
        shares[batch] = out_of_range(reference, current)
        decision_if[batch] = {
            str(concept).lower(): retrain(list(shares[batch].values()), concept, limit)
            for concept in (True, False)
        }
    recent_eval = batches[lab06b.RECENT_BATCH].tail(eval_rows)
    X, y = recent_eval[labkit.FEATURES], recent_eval[labkit.TARGET].to_numpy()
    champion_pred, challenger_pred = champion.predict(X), challenger.predict(X)
    return {
        "windows": windows,
        "alarms": alarms,
        "out_of_range": shares,
        "decision_if": decision_if,
        "champion_pred": [float(v) for v in champion_pred],
        "challenger_pred": [float(v) for v in challenger_pred],
        "champion_mae": float(np.mean(np.abs(champion_pred - y))),
        "challenger_mae": float(np.mean(np.abs(challenger_pred - y))),
    }


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs."""
    p = params
    ref = _reference(
        str(data_path),
        int(p["SEED"]),
        int(p["N_ESTIMATORS"]),
        int(p["MAX_DEPTH"]),
        int(p["WINDOW"]),
        float(p["PH_DELTA"]),
        float(p["PH_THRESHOLD"]),
        int(p["RECENT_ROWS"]),
        int(p["RECENT_EVAL_ROWS"]),
        float(p["RANGE_LIMIT"]),
    )
    return {**lab06b.expected_from_params(params), **ref}


def run_code(ev: dict[str, Any], exp: Mapping[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Ask the registered versions, inside the sandbox, for their predictions on the hidden
    recent_eval rows."""
    registry = ev.get("registry") or {}
    if not registry.get("exists"):
        return
    rows = lab06b.recent_eval_rows(data_path, exp["recent_eval_rows"])
    for version in registry.get("to_predict") or []:
        registry["predictions"][str(version)] = runner.predict(f"models:/{registry['name']}/{version}", rows)


SPEC = LabSpec(lab=lab06b, expected=expected, run_code=run_code, predicts=True)
