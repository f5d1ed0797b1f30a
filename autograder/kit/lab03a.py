"""Lab 03a, the candidates: evidence and judgments (no reference computation here).

The lab trains four models, each in its own child run under one parent run, scores them by
cross-validation on the training split (``cv_*`` metrics, Task 1) and logs each model the
MLflow 3 way, with the skops types it needs trusted (Task 2). The notebook's self-check cells
call ``self_check``; the grader gathers the same evidence from the store as data, asks a
sandboxed process for each logged model's predictions, and calls the same judgments with values
it computed on hidden inputs. Lab 03b (``lab03b``) chooses among the same four models.
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
    client,
    experiment_record,
    logged_models,
    model_metadata,
    names,
    newest_ready,
    pairs,
    predictions,
    read_file,
    run_record,
)
from autograder.kit.i18n import _

LAB = "03a_candidates"
#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = ["EXPERIMENT_NAME", "PARENT_RUN_NAME", "SEED", "TEST_SIZE", "CV_FOLDS", "N_ESTIMATORS", "MAX_DEPTH"]
#: Run name -> model class, in the order of the notebook (Lab 03b trains the same four).
MODEL_TYPES = {
    "linear": "LinearRegression",
    "random_forest": "RandomForestRegressor",
    "gradient_boosting": "GradientBoostingRegressor",
    "hist_gradient_boosting": "HistGradientBoostingRegressor",
}
#: Cross-validated on the training split, logged into every model's run (Task 1).
METRICS = ("cv_r2_mean", "cv_r2_std", "cv_rmse_mean", "cv_mae_mean")
#: The metric the table ranks by, and Lab 03b's rule (higher is better).
SELECTION = "cv_r2_mean"
#: Errors, logged as positive numbers (scikit-learn's scorers give them negated).
ERRORS = ("cv_rmse_mean", "cv_mae_mean")
#: Relative tolerance for logged metrics: rounding to 3-4 significant digits passes,
#: a metric computed on the test split, on other folds or as MSE instead of RMSE does not.
METRIC_RTOL = 1e-3
#: Rows of the test split the visible self-check asks each model about (the hidden one: all).
SAMPLE_ROWS = 20
#: Runs of the lab's experiment read, newest first (a few notebook runs make 5 each).
MAX_RUNS = 1000

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
        "that model's own run, reopened with mlflow.start_run(run_id=...) and the run id in `runs`."
    ),
    "wrong_metrics": (
        "run '{run}' has {wrong}, but its model gives {expected} by {folds}-fold cross-validation on the "
        "training split. Cross-validate on X_train and y_train with cv=CV_FOLDS (the test split waits for "
        "Lab 03b).{sign}"
    ),
    "negated_error": (
        " An error is positive: a 'neg_' scorer gives minus the error, so flip its sign before logging it."
    ),
    "metrics_ok": "all {count} runs have {metrics} matching {folds}-fold cross-validation ({values}).",
    "metrics_logged": (
        "all {count} runs have {metrics} ({values}); the grader checks the values on its own data."
    ),
    "no_model": (
        "no model logged in run '{run}'. Call mlflow.sklearn.log_model(model, name='model', ...) "
        "inside that model's own run (mlflow.start_run(run_id=...), with its id from `runs`)."
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
        "the model of run '{run}' has no signature; pass signature=infer_signature(X_train, "
        "model.predict(X_train))."
    ),
    "wrong_signature": "the signature of run '{run}' has inputs {found}; expected the feature columns {expected}.",
    "no_example": "the model of run '{run}' has no input example; pass input_example=X_train.head(5).",
    "no_predictions": "the model logged in run '{run}' could not predict: {error}",
    "model_differs": (
        "the model logged in run '{run}' predicts differently from the {model_type} trained above "
        "(largest difference {diff:.3g} ms); log models[name] into runs[name]."
    ),
    "models_ok": (
        "all {count} runs have a model with a signature and an input example that predicts like "
        "the trained one on {rows} test rows."
    ),
    "models_logged": (
        "all {count} runs have a skops model with a signature and an input example "
        "(the grader checks its predictions on its own data)."
    ),
}


_msg = functools.partial(checking.message, MESSAGES)


# --- Evidence -----------------------------------------------------------------------------


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the store holds for this lab, as plain data: the experiment, the newest parent run
    and the newest child run of each model's name with its logged model (read from its
    ``MLmodel`` file, never loaded). ``run_id`` is unused: the runs are found by name.
    ``confine_to``: the submission's folder, when the grader reads it."""
    mlflow_client = client(tracking_uri)
    experiment = experiment_record(mlflow_client, params["EXPERIMENT_NAME"])
    found: Evidence = {"experiment": experiment, "parent": None, "candidates": {}}
    if experiment is None:
        return found
    every = [run_record(r) for r in mlflow_client.search_runs(  # newest first
        [experiment["id"]], order_by=["attributes.start_time DESC"], max_results=MAX_RUNS)]
    parent = next((r for r in every if r["name"] == params["PARENT_RUN_NAME"]), None)
    found["parent"] = parent
    if parent is None:
        return found
    candidates: dict[str, Any] = {}
    for run in every:  # newest first: keep the newest child of each name
        if run["tags"].get("mlflow.parentRunId") == parent["id"]:
            candidates.setdefault(run["name"], run)
    for name, run in candidates.items():
        if name in MODEL_TYPES:
            run["model"] = _model_evidence(mlflow_client, run, confine_to)
    found["candidates"] = candidates
    return found


def _model_evidence(mlflow_client: Any, run: Mapping[str, Any], confine_to: Path | None) -> dict[str, Any]:
    models = logged_models(mlflow_client, run["id"])
    model = newest_ready(models)
    if model is None:
        return {"state": "failed" if models else "none"}
    return {"state": "ready", "id": model["id"], "uri": f"models:/{model['id']}",
            **model_metadata(model, confine_to), "format": _serialization_format(model, confine_to)}


def _serialization_format(model: Mapping[str, Any], confine_to: Path | None) -> str:
    """How the sklearn flavour saved the model, as its ``MLmodel`` file says (read as YAML)."""
    import yaml

    text = read_file(f"{model['artifact_location'].rstrip('/')}/MLmodel", confine_to, limit=1 << 20)
    try:
        meta = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        meta = None
    flavor = ((meta or {}).get("flavors") or {}).get("sklearn") if isinstance(meta, dict) else None
    if not isinstance(flavor, dict):
        return "no sklearn flavour"
    return str(flavor.get("serialization_format", "no serialization format"))


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the TODOs ask for that the parameters alone decide (no reference needed)."""
    return {
        "experiment_name": params["EXPERIMENT_NAME"],
        "parent_run_name": params["PARENT_RUN_NAME"],
        "cv_folds": int(params.get("CV_FOLDS", 3)),
    }


# --- Judgments ----------------------------------------------------------------------------


def _candidate_runs(ev: Evidence, exp: Mapping[str, Any]) -> tuple[dict[str, Any] | None, CheckResult | None]:
    """The four model runs, or a failed result saying why they cannot be found."""
    experiment, parent = exp["experiment_name"], exp["parent_run_name"]
    if ev.get("experiment") is None:
        return None, CheckResult(False, _msg("no_experiment", experiment=experiment))
    found = ev.get("candidates") or {}
    if ev.get("parent") is None or not found:
        return None, CheckResult(False, _msg("no_candidates", parent=parent, experiment=experiment))
    if any(name not in found for name in MODEL_TYPES):
        return None, CheckResult(
            False, _msg("missing_runs", expected=", ".join(MODEL_TYPES), parent=parent, found=names(found))
        )
    return {name: found[name] for name in MODEL_TYPES}, None


def judge_metrics(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    candidates, failure = _candidate_runs(ev, exp)
    if candidates is None:
        return failure
    ref = exp.get("metrics")
    for name, run in candidates.items():
        logged = run["metrics"]
        missing = [m for m in METRICS if m not in logged]
        if missing:
            return CheckResult(
                False, _msg("missing_metrics", run=name, missing=", ".join(missing), found=names(logged))
            )
        if ref is None:
            continue
        want = ref[name]
        wrong = [m for m in METRICS if not _matches(logged[m], want, m)]
        if wrong:
            negated = any(m in ERRORS and _close(-logged[m], want[m]) for m in wrong)
            return CheckResult(
                False,
                _msg("wrong_metrics", run=name, wrong=pairs({m: f"{logged[m]:.4g}" for m in wrong}),
                     expected=pairs({m: f"{want[m]:.4g}" for m in wrong}), folds=exp.get("cv_folds", "k"),
                     sign=_msg("negated_error") if negated else ""),
            )
    values = ", ".join(f"{name} {SELECTION}={run['metrics'][SELECTION]:.3f}" for name, run in candidates.items())
    return CheckResult(True, _msg("metrics_ok" if ref is not None else "metrics_logged", count=len(candidates),
                                  values=values, metrics=", ".join(METRICS), folds=exp.get("cv_folds", "k")))


def _close(logged: float, want: float) -> bool:
    return math.isclose(logged, want, rel_tol=METRIC_RTOL, abs_tol=1e-4)


def _matches(logged: float, want: Mapping[str, float], metric: str) -> bool:
    """A logged metric against the reference; a standard deviation may be the population's
    (NumPy's default) or the sample's (pandas')."""
    if metric == "cv_r2_std" and "cv_r2_std_sample" in want and _close(logged, want["cv_r2_std_sample"]):
        return True
    return _close(logged, want[metric])


def judge_models(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """Every run has a READY skops model with the features' signature and an input example;
    with the expected predictions at hand, it predicts like the model the lab trains."""
    candidates, failure = _candidate_runs(ev, exp)
    if candidates is None:
        return failure
    want = exp.get("y_pred")
    for name, run in candidates.items():
        model = run.get("model") or {"state": "none"}
        if model["state"] != "ready":
            key = "model_failed" if model["state"] == "failed" else "no_model"
            return CheckResult(False, _msg(key, run=name, model_type=MODEL_TYPES[name]))
        if model.get("format") != "skops":
            return CheckResult(False, _msg("not_skops", run=name, found=model.get("format")))
        if not model.get("input_names"):
            return CheckResult(False, _msg("no_signature", run=name))
        if sorted(model["input_names"]) != sorted(labkit.FEATURES):
            return CheckResult(
                False, _msg("wrong_signature", run=name, found=model["input_names"], expected=labkit.FEATURES)
            )
        if not model.get("has_example"):
            return CheckResult(False, _msg("no_example", run=name))
        if want is None:
            continue
        got, ref = model.get("predictions"), want[name]
        if not isinstance(got, list) or len(got) != len(ref):
            return CheckResult(False, _msg("no_predictions", run=name,
                                           error=model.get("prediction_error", _("no answer"))))
        diff = max((abs(float(a) - float(b)) for a, b in zip(got, ref, strict=True)), default=0.0)
        if not all(math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6) for a, b in zip(got, ref, strict=True)):
            return CheckResult(False, _msg("model_differs", run=name, model_type=MODEL_TYPES[name], diff=diff))
    if want is None:
        return CheckResult(True, _msg("models_logged", count=len(candidates)))
    return CheckResult(True, _msg("models_ok", count=len(candidates), rows=len(next(iter(want.values())))))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_metrics": (1, judge_metrics),
    "check_todo2_models": (2, judge_models),
}


# --- In the notebook ----------------------------------------------------------------------


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure.

    Judges this run of the notebook against the values shipped for the default inputs;
    ``strict`` (the hidden test) asks each model about every shipped test row."""
    import mlflow
    import pandas as pd

    params = checking.notebook_params(namespace, PARAMS)

    def gather() -> tuple[Evidence, dict[str, Any]]:
        uri = mlflow.get_tracking_uri()
        ev = evidence(uri, params)
        exp = checking.expected_values(LAB, params, expected_from_params)
        if check_id == "check_todo2_models" and "y_pred" in exp:
            rows = exp["rows"] if strict else exp["rows"][:SAMPLE_ROWS]
            exp["y_pred"] = {name: values[: len(rows)] for name, values in exp["y_pred"].items()}
            data = pd.read_csv(labkit.data_path(namespace.get("DATA_PATH"))).loc[rows, labkit.FEATURES]
            records = data.to_dict("records")
            for name, run in ev["candidates"].items():
                model = run.get("model") or {}
                if name not in MODEL_TYPES or model.get("state") != "ready":
                    continue
                try:
                    model["predictions"] = predictions(uri, model["uri"], records)
                except Exception as exc:
                    model["prediction_error"] = f"{type(exc).__name__}: {exc}"
        return ev, exp

    checking.run_self_check(CHECKS, check_id, gather)
