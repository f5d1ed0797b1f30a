"""Lab 06a, data drift: evidence and judgments (no reference computation here).

The evidence is in the MLflow store: one run per production batch (``drift-<batch>``) with the
KS and chi-square results, the PSI of each feature, the tag ``drift_detected``, the JSON report
and the plot. The grader computes the tests and the PSI on its own hidden data
(``autograder.references.lab06a``) and applies the lab's rule to the submission's own report.
The notebook's self-checks judge the same evidence against the values shipped for the default
inputs. Part b (``lab06b``) follows the model's error and retrains.
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
    read_artifact,
    runs,
)
from autograder.kit.i18n import _

LAB = "06a_drift"
#: Names read from the notebook's parameters cell (and set by the grader or papermill).
#: DATA_PATH is one of them: the shipped values hold only for the course's own data.
PARAMS = ["DATA_PATH", "EXPERIMENT_NAME", "ALPHA", "PSI_BINS", "PSI_EPS", "PSI_SIGNIFICANT"]
#: The production batches, in time order (production/batch_<name>.csv next to the dataset).
BATCHES = ("no_drift", "feature_drift", "concept_drift")
RUN_PREFIX = "drift-"
CATEGORICAL = "region"
REPORT_FILE = "drift_report.json"
DIST_FIGURE = "distributions.png"
REPORT_KEYS = ("batch", "rows", "alpha", "psi_threshold", "features", "drifted_features", "drift_detected")
#: Test statistics and p-values: scipy's own numbers, up to float rounding.
TEST_RTOL = 1e-4
#: PSI: other correct ways to bin the same deciles (ties on an edge, adding eps instead of a
#: floor) move it by less than 0.5%; equal-width bins or the current's quantiles do not pass.
PSI_RTOL, PSI_ATOL = 0.01, 0.002
#: A p-value in the JSON report: pandas' to_json keeps 10 decimals (2e-8 is written 0.00000002).
REPORT_P_ATOL = 1e-9


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
    "list_more": "{shown} and {more} more",
}


_msg = functools.partial(checking.message, MESSAGES)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _list(items: list[str], limit: int = 4) -> str:
    """``a, b, c, d and 8 more`` for messages, or ``none``."""
    shown = ", ".join(items[:limit]) or _("none")
    return _msg("list_more", shown=shown, more=len(items) - limit) if len(items) > limit else shown


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


# --- Evidence -----------------------------------------------------------------------------


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the store holds for this lab, as plain data. ``run_id`` is not used (the lab's runs
    are found by name). ``confine_to``: the submission's folder, when the grader reads it."""
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
    return {"batches": batches}


def _batch_evidence(mlflow_client: Any, run: dict[str, Any], confine_to: Path | None) -> dict[str, Any]:
    found = {k: run[k] for k in ("id", "name", "metrics", "tags")}
    found["artifacts"] = artifact_names(mlflow_client, run, confine_to)
    found["report"], found["report_error"] = None, None
    if REPORT_FILE in found["artifacts"]:
        data = read_artifact(mlflow_client, run, REPORT_FILE, confine_to)
        try:
            if data is None:
                raise ValueError(_("it could not be read"))
            found["report"] = json.loads(data, parse_constant=_reject_constant)
        except ValueError as exc:
            found["report_error"] = str(exc)[:200]
    found["figure"] = (
        png_summary(read_artifact(mlflow_client, run, DIST_FIGURE, confine_to))
        if DIST_FIGURE in found["artifacts"]
        else None
    )
    return found


def _reject_constant(name: str) -> Any:
    raise ValueError(_("{name} is not a JSON value").format(name=name))


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the TODOs ask for that the parameters alone decide (no reference needed)."""
    return {"alpha": float(params["ALPHA"]), "psi_threshold": float(params["PSI_SIGNIFICANT"])}


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
            return CheckResult(
                False,
                _msg(
                    "missing_tests",
                    run=run["name"],
                    missing=_list(missing),
                    found=_list(found),
                    target=target,
                ),
            )
        bad = {
            k: logged[k]
            for k in wanted
            if not math.isfinite(logged[k]) or logged[k] < 0 or ("_pvalue_" in k and logged[k] > 1)
        }
        if bad:
            return CheckResult(False, _msg("bad_tests", run=run["name"], wrong=_show(bad)))
        if reference is None:
            continue
        right = reference[batch]
        wrong = {k: logged[k] for k in right if not _close(logged.get(k, math.nan), right[k], TEST_RTOL)}
        if wrong:
            return CheckResult(
                False,
                _msg(
                    "wrong_tests",
                    run=run["name"],
                    wrong=_show(wrong),
                    expected=_show({k: right[k] for k in wrong}),
                ),
            )
    if reference is None:
        return CheckResult(True, _msg("tests_logged"))
    alpha = exp["alpha"]
    drifted = {
        batch: [
            k.split("_pvalue_", 1)[1] for k, v in reference[batch].items() if "_pvalue_" in k and v < alpha
        ]
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
            return CheckResult(
                False, _msg("missing_psi", run=run["name"], missing=_list(missing), found=_list(found))
            )
        bad = {k: logged[k] for k in wanted if not math.isfinite(logged[k]) or logged[k] < 0}
        if bad:
            return CheckResult(False, _msg("bad_psi", run=run["name"], wrong=_show(bad)))
        if reference is None:
            continue
        right = reference[batch]
        wrong = {k: logged[k] for k in right if not _close(logged[k], right[k], PSI_RTOL, PSI_ATOL)}
        if wrong:
            return CheckResult(
                False,
                _msg(
                    "wrong_psi",
                    run=run["name"],
                    wrong=_show(wrong),
                    expected=_show({k: right[k] for k in wrong}),
                ),
            )
    if reference is None:
        return CheckResult(True, _msg("psi_logged"))
    threshold = exp["psi_threshold"]
    shifted = "; ".join(
        f"{b}: {', '.join(k[len('psi_') :] for k, v in reference[b].items() if v > threshold) or 'none'}"
        for b in BATCHES
    )
    return CheckResult(True, _msg("psi_ok", threshold=threshold, shifted=shifted))


def _judge_one_report(
    batch: str, run: Mapping[str, Any], rules: Mapping[str, Any] | None, exp: Mapping[str, Any]
) -> CheckResult | None:
    """A failure, or None. ``rules``: column -> whether the lab's rule marks it drifted, for
    the values in this report (from the grader; absent when it cannot be told here)."""
    name, artifacts = run["name"], run.get("artifacts") or []
    found = ", ".join(artifacts) or _("none")
    if REPORT_FILE not in artifacts:
        return CheckResult(False, _msg("no_report", run=name, file=REPORT_FILE, found=found))
    if run.get("report_error") is not None:
        return CheckResult(False, _msg("bad_json", run=name, file=REPORT_FILE, error=run["report_error"]))
    rep = run.get("report")
    if not isinstance(rep, dict):
        return CheckResult(
            False,
            _msg(
                "missing_keys",
                run=name,
                file=REPORT_FILE,
                missing=", ".join(REPORT_KEYS),
                found=type(rep).__name__,
            ),
        )
    missing = [k for k in REPORT_KEYS if k not in rep]
    if missing:
        return CheckResult(
            False,
            _msg("missing_keys", run=name, file=REPORT_FILE, missing=", ".join(missing), found=names(rep)),
        )
    if rep["batch"] != batch:
        return CheckResult(
            False, _msg("wrong_batch", run=name, file=REPORT_FILE, found=rep["batch"], expected=batch)
        )
    alpha, threshold = exp["alpha"], exp["psi_threshold"]
    if _number(rep["alpha"]) != alpha or _number(rep["psi_threshold"]) != threshold:
        return CheckResult(
            False,
            _msg(
                "wrong_thresholds",
                run=name,
                file=REPORT_FILE,
                alpha=rep["alpha"],
                psi=rep["psi_threshold"],
                expected_alpha=alpha,
                expected_psi=threshold,
            ),
        )
    rows = (exp.get("rows") or {}).get(batch)
    if rows is not None and _number(rep["rows"]) != rows:
        return CheckResult(
            False, _msg("wrong_rows", run=name, file=REPORT_FILE, found=rep["rows"], expected=rows)
        )
    features = rep["features"]
    rows_ok = (
        isinstance(features, dict)
        and features
        and all(
            isinstance(row, dict)
            and _number(row.get("p_value")) is not None
            and "psi" in row
            and isinstance(row.get("drifted"), bool)
            and (row["psi"] is None or _number(row["psi"]) is not None)
            for row in features.values()
        )
    )
    if not rows_ok:
        sample = json.dumps(next(iter(features.items()), None) if isinstance(features, dict) else features)
        return CheckResult(False, _msg("bad_features", run=name, file=REPORT_FILE, found=sample[:200]))
    # The report is built from this batch's own tests and PSI (Tasks 1 and 2), as logged in the run.
    logged = run["metrics"]
    tested = _test_columns(logged)
    unmatched = [c for c in features if c not in tested]
    if unmatched:
        return CheckResult(
            False, _msg("report_unmatched", run=name, columns=_list(unmatched), found=_list(sorted(tested)))
        )
    if [c for c in tested if c not in features]:
        return CheckResult(
            False,
            _msg("report_incomplete", run=name, missing=_list([c for c in tested if c not in features])),
        )
    for column, row in features.items():
        checks = [("p_value", row["p_value"], tested[column], TEST_RTOL, REPORT_P_ATOL)]
        if f"psi_{column}" in logged:
            checks.append(("psi", row["psi"], f"psi_{column}", PSI_RTOL, PSI_ATOL))
        for key, value, metric, rtol, atol in checks:
            if _number(value) is None or not _close(float(value), logged[metric], rtol, atol):
                return CheckResult(
                    False,
                    _msg(
                        "report_mismatch",
                        run=name,
                        feature=column,
                        value_name=key,
                        found=_fmt(value),
                        metric=metric,
                        logged=_fmt(logged[metric]),
                    ),
                )
    for column, row in features.items():
        want = (rules or {}).get(column)
        if want is not None and row["drifted"] != want:
            return CheckResult(
                False,
                _msg(
                    "wrong_rule",
                    run=name,
                    feature=column,
                    p=_fmt(row["p_value"]),
                    psi=_fmt(row["psi"]),
                    found=row["drifted"],
                    expected=want,
                ),
            )
    drifted = sorted(c for c, row in features.items() if row["drifted"])
    listed = rep["drifted_features"]
    if not isinstance(listed, list) or sorted(map(str, listed)) != drifted:
        return CheckResult(False, _msg("wrong_list", run=name, found=listed, expected=drifted))
    if rep["drift_detected"] is not bool(drifted):
        return CheckResult(
            False,
            _msg(
                "wrong_detected",
                run=name,
                found=rep["drift_detected"],
                drifted=", ".join(drifted) or _("none"),
            ),
        )
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
    return CheckResult(
        True,
        _msg(
            "report_ok", file=REPORT_FILE, figure=DIST_FIGURE, verdicts="drift_detected: " + pairs(verdicts)
        ),
    )


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_tests": (1, judge_tests),
    "check_todo2_psi": (2, judge_psi),
    "check_todo3_report": (3, judge_report),
}


# --- In the notebook ----------------------------------------------------------------------


def _rules_from_expected(ev: Evidence, exp: Mapping[str, Any]) -> dict[str, Any]:
    """What the lab's rule says about this evidence, where it matches the shipped values: a
    report row with the reference's p-value and PSI gets the reference's verdict. Elsewhere (an
    earlier task differs) the grader judges it on the report's own values."""
    verdicts, tests, psi_ref = exp.get("verdicts"), exp.get("tests"), exp.get("psi")
    if None in (verdicts, tests, psi_ref):
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
                _number(psi_value) is not None
                and psi_want is not None
                and _close(float(psi_value), psi_want, PSI_RTOL, PSI_ATOL)
            )
            if same_p and same_psi:
                report_rules[column] = verdicts[batch][column]
        rules[batch] = {"report": report_rules}
    return rules


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure.

    Judges this run of the notebook against the values shipped for the default inputs (with
    other inputs, only what needs no reference; the grader judges the rest)."""
    import mlflow

    params = checking.notebook_params(namespace, PARAMS)

    def gather() -> tuple[Evidence, dict[str, Any]]:
        ev = evidence(mlflow.get_tracking_uri(), params)
        exp = checking.expected_values(LAB, params, expected_from_params)
        ev["rules"] = _rules_from_expected(ev, exp)
        return ev, exp

    checking.run_self_check(CHECKS, check_id, gather)
