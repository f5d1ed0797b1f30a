"""Lab 03a references: the lab's four models, cross-validated and trained the way the TODOs
ask, and their predictions on the test rows (each logged model must predict like them)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab03a, labkit
from autograder.labspec import LabSpec, SandboxRunner


def candidates(seed: int, n_estimators: int, max_depth: int) -> dict[str, Any]:
    """The four models exactly as the notebooks of Labs 03a and 03b build them (run name ->
    unfitted model)."""
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression

    return {
        "linear": LinearRegression(),
        "random_forest": RandomForestRegressor(
            n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=-1
        ),
        "gradient_boosting": GradientBoostingRegressor(n_estimators=n_estimators, random_state=seed),
        "hist_gradient_boosting": HistGradientBoostingRegressor(max_iter=n_estimators, random_state=seed),
    }


def split(data_path: str, seed: int, test_size: float) -> tuple[Any, Any, Any, Any]:
    """The lab's one split: X_train, X_test, y_train, y_test."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    return train_test_split(df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed)


#: The scorers of Task 1 (scikit-learn's names; errors come negated).
SCORERS = ("r2", "neg_root_mean_squared_error", "neg_mean_absolute_error")


@functools.lru_cache(maxsize=4)
def _reference(data_path: str, seed: int, test_size: float, cv_folds: int, n_estimators: int,
               max_depth: int) -> dict[str, Any]:
    """Cross-validate the lab's four models on the training split (Task 1), then train them the
    way the notebook does and keep their predictions on the test rows (Task 2)."""
    from sklearn.model_selection import cross_validate

    X_train, X_test, y_train, _ = split(data_path, seed, test_size)
    metrics: dict[str, dict[str, float]] = {}
    y_preds: dict[str, list[float]] = {}
    for name, model in candidates(seed, n_estimators, max_depth).items():
        scores = cross_validate(model, X_train, y_train, cv=cv_folds, scoring=list(SCORERS))
        metrics[name] = {
            "cv_r2_mean": float(scores["test_r2"].mean()),
            "cv_r2_std": float(scores["test_r2"].std()),
            "cv_r2_std_sample": float(scores["test_r2"].std(ddof=1)),
            "cv_rmse_mean": float(-scores["test_neg_root_mean_squared_error"].mean()),
            "cv_mae_mean": float(-scores["test_neg_mean_absolute_error"].mean()),
        }
        y_preds[name] = [float(v) for v in model.fit(X_train, y_train).predict(X_test)]
    return {"metrics": metrics, "rows": [int(i) for i in X_test.index], "y_pred": y_preds}


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs."""
    ref = _reference(str(data_path), int(params["SEED"]), float(params["TEST_SIZE"]), int(params["CV_FOLDS"]),
                     int(params["N_ESTIMATORS"]), int(params["MAX_DEPTH"]))
    return {**lab03a.expected_from_params(params), **ref}


def run_code(ev: dict[str, Any], exp: Mapping[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Ask each logged model, inside the sandbox, for its predictions on the hidden test rows."""
    found = ev.get("candidates") or {}
    models = [found[name].get("model") or {} for name in lab03a.MODEL_TYPES if name in found]
    ready = [m for m in models if m.get("state") == "ready"]
    if not ready:
        return
    import pandas as pd

    rows = pd.read_csv(data_path).loc[exp["rows"], labkit.FEATURES].to_dict("records")
    for model in ready:
        model.update(runner.predict(model["uri"], rows))


SPEC = LabSpec(lab=lab03a, expected=expected, run_code=run_code, predicts=True)
