"""Checks for Lab 01, experiment tracking.

Each check reads the MLflow store and re-computes what it can from the data, so that
printing a number, or logging one by hand, does not pass: the metrics must be those of
the model the lab trains, and the logged model must predict like it.
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
    same_param_value,
    self_check_for,
)

#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = ["EXPERIMENT_NAME", "RUN_NAME", "SEED", "TEST_SIZE", "N_ESTIMATORS", "MAX_DEPTH"]
METRICS = ("rmse", "mae", "r2")
FIGURE = "pred_vs_actual.png"
#: Relative tolerance for logged metrics: rounding to 3-4 significant digits passes,
#: a metric computed on the training split or as MSE instead of RMSE does not.
METRIC_RTOL = 1e-3

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "no_experiment": (
        "no experiment named '{name}' in the store. Call mlflow.set_experiment(EXPERIMENT_NAME)."
    ),
    "experiment_deleted": "experiment '{name}' is deleted. Restore it in the MLflow UI or pick another name.",
    "experiment_ok": "experiment '{name}' exists (id {id}).",
    "no_run_params": "no run found. Start one with mlflow.start_run(run_name=RUN_NAME).",
    "no_run_metrics": "no run found. Log rmse, mae and r2 with mlflow.log_metrics({{...}}).",
    "no_run_figure": "no run found. Log the figure with mlflow.log_figure(fig, '{figure}').",
    "no_run_model": "no run found. Log the model with mlflow.sklearn.log_model(model, name='model', ...).",
    "wrong_run_name": "the run is named '{found}'; start it with run_name=RUN_NAME ('{expected}').",
    "missing_params": "run '{run}' lacks parameter(s) {missing}; found: {found}.",
    "wrong_params": "run '{run}' has {wrong}; expected {expected}.",
    "params_ok": "run '{run}' has parameters {names}.",
    "missing_metrics": "run '{run}' lacks metric(s) {missing}; found: {found}.",
    "wrong_metrics": (
        "run '{run}' has {wrong}, but the test split gives {expected}. "
        "Compute each metric on y_test and model.predict(X_test)."
    ),
    "metrics_ok": "run '{run}' has {values}, matching the test split.",
    "no_figure": "run '{run}' has no artifact '{figure}'; found: {found}. Use mlflow.log_figure(fig, '{figure}').",
    "not_png": "artifact '{figure}' is not a PNG image; log the matplotlib figure with mlflow.log_figure.",
    "figure_ok": "run '{run}' has the figure '{figure}'.",
    "no_model": (
        "no model logged in run '{run}'. Call mlflow.sklearn.log_model(model, name='model', ...) "
        "while the run is active."
    ),
    "model_failed": (
        "run '{run}' has only a failed model: log_model raised before it finished. "
        "Read its error above (skops needs skops_trusted_types=TRUSTED_TYPES)."
    ),
    "no_signature": "the logged model has no signature; pass signature=infer_signature(X_test, y_pred).",
    "wrong_signature": "the signature's inputs are {found}; expected the feature columns {expected}.",
    "no_example": "the logged model has no input example; pass input_example=X_test.head(5).",
    "model_differs": (
        "the logged model predicts differently from the random forest trained above "
        "(largest difference {diff:.3g} ms); log `model` itself."
    ),
    "model_ok": (
        "model '{model_id}' has a signature and an input example, and predicts like `model` "
        "on {rows} test rows."
    ),
}


def _msg(key: str, **values: Any) -> str:
    return MESSAGES[key].format(**values)


def find_run(ctx: LabContext) -> Any | None:
    """The run to grade: the notebook's active run, else the newest run named RUN_NAME,
    else the newest run of any name, in any experiment (so that skipping TODO 1 or 2 does
    not hide the work of TODOs 3-5)."""
    mlflow_client = client(ctx)
    if ctx.run_id:
        return mlflow_client.get_run(ctx.run_id)
    experiment_ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not experiment_ids:
        return None
    runs = mlflow_client.search_runs(experiment_ids, order_by=["attributes.start_time DESC"], max_results=200)
    named = [r for r in runs if r.info.run_name == ctx.params.get("RUN_NAME")]
    return (named or runs or [None])[0]


@functools.lru_cache(maxsize=8)
def _reference(data_path: str, seed: int, test_size: float, n_estimators: int, max_depth: int) -> dict[str, Any]:
    """Train the lab's model the way the notebook does and score it on the test split."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    X_train, X_test, y_train, y_test = train_test_split(
        df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed
    )
    model = RandomForestRegressor(
        n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=-1
    ).fit(X_train, y_train)
    y_pred = model.predict(X_test)
    return {
        "X_test": X_test,
        "y_pred": np.asarray(y_pred),
        "rmse": float(root_mean_squared_error(y_test, y_pred)),
        "mae": float(mean_absolute_error(y_test, y_pred)),
        "r2": float(r2_score(y_test, y_pred)),
    }


def reference(ctx: LabContext) -> dict[str, Any]:
    """The expected test-split metrics and predictions for this context's parameters."""
    p = ctx.params
    return _reference(
        str(ctx.data_path), int(p["SEED"]), float(p["TEST_SIZE"]), int(p["N_ESTIMATORS"]), int(p["MAX_DEPTH"])
    )


def prepare(ctx: LabContext) -> None:
    """Load what the checks need ahead of time (the grader calls this in a thread while the
    notebook runs): MLflow's model loading, a client on the store, the reference model."""
    import mlflow.pyfunc
    import mlflow.sklearn  # noqa: F401  (the flavour the logged model is loaded with)

    client(ctx).search_experiments()
    reference(ctx)


def check_experiment(ctx: LabContext, strict: bool = False) -> CheckResult:
    name = ctx.params["EXPERIMENT_NAME"]
    experiment = client(ctx).get_experiment_by_name(name)
    if experiment is None:
        return CheckResult(False, _msg("no_experiment", name=name))
    if experiment.lifecycle_stage != "active":
        return CheckResult(False, _msg("experiment_deleted", name=name))
    return CheckResult(True, _msg("experiment_ok", name=name, id=experiment.experiment_id))


def check_params(ctx: LabContext, strict: bool = False) -> CheckResult:
    run = find_run(ctx)
    if run is None:
        return CheckResult(False, _msg("no_run_params"))
    p = ctx.params
    run_name = run.info.run_name
    if run_name != p["RUN_NAME"]:
        return CheckResult(False, _msg("wrong_run_name", found=run_name, expected=p["RUN_NAME"]))
    expected = {
        "model_type": "RandomForestRegressor",
        "n_estimators": p["N_ESTIMATORS"],
        "max_depth": p["MAX_DEPTH"],
        "random_state": p["SEED"],
        "test_size": p["TEST_SIZE"],
    }
    logged = run.data.params
    missing = [k for k in expected if k not in logged]
    if missing:
        return CheckResult(
            False, _msg("missing_params", run=run_name, missing=", ".join(missing), found=names(logged))
        )
    wrong = {k: logged[k] for k in expected if not same_param_value(logged[k], expected[k])}
    if wrong:
        return CheckResult(
            False,
            _msg("wrong_params", run=run_name, wrong=pairs(wrong), expected=pairs({k: expected[k] for k in wrong})),
        )
    return CheckResult(True, _msg("params_ok", run=run_name, names=", ".join(expected)))


def check_metrics(ctx: LabContext, strict: bool = False) -> CheckResult:
    run = find_run(ctx)
    if run is None:
        return CheckResult(False, _msg("no_run_metrics"))
    logged = run.data.metrics
    missing = [m for m in METRICS if m not in logged]
    if missing:
        return CheckResult(
            False, _msg("missing_metrics", run=run.info.run_name, missing=", ".join(missing), found=names(logged))
        )
    ref = reference(ctx)
    wrong = [m for m in METRICS if not math.isclose(logged[m], ref[m], rel_tol=METRIC_RTOL, abs_tol=1e-4)]
    if wrong:
        return CheckResult(
            False,
            _msg(
                "wrong_metrics",
                run=run.info.run_name,
                wrong=pairs({m: f"{logged[m]:.4g}" for m in wrong}),
                expected=pairs({m: f"{ref[m]:.4g}" for m in wrong}),
            ),
        )
    values = pairs({m: f"{logged[m]:.4g}" for m in METRICS})
    return CheckResult(True, _msg("metrics_ok", run=run.info.run_name, values=values))


def check_figure(ctx: LabContext, strict: bool = False) -> CheckResult:
    run = find_run(ctx)
    if run is None:
        return CheckResult(False, _msg("no_run_figure", figure=FIGURE))
    mlflow_client = client(ctx)
    found = [a.path for a in mlflow_client.list_artifacts(run.info.run_id)]
    if FIGURE not in found:
        return CheckResult(
            False, _msg("no_figure", run=run.info.run_name, figure=FIGURE, found=", ".join(found) or "none")
        )
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow_client.download_artifacts(run.info.run_id, FIGURE, tmp))
        header = local.read_bytes()[:8]
    if header != b"\x89PNG\r\n\x1a\n":
        return CheckResult(False, _msg("not_png", figure=FIGURE))
    return CheckResult(True, _msg("figure_ok", run=run.info.run_name, figure=FIGURE))


def check_model(ctx: LabContext, strict: bool = False) -> CheckResult:
    """Visible part: a model with signature and input example. Strict (the hidden test):
    it also predicts like the lab's random forest on the whole test split."""
    import mlflow
    import numpy as np

    run = find_run(ctx)
    if run is None:
        return CheckResult(False, _msg("no_run_model"))
    logged, any_model = newest_ready_model(ctx, run)
    if logged is None:
        return CheckResult(False, _msg("model_failed" if any_model else "no_model", run=run.info.run_name))
    model_uri = f"models:/{logged.model_id}"
    mlflow.set_tracking_uri(ctx.tracking_uri)
    info = mlflow.models.get_model_info(model_uri)
    if info.signature is None:
        return CheckResult(False, _msg("no_signature"))
    inputs = info.signature.inputs.input_names() if info.signature.inputs else []
    if sorted(inputs) != sorted(labkit.FEATURES):
        return CheckResult(False, _msg("wrong_signature", found=inputs, expected=labkit.FEATURES))
    if info.saved_input_example_info is None:
        return CheckResult(False, _msg("no_example"))
    model = mlflow.pyfunc.load_model(model_uri)
    ref = reference(ctx)
    sample = ref["X_test"] if strict else ref["X_test"].head(20)
    predicted = np.asarray(model.predict(sample), dtype=float).ravel()
    diff = float(np.max(np.abs(predicted - ref["y_pred"][: len(sample)])))
    if not np.allclose(predicted, ref["y_pred"][: len(sample)], rtol=1e-6, atol=1e-6):
        return CheckResult(False, _msg("model_differs", diff=diff))
    return CheckResult(True, _msg("model_ok", model_id=logged.model_id, rows=len(sample)))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, check).
CHECKS: dict[str, tuple[int, Check]] = {
    "check_todo1_experiment": (1, check_experiment),
    "check_todo2_params": (2, check_params),
    "check_todo3_metrics": (3, check_metrics),
    "check_todo4_figure": (4, check_figure),
    "check_todo5_model": (5, check_model),
}


self_check = self_check_for(CHECKS, PARAMS)
