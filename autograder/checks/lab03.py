"""Checks for Lab 03, comparing models.

The lab trains four models, each in its own run under one parent run. The checks find
those runs in the store, re-train the models (all four are deterministic) to re-compute the
test metrics, reload every logged model and compare its predictions, and apply the lab's
selection rule themselves to the metrics in the store, with the lab's latency budget, to
decide what the recorded decision must be. Latency cannot be re-measured exactly, so it is
checked for presence and plausibility only.
"""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path
from typing import Any

from autograder import labkit
from autograder.checks.base import (
    Check,
    CheckResult,
    LabContext,
    client,
    names,
    newest_ready_model,
    pairs,
    self_check_for,
)

#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = [
    "EXPERIMENT_NAME",
    "PARENT_RUN_NAME",
    "SEED",
    "TEST_SIZE",
    "N_ESTIMATORS",
    "MAX_DEPTH",
    "LATENCY_CALLS",
    "LATENCY_BUDGET_MS",
]
#: Run name -> model class, in the order of the notebook.
MODEL_TYPES = {
    "linear": "LinearRegression",
    "random_forest": "RandomForestRegressor",
    "gradient_boosting": "GradientBoostingRegressor",
    "hist_gradient_boosting": "HistGradientBoostingRegressor",
}
METRICS = ("rmse", "mae", "r2")
LATENCY = "latency_p50_ms"
FIGURE = "comparison.png"
DECISION_TAG = "decision"
WINNER_TAG = "winner_run_id"
WINNER, OVER_BUDGET, LOWER_R2 = "winner", "over_budget", "lower_r2"
NO_WINNER = "none"
#: Relative tolerance for logged metrics: rounding to 3-4 significant digits passes,
#: a metric computed on the training split or as MSE instead of RMSE does not.
METRIC_RTOL = 1e-3
#: A median single-row predict() takes far more than 10 µs and far less than a minute:
#: outside this range the number is in seconds, or a batch time divided by its rows.
LATENCY_RANGE_MS = (0.01, 60_000.0)

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "no_experiment": (
        "no experiment named '{experiment}' in the store. Run the cells above TODO 1: "
        "they set the experiment and create one run per model."
    ),
    "no_candidates": (
        "no run named '{parent}' with child runs in experiment '{experiment}'. Run the cells above "
        "TODO 1: they create the parent run and one child run per model."
    ),
    "missing_runs": "expected one run per model ({expected}) under '{parent}'; found: {found}.",
    "missing_metrics": (
        "run '{run}' lacks metric(s) {missing}; found: {found}. Log them inside "
        "`with mlflow.start_run(run_id=runs[name]):` so they go into that model's run."
    ),
    "wrong_metrics": (
        "run '{run}' has {wrong}, but its model gives {expected} on the test split. "
        "Compute each metric on y_test and model.predict(X_test)."
    ),
    "metrics_ok": "all {count} runs have rmse, mae and r2 matching the test split ({values}).",
    "missing_latency": (
        "run '{run}' lacks metric '{metric}'; found: {found}. Log it with "
        "mlflow.log_metric('{metric}', ...) inside that model's run."
    ),
    "implausible_latency": (
        "run '{run}' has {metric}={value:.3g}, which is not the time of one predict() call in "
        "milliseconds. Time one row per call, take the median, and multiply seconds by 1000."
    ),
    "latency_ok": "all {count} runs have {metric} ({values}).",
    "no_model": (
        "no model logged in run '{run}'. Call mlflow.sklearn.log_model(model, name='model', ...) "
        "inside `with mlflow.start_run(run_id=runs[name]):`."
    ),
    "model_failed": (
        "logging the model of run '{run}' failed. A {model_type} needs skops_trusted_types: "
        "TRUSTED_TYPES['{run}'] must list the types skops.io.get_untrusted_types reports for it."
    ),
    "not_skops": (
        "the model of run '{run}' was saved as {found}. Keep the default skops format and pass "
        "skops_trusted_types instead: that is what this task is about."
    ),
    "no_signature": (
        "the model of run '{run}' has no signature; pass signature=infer_signature(X_test, "
        "model.predict(X_test))."
    ),
    "wrong_signature": "the signature of run '{run}' has inputs {found}; expected the feature columns {expected}.",
    "no_example": "the model of run '{run}' has no input example; pass input_example=X_test.head(5).",
    "model_differs": (
        "the model logged in run '{run}' predicts differently from the {model_type} trained above "
        "(largest difference {diff:.3g} ms); log models[name] into runs[name]."
    ),
    "models_ok": (
        "all {count} runs have a model with a signature and an input example that predicts like "
        "the trained one on {rows} test rows."
    ),
    "no_parent": "no run named '{parent}' in experiment '{experiment}'. Run the cells above TODO 1.",
    "no_figure": (
        "run '{parent}' has no artifact '{figure}'; found: {found}. Log it into the parent run: "
        "`with mlflow.start_run(run_id=parent_id): mlflow.log_figure(fig, '{figure}')`."
    ),
    "not_png": "artifact '{figure}' is not a PNG image; log the matplotlib figure with mlflow.log_figure.",
    "figure_ok": "run '{parent}' has the figure '{figure}'.",
    "rule_needs_metrics": (
        "the rule needs r2 and {metric} in every model's run; missing in: {missing}. "
        "Finish TODO 1 and TODO 2 first."
    ),
    "no_decision": (
        "run '{run}' has no tag '{tag}'. Tag every model's run with its decision: "
        "mlflow.MlflowClient().set_tag(run_id, '{tag}', decision)."
    ),
    "wrong_decision": (
        "run '{run}' is tagged {tag}={found}, but with r2={r2:.4g} and {metric}={latency:.3g} ms "
        "under a budget of {budget:g} ms the rule gives {tag}={expected}. {why}"
    ),
    "why_over_budget": "A model slower than the budget is out, whatever its R².",
    "why_winner": "The winner is the best R² among the models within the budget.",
    "why_lower_r2": "Only the best R² within the budget wins; the others within it are lower_r2.",
    "no_winner_tag": (
        "the experiment has no tag '{tag}'. Record the winner: "
        "mlflow.set_experiment_tag('{tag}', winner_run_id)."
    ),
    "wrong_winner_tag": (
        "the experiment tag {tag} is '{found}', but the winner is run {expected} ('{run}'). "
        "Set it to the winner's run id."
    ),
    "wrong_no_winner_tag": (
        "no model is within the budget, so there is no winner; the experiment tag {tag} should be "
        "'{none}', not '{found}'."
    ),
    "decision_ok": (
        "the recorded decision follows the rule: winner '{run}' (r2={r2:.4g}, {metric}={latency:.3g} ms, "
        "budget {budget:g} ms); over budget: {over}."
    ),
    "decision_ok_no_winner": "the recorded decision follows the rule: no model is within {budget:g} ms.",
}


def _msg(key: str, **values: Any) -> str:
    return MESSAGES[key].format(**values)


# ----------------------------------------------------------------------------- the reference


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


@functools.lru_cache(maxsize=4)
def _reference(data_path: str, seed: int, test_size: float, n_estimators: int, max_depth: int) -> dict[str, Any]:
    """Train the lab's four models the way the notebook does and score them on the test split."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    X_train, X_test, y_train, y_test = train_test_split(
        df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed
    )
    models: dict[str, dict[str, Any]] = {}
    for name, model in candidates(seed, n_estimators, max_depth).items():
        y_pred = np.asarray(model.fit(X_train, y_train).predict(X_test), dtype=float)
        models[name] = {
            "y_pred": y_pred,
            "rmse": float(root_mean_squared_error(y_test, y_pred)),
            "mae": float(mean_absolute_error(y_test, y_pred)),
            "r2": float(r2_score(y_test, y_pred)),
        }
    return {"X_test": X_test, "models": models}


def reference(ctx: LabContext) -> dict[str, Any]:
    """The expected test-split metrics and predictions for this context's parameters."""
    p = ctx.params
    return _reference(
        str(ctx.data_path), int(p["SEED"]), float(p["TEST_SIZE"]), int(p["N_ESTIMATORS"]), int(p["MAX_DEPTH"])
    )


def prepare(ctx: LabContext) -> None:
    """Load what the checks need ahead of time (the grader calls this in a thread while the
    notebook runs): MLflow's model loading, a client on the store, the reference models."""
    import mlflow.pyfunc
    import mlflow.sklearn  # noqa: F401  (the flavour the logged models are loaded with)

    client(ctx).search_experiments()
    reference(ctx)


def apply_rule(metrics: dict[str, tuple[float, float]], budget_ms: float) -> dict[str, str]:
    """The lab's selection rule on ``{key: (r2, latency_ms)}``: a model slower than the budget
    is over_budget; among the others, the best r2 is the winner and the rest are lower_r2."""
    within = {key: r2 for key, (r2, latency) in metrics.items() if latency <= budget_ms}
    best = max(within, key=within.__getitem__) if within else None
    return {
        key: OVER_BUDGET if key not in within else WINNER if key == best else LOWER_R2 for key in metrics
    }


# ----------------------------------------------------------------------------- finding the runs


def find_experiment(ctx: LabContext) -> Any | None:
    return client(ctx).get_experiment_by_name(ctx.params["EXPERIMENT_NAME"])


def find_parent(ctx: LabContext) -> Any | None:
    """The newest run named PARENT_RUN_NAME in the lab's experiment."""
    experiment = find_experiment(ctx)
    if experiment is None:
        return None
    found = client(ctx).search_runs(
        [experiment.experiment_id],
        filter_string=f"attributes.run_name = '{ctx.params['PARENT_RUN_NAME']}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def find_candidates(ctx: LabContext) -> dict[str, Any] | None:
    """Run name -> run, for the child runs of the newest parent run (the newest run of each
    name when there are several). None when there is no experiment or no parent run."""
    experiment = find_experiment(ctx)
    parent = find_parent(ctx)
    if experiment is None or parent is None:
        return None
    children = client(ctx).search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    runs: dict[str, Any] = {}
    for run in children:  # newest first: keep the first run of each name
        runs.setdefault(run.info.run_name, run)
    return runs


def _candidate_runs(ctx: LabContext) -> tuple[dict[str, Any] | None, CheckResult | None]:
    """The four model runs, or a failed result saying why they cannot be found."""
    p = ctx.params
    if find_experiment(ctx) is None:
        return None, CheckResult(False, _msg("no_experiment", experiment=p["EXPERIMENT_NAME"]))
    runs = find_candidates(ctx)
    if not runs:
        return None, CheckResult(
            False, _msg("no_candidates", parent=p["PARENT_RUN_NAME"], experiment=p["EXPERIMENT_NAME"])
        )
    if any(name not in runs for name in MODEL_TYPES):
        return None, CheckResult(
            False,
            _msg("missing_runs", expected=", ".join(MODEL_TYPES), parent=p["PARENT_RUN_NAME"], found=names(runs)),
        )
    return {name: runs[name] for name in MODEL_TYPES}, None


# ----------------------------------------------------------------------------- the checks


def check_metrics(ctx: LabContext, strict: bool = False) -> CheckResult:
    runs, failure = _candidate_runs(ctx)
    if runs is None:
        return failure
    ref = reference(ctx)["models"]
    for name, run in runs.items():
        logged = run.data.metrics
        missing = [m for m in METRICS if m not in logged]
        if missing:
            return CheckResult(
                False, _msg("missing_metrics", run=name, missing=", ".join(missing), found=names(logged))
            )
        wrong = [m for m in METRICS if not math.isclose(logged[m], ref[name][m], rel_tol=METRIC_RTOL, abs_tol=1e-4)]
        if wrong:
            return CheckResult(
                False,
                _msg(
                    "wrong_metrics",
                    run=name,
                    wrong=pairs({m: f"{logged[m]:.4g}" for m in wrong}),
                    expected=pairs({m: f"{ref[name][m]:.4g}" for m in wrong}),
                ),
            )
    values = ", ".join(f"{name} r2={run.data.metrics['r2']:.3f}" for name, run in runs.items())
    return CheckResult(True, _msg("metrics_ok", count=len(runs), values=values))


def check_latency(ctx: LabContext, strict: bool = False) -> CheckResult:
    runs, failure = _candidate_runs(ctx)
    if runs is None:
        return failure
    low, high = LATENCY_RANGE_MS
    for name, run in runs.items():
        logged = run.data.metrics
        if LATENCY not in logged:
            return CheckResult(False, _msg("missing_latency", run=name, metric=LATENCY, found=names(logged)))
        value = logged[LATENCY]
        if not (math.isfinite(value) and low <= value <= high):
            return CheckResult(False, _msg("implausible_latency", run=name, metric=LATENCY, value=value))
    values = ", ".join(f"{name} {run.data.metrics[LATENCY]:.3g} ms" for name, run in runs.items())
    return CheckResult(True, _msg("latency_ok", count=len(runs), metric=LATENCY, values=values))


@functools.lru_cache(maxsize=8)
def _load(tracking_uri: str, model_id: str) -> Any:
    """A logged model, loaded once: a logged model never changes, and the visible and the
    hidden test of TODO 3 load the same four."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{model_id}")


def check_models(ctx: LabContext, strict: bool = False) -> CheckResult:
    """Visible part: every run has a model with signature and input example, saved with skops,
    that predicts like the re-trained model on 20 rows. Strict (the hidden test): on the whole
    test split."""
    import mlflow
    import numpy as np

    runs, failure = _candidate_runs(ctx)
    if runs is None:
        return failure
    mlflow.set_tracking_uri(ctx.tracking_uri)
    ref = reference(ctx)
    sample = ref["X_test"] if strict else ref["X_test"].head(20)
    for name, run in runs.items():
        model, any_model = newest_ready_model(ctx, run)
        if model is None:
            key = "model_failed" if any_model else "no_model"
            return CheckResult(False, _msg(key, run=name, model_type=MODEL_TYPES[name]))
        uri = f"models:/{model.model_id}"
        info = mlflow.models.get_model_info(uri)
        flavor = info.flavors.get("sklearn", {})
        fmt = flavor.get("serialization_format", "no sklearn flavour")
        if fmt != "skops":
            return CheckResult(False, _msg("not_skops", run=name, found=fmt))
        if info.signature is None:
            return CheckResult(False, _msg("no_signature", run=name))
        inputs = info.signature.inputs.input_names() if info.signature.inputs else []
        if sorted(inputs) != sorted(labkit.FEATURES):
            return CheckResult(False, _msg("wrong_signature", run=name, found=inputs, expected=labkit.FEATURES))
        if info.saved_input_example_info is None:
            return CheckResult(False, _msg("no_example", run=name))
        expected = ref["models"][name]["y_pred"][: len(sample)]
        predicted = np.asarray(_load(ctx.tracking_uri, model.model_id).predict(sample), dtype=float).ravel()
        if predicted.shape != expected.shape or not np.allclose(predicted, expected, rtol=1e-6, atol=1e-6):
            diff = float(np.max(np.abs(predicted - expected))) if predicted.shape == expected.shape else math.inf
            return CheckResult(False, _msg("model_differs", run=name, model_type=MODEL_TYPES[name], diff=diff))
    return CheckResult(True, _msg("models_ok", count=len(runs), rows=len(sample)))


def check_figure(ctx: LabContext, strict: bool = False) -> CheckResult:
    p = ctx.params
    parent = find_parent(ctx)
    if parent is None:
        return CheckResult(False, _msg("no_parent", parent=p["PARENT_RUN_NAME"], experiment=p["EXPERIMENT_NAME"]))
    mlflow_client = client(ctx)
    found = [a.path for a in mlflow_client.list_artifacts(parent.info.run_id)]
    if FIGURE not in found:
        return CheckResult(
            False, _msg("no_figure", parent=p["PARENT_RUN_NAME"], figure=FIGURE, found=", ".join(found) or "none")
        )
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow_client.download_artifacts(parent.info.run_id, FIGURE, tmp))
        header = local.read_bytes()[:8]
    if header != b"\x89PNG\r\n\x1a\n":
        return CheckResult(False, _msg("not_png", figure=FIGURE))
    return CheckResult(True, _msg("figure_ok", parent=p["PARENT_RUN_NAME"], figure=FIGURE))


def check_decision(ctx: LabContext, strict: bool = False) -> CheckResult:
    """The grader applies the rule itself to the metrics in the store, with the lab's budget,
    and compares every run's decision tag and the experiment's winner tag with the result."""
    runs, failure = _candidate_runs(ctx)
    if runs is None:
        return failure
    budget = float(ctx.params["LATENCY_BUDGET_MS"])
    incomplete = [name for name, run in runs.items() if not {"r2", LATENCY} <= set(run.data.metrics)]
    if incomplete:
        return CheckResult(False, _msg("rule_needs_metrics", metric=LATENCY, missing=", ".join(incomplete)))
    metrics = {name: (run.data.metrics["r2"], run.data.metrics[LATENCY]) for name, run in runs.items()}
    expected = apply_rule(metrics, budget)
    for name, run in runs.items():
        found = run.data.tags.get(DECISION_TAG)
        if found is None:
            return CheckResult(False, _msg("no_decision", run=name, tag=DECISION_TAG))
        if found != expected[name]:
            r2, latency = metrics[name]
            return CheckResult(
                False,
                _msg(
                    "wrong_decision",
                    run=name,
                    tag=DECISION_TAG,
                    found=found,
                    expected=expected[name],
                    r2=r2,
                    metric=LATENCY,
                    latency=latency,
                    budget=budget,
                    why=_msg(f"why_{expected[name]}"),
                ),
            )
    winner = next((name for name, decision in expected.items() if decision == WINNER), None)
    recorded = find_experiment(ctx).tags.get(WINNER_TAG)
    if winner is None:
        if recorded not in (None, NO_WINNER):
            return CheckResult(False, _msg("wrong_no_winner_tag", tag=WINNER_TAG, none=NO_WINNER, found=recorded))
        return CheckResult(True, _msg("decision_ok_no_winner", budget=budget))
    if recorded is None:
        return CheckResult(False, _msg("no_winner_tag", tag=WINNER_TAG))
    winner_id = runs[winner].info.run_id
    if recorded != winner_id:
        return CheckResult(False, _msg("wrong_winner_tag", tag=WINNER_TAG, found=recorded, expected=winner_id, run=winner))
    over = ", ".join(name for name, decision in expected.items() if decision == OVER_BUDGET) or "none"
    r2, latency = metrics[winner]
    return CheckResult(
        True, _msg("decision_ok", run=winner, r2=r2, metric=LATENCY, latency=latency, budget=budget, over=over)
    )


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, check).
CHECKS: dict[str, tuple[int, Check]] = {
    "check_todo1_metrics": (1, check_metrics),
    "check_todo2_latency": (2, check_latency),
    "check_todo3_models": (3, check_models),
    "check_todo4_figure": (4, check_figure),
    "check_todo5_decision": (5, check_decision),
}


self_check = self_check_for(CHECKS, PARAMS)
