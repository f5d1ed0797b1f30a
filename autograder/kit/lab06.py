"""Lab 06, drift detection and retraining: evidence and judgments (no reference computation here).

The evidence is in the MLflow store: one run per production batch (``drift-<batch>``) with the
drift metrics, tags, the JSON report and the plots; the ``retrain`` run with the comparison;
the registry's aliases. The grader computes the KS and chi-square tests, the PSI, the
champion's error per window and its change point, and both models' predictions on
``recent_eval`` on its own hidden data (``autograder.references.lab06``), and applies the
lab's rules to the submission's own evidence; a logged model is asked for predictions only
inside the submission's sandbox. The notebook's self-checks judge the same evidence against
the values shipped for the default inputs.
"""

from __future__ import annotations

import functools
import json
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
    is_plot,
    names,
    pairs,
    png_summary,
    predictions,
    read_artifact,
    runs,
    version_run_name,
)

LAB = "06_drift"
#: Names read from the notebook's parameters cell (and set by the grader or papermill).
#: DATA_PATH is one of them: the shipped values hold only for the course's own data.
PARAMS = [
    "DATA_PATH",
    "EXPERIMENT_NAME",
    "MODEL_NAME",
    "INITIAL_RUN",
    "RETRAIN_RUN",
    "SEED",
    "N_ESTIMATORS",
    "MAX_DEPTH",
    "ALPHA",
    "PSI_BINS",
    "PSI_EPS",
    "PSI_SIGNIFICANT",
    "WINDOW",
    "PH_DELTA",
    "PH_THRESHOLD",
    "RECENT_ROWS",
    "RECENT_EVAL_ROWS",
]
#: The production batches, in time order (production/batch_<name>.csv next to the dataset).
BATCHES = ("no_drift", "feature_drift", "concept_drift")
RUN_PREFIX = "drift-"
CATEGORICAL = "region"
#: The batch whose tail is the recent labelled data of TODO 6.
RECENT_BATCH = "concept_drift"
REPORT_FILE = "drift_report.json"
DIST_FIGURE = "distributions.png"
REPORT_KEYS = ("batch", "rows", "alpha", "psi_threshold", "features", "drifted_features", "drift_detected")
CHAMPION, CHALLENGER = "champion", "challenger"
#: Test statistics and p-values: scipy's own numbers, up to float rounding.
TEST_RTOL = 1e-4
#: PSI: other correct ways to bin the same deciles (ties on an edge, adding eps instead of a
#: floor) move it by less than 0.5%; equal-width bins or the current's quantiles do not pass.
PSI_RTOL, PSI_ATOL = 0.01, 0.002
#: A p-value in the JSON report: pandas' to_json keeps 10 decimals (2e-8 is written 0.00000002).
REPORT_P_ATOL = 1e-9
#: Window MAEs and model MAEs: the same predictions, another formula.
MAE_RTOL = 1e-4
#: A model's predictions: the same forest gives the same numbers.
PRED_TOL = 1e-6
#: Registry versions asked for predictions at most (the challenger, the one in service, ...).
MAX_VERSIONS = 4

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "no_batch_run": (
        "no run named '{run}' in the store. Run the cell under 'One run per batch' (it creates the runs "
        "drift-no_drift, drift-feature_drift and drift-concept_drift), then this task's cell again."
    ),
    "missing_tests": (
        "run '{run}' lacks the metric(s) {missing} (test metrics found: {found}). Complete drift_tests(): "
        "stats.ks_2samp on each numeric feature in labkit.FEATURES and stats.chi2_contingency on the region "
        "counts, then run the whole cell, which logs them.{target}"
    ),
    "target_tested": " The target response_time_ms is not an input feature: test the features.",
    "wrong_tests": (
        "run '{run}' has {wrong}, but scipy gives {expected} for the same columns. Use stats.ks_2samp(reference["
        "feature], current[feature]) and stats.chi2_contingency(counts) with one row of region counts per sample."
    ),
    "bad_tests": "run '{run}' has {wrong}: a p-value is a number from 0 to 1, a statistic is not negative.",
    "tests_ok": "the KS and chi-square results of the 3 batch runs match scipy (p < {alpha}: {drifted}).",
    "tests_logged": (
        "the 3 batch runs have the KS and chi-square metrics of every column (the grader checks the values "
        "on its own data)."
    ),
    "missing_psi": (
        "run '{run}' lacks the metric(s) {missing} (PSI metrics found: {found}). Complete psi() and run the "
        "whole cell, which logs psi_<feature> for each numeric feature."
    ),
    "wrong_psi": (
        "run '{run}' has {wrong}, but reference-decile bins give {expected}. Cut at "
        "np.quantile(reference, np.linspace(0, 1, bins + 1)) with open outer edges (-inf, inf), floor the "
        "shares at eps, and sum (current - reference) * ln(current / reference)."
    ),
    "bad_psi": "run '{run}' has {wrong}: a PSI is a number of at least 0.",
    "psi_ok": "the PSI of every feature in the 3 batch runs is right (above {threshold}: {shifted}).",
    "psi_logged": "the 3 batch runs have the PSI of every feature (the grader checks the values on its own data).",
    "no_report": (
        "run '{run}' has no artifact '{file}' (artifacts: {found}). In log_drift_report(), log the report with "
        "mlflow.log_dict(report, '{file}') inside mlflow.start_run(run_id=run_ids[name])."
    ),
    "bad_json": (
        "'{file}' of run '{run}' is not valid JSON ({error}). NaN is not JSON: use null (None) for a missing "
        "value, e.g. json.loads(table.to_json(orient='index'))."
    ),
    "missing_keys": "'{file}' of run '{run}' lacks the key(s) {missing}; found: {found}.",
    "wrong_batch": "'{file}' of run '{run}' has batch={found}; expected '{expected}'.",
    "wrong_thresholds": (
        "'{file}' of run '{run}' has alpha={alpha} and psi_threshold={psi}; expected ALPHA={expected_alpha} "
        "and PSI_SIGNIFICANT={expected_psi}."
    ),
    "bad_features": (
        "'features' in '{file}' of run '{run}' must map each column to its row of the table, with the keys "
        "p_value, psi and drifted (true/false); found {found}. Use json.loads(table.to_json(orient='index'))."
    ),
    "wrong_rule": (
        "in the report of '{run}', '{feature}' has p_value={p}, psi={psi} and drifted={found}; the rule "
        "(p_value < ALPHA or psi > PSI_SIGNIFICANT) gives {expected}."
    ),
    "wrong_rows": "'{file}' of run '{run}' has rows={found}; the batch has {expected} rows (len(current)).",
    "report_mismatch": (
        "in the report of '{run}', '{feature}' has {value_name}={found}, but the run logged {metric}={logged}. Build "
        "'features' from drift_table(reference, current), the tests and PSI of Tasks 1 and 2 on this batch."
    ),
    "report_unmatched": (
        "the report of '{run}' lists the column(s) {columns}, which the run has no test metric for; "
        "'features' must hold one row per tested column (found: {found})."
    ),
    "report_incomplete": "the report of '{run}' lacks the tested column(s) {missing}.",
    "wrong_list": "'drifted_features' of '{run}' is {found}; the columns marked drifted are {expected}.",
    "wrong_detected": (
        "'drift_detected' of '{run}' is {found}; it must be true when at least one column drifted "
        "(drifted columns: {drifted})."
    ),
    "wrong_drift_tag": (
        "run '{run}' has the tag drift_detected={found}; expected '{expected}', as in its report. Set it with "
        "mlflow.set_tag('drift_detected', 'true' or 'false')."
    ),
    "no_figure": (
        "run '{run}' has no PNG '{file}' (artifacts: {found}). Log plot_distributions(...) with "
        "mlflow.log_figure(fig, '{file}')."
    ),
    "not_a_plot": (
        "'{file}' of run '{run}' is not a plot: {what}. Log the figure plot_distributions(...) returns with "
        "mlflow.log_figure(fig, '{file}')."
    ),
    "not_png": "it does not decode as a PNG image",
    "too_small": "it is {width}x{height} pixels with {drawn:.1%} drawn on",
    "report_ok": (
        "the 3 batch runs have {file}, {figure} and the tag drift_detected, following the rule ({verdicts})."
    ),
    "no_windows": (
        "run '{run}' has no metric 'window_mae'. Complete window_mae() and page_hinkley() and run the whole "
        "cell, which logs the error of each window."
    ),
    "wrong_windows": (
        "run '{run}' has {found} window_mae values ({first}...), but the champion's MAE per window of {window} "
        "rows is {expected_count} values ({expected_first}...). Average the absolute errors of rows 0-{last}, "
        "then {window}-{next_last}, and so on."
    ),
    "bad_windows": "run '{run}' has window_mae values that are not finite, non-negative numbers ({first}...).",
    "no_concept_tag": (
        "run '{run}' has no tag 'concept_drift_detected'. Run the whole TODO 4 cell: it sets the tag from "
        "page_hinkley()."
    ),
    "bad_concept_tag": "run '{run}' has concept_drift_detected={found}; expected 'true' or 'false'.",
    "false_alarm": (
        "the change detector fired on '{batch}' (tag concept_drift_detected={found}), but the champion's error "
        "does not rise in that batch. Check page_hinkley(): subtract the running mean and delta from each "
        "value, and alarm only when the cumulative sum minus its lowest point exceeds the threshold."
    ),
    "missed_change": (
        "the change detector did not fire on '{batch}' (tag concept_drift_detected={found}), where the "
        "error jumps. page_hinkley() must return the index of the first window whose cumulative sum "
        "minus its lowest point exceeds the threshold."
    ),
    "no_change_row": "run '{run}' has no metric 'change_point_row'; run the whole TODO 4 cell.",
    "wrong_change_row": (
        "the change was detected at row {found} of '{batch}', but the detector fires at row {expected}; "
        "page_hinkley() must return the index of the window where the alarm is raised (row = index x {window})."
    ),
    "concept_ok": "window_mae matches the champion's error in the 3 batch runs; the detector fired on {fired}.",
    "concept_logged": (
        "the 3 batch runs have window_mae and the detector's verdict ({fired}); the grader checks the values on "
        "its own data."
    ),
    "no_decision": (
        "run '{run}' has no tag 'retrain'. Complete should_retrain() and run the whole cell, which tags each "
        "batch run with its decision."
    ),
    "bad_decision": "run '{run}' has retrain={found}; expected 'true' or 'false' (str(bool(decision)).lower()).",
    "wrong_decision": (
        "run '{run}' has retrain={found}, but its evidence ({evidence}) gives {expected} under the rule: retrain "
        "when the change detector fired, or when a feature's PSI is above PSI_SIGNIFICANT={threshold}."
    ),
    "evidence": "largest PSI {psi}, concept_drift_detected={concept}",
    "decision_ok": "the retraining decisions follow the rule ({decisions}).",
    "decision_logged": (
        "the 3 batch runs have the tag retrain ({decisions}); the grader checks each decision against the "
        "run's own evidence."
    ),
    "no_registered_model": (
        "no registered model '{name}' (registered models: {found}). Run the cell under 'The model in service' first."
    ),
    "no_initial_version": (
        "no version of '{name}' comes from the run '{run}'. Run the cell under 'The model in service' first."
    ),
    "no_challenger": (
        "no alias 'challenger' on '{name}' (aliases: {found}). Register the retrained model with "
        "log_and_register(...) and call client.set_registered_model_alias(MODEL_NAME, 'challenger', "
        "info.registered_model_version)."
    ),
    "challenger_is_champion": (
        "'challenger' points to version {version}, the model in service; it must point to the new version "
        "that log_and_register() registered in the run RETRAIN_RUN."
    ),
    "no_predictions": "version {version} of '{name}' could not predict: {error}",
    "challenger_differs": (
        "the challenger (version {version}) does not predict like a forest trained with "
        "train_model(pd.concat([reference, recent_train])) (largest difference {diff:.3g} ms). Train it on the "
        "reference data plus recent_train, never on recent_eval: those rows are kept to compare the models."
    ),
    "no_retrain_run": (
        "no run named '{run}' with the metrics champion_mae and challenger_mae (found: {found}). Compare the "
        "models before promoting: load both by alias, compute their MAE on recent_eval, and log them in the "
        "run RETRAIN_RUN."
    ),
    "wrong_comparison": (
        "run '{run}' has {found}, but on recent_eval the champion (version {champion}) and the challenger "
        "(version {challenger}) score {expected}. Compute mean_absolute_error(recent_eval[labkit.TARGET], "
        "model.predict(recent_eval[labkit.FEATURES])) for each."
    ),
    "alias_not_in_service": (
        "'champion' points to version {found}, which is neither the challenger (version {challenger}) nor the "
        "model it was compared with; move 'champion' only to the challenger, and only if it is better."
    ),
    "not_promoted": (
        "the challenger (version {challenger}, MAE {challenger_mae:.1f} ms) beats the champion (version "
        "{champion}, MAE {champion_mae:.1f} ms) on recent_eval, but 'champion' points to version {found}. Move "
        "it: client.set_registered_model_alias(MODEL_NAME, 'champion', challenger_version)."
    ),
    "wrongly_promoted": (
        "'champion' points to version {found}, but the challenger (version {challenger}, MAE "
        "{challenger_mae:.1f} ms) does not beat the champion (version {champion}, MAE {champion_mae:.1f} ms) on "
        "recent_eval: leave 'champion' where it was."
    ),
    "retrain_ok": (
        "the challenger (version {challenger}, MAE {challenger_mae:.1f} ms on recent_eval) was compared with "
        "the champion (version {champion}, MAE {champion_mae:.1f} ms) and {outcome}."
    ),
    "retrain_logged": (
        "the challenger (version {challenger}) and the run '{run}' with champion_mae={champion_mae:.1f} and "
        "challenger_mae={challenger_mae:.1f} are there, and 'champion' is on version {found}; the grader checks "
        "the models and the values on its own data."
    ),
    "outcome_promoted": "promoted",
    "outcome_kept": "the champion was kept",
}


_msg = functools.partial(checking.message, MESSAGES)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _list(items: list[str], limit: int = 4) -> str:
    """``a, b, c, d and 8 more`` for messages, or ``none``."""
    shown = ", ".join(items[:limit]) or "none"
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _show(values: Mapping[str, float], limit: int = 3) -> str:
    shown = dict(list(values.items())[:limit])
    return pairs({k: _fmt(v) for k, v in shown.items()}) + (", ..." if len(values) > limit else "")


def _close(found: float, expected: float, rtol: float, atol: float = 0.0) -> bool:
    return math.isclose(found, expected, rel_tol=rtol, abs_tol=atol)


def _number(value: Any) -> float | None:
    """A finite JSON number as a float, else None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _same_series(found: Any, expected: list[float], rtol: float, atol: float) -> bool:
    return (isinstance(found, list) and len(found) == len(expected)
            and all(_number(f) is not None and _close(float(f), e, rtol, atol)
                    for f, e in zip(found, expected, strict=True)))


def _largest_diff(found: list[float], expected: list[float]) -> float:
    return max((abs(float(a) - float(b)) for a, b in zip(found, expected, strict=False)), default=0.0)


# --- Evidence -----------------------------------------------------------------------------


def batch_data_dir(data_path: str | Path | None) -> Path:
    """Where the production batches are: ``production/`` next to the dataset."""
    return labkit.data_path(data_path).parent / "production"


def recent_eval_rows(data_path: str | Path | None, count: int) -> list[dict[str, Any]]:
    """The feature values of ``recent_eval`` (the newest ``count`` = RECENT_EVAL_ROWS rows of
    the latest batch), the rows both models are compared on, as records."""
    import pandas as pd

    batch = pd.read_csv(batch_data_dir(data_path) / f"batch_{RECENT_BATCH}.csv")
    return batch.tail(count)[labkit.FEATURES].to_dict("records")


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the store holds for this lab, as plain data (never a model loaded). ``run_id`` is
    not used (the lab's runs are found by name). ``confine_to``: the submission's folder,
    when the grader reads it."""
    mlflow_client = client(tracking_uri)
    every = runs(mlflow_client)
    experiment = mlflow_client.get_experiment_by_name(params["EXPERIMENT_NAME"])
    own_id = experiment.experiment_id if experiment is not None else None

    def newest(name: str) -> dict[str, Any] | None:
        named = [r for r in every if r["name"] == name]
        own = [r for r in named if r["experiment_id"] == own_id]
        return (own or named or [None])[0]

    batches = {}
    for batch in BATCHES:
        run = newest(RUN_PREFIX + batch)
        batches[batch] = None if run is None else _batch_evidence(mlflow_client, run, confine_to)
    retrain = newest(params["RETRAIN_RUN"])
    return {"batches": batches, "registry": _registry(mlflow_client, params, retrain)}


def _batch_evidence(mlflow_client: Any, run: dict[str, Any], confine_to: Path | None) -> dict[str, Any]:
    found = {k: run[k] for k in ("id", "name", "metrics", "tags")}
    found["windows"] = _history(mlflow_client, run["id"], "window_mae")
    found["artifacts"] = artifact_names(mlflow_client, run, confine_to)
    found["report"], found["report_error"] = None, None
    if REPORT_FILE in found["artifacts"]:
        data = read_artifact(mlflow_client, run, REPORT_FILE, confine_to)
        try:
            if data is None:
                raise ValueError("it could not be read")
            found["report"] = json.loads(data, parse_constant=_reject_constant)
        except ValueError as exc:
            found["report_error"] = str(exc)[:200]
    found["figure"] = (png_summary(read_artifact(mlflow_client, run, DIST_FIGURE, confine_to))
                       if DIST_FIGURE in found["artifacts"] else None)
    return found


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _history(mlflow_client: Any, run_id: str, key: str) -> list[float]:
    """A metric's values by step (the last value logged for a step wins)."""
    by_step: dict[int, tuple[int, float]] = {}
    for m in mlflow_client.get_metric_history(run_id, key):
        if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
            by_step[m.step] = (m.timestamp, m.value)
    return [by_step[s][1] for s in sorted(by_step)]


def _registry(mlflow_client: Any, params: Mapping[str, Any], retrain: dict[str, Any] | None) -> dict[str, Any]:
    """The registered model's versions (with the name of the run that logged each), its
    aliases, the retrain run's metrics, and which versions to ask for predictions."""
    name = params["MODEL_NAME"]
    found = mlflow_client.search_registered_models(filter_string=f"name = '{name}'")
    registry: dict[str, Any] = {
        "name": name,
        "exists": bool(found),
        "retrain_run": None if retrain is None else {"name": retrain["name"], "metrics": retrain["metrics"]},
    }
    if not found:
        registry["others"] = [m.name for m in mlflow_client.search_registered_models(max_results=20)]
        return registry
    registry["aliases"] = {alias: int(v) for alias, v in (found[0].aliases or {}).items()}
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    registry["versions"] = sorted(
        ({"version": int(v.version), "run": version_run_name(mlflow_client, v)} for v in versions),
        key=lambda v: v["version"],
    )
    initial = [v["version"] for v in registry["versions"] if v["run"] == params["INITIAL_RUN"]]
    wanted = [registry["aliases"].get(CHALLENGER), max(initial, default=None), registry["aliases"].get(CHAMPION)]
    wanted += [v["version"] for v in reversed(registry["versions"])]
    registry["to_predict"] = list(dict.fromkeys(v for v in wanted if v is not None))[:MAX_VERSIONS]
    registry["predictions"] = {}  # version -> {"predictions": [...]} or {"prediction_error": ...}
    return registry


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the TODOs ask for that the parameters alone decide (no reference needed)."""
    return {
        "model_name": params["MODEL_NAME"],
        "initial_run": params["INITIAL_RUN"],
        "retrain_run": params["RETRAIN_RUN"],
        "alpha": float(params["ALPHA"]),
        "psi_threshold": float(params["PSI_SIGNIFICANT"]),
        "window": int(params["WINDOW"]),
        "recent_eval_rows": int(params["RECENT_EVAL_ROWS"]),
    }


# --- Judgments ----------------------------------------------------------------------------


def _batch_runs(ev: Evidence) -> tuple[dict[str, Any], CheckResult | None]:
    """batch -> its run's evidence, or a failed result naming the first missing run."""
    found = ev.get("batches") or {}
    missing = [b for b in BATCHES if not found.get(b)]
    if missing:
        return found, CheckResult(False, _msg("no_batch_run", run=RUN_PREFIX + missing[0]))
    return found, None


def _test_columns(metrics: Mapping[str, float]) -> dict[str, str]:
    """column -> the p-value metric the run logged for it (``ks_pvalue_<column>`` ...)."""
    return {k.split("_pvalue_", 1)[1]: k for k in metrics if "_pvalue_" in k}


def judge_tests(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    runs_, failure = _batch_runs(ev)
    if failure:
        return failure
    reference = exp.get("tests")
    for batch in BATCHES:
        run = runs_[batch]
        logged = run["metrics"]
        wanted = [f"ks_{kind}_{f}" for f in labkit.FEATURES for kind in ("stat", "pvalue")]
        wanted += [f"chi2_{kind}_{CATEGORICAL}" for kind in ("stat", "pvalue")]
        missing = [k for k in wanted if k not in logged]
        if missing:
            found = sorted(k for k in logged if k.startswith(("ks_", "chi2_")))
            target = _msg("target_tested") if any(labkit.TARGET in k for k in found) else ""
            return CheckResult(False, _msg("missing_tests", run=run["name"], missing=_list(missing),
                                           found=_list(found), target=target))
        bad = {k: logged[k] for k in wanted
               if not math.isfinite(logged[k]) or logged[k] < 0 or ("_pvalue_" in k and logged[k] > 1)}
        if bad:
            return CheckResult(False, _msg("bad_tests", run=run["name"], wrong=_show(bad)))
        if reference is None:
            continue
        right = reference[batch]
        wrong = {k: logged[k] for k in right if not _close(logged.get(k, math.nan), right[k], TEST_RTOL)}
        if wrong:
            return CheckResult(False, _msg("wrong_tests", run=run["name"], wrong=_show(wrong),
                                           expected=_show({k: right[k] for k in wrong})))
    if reference is None:
        return CheckResult(True, _msg("tests_logged"))
    alpha = exp["alpha"]
    drifted = {
        batch: [k.split("_pvalue_", 1)[1] for k, v in reference[batch].items() if "_pvalue_" in k and v < alpha]
        for batch in BATCHES
    }
    shown = "; ".join(f"{b}: {', '.join(cols) or 'none'}" for b, cols in drifted.items())
    return CheckResult(True, _msg("tests_ok", alpha=alpha, drifted=shown))


def judge_psi(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    runs_, failure = _batch_runs(ev)
    if failure:
        return failure
    reference = exp.get("psi")
    for batch in BATCHES:
        run = runs_[batch]
        logged = run["metrics"]
        wanted = [f"psi_{f}" for f in labkit.FEATURES]
        missing = [k for k in wanted if k not in logged]
        if missing:
            found = sorted(k for k in logged if k.startswith("psi_"))
            return CheckResult(False, _msg("missing_psi", run=run["name"], missing=_list(missing),
                                           found=_list(found)))
        bad = {k: logged[k] for k in wanted if not math.isfinite(logged[k]) or logged[k] < 0}
        if bad:
            return CheckResult(False, _msg("bad_psi", run=run["name"], wrong=_show(bad)))
        if reference is None:
            continue
        right = reference[batch]
        wrong = {k: logged[k] for k in right if not _close(logged[k], right[k], PSI_RTOL, PSI_ATOL)}
        if wrong:
            return CheckResult(False, _msg("wrong_psi", run=run["name"], wrong=_show(wrong),
                                           expected=_show({k: right[k] for k in wrong})))
    if reference is None:
        return CheckResult(True, _msg("psi_logged"))
    threshold = exp["psi_threshold"]
    shifted = "; ".join(
        f"{b}: {', '.join(k[len('psi_'):] for k, v in reference[b].items() if v > threshold) or 'none'}"
        for b in BATCHES
    )
    return CheckResult(True, _msg("psi_ok", threshold=threshold, shifted=shifted))


def _judge_one_report(batch: str, run: Mapping[str, Any], rules: Mapping[str, Any] | None,
                      exp: Mapping[str, Any]) -> CheckResult | None:
    """A failure, or None. ``rules``: column -> whether the lab's rule marks it drifted, for
    the values in this report (from the grader; absent when it cannot be told here)."""
    name, artifacts = run["name"], run.get("artifacts") or []
    found = ", ".join(artifacts) or "none"
    if REPORT_FILE not in artifacts:
        return CheckResult(False, _msg("no_report", run=name, file=REPORT_FILE, found=found))
    if run.get("report_error") is not None:
        return CheckResult(False, _msg("bad_json", run=name, file=REPORT_FILE, error=run["report_error"]))
    rep = run.get("report")
    if not isinstance(rep, dict):
        return CheckResult(False, _msg("missing_keys", run=name, file=REPORT_FILE, missing=", ".join(REPORT_KEYS),
                                       found=type(rep).__name__))
    missing = [k for k in REPORT_KEYS if k not in rep]
    if missing:
        return CheckResult(False, _msg("missing_keys", run=name, file=REPORT_FILE, missing=", ".join(missing),
                                       found=names(rep)))
    if rep["batch"] != batch:
        return CheckResult(False, _msg("wrong_batch", run=name, file=REPORT_FILE, found=rep["batch"], expected=batch))
    alpha, threshold = exp["alpha"], exp["psi_threshold"]
    if _number(rep["alpha"]) != alpha or _number(rep["psi_threshold"]) != threshold:
        return CheckResult(False, _msg("wrong_thresholds", run=name, file=REPORT_FILE, alpha=rep["alpha"],
                                       psi=rep["psi_threshold"], expected_alpha=alpha, expected_psi=threshold))
    rows = (exp.get("rows") or {}).get(batch)
    if rows is not None and _number(rep["rows"]) != rows:
        return CheckResult(False, _msg("wrong_rows", run=name, file=REPORT_FILE, found=rep["rows"], expected=rows))
    features = rep["features"]
    rows_ok = isinstance(features, dict) and features and all(
        isinstance(row, dict) and _number(row.get("p_value")) is not None and "psi" in row
        and isinstance(row.get("drifted"), bool) and (row["psi"] is None or _number(row["psi"]) is not None)
        for row in features.values()
    )
    if not rows_ok:
        sample = json.dumps(next(iter(features.items()), None) if isinstance(features, dict) else features)
        return CheckResult(False, _msg("bad_features", run=name, file=REPORT_FILE, found=sample[:200]))
    # The report is built from this batch's own tests and PSI (Tasks 1 and 2), as logged in the run.
    logged = run["metrics"]
    tested = _test_columns(logged)
    unmatched = [c for c in features if c not in tested]
    if unmatched:
        return CheckResult(False, _msg("report_unmatched", run=name, columns=_list(unmatched),
                                       found=_list(sorted(tested))))
    if [c for c in tested if c not in features]:
        return CheckResult(False, _msg("report_incomplete", run=name,
                                       missing=_list([c for c in tested if c not in features])))
    for column, row in features.items():
        checks = [("p_value", row["p_value"], tested[column], TEST_RTOL, REPORT_P_ATOL)]
        if f"psi_{column}" in logged:
            checks.append(("psi", row["psi"], f"psi_{column}", PSI_RTOL, PSI_ATOL))
        for key, value, metric, rtol, atol in checks:
            if _number(value) is None or not _close(float(value), logged[metric], rtol, atol):
                return CheckResult(False, _msg("report_mismatch", run=name, feature=column, value_name=key,
                                               found=_fmt(value), metric=metric, logged=_fmt(logged[metric])))
    for column, row in features.items():
        want = (rules or {}).get(column)
        if want is not None and row["drifted"] != want:
            return CheckResult(False, _msg("wrong_rule", run=name, feature=column, p=_fmt(row["p_value"]),
                                           psi=_fmt(row["psi"]), found=row["drifted"], expected=want))
    drifted = sorted(c for c, row in features.items() if row["drifted"])
    listed = rep["drifted_features"]
    if not isinstance(listed, list) or sorted(map(str, listed)) != drifted:
        return CheckResult(False, _msg("wrong_list", run=name, found=listed, expected=drifted))
    if rep["drift_detected"] is not bool(drifted):
        return CheckResult(False, _msg("wrong_detected", run=name, found=rep["drift_detected"],
                                       drifted=", ".join(drifted) or "none"))
    tag, expected_tag = run["tags"].get("drift_detected"), str(bool(drifted)).lower()
    if tag != expected_tag:
        return CheckResult(False, _msg("wrong_drift_tag", run=name, found=tag, expected=expected_tag))
    figure = run.get("figure")
    if DIST_FIGURE not in artifacts or figure is None:
        return CheckResult(False, _msg("no_figure", run=name, file=DIST_FIGURE, found=found))
    if not figure.get("decodes"):
        return CheckResult(False, _msg("not_a_plot", run=name, file=DIST_FIGURE, what=_msg("not_png")))
    if not is_plot(figure):
        what = _msg("too_small", **{k: figure[k] for k in ("width", "height", "drawn")})
        return CheckResult(False, _msg("not_a_plot", run=name, file=DIST_FIGURE, what=what))
    return None


def judge_report(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    runs_, failure = _batch_runs(ev)
    if failure:
        return failure
    rules = ev.get("rules") or {}
    for batch in BATCHES:
        failure = _judge_one_report(batch, runs_[batch], (rules.get(batch) or {}).get("report"), exp)
        if failure:
            return failure
    verdicts = {b: runs_[b]["tags"]["drift_detected"] for b in BATCHES}
    return CheckResult(True, _msg("report_ok", file=REPORT_FILE, figure=DIST_FIGURE,
                                  verdicts="drift_detected: " + pairs(verdicts)))


def judge_concept(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    runs_, failure = _batch_runs(ev)
    if failure:
        return failure
    window = exp["window"]
    reference, alarms = exp.get("windows"), exp.get("alarms")
    for batch in BATCHES:
        run = runs_[batch]
        found = run.get("windows") or []
        if not found:
            return CheckResult(False, _msg("no_windows", run=run["name"]))
        if any(_number(v) is None or v < 0 for v in found):
            return CheckResult(False, _msg("bad_windows", run=run["name"], first=", ".join(map(str, found[:3]))))
        expected = None if reference is None else reference[batch]
        if expected is not None and not _same_series(found, expected, MAE_RTOL, 1e-6):
            return CheckResult(False, _msg(
                "wrong_windows", run=run["name"], found=len(found), first=", ".join(f"{v:.1f}" for v in found[:3]),
                window=window, expected_count=len(expected),
                expected_first=", ".join(f"{v:.1f}" for v in expected[:3]), last=window - 1,
                next_last=2 * window - 1,
            ))
    for batch in BATCHES:
        run = runs_[batch]
        tag = run["tags"].get("concept_drift_detected")
        if tag is None:
            return CheckResult(False, _msg("no_concept_tag", run=run["name"]))
        if tag not in ("true", "false"):
            return CheckResult(False, _msg("bad_concept_tag", run=run["name"], found=tag))
        if alarms is not None and alarms[batch] is None and tag != "false":
            return CheckResult(False, _msg("false_alarm", batch=batch, found=tag))
        if alarms is not None and alarms[batch] is not None and tag != "true":
            return CheckResult(False, _msg("missed_change", batch=batch, found=tag))
    fired = []
    for batch in BATCHES:
        run = runs_[batch]
        if run["tags"]["concept_drift_detected"] != "true":
            continue
        row = run["metrics"].get("change_point_row")
        if row is None:
            return CheckResult(False, _msg("no_change_row", run=run["name"]))
        want = None if alarms is None else alarms[batch]
        if want is not None and abs(row - want) > window:
            return CheckResult(False, _msg("wrong_change_row", batch=batch, found=_fmt(row), expected=want,
                                           window=window))
        fired.append(f"'{batch}' at row {_fmt(row)}")
    shown = ", ".join(fired) or "no batch"
    if reference is None or alarms is None:
        return CheckResult(True, _msg("concept_logged", fired=shown))
    return CheckResult(True, _msg("concept_ok", fired=shown))


def judge_decision(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """The tag 'retrain' of each batch run must follow the rule applied to the evidence in the
    same run (the PSI metrics of TODO 2, the detector's tag of TODO 4), so that a mistake there
    is not counted again here. What the rule says comes with the evidence (the grader applies
    it); where it is absent, only the tags' form is judged."""
    runs_, failure = _batch_runs(ev)
    if failure:
        return failure
    rules = ev.get("rules") or {}
    decisions, judged = {}, True
    for batch in BATCHES:
        run = runs_[batch]
        name, tags = run["name"], run["tags"]
        tag = tags.get("retrain")
        if tag is None:
            return CheckResult(False, _msg("no_decision", run=name))
        if tag not in ("true", "false"):
            return CheckResult(False, _msg("bad_decision", run=name, found=tag))
        want = (rules.get(batch) or {}).get("retrain")
        if want is None:
            judged = False
        elif (tag == "true") != want:
            psi_values = [v for k, v in run["metrics"].items() if k.startswith("psi_")]
            largest = max(psi_values, default=None)
            evidence_ = _msg("evidence", psi=_fmt(largest) if largest is not None else "none",
                             concept=tags.get("concept_drift_detected", "none"))
            return CheckResult(False, _msg("wrong_decision", run=name, found=tag, evidence=evidence_,
                                           expected=str(want).lower(), threshold=exp["psi_threshold"]))
        decisions[batch] = tag
    key = "decision_ok" if judged else "decision_logged"
    return CheckResult(True, _msg(key, decisions="retrain: " + pairs(decisions)))


def _matches(registry: Mapping[str, Any], version: int, expected: list[float] | None) -> bool:
    got = (registry.get("predictions") or {}).get(str(version), {}).get("predictions")
    return expected is not None and _same_series(got, expected, PRED_TOL, PRED_TOL)


def judge_retrain(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    reg = ev.get("registry") or {}
    name = exp["model_name"]
    if not reg.get("exists"):
        return CheckResult(False, _msg("no_registered_model", name=name, found=", ".join(reg.get("others") or [])
                                       or "none"))
    aliases = reg.get("aliases") or {}
    initial = [v["version"] for v in reg.get("versions") or [] if v["run"] == exp["initial_run"]]
    if not initial:
        return CheckResult(False, _msg("no_initial_version", name=name, run=exp["initial_run"]))
    original = max(initial)
    challenger = aliases.get(CHALLENGER)
    if challenger is None:
        return CheckResult(False, _msg("no_challenger", name=name, found=pairs(aliases) or "none"))
    if challenger in initial:
        return CheckResult(False, _msg("challenger_is_champion", version=challenger))
    challenger_pred = exp.get("challenger_pred")
    if challenger_pred is not None:
        answer = (reg.get("predictions") or {}).get(str(challenger)) or {"prediction_error": "no answer"}
        if "predictions" not in answer:
            return CheckResult(False, _msg("no_predictions", version=challenger, name=name,
                                           error=answer.get("prediction_error")))
        if not _matches(reg, challenger, challenger_pred):
            return CheckResult(False, _msg("challenger_differs", version=challenger,
                                           diff=_largest_diff(answer["predictions"], challenger_pred)))
    run = reg.get("retrain_run")
    logged = run["metrics"] if run else {}
    if "champion_mae" not in logged or "challenger_mae" not in logged:
        return CheckResult(False, _msg("no_retrain_run", run=exp["retrain_run"],
                                       found=names(logged) if run else "no such run"))
    champion_now = aliases.get(CHAMPION)
    if challenger_pred is None or exp.get("champion_pred") is None:
        # No reference here: the promotion must at least follow the logged comparison.
        better = logged["challenger_mae"] < logged["champion_mae"]
        values = {"challenger": challenger, "champion": original, "challenger_mae": logged["challenger_mae"],
                  "champion_mae": logged["champion_mae"], "found": champion_now}
        if better and champion_now != challenger:
            return CheckResult(False, _msg("not_promoted", **values))
        if not better and champion_now == challenger:
            return CheckResult(False, _msg("wrongly_promoted", **values))
        return CheckResult(True, _msg("retrain_logged", run=exp["retrain_run"], **values))
    # The champion it was compared with: the set-up's version, or (TODO 6 run again after a
    # promotion) a version that is an earlier challenger; the one whose MAE was logged.
    mae_of = {}
    for version in reg.get("to_predict") or []:
        if version == challenger:
            continue
        if _matches(reg, version, exp["champion_pred"]):
            mae_of[version] = exp["champion_mae"]
        elif _matches(reg, version, challenger_pred):
            mae_of[version] = exp["challenger_mae"]
    right = {"champion_mae": exp["champion_mae"], "challenger_mae": exp["challenger_mae"]}
    champion = original
    compared = [v for v, mae in mae_of.items() if _close(logged["champion_mae"], mae, MAE_RTOL)]
    if compared:
        champion = original if original in compared else compared[0]
        right["champion_mae"] = mae_of[champion]
    if not compared or not _close(logged["challenger_mae"], right["challenger_mae"], MAE_RTOL):
        return CheckResult(False, _msg("wrong_comparison", run=exp["retrain_run"],
                                       found=pairs({k: f"{logged[k]:.1f}" for k in right}),
                                       champion=champion, challenger=challenger,
                                       expected=pairs({k: f"{v:.1f}" for k, v in right.items()})))
    better = right["challenger_mae"] < right["champion_mae"]
    values = {"challenger": challenger, "champion": champion, "challenger_mae": right["challenger_mae"],
              "champion_mae": right["champion_mae"], "found": champion_now}
    if better and champion_now != challenger:
        return CheckResult(False, _msg("not_promoted", **values))
    if not better and champion_now != champion:
        return CheckResult(False, _msg("wrongly_promoted", **values))
    outcome = _msg("outcome_promoted" if better else "outcome_kept")
    return CheckResult(True, _msg("retrain_ok", outcome=outcome, **values))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_tests": (1, judge_tests),
    "check_todo2_psi": (2, judge_psi),
    "check_todo3_report": (3, judge_report),
    "check_todo4_concept": (4, judge_concept),
    "check_todo5_decision": (5, judge_decision),
    "check_todo6_retrain": (6, judge_retrain),
}


# --- In the notebook ----------------------------------------------------------------------


def _rules_from_expected(ev: Evidence, exp: Mapping[str, Any]) -> dict[str, Any]:
    """What the lab's rules say about this evidence, where it matches the shipped values:
    a report row with the reference's p-value and PSI gets the reference's verdict; a run
    with the reference's PSI and the reference's detector verdict gets the reference's
    decision. Elsewhere (an earlier task differs) the grader judges it on the run's own values."""
    verdicts, decisions = exp.get("verdicts"), exp.get("decisions")
    tests, psi_ref, alarms = exp.get("tests"), exp.get("psi"), exp.get("alarms")
    if None in (verdicts, decisions, tests, psi_ref, alarms):
        return {}
    rules: dict[str, Any] = {}
    for batch, run in (ev.get("batches") or {}).items():
        if not run or batch not in verdicts:
            continue
        report_rules = {}
        features = (run.get("report") or {}).get("features") if isinstance(run.get("report"), dict) else None
        for column, row in (features or {}).items() if isinstance(features, dict) else []:
            if column not in verdicts[batch] or not isinstance(row, dict):
                continue
            p_ref = next((v for k, v in tests[batch].items() if k.endswith(f"_pvalue_{column}")), None)
            psi_want = psi_ref[batch].get(f"psi_{column}")
            p, psi_value = _number(row.get("p_value")), row.get("psi")
            same_p = p is not None and p_ref is not None and _close(p, p_ref, TEST_RTOL, REPORT_P_ATOL)
            same_psi = (psi_value is None and psi_want is None) or (
                _number(psi_value) is not None and psi_want is not None
                and _close(float(psi_value), psi_want, PSI_RTOL, PSI_ATOL))
            if same_p and same_psi:
                report_rules[column] = verdicts[batch][column]
        logged = run["metrics"]
        same_psi_run = all(k in logged and _close(logged[k], v, PSI_RTOL, PSI_ATOL) for k, v in psi_ref[batch].items())
        same_alarm = run["tags"].get("concept_drift_detected") == str(alarms[batch] is not None).lower()
        rules[batch] = {"report": report_rules}
        if same_psi_run and same_alarm:
            rules[batch]["retrain"] = decisions[batch]
    return rules


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure.

    Judges this run of the notebook against the values shipped for the default inputs (with
    other inputs, only what needs no reference; the grader judges the rest)."""
    import mlflow

    params = checking.notebook_params(namespace, PARAMS)

    def gather() -> tuple[Evidence, dict[str, Any]]:
        uri = mlflow.get_tracking_uri()
        ev = evidence(uri, params)
        exp = checking.expected_values(LAB, params, expected_from_params)
        ev["rules"] = _rules_from_expected(ev, exp)
        reg = ev["registry"]
        if check_id == "check_todo6_retrain" and "challenger_pred" in exp and reg.get("exists"):
            rows = recent_eval_rows(namespace.get("DATA_PATH"), exp["recent_eval_rows"])
            for version in reg["to_predict"]:
                try:
                    reg["predictions"][str(version)] = {
                        "predictions": predictions(uri, f"models:/{params['MODEL_NAME']}/{version}", rows)}
                except Exception as exc:
                    reg["predictions"][str(version)] = {"prediction_error": f"{type(exc).__name__}: {exc}"}
        return ev, exp

    checking.run_self_check(CHECKS, check_id, gather)
