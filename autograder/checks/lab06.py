"""Checks for Lab 06, drift detection and retraining.

The evidence is in the MLflow store: one run per production batch (``drift-<batch>``) with the
drift metrics, tags, the JSON report and the plots; the ``retrain`` run with the comparison;
the registry's aliases. The grader re-computes what it can: the KS and chi-square tests with
scipy, the PSI, the champion's error per window (it retrains the champion, which is
deterministic), and the error of both models on the recent data. For the function TODOs (PSI,
Page-Hinkley, the retraining rule) the values they produced in the store are what is graded.
"""

from __future__ import annotations

import functools
import json
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
    newest_run_named,
    pairs,
    self_check_for,
)

#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = [
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
    "RECENT_ROWS",
    "RECENT_EVAL_ROWS",
]
#: The production batches, in time order (data/production/batch_<name>.csv).
BATCHES = ("no_drift", "feature_drift", "concept_drift")
RUN_PREFIX = "drift-"
CATEGORICAL = "region"
#: data/README.md: in batch_concept_drift.csv the rule changes from row 400 on.
CHANGE_ROW = 400
REPORT_FILE = "drift_report.json"
DIST_FIGURE = "distributions.png"
REPORT_KEYS = ("batch", "rows", "alpha", "psi_threshold", "features", "drifted_features", "drift_detected")
CHAMPION, CHALLENGER = "champion", "challenger"
#: Test statistics and p-values: scipy's own numbers, up to float rounding.
TEST_RTOL = 1e-4
#: PSI: other correct ways to bin the same deciles (ties on an edge, adding eps instead of a
#: floor) move it by less than 0.5%; equal-width bins or the current's quantiles do not pass.
PSI_RTOL, PSI_ATOL = 0.01, 0.002
#: Window MAEs and model MAEs: the same predictions, another formula.
MAE_RTOL = 1e-4

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
    "tests_ok": "the KS and chi-square results of the 3 batch runs match scipy (p < {alpha}: {drifted}).",
    "missing_psi": (
        "run '{run}' lacks the metric(s) {missing} (PSI metrics found: {found}). Complete psi() and run the "
        "whole cell, which logs psi_<feature> for each numeric feature."
    ),
    "wrong_psi": (
        "run '{run}' has {wrong}, but reference-decile bins give {expected}. Cut at "
        "np.quantile(reference, np.linspace(0, 1, bins + 1)) with open outer edges (-inf, inf), floor the "
        "shares at eps, and sum (current - reference) * ln(current / reference)."
    ),
    "psi_ok": "the PSI of every feature in the 3 batch runs is right (above {threshold}: {shifted}).",
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
    "no_concept_tag": (
        "run '{run}' has no tag 'concept_drift_detected'. Run the whole TODO 4 cell: it sets the tag from "
        "page_hinkley()."
    ),
    "false_alarm": (
        "the change detector fired on '{batch}' (tag concept_drift_detected={found}), but the champion's error "
        "does not rise in that batch. Check page_hinkley(): subtract the running mean and delta from each "
        "value, and alarm only when the cumulative sum minus its lowest point exceeds the threshold."
    ),
    "missed_change": (
        "the change detector did not fire on 'concept_drift' (tag concept_drift_detected={found}), where the "
        "error jumps tenfold. page_hinkley() must return the index of the first window whose cumulative sum "
        "minus its lowest point exceeds the threshold."
    ),
    "no_change_row": "run '{run}' has no metric 'change_point_row'; run the whole TODO 4 cell.",
    "wrong_change_row": (
        "the change was detected at row {found} of 'concept_drift', but the error jumps at row {expected}; "
        "page_hinkley() must return the index of the window where the alarm is raised (row = index x {window})."
    ),
    "concept_ok": (
        "window_mae matches the champion's error in the 3 batch runs; the detector fired only on "
        "'concept_drift', at row {row}."
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
    "outcome_promoted": "promoted",
    "outcome_kept": "the champion was kept",
}


def _msg(key: str, **values: Any) -> str:
    return MESSAGES[key].format(**values)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# Data and the grader's own computations ----------------------------------------------------


@functools.lru_cache(maxsize=4)
def _data(data_path: str) -> tuple[Any, dict[str, Any]]:
    """The reference data and the production batches next to it (``production/``)."""
    import pandas as pd

    folder = Path(data_path).parent / "production"
    return pd.read_csv(data_path), {b: pd.read_csv(folder / f"batch_{b}.csv") for b in BATCHES}


def data(ctx: LabContext) -> tuple[Any, dict[str, Any]]:
    return _data(str(ctx.data_path))


@functools.lru_cache(maxsize=4)
def _expected_tests(data_path: str) -> dict[str, dict[str, float]]:
    """batch -> {ks_stat_<feature>, ks_pvalue_<feature>, chi2_stat_region, chi2_pvalue_region}."""
    import pandas as pd
    from scipy import stats

    reference, batches = _data(data_path)
    expected: dict[str, dict[str, float]] = {}
    for batch, current in batches.items():
        values = {}
        for feature in labkit.FEATURES:
            result = stats.ks_2samp(reference[feature], current[feature])
            values[f"ks_stat_{feature}"] = float(result.statistic)
            values[f"ks_pvalue_{feature}"] = float(result.pvalue)
        counts = pd.DataFrame(
            {"reference": reference[CATEGORICAL].value_counts(), "current": current[CATEGORICAL].value_counts()}
        ).fillna(0)
        result = stats.chi2_contingency(counts.T)
        values[f"chi2_stat_{CATEGORICAL}"] = float(result.statistic)
        values[f"chi2_pvalue_{CATEGORICAL}"] = float(result.pvalue)
        expected[batch] = values
    return expected


def psi(reference: Any, current: Any, bins: int, eps: float) -> float:
    """The population stability index on the reference's quantile bins (the lab's definition)."""
    import numpy as np

    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    ref_share = np.clip(np.histogram(reference, edges)[0] / len(reference), eps, None)
    cur_share = np.clip(np.histogram(current, edges)[0] / len(current), eps, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


@functools.lru_cache(maxsize=4)
def _expected_psi(data_path: str, bins: int, eps: float) -> dict[str, dict[str, float]]:
    reference, batches = _data(data_path)
    return {
        batch: {f"psi_{f}": psi(reference[f], current[f], bins, eps) for f in labkit.FEATURES}
        for batch, current in batches.items()
    }


def _recent(ctx: LabContext) -> tuple[Any, Any]:
    """The notebook's recent_train and recent_eval."""
    _, batches = data(ctx)
    rows, eval_rows = int(ctx.params["RECENT_ROWS"]), int(ctx.params["RECENT_EVAL_ROWS"])
    recent = batches["concept_drift"].tail(rows)
    return recent.head(rows - eval_rows), recent.tail(eval_rows)


@functools.lru_cache(maxsize=8)
def _model(data_path: str, seed: int, n_estimators: int, max_depth: int, recent_rows: int, eval_rows: int) -> Any:
    """A forest trained as the notebook's train_model does (forests with a seed are
    deterministic): on the reference data plus the recent_train rows (none: the champion)."""
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor

    reference, batches = _data(data_path)
    frame = reference
    if recent_rows:
        frame = pd.concat([reference, batches["concept_drift"].tail(recent_rows).head(recent_rows - eval_rows)])
    model = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=-1)
    return model.fit(frame[labkit.FEATURES], frame[labkit.TARGET])


def model(ctx: LabContext, role: str) -> Any:
    """The champion the set-up cell trains, or the challenger TODO 6 should train."""
    p = ctx.params
    recent = (int(p["RECENT_ROWS"]), int(p["RECENT_EVAL_ROWS"])) if role == CHALLENGER else (0, 0)
    return _model(str(ctx.data_path), int(p["SEED"]), int(p["N_ESTIMATORS"]), int(p["MAX_DEPTH"]), *recent)


def expected_windows(ctx: LabContext, batch: str) -> list[float]:
    """The champion's MAE per window of WINDOW rows on one batch."""
    import numpy as np

    _, batches = data(ctx)
    current = batches[batch]
    errors = np.abs(current[labkit.TARGET].to_numpy() - model(ctx, CHAMPION).predict(current[labkit.FEATURES]))
    window = int(ctx.params["WINDOW"])
    return [float(errors[i : i + window].mean()) for i in range(0, len(errors), window)]


def prepare(ctx: LabContext) -> None:
    """Load what the checks need ahead of time (the grader calls this in a thread while the
    notebook runs): MLflow's model loading, a client on the store, the tests and both models."""
    import mlflow.pyfunc
    import mlflow.sklearn  # noqa: F401  (the flavour the registered models are loaded with)

    client(ctx).search_experiments()
    _expected_tests(str(ctx.data_path))
    _expected_psi(str(ctx.data_path), int(ctx.params["PSI_BINS"]), float(ctx.params["PSI_EPS"]))
    model(ctx, CHAMPION)
    model(ctx, CHALLENGER)


# Finding the evidence ------------------------------------------------------------------------


def batch_runs(ctx: LabContext) -> tuple[dict[str, Any], CheckResult | None]:
    """batch -> its newest run, or a failed result naming the first missing run."""
    runs = {batch: newest_run_named(ctx, RUN_PREFIX + batch) for batch in BATCHES}
    missing = [batch for batch, run in runs.items() if run is None]
    if missing:
        return runs, CheckResult(False, _msg("no_batch_run", run=RUN_PREFIX + missing[0]))
    return runs, None


def _close(found: float, expected: float, rtol: float, atol: float = 0.0) -> bool:
    return math.isclose(found, expected, rel_tol=rtol, abs_tol=atol)


def _compare(
    run: Any, expected: dict[str, float], rtol: float, atol: float
) -> tuple[list[str], dict[str, float], dict[str, float]]:
    """Missing metric names, and the wrong ones with their logged and expected values."""
    logged = run.data.metrics
    missing = [k for k in expected if k not in logged]
    wrong = {k: logged[k] for k in expected if k in logged and not _close(logged[k], expected[k], rtol, atol)}
    return missing, wrong, {k: expected[k] for k in wrong}


def _list(items: list[str], limit: int = 4) -> str:
    """``a, b, c, d and 8 more`` for messages, or ``none``."""
    shown = ", ".join(items[:limit]) or "none"
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _show(values: dict[str, float], limit: int = 3) -> str:
    shown = dict(list(values.items())[:limit])
    return pairs({k: _fmt(v) for k, v in shown.items()}) + (", ..." if len(values) > limit else "")


# TODO 1 ---------------------------------------------------------------------------------------


def check_tests(ctx: LabContext, strict: bool = False) -> CheckResult:
    runs, failure = batch_runs(ctx)
    if failure:
        return failure
    expected = _expected_tests(str(ctx.data_path))
    alpha = float(ctx.params["ALPHA"])
    for batch in BATCHES:
        run = runs[batch]
        missing, wrong, right = _compare(run, expected[batch], TEST_RTOL, 0.0)
        if missing:
            found = sorted(k for k in run.data.metrics if k.startswith(("ks_", "chi2_")))
            target = _msg("target_tested") if any(labkit.TARGET in k for k in found) else ""
            return CheckResult(False, _msg("missing_tests", run=run.info.run_name, missing=_list(missing),
                                           found=_list(found), target=target))
        if wrong:
            return CheckResult(False, _msg("wrong_tests", run=run.info.run_name, wrong=_show(wrong),
                                           expected=_show(right)))
    drifted = {
        batch: [k.split("_pvalue_", 1)[1] for k, v in expected[batch].items() if "_pvalue_" in k and v < alpha]
        for batch in BATCHES
    }
    shown = "; ".join(f"{b}: {', '.join(cols) or 'none'}" for b, cols in drifted.items())
    return CheckResult(True, _msg("tests_ok", alpha=alpha, drifted=shown))


# TODO 2 ---------------------------------------------------------------------------------------


def check_psi(ctx: LabContext, strict: bool = False) -> CheckResult:
    runs, failure = batch_runs(ctx)
    if failure:
        return failure
    expected = _expected_psi(str(ctx.data_path), int(ctx.params["PSI_BINS"]), float(ctx.params["PSI_EPS"]))
    for batch in BATCHES:
        run = runs[batch]
        missing, wrong, right = _compare(run, expected[batch], PSI_RTOL, PSI_ATOL)
        if missing:
            found = sorted(k for k in run.data.metrics if k.startswith("psi_"))
            return CheckResult(False, _msg("missing_psi", run=run.info.run_name, missing=_list(missing),
                                           found=_list(found)))
        if wrong:
            return CheckResult(False, _msg("wrong_psi", run=run.info.run_name, wrong=_show(wrong),
                                           expected=_show(right)))
    threshold = float(ctx.params["PSI_SIGNIFICANT"])
    shifted = "; ".join(
        f"{b}: {', '.join(k[len('psi_'):] for k, v in expected[b].items() if v > threshold) or 'none'}"
        for b in BATCHES
    )
    return CheckResult(True, _msg("psi_ok", threshold=threshold, shifted=shifted))


# TODO 3 ---------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _download(ctx: LabContext, run_id: str, path: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client(ctx).download_artifacts(run_id, path, tmp)).read_bytes()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_one_report(ctx: LabContext, batch: str, run: Any) -> tuple[CheckResult | None, bool | None]:
    """A failure, or None and the report's drift_detected."""
    name = run.info.run_name
    artifacts = [a.path for a in client(ctx).list_artifacts(run.info.run_id)]
    found = ", ".join(artifacts) or "none"
    if REPORT_FILE not in artifacts:
        return CheckResult(False, _msg("no_report", run=name, file=REPORT_FILE, found=found)), None
    try:
        report = json.loads(_download(ctx, run.info.run_id, REPORT_FILE), parse_constant=_reject_constant)
    except ValueError as exc:
        return CheckResult(False, _msg("bad_json", run=name, file=REPORT_FILE, error=exc)), None
    if not isinstance(report, dict):
        return CheckResult(False, _msg("missing_keys", run=name, file=REPORT_FILE, missing=", ".join(REPORT_KEYS),
                                       found=type(report).__name__)), None
    missing = [k for k in REPORT_KEYS if k not in report]
    if missing:
        return CheckResult(False, _msg("missing_keys", run=name, file=REPORT_FILE, missing=", ".join(missing),
                                       found=names(report))), None
    if report["batch"] != batch:
        return CheckResult(False, _msg("wrong_batch", run=name, file=REPORT_FILE, found=report["batch"],
                                       expected=batch)), None
    alpha, threshold = float(ctx.params["ALPHA"]), float(ctx.params["PSI_SIGNIFICANT"])
    if _number(report["alpha"]) != alpha or _number(report["psi_threshold"]) != threshold:
        return CheckResult(False, _msg("wrong_thresholds", run=name, file=REPORT_FILE, alpha=report["alpha"],
                                       psi=report["psi_threshold"], expected_alpha=alpha,
                                       expected_psi=threshold)), None
    features = report["features"]
    rows_ok = isinstance(features, dict) and features and all(
        isinstance(row, dict) and _number(row.get("p_value")) is not None and "psi" in row
        and isinstance(row.get("drifted"), bool) and (row["psi"] is None or _number(row["psi"]) is not None)
        for row in features.values()
    )
    if not rows_ok:
        sample = json.dumps(next(iter(features.items()), None) if isinstance(features, dict) else features)
        return CheckResult(False, _msg("bad_features", run=name, file=REPORT_FILE, found=sample[:200])), None
    for feature, row in features.items():
        psi_value = _number(row["psi"])
        expected = row["p_value"] < alpha or (psi_value is not None and psi_value > threshold)
        if row["drifted"] != expected:
            return CheckResult(False, _msg("wrong_rule", run=name, feature=feature, p=_fmt(row["p_value"]),
                                           psi=_fmt(psi_value), found=row["drifted"], expected=expected)), None
    drifted = sorted(f for f, row in features.items() if row["drifted"])
    listed = report["drifted_features"]
    if not isinstance(listed, list) or sorted(map(str, listed)) != drifted:
        return CheckResult(False, _msg("wrong_list", run=name, found=listed, expected=drifted)), None
    if report["drift_detected"] is not bool(drifted):
        return CheckResult(False, _msg("wrong_detected", run=name, found=report["drift_detected"],
                                       drifted=", ".join(drifted) or "none")), None
    tag, expected_tag = run.data.tags.get("drift_detected"), str(bool(drifted)).lower()
    if tag != expected_tag:
        return CheckResult(False, _msg("wrong_drift_tag", run=name, found=tag, expected=expected_tag)), None
    if DIST_FIGURE not in artifacts or not _download(ctx, run.info.run_id, DIST_FIGURE).startswith(b"\x89PNG"):
        return CheckResult(False, _msg("no_figure", run=name, file=DIST_FIGURE, found=found)), None
    return None, bool(drifted)


def check_report(ctx: LabContext, strict: bool = False) -> CheckResult:
    runs, failure = batch_runs(ctx)
    if failure:
        return failure
    verdicts = {}
    for batch in BATCHES:
        failure, detected = _check_one_report(ctx, batch, runs[batch])
        if failure:
            return failure
        verdicts[batch] = str(detected).lower()
    return CheckResult(True, _msg("report_ok", file=REPORT_FILE, figure=DIST_FIGURE,
                                  verdicts="drift_detected: " + pairs(verdicts)))


# TODO 4 ---------------------------------------------------------------------------------------


def _history(ctx: LabContext, run_id: str, key: str) -> list[float]:
    """A metric's values by step (the last value logged for a step wins)."""
    by_step: dict[int, tuple[int, float]] = {}
    for m in client(ctx).get_metric_history(run_id, key):
        if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
            by_step[m.step] = (m.timestamp, m.value)
    return [by_step[s][1] for s in sorted(by_step)]


def check_concept(ctx: LabContext, strict: bool = False) -> CheckResult:
    runs, failure = batch_runs(ctx)
    if failure:
        return failure
    window = int(ctx.params["WINDOW"])
    for batch in BATCHES:
        run = runs[batch]
        name = run.info.run_name
        found = _history(ctx, run.info.run_id, "window_mae")
        if not found:
            return CheckResult(False, _msg("no_windows", run=name))
        expected = expected_windows(ctx, batch)
        if len(found) != len(expected) or not all(_close(f, e, MAE_RTOL, 1e-6) for f, e in zip(found, expected, strict=True)):
            return CheckResult(False, _msg(
                "wrong_windows", run=name, found=len(found), first=", ".join(f"{v:.1f}" for v in found[:3]),
                window=window, expected_count=len(expected), expected_first=", ".join(f"{v:.1f}" for v in expected[:3]),
                last=window - 1, next_last=2 * window - 1,
            ))
    for batch in BATCHES:
        run = runs[batch]
        tag = run.data.tags.get("concept_drift_detected")
        if tag is None:
            return CheckResult(False, _msg("no_concept_tag", run=run.info.run_name))
        if batch != "concept_drift" and tag != "false":
            return CheckResult(False, _msg("false_alarm", batch=batch, found=tag))
        if batch == "concept_drift" and tag != "true":
            return CheckResult(False, _msg("missed_change", found=tag))
    run = runs["concept_drift"]
    row = run.data.metrics.get("change_point_row")
    if row is None:
        return CheckResult(False, _msg("no_change_row", run=run.info.run_name))
    if abs(row - CHANGE_ROW) > window:
        return CheckResult(False, _msg("wrong_change_row", found=_fmt(row), expected=CHANGE_ROW, window=window))
    return CheckResult(True, _msg("concept_ok", row=_fmt(row)))


# TODO 5 ---------------------------------------------------------------------------------------


def check_decision(ctx: LabContext, strict: bool = False) -> CheckResult:
    """The tag 'retrain' of each batch run must follow the rule applied to the evidence in the
    same run (the PSI metrics of TODO 2, the detector's tag of TODO 4), so that a mistake there
    is not counted again here."""
    runs, failure = batch_runs(ctx)
    if failure:
        return failure
    threshold = float(ctx.params["PSI_SIGNIFICANT"])
    decisions = {}
    for batch in BATCHES:
        run = runs[batch]
        name, tags = run.info.run_name, run.data.tags
        tag = tags.get("retrain")
        if tag is None:
            return CheckResult(False, _msg("no_decision", run=name))
        if tag not in ("true", "false"):
            return CheckResult(False, _msg("bad_decision", run=name, found=tag))
        psi_values = [v for k, v in run.data.metrics.items() if k.startswith("psi_")]
        largest = max(psi_values, default=None)
        concept = tags.get("concept_drift_detected") == "true"
        expected = concept or (largest is not None and largest > threshold)
        if (tag == "true") != expected:
            evidence = _msg("evidence", psi=_fmt(largest) if largest is not None else "none",
                            concept=str(concept).lower())
            return CheckResult(False, _msg("wrong_decision", run=name, found=tag, evidence=evidence,
                                           expected=str(expected).lower(), threshold=threshold))
        decisions[batch] = tag
    return CheckResult(True, _msg("decision_ok", decisions="retrain: " + pairs(decisions)))


# TODO 6 ---------------------------------------------------------------------------------------


def _run_name(mlflow_client: Any, mv: Any) -> str | None:
    """The name of the run that logged a version's model."""
    run_id = mv.run_id
    try:
        if not run_id and str(mv.source).startswith("models:/"):
            run_id = mlflow_client.get_logged_model(str(mv.source).split("/")[1]).source_run_id
        return mlflow_client.get_run(run_id).info.run_name if run_id else None
    except Exception:  # a deleted run or model: the version has no known role
        return None


def _mae(ctx: LabContext, model_uri: str, X: Any, y: Any) -> tuple[float, Any]:
    import mlflow
    import numpy as np

    mlflow.set_tracking_uri(ctx.tracking_uri)
    predicted = np.asarray(mlflow.pyfunc.load_model(model_uri).predict(X), dtype=float).ravel()
    return float(np.mean(np.abs(predicted - np.asarray(y, dtype=float)))), predicted


def check_retrain(ctx: LabContext, strict: bool = False) -> CheckResult:
    import numpy as np

    p = ctx.params
    name = p["MODEL_NAME"]
    mlflow_client = client(ctx)
    found = mlflow_client.search_registered_models(filter_string=f"name = '{name}'")
    if not found:
        others = [m.name for m in mlflow_client.search_registered_models(max_results=20)]
        return CheckResult(False, _msg("no_registered_model", name=name, found=", ".join(others) or "none"))
    aliases = {alias: int(v) for alias, v in (found[0].aliases or {}).items()}
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    initial = [int(v.version) for v in versions if _run_name(mlflow_client, v) == p["INITIAL_RUN"]]
    if not initial:
        return CheckResult(False, _msg("no_initial_version", name=name, run=p["INITIAL_RUN"]))
    original = max(initial)
    challenger = aliases.get(CHALLENGER)
    if challenger is None:
        return CheckResult(False, _msg("no_challenger", name=name, found=pairs(aliases) or "none"))
    if challenger in initial:
        return CheckResult(False, _msg("challenger_is_champion", version=challenger))
    _, recent_eval = _recent(ctx)
    X, y = recent_eval[labkit.FEATURES], recent_eval[labkit.TARGET]
    challenger_mae, predicted = _mae(ctx, f"models:/{name}@{CHALLENGER}", X, y)
    expected = model(ctx, CHALLENGER).predict(X)
    if not np.allclose(predicted, expected, rtol=1e-6, atol=1e-6):
        return CheckResult(False, _msg("challenger_differs", version=challenger,
                                       diff=float(np.max(np.abs(predicted - expected)))))
    run = newest_run_named(ctx, p["RETRAIN_RUN"])
    logged = run.data.metrics if run else {}
    if "champion_mae" not in logged or "challenger_mae" not in logged:
        return CheckResult(False, _msg("no_retrain_run", run=p["RETRAIN_RUN"],
                                       found=names(logged) if run else "no such run"))
    # The champion it was compared with: the set-up's version, or (when TODO 6 ran again after
    # a promotion) an earlier version; the one whose MAE on recent_eval is the logged one.
    candidates = [original] + sorted((int(v.version) for v in versions), reverse=True)[:6]
    champion, champion_mae = original, None
    for version in dict.fromkeys(v for v in candidates if v != challenger):
        mae, _ = _mae(ctx, f"models:/{name}/{version}", X, y)
        champion_mae = mae if champion_mae is None else champion_mae
        if _close(logged["champion_mae"], mae, MAE_RTOL):
            champion, champion_mae = version, mae
            break
    right = {"champion_mae": champion_mae, "challenger_mae": challenger_mae}
    if not all(_close(logged[k], v, MAE_RTOL) for k, v in right.items()):
        return CheckResult(False, _msg("wrong_comparison", run=p["RETRAIN_RUN"],
                                       found=pairs({k: f"{logged[k]:.1f}" for k in right}),
                                       champion=champion, challenger=challenger,
                                       expected=pairs({k: f"{v:.1f}" for k, v in right.items()})))
    better = challenger_mae < champion_mae
    champion_now = aliases.get(CHAMPION)
    values = {"challenger": challenger, "champion": champion, "challenger_mae": challenger_mae,
              "champion_mae": champion_mae, "found": champion_now}
    if better and champion_now != challenger:
        return CheckResult(False, _msg("not_promoted", **values))
    if not better and champion_now != champion:
        return CheckResult(False, _msg("wrongly_promoted", **values))
    outcome = _msg("outcome_promoted" if better else "outcome_kept")
    return CheckResult(True, _msg("retrain_ok", outcome=outcome, **values))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, check).
CHECKS: dict[str, tuple[int, Check]] = {
    "check_todo1_tests": (1, check_tests),
    "check_todo2_psi": (2, check_psi),
    "check_todo3_report": (3, check_report),
    "check_todo4_concept": (4, check_concept),
    "check_todo5_decision": (5, check_decision),
    "check_todo6_retrain": (6, check_retrain),
}


self_check = self_check_for(CHECKS, PARAMS)
