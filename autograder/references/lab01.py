"""Lab 01 references: the lab's random forest, trained and scored the way the TODOs ask."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab01, labkit
from autograder.labspec import LabSpec, SandboxRunner


@functools.lru_cache(maxsize=4)
def _reference(data_path: str, seed: int, test_size: float, n_estimators: int, max_depth: int) -> dict[str, Any]:
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    X_train, X_test, y_train, y_test = train_test_split(
        df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed
    )
    # One thread: a forest sums its trees in thread order, and the shipped expected values
    # must come out the same to the last digit on every run.
    model = RandomForestRegressor(
        n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=1
    ).fit(X_train, y_train)
    y_pred = model.predict(X_test)
    return {
        "metrics": {
            "rmse": float(root_mean_squared_error(y_test, y_pred)),
            "mae": float(mean_absolute_error(y_test, y_pred)),
            "r2": float(r2_score(y_test, y_pred)),
        },
        "rows": [int(i) for i in X_test.index],
        "y_pred": [float(v) for v in y_pred],
    }


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs."""
    ref = _reference(str(data_path), int(params["SEED"]), float(params["TEST_SIZE"]),
                     int(params["N_ESTIMATORS"]), int(params["MAX_DEPTH"]))
    return {**lab01.expected_from_params(params), **ref}


def run_code(ev: dict[str, Any], exp: Mapping[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Ask the logged model, inside the sandbox, for its predictions on the hidden test rows."""
    model = ev.get("model") or {}
    if model.get("state") != "ready":
        return
    import pandas as pd

    rows = pd.read_csv(data_path).loc[exp["rows"], labkit.FEATURES].to_dict("records")
    answer = runner.predict(model["uri"], rows)
    model.update(answer)


SPEC = LabSpec(lab=lab01, expected=expected, run_code=run_code, predicts=True)
