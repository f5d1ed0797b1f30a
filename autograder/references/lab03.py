"""Lab 03 references: the lab's four models, cross-validated, trained and scored the way the
TODOs ask, and the lab's selection rule, applied to the metrics a submission logged (and, for
the message of the typical mistake, to the test split's R²)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab03, labkit
from autograder.labspec import LabSpec, SandboxRunner


def candidates(seed: int, n_estimators: int, max_depth: int) -> dict[str, Any]:
    """The four models exactly as the notebook builds them (run name -> unfitted model)."""
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


#: The scorers of Task 1 (scikit-learn's names; errors come negated).
SCORERS = ("r2", "neg_root_mean_squared_error", "neg_mean_absolute_error")


@functools.lru_cache(maxsize=4)
def _reference(data_path: str, seed: int, test_size: float, cv_folds: int, n_estimators: int,
               max_depth: int) -> dict[str, Any]:
    """Cross-validate the lab's four models on the training split (Task 1), train them the way
    the notebook does, and score each on the test split (Task 6 keeps the winner's only)."""
    import pandas as pd
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
    from sklearn.model_selection import cross_validate, train_test_split

    df = pd.read_csv(data_path)
    X_train, X_test, y_train, y_test = train_test_split(
        df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed
    )
    metrics: dict[str, dict[str, float]] = {}
    test_metrics: dict[str, dict[str, float]] = {}
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
        y_pred = model.fit(X_train, y_train).predict(X_test)
        test_metrics[name] = {
            "test_rmse": float(root_mean_squared_error(y_test, y_pred)),
            "test_mae": float(mean_absolute_error(y_test, y_pred)),
            "test_r2": float(r2_score(y_test, y_pred)),
        }
        y_preds[name] = [float(v) for v in y_pred]
    return {"metrics": metrics, "test_metrics": test_metrics, "rows": [int(i) for i in X_test.index],
            "y_pred": y_preds}


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs (the decision depends on the latencies
    the submission measured: ``run_code`` adds it once the store is read)."""
    ref = _reference(str(data_path), int(params["SEED"]), float(params["TEST_SIZE"]), int(params["CV_FOLDS"]),
                     int(params["N_ESTIMATORS"]), int(params["MAX_DEPTH"]))
    return {**lab03.expected_from_params(params), **ref}


def apply_rule(metrics: Mapping[str, tuple[float, float]], budget_ms: float) -> dict[str, str]:
    """The lab's selection rule on ``{key: (cv_r2_mean, latency_ms)}``: a model slower than the
    budget is over_budget; among the others, the best score is the winner and the rest are
    lower_r2."""
    within = {key: r2 for key, (r2, latency) in metrics.items() if latency <= budget_ms}
    best = max(within, key=within.__getitem__) if within else None
    return {
        key: lab03.OVER_BUDGET if key not in within else lab03.WINNER if key == best else lab03.LOWER_R2
        for key in metrics
    }


def rule_decisions(ev: Mapping[str, Any], budget_ms: float,
                   scores: Mapping[str, float] | None = None) -> dict[str, str]:
    """What the rule decides on the cv_r2_mean and latency the submission's runs hold ({} when
    a run or a metric is missing: the judgment then fails on that first). ``scores``: rank by
    these instead (the test split's R², to recognise a choice made on it)."""
    found = ev.get("candidates") or {}
    try:
        metrics = {name: (float(scores[name] if scores is not None else found[name]["metrics"][lab03.SELECTION]),
                          float(found[name]["metrics"][lab03.LATENCY]))
                   for name in lab03.MODEL_TYPES}
    except (KeyError, TypeError, ValueError):
        return {}
    return apply_rule(metrics, budget_ms)


def run_code(ev: dict[str, Any], exp: Mapping[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Apply the rule to the logged metrics (into the expected values), then ask each logged
    model, inside the sandbox, for its predictions on the hidden test rows."""
    if isinstance(exp, dict):
        exp["decisions"] = rule_decisions(ev, float(exp["budget_ms"]))
        on_test = {name: m["test_r2"] for name, m in (exp.get("test_metrics") or {}).items()}
        exp["test_decisions"] = rule_decisions(ev, float(exp["budget_ms"]), on_test) if on_test else {}
    found = ev.get("candidates") or {}
    models = [found[name].get("model") or {} for name in lab03.MODEL_TYPES if name in found]
    ready = [m for m in models if m.get("state") == "ready"]
    if not ready:
        return
    import pandas as pd

    rows = pd.read_csv(data_path).loc[exp["rows"], labkit.FEATURES].to_dict("records")
    for model in ready:
        model.update(runner.predict(model["uri"], rows))


SPEC = LabSpec(lab=lab03, expected=expected, run_code=run_code, predicts=True)
