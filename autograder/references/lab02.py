"""Lab 02 references: every configuration of the grid, scored the way evaluate() should."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab02, labkit
from autograder.labspec import LabSpec


@functools.lru_cache(maxsize=4)
def _split(data_path: str, seed: int, test_size: float) -> tuple[Any, Any, Any, Any]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    return tuple(train_test_split(df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed))


@functools.lru_cache(maxsize=64)
def _scores(data_path: str, seed: int, test_size: float, cv_folds: int, n_estimators: int,
            max_depth: int) -> dict[str, Any]:
    """One configuration: cross-validated R² on the training split, R² and RMSE on the test split."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score, root_mean_squared_error
    from sklearn.model_selection import cross_val_score

    X_train, X_test, y_train, y_test = _split(data_path, seed, test_size)
    # One job: the trees' predictions are then summed in one order, so the shipped numbers are
    # the same on every generate (the lab's n_jobs=-1 differs from them in the last digit only).
    model = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=1)
    cv = cross_val_score(model, X_train, y_train, cv=cv_folds, scoring="r2")
    y_pred = model.fit(X_train, y_train).predict(X_test)
    return {
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "cv_r2_mean": float(cv.mean()),
        "cv_r2_std": float(cv.std()),
        "cv_r2_std_sample": float(cv.std(ddof=1)),  # np.std(ddof=1) / statistics.stdev also pass
        "test_r2": float(r2_score(y_test, y_pred)),
        "test_rmse": float(root_mean_squared_error(y_test, y_pred)),
    }


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs: the reference scores of each
    configuration of the grid."""
    base = lab02.expected_from_params(params)
    seed, test_size, folds = int(params["SEED"]), float(params["TEST_SIZE"]), int(params["CV_FOLDS"])
    scores = [_scores(str(data_path), seed, test_size, folds, n, d) for n, d in base["grid"]]
    return {**base, "scores": [dict(s) for s in scores]}


SPEC = LabSpec(lab=lab02, expected=expected)
