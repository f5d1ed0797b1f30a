"""Lab 03b references: the lab's four models (as Lab 03a builds them) scored on the test split,
and the lab's selection rule, applied to the metrics a submission logged (and, for the message
of the typical mistake, to the test split's R²)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab03b
from autograder.labspec import LabSpec, SandboxRunner
from autograder.references.lab03a import candidates, split


@functools.lru_cache(maxsize=4)
def _test_metrics(data_path: str, seed: int, test_size: float, n_estimators: int,
                  max_depth: int) -> dict[str, dict[str, float]]:
    """Train the lab's four models the way the set-up does and score each on the test split
    (Task 4 keeps the winner's only)."""
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    X_train, X_test, y_train, y_test = split(data_path, seed, test_size)
    scores = {}
    for name, model in candidates(seed, n_estimators, max_depth).items():
        y_pred = model.fit(X_train, y_train).predict(X_test)
        scores[name] = {
            "test_rmse": float(root_mean_squared_error(y_test, y_pred)),
            "test_mae": float(mean_absolute_error(y_test, y_pred)),
            "test_r2": float(r2_score(y_test, y_pred)),
        }
    return scores


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the lab on these inputs (the decision depends on the latencies
    the submission measured: ``run_code`` adds it once the store is read)."""
    test = _test_metrics(str(data_path), int(params["SEED"]), float(params["TEST_SIZE"]),
                         int(params["N_ESTIMATORS"]), int(params["MAX_DEPTH"]))
    return {**lab03b.expected_from_params(params), "test_metrics": test}


def apply_rule(metrics: Mapping[str, tuple[float, float]], budget_ms: float) -> dict[str, str]:
    """The lab's selection rule on ``{key: (cv_r2_mean, latency_ms)}``: a model slower than the
    budget is over_budget; among the others, the best score is the winner and the rest are
    lower_r2."""
    within = {key: r2 for key, (r2, latency) in metrics.items() if latency <= budget_ms}
    best = max(within, key=within.__getitem__) if within else None
    return {
        key: lab03b.OVER_BUDGET if key not in within else lab03b.WINNER if key == best else lab03b.LOWER_R2
        for key in metrics
    }


def rule_decisions(ev: Mapping[str, Any], budget_ms: float,
                   scores: Mapping[str, float] | None = None) -> dict[str, str]:
    """What the rule decides on the cv_r2_mean and latency the submission's runs hold ({} when
    a run or a metric is missing: the judgment then fails on that first). ``scores``: rank by
    these instead (the test split's R², to recognise a choice made on it)."""
    found = ev.get("candidates") or {}
    try:
        metrics = {name: (float(scores[name] if scores is not None else found[name]["metrics"][lab03b.SELECTION]),
                          float(found[name]["metrics"][lab03b.LATENCY]))
                   for name in lab03b.MODEL_TYPES}
    except (KeyError, TypeError, ValueError):
        return {}
    return apply_rule(metrics, budget_ms)


def run_code(ev: dict[str, Any], exp: Mapping[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Apply the rule to the logged metrics (into the expected values): nothing of the
    submission's needs to run."""
    if isinstance(exp, dict):
        exp["decisions"] = rule_decisions(ev, float(exp["budget_ms"]))
        on_test = {name: m["test_r2"] for name, m in (exp.get("test_metrics") or {}).items()}
        exp["test_decisions"] = rule_decisions(ev, float(exp["budget_ms"]), on_test) if on_test else {}


SPEC = LabSpec(lab=lab03b, expected=expected, run_code=run_code)
