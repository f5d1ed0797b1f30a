"""Lab 01, experiment tracking: evidence and judgments (no reference computation here).

The notebook's self-check cells call ``self_check``; the grader gathers the same evidence
from the store as data, asks a sandboxed process for the logged model's predictions, and
calls the same judgments with values it computed on hidden inputs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import checking, labkit
from autograder.kit.checking import (
    CheckResult,
    Evidence,
    Judge,
    artifact_names,
    client,
    earlier_experiment,
    experiment_record,
    is_plot,
    logged_models,
    model_metadata,
    names,
    newest_ready,
    pairs,
    png_summary,
    predictions,
    read_artifact,
    runs,
    same_param_value,
)
from autograder.kit.i18n import _

LAB = "01_tracking"
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
    "experiment_earlier": (
        "experiment '{name}' is left from an earlier run of this notebook; this run has not made it "
        "active. Call mlflow.set_experiment(EXPERIMENT_NAME)."
    ),
    "experiment_deleted": "experiment '{name}' is deleted. Restore it in the MLflow UI or pick another name.",
    "experiment_ok": "experiment '{name}' exists (id {id}).",
    "no_run_params": (
        "this run of the notebook has started no run (runs left from earlier ones do not count). "
        "Start one with mlflow.start_run(run_name=RUN_NAME)."
    ),
    "no_run_metrics": (
        "no run started by this run of the notebook. Do TODO 2 first, then log rmse, mae and r2 "
        "with mlflow.log_metrics({{...}})."
    ),
    "no_run_figure": (
        "no run started by this run of the notebook. Do TODO 2 first, then log the figure with "
        "mlflow.log_figure(fig, '{figure}')."
    ),
    "no_run_model": (
        "no run started by this run of the notebook. Do TODO 2 first, then log the model with "
        "mlflow.sklearn.log_model(model, name='model', ...)."
    ),
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
    "metrics_logged": "run '{run}' has {values} (the grader checks the values on its own data).",
    "no_figure": "run '{run}' has no artifact '{figure}'; found: {found}. Use mlflow.log_figure(fig, '{figure}').",
    "not_png": "artifact '{figure}' is not a PNG image; log the matplotlib figure with mlflow.log_figure.",
    "not_a_plot": (
        "artifact '{figure}' is not a plot: it is {width}x{height} pixels with {drawn:.1%} drawn on. "
        "Scatter y_pred against y_test on a figure and log that figure."
    ),
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
    "no_predictions": "the logged model could not predict: {error}",
    "model_differs": (
        "the logged model predicts differently from the random forest trained above "
        "(largest difference {diff:.3g} ms); log `model` itself."
    ),
    "model_ok": "model '{model_id}' has a signature and an input example, and predicts like `model` on {rows} rows.",
    "model_logged": "model '{model_id}' has a signature and an input example.",
}


_msg = functools.partial(checking.message, MESSAGES)


# --- Evidence -----------------------------------------------------------------------------


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the store holds for this lab, as plain data. ``run_id``: the notebook's active
    run, if any. ``confine_to``: the submission's folder, when the grader reads it."""
    mlflow_client = client(tracking_uri)
    found = {"experiment": experiment_record(mlflow_client, params["EXPERIMENT_NAME"])}
    if found["experiment"] is None:
        found["experiment_earlier"] = earlier_experiment(mlflow_client, params["EXPERIMENT_NAME"])
    run = _the_run(mlflow_client, params, run_id)
    found["run"] = run
    if run is None:
        return found
    found["artifacts"] = artifact_names(mlflow_client, run, confine_to)
    found["figure"] = png_summary(read_artifact(mlflow_client, run, FIGURE, confine_to)) if FIGURE in found[
        "artifacts"] else None
    models = logged_models(mlflow_client, run["id"])
    model = newest_ready(models)
    if model is None:
        found["model"] = {"state": "failed" if models else "none"}
    else:
        found["model"] = {"state": "ready", "id": model["id"], "uri": f"models:/{model['id']}",
                          **model_metadata(model, confine_to)}
    return found


def _the_run(mlflow_client: Any, params: Mapping[str, Any], run_id: str | None) -> dict[str, Any] | None:
    """The run to grade: the notebook's active run, else the newest run named RUN_NAME,
    else the newest run of any name (so that skipping TODO 1 or 2 does not hide the work
    of TODOs 3-5)."""
    every = runs(mlflow_client)
    if run_id:
        return next((r for r in every if r["id"] == run_id), None)
    named = [r for r in every if r["name"] == params.get("RUN_NAME")]
    return (named or every or [None])[0]


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the TODOs ask for that the parameters alone decide (no reference needed)."""
    return {
        "experiment_name": params["EXPERIMENT_NAME"],
        "run_name": params["RUN_NAME"],
        "params": {
            "model_type": "RandomForestRegressor",
            "n_estimators": params["N_ESTIMATORS"],
            "max_depth": params["MAX_DEPTH"],
            "random_state": params["SEED"],
            "test_size": params["TEST_SIZE"],
        },
    }


# --- Judgments ----------------------------------------------------------------------------


def judge_experiment(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    name, experiment = exp["experiment_name"], ev.get("experiment")
    if experiment is None:
        return CheckResult(False, _msg("experiment_earlier" if ev.get("experiment_earlier") else "no_experiment",
                                       name=name))
    if not experiment["active"]:
        return CheckResult(False, _msg("experiment_deleted", name=name))
    return CheckResult(True, _msg("experiment_ok", name=name, id=experiment["id"]))


def judge_params(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    run = ev.get("run")
    if run is None:
        return CheckResult(False, _msg("no_run_params"))
    if run["name"] != exp["run_name"]:
        return CheckResult(False, _msg("wrong_run_name", found=run["name"], expected=exp["run_name"]))
    expected, logged = exp["params"], run["params"]
    missing = [k for k in expected if k not in logged]
    if missing:
        return CheckResult(
            False, _msg("missing_params", run=run["name"], missing=", ".join(missing), found=names(logged))
        )
    wrong = {k: logged[k] for k in expected if not same_param_value(logged[k], expected[k])}
    if wrong:
        want = pairs({k: expected[k] for k in wrong})
        return CheckResult(False, _msg("wrong_params", run=run["name"], wrong=pairs(wrong), expected=want))
    return CheckResult(True, _msg("params_ok", run=run["name"], names=", ".join(expected)))


def judge_metrics(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    run = ev.get("run")
    if run is None:
        return CheckResult(False, _msg("no_run_metrics"))
    logged = run["metrics"]
    missing = [m for m in METRICS if m not in logged]
    if missing:
        return CheckResult(
            False, _msg("missing_metrics", run=run["name"], missing=", ".join(missing), found=names(logged))
        )
    values = pairs({m: f"{logged[m]:.4g}" for m in METRICS})
    ref = exp.get("metrics")
    if ref is None:
        return CheckResult(True, _msg("metrics_logged", run=run["name"], values=values))
    wrong = [m for m in METRICS if not math.isclose(logged[m], ref[m], rel_tol=METRIC_RTOL, abs_tol=1e-4)]
    if wrong:
        return CheckResult(
            False,
            _msg("wrong_metrics", run=run["name"], wrong=pairs({m: f"{logged[m]:.4g}" for m in wrong}),
                 expected=pairs({m: f"{ref[m]:.4g}" for m in wrong})),
        )
    return CheckResult(True, _msg("metrics_ok", run=run["name"], values=values))


def judge_figure(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    run = ev.get("run")
    if run is None:
        return CheckResult(False, _msg("no_run_figure", figure=FIGURE))
    if FIGURE not in ev.get("artifacts", []):
        found = ", ".join(ev.get("artifacts", [])) or _("none")
        return CheckResult(False, _msg("no_figure", run=run["name"], figure=FIGURE, found=found))
    figure = ev.get("figure")
    if not figure or not figure.get("decodes"):
        return CheckResult(False, _msg("not_png", figure=FIGURE))
    if not is_plot(figure):
        return CheckResult(False, _msg("not_a_plot", figure=FIGURE, **{k: figure[k] for k in ("width", "height",
                                                                                              "drawn")}))
    return CheckResult(True, _msg("figure_ok", run=run["name"], figure=FIGURE))


def judge_model(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    run = ev.get("run")
    if run is None:
        return CheckResult(False, _msg("no_run_model"))
    model = ev.get("model") or {"state": "none"}
    if model["state"] != "ready":
        return CheckResult(False, _msg("model_failed" if model["state"] == "failed" else "no_model", run=run["name"]))
    if not model.get("input_names"):
        return CheckResult(False, _msg("no_signature"))
    if sorted(model["input_names"]) != sorted(labkit.FEATURES):
        return CheckResult(False, _msg("wrong_signature", found=model["input_names"], expected=labkit.FEATURES))
    if not model.get("has_example"):
        return CheckResult(False, _msg("no_example"))
    want = exp.get("y_pred")
    if want is None:
        return CheckResult(True, _msg("model_logged", model_id=model["id"]))
    got = model.get("predictions")
    if not isinstance(got, list) or len(got) != len(want):
        return CheckResult(False, _msg("no_predictions", error=model.get("prediction_error", _("no answer"))))
    diff = max((abs(float(a) - float(b)) for a, b in zip(got, want, strict=True)), default=0.0)
    if not all(math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6) for a, b in zip(got, want, strict=True)):
        return CheckResult(False, _msg("model_differs", diff=diff))
    return CheckResult(True, _msg("model_ok", model_id=model["id"], rows=len(want)))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_experiment": (1, judge_experiment),
    "check_todo2_params": (2, judge_params),
    "check_todo3_metrics": (3, judge_metrics),
    "check_todo4_figure": (4, judge_figure),
    "check_todo5_model": (5, judge_model),
}


# --- In the notebook ----------------------------------------------------------------------


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure.

    Judges this run of the notebook (its active run) against the values shipped for the
    default inputs; ``strict`` (the hidden test) asks the model about every shipped row."""
    import mlflow
    import pandas as pd

    params = checking.notebook_params(namespace, PARAMS)
    active = mlflow.active_run()

    def gather() -> tuple[Evidence, dict[str, Any]]:
        uri = mlflow.get_tracking_uri()
        ev = evidence(uri, params, active.info.run_id if active else None)
        exp = checking.expected_values(LAB, params, expected_from_params)
        if check_id == "check_todo5_model" and "y_pred" in exp and (ev.get("model") or {}).get("state") == "ready":
            rows = exp["rows"] if strict else exp["rows"][:20]
            exp["y_pred"] = exp["y_pred"][: len(rows)]
            data = pd.read_csv(labkit.data_path(namespace.get("DATA_PATH")))
            try:
                ev["model"]["predictions"] = predictions(uri, ev["model"]["uri"], data.loc[rows, labkit.FEATURES]
                                                         .to_dict("records"))
            except Exception as exc:
                ev["model"]["prediction_error"] = f"{type(exc).__name__}: {exc}"
        return ev, exp

    checking.run_self_check(CHECKS, check_id, gather)
