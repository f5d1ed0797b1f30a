"""Lab 06b, concept drift and retraining: evidence and judgments (no reference computation here).

The evidence is in the MLflow store: one run per production batch (``drift-<batch>``) with the
champion's error per window, the change detector's verdict and the retraining decision; the
``retrain`` run with the comparison; the registry's aliases. The grader computes the champion's
error per window and its change point, the share of each input out of range, and both models'
predictions on ``recent_eval`` on its own hidden data (``autograder.references.lab06b``), and
applies the lab's rules to the submission's own evidence; a logged model is asked for
predictions only inside the submission's sandbox. The notebook's self-checks judge the same
evidence against the values shipped for the default inputs. Part a (``lab06a``) tests the inputs.
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
    names,
    pairs,
    predictions,
    runs,
    version_run_name,
)
from autograder.kit.i18n import _

LAB = "06b_retraining"
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
    "RANGE_LIMIT",
    "WINDOW",
    "PH_DELTA",
    "PH_THRESHOLD",
    "RECENT_ROWS",
    "RECENT_EVAL_ROWS",
]
#: The production batches, in time order (production/batch_<name>.csv next to the dataset).
BATCHES = ("no_drift", "feature_drift", "concept_drift")
RUN_PREFIX = "drift-"
#: The metrics the given set-up logs: the share of a feature's values out of the reference's range.
RANGE_PREFIX = "out_of_range_"
#: The batch whose tail is the recent labelled data of TODO 3.
RECENT_BATCH = "concept_drift"
CHAMPION, CHALLENGER = "champion", "challenger"
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
        "run '{run}' has no tag 'concept_drift_detected'. Run the whole TODO 1 cell: it sets the tag from "
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
    "no_change_row": "run '{run}' has no metric 'change_point_row'; run the whole TODO 1 cell.",
    "wrong_change_row": (
        "the change was detected at row {found} of '{batch}', but the detector fires at row {expected}; "
        "page_hinkley() must return the index of the window where the alarm is raised (row = index x {window})."
    ),
    "fired_at": "'{batch}' at row {row}",
    "fired_nowhere": "no batch",
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
        "when the change detector fired, or when more than RANGE_LIMIT={limit} of a feature's values are out "
        "of range."
    ),
    "evidence": "largest share out of range {share}, concept_drift_detected={concept}",
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


def _close(found: float, expected: float, rtol: float, atol: float = 0.0) -> bool:
    return math.isclose(found, expected, rel_tol=rtol, abs_tol=atol)


def _number(value: Any) -> float | None:
    """A finite JSON number as a float, else None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _same_series(found: Any, expected: list[float], rtol: float, atol: float) -> bool:
    return (
        isinstance(found, list)
        and len(found) == len(expected)
        and all(
            _number(f) is not None and _close(float(f), e, rtol, atol)
            for f, e in zip(found, expected, strict=True)
        )
    )


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
    not used (the lab's runs are found by name); nor is ``confine_to`` (no artifact is read)."""
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
        if run is not None:
            run = {k: run[k] for k in ("id", "name", "metrics", "tags")}
            run["windows"] = _history(mlflow_client, run["id"], "window_mae")
        batches[batch] = run
    retrain = newest(params["RETRAIN_RUN"])
    return {"batches": batches, "registry": _registry(mlflow_client, params, retrain)}


def _history(mlflow_client: Any, run_id: str, key: str) -> list[float]:
    """A metric's values by step (the last value logged for a step wins)."""
    by_step: dict[int, tuple[int, float]] = {}
    for m in mlflow_client.get_metric_history(run_id, key):
        if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
            by_step[m.step] = (m.timestamp, m.value)
    return [by_step[s][1] for s in sorted(by_step)]


def _registry(
    mlflow_client: Any, params: Mapping[str, Any], retrain: dict[str, Any] | None
) -> dict[str, Any]:
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
    wanted = [
        registry["aliases"].get(CHALLENGER),
        max(initial, default=None),
        registry["aliases"].get(CHAMPION),
    ]
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
        "range_limit": float(params["RANGE_LIMIT"]),
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
            return CheckResult(
                False, _msg("bad_windows", run=run["name"], first=", ".join(map(str, found[:3])))
            )
        expected = None if reference is None else reference[batch]
        if expected is not None and not _same_series(found, expected, MAE_RTOL, 1e-6):
            return CheckResult(
                False,
                _msg(
                    "wrong_windows",
                    run=run["name"],
                    found=len(found),
                    first=", ".join(f"{v:.1f}" for v in found[:3]),
                    window=window,
                    expected_count=len(expected),
                    expected_first=", ".join(f"{v:.1f}" for v in expected[:3]),
                    last=window - 1,
                    next_last=2 * window - 1,
                ),
            )
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
            return CheckResult(
                False, _msg("wrong_change_row", batch=batch, found=_fmt(row), expected=want, window=window)
            )
        fired.append(_msg("fired_at", batch=batch, row=_fmt(row)))
    shown = ", ".join(fired) or _msg("fired_nowhere")
    if reference is None or alarms is None:
        return CheckResult(True, _msg("concept_logged", fired=shown))
    return CheckResult(True, _msg("concept_ok", fired=shown))


def judge_decision(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """The tag 'retrain' of each batch run must follow the rule applied to the batch's inputs
    (the grader's own shares out of range, as the given set-up computes them) and to the run's
    own detector tag (TODO 1), so that a mistake there is not counted again here. What the rule
    gives for either tag comes with the expected values; where it is absent, only the tags' form
    is judged."""
    runs_, failure = _batch_runs(ev)
    if failure:
        return failure
    decision_if = exp.get("decision_if")
    decisions = {}
    for batch in BATCHES:
        run = runs_[batch]
        name, tags = run["name"], run["tags"]
        tag = tags.get("retrain")
        if tag is None:
            return CheckResult(False, _msg("no_decision", run=name))
        if tag not in ("true", "false"):
            return CheckResult(False, _msg("bad_decision", run=name, found=tag))
        concept = str(tags.get("concept_drift_detected") == "true").lower()
        want = None if decision_if is None else decision_if[batch][concept]
        if want is not None and (tag == "true") != want:
            shares = [v for k, v in run["metrics"].items() if k.startswith(RANGE_PREFIX)]
            largest = max(shares, default=None)
            evidence_ = _msg(
                "evidence",
                share=_fmt(largest) if largest is not None else _("none"),
                concept=tags.get("concept_drift_detected", _("none")),
            )
            return CheckResult(
                False,
                _msg(
                    "wrong_decision",
                    run=name,
                    found=tag,
                    evidence=evidence_,
                    expected=str(want).lower(),
                    limit=exp["range_limit"],
                ),
            )
        decisions[batch] = tag
    key = "decision_logged" if decision_if is None else "decision_ok"
    return CheckResult(True, _msg(key, decisions="retrain: " + pairs(decisions)))


def _matches(registry: Mapping[str, Any], version: int, expected: list[float] | None) -> bool:
    got = (registry.get("predictions") or {}).get(str(version), {}).get("predictions")
    return expected is not None and _same_series(got, expected, PRED_TOL, PRED_TOL)


def judge_retrain(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    reg = ev.get("registry") or {}
    name = exp["model_name"]
    if not reg.get("exists"):
        return CheckResult(
            False,
            _msg("no_registered_model", name=name, found=", ".join(reg.get("others") or []) or _("none")),
        )
    aliases = reg.get("aliases") or {}
    initial = [v["version"] for v in reg.get("versions") or [] if v["run"] == exp["initial_run"]]
    if not initial:
        return CheckResult(False, _msg("no_initial_version", name=name, run=exp["initial_run"]))
    original = max(initial)
    challenger = aliases.get(CHALLENGER)
    if challenger is None:
        return CheckResult(False, _msg("no_challenger", name=name, found=pairs(aliases) or _("none")))
    if challenger in initial:
        return CheckResult(False, _msg("challenger_is_champion", version=challenger))
    challenger_pred = exp.get("challenger_pred")
    if challenger_pred is not None:
        answer = (reg.get("predictions") or {}).get(str(challenger)) or {"prediction_error": _("no answer")}
        if "predictions" not in answer:
            return CheckResult(
                False,
                _msg("no_predictions", version=challenger, name=name, error=answer.get("prediction_error")),
            )
        if not _matches(reg, challenger, challenger_pred):
            return CheckResult(
                False,
                _msg(
                    "challenger_differs",
                    version=challenger,
                    diff=_largest_diff(answer["predictions"], challenger_pred),
                ),
            )
    run = reg.get("retrain_run")
    logged = run["metrics"] if run else {}
    if "champion_mae" not in logged or "challenger_mae" not in logged:
        return CheckResult(
            False,
            _msg("no_retrain_run", run=exp["retrain_run"], found=names(logged) if run else _("no such run")),
        )
    champion_now = aliases.get(CHAMPION)
    if challenger_pred is None or exp.get("champion_pred") is None:
        # No reference here: the promotion must at least follow the logged comparison.
        better = logged["challenger_mae"] < logged["champion_mae"]
        values = {
            "challenger": challenger,
            "champion": original,
            "challenger_mae": logged["challenger_mae"],
            "champion_mae": logged["champion_mae"],
            "found": champion_now,
        }
        if better and champion_now != challenger:
            return CheckResult(False, _msg("not_promoted", **values))
        if not better and champion_now == challenger:
            return CheckResult(False, _msg("wrongly_promoted", **values))
        return CheckResult(True, _msg("retrain_logged", run=exp["retrain_run"], **values))
    # The champion it was compared with: the set-up's version, or (TODO 3 run again after a
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
        return CheckResult(
            False,
            _msg(
                "wrong_comparison",
                run=exp["retrain_run"],
                found=pairs({k: f"{logged[k]:.1f}" for k in right}),
                champion=champion,
                challenger=challenger,
                expected=pairs({k: f"{v:.1f}" for k, v in right.items()}),
            ),
        )
    better = right["challenger_mae"] < right["champion_mae"]
    values = {
        "challenger": challenger,
        "champion": champion,
        "challenger_mae": right["challenger_mae"],
        "champion_mae": right["champion_mae"],
        "found": champion_now,
    }
    if better and champion_now != challenger:
        return CheckResult(False, _msg("not_promoted", **values))
    if not better and champion_now != champion:
        return CheckResult(False, _msg("wrongly_promoted", **values))
    outcome = _msg("outcome_promoted" if better else "outcome_kept")
    return CheckResult(True, _msg("retrain_ok", outcome=outcome, **values))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_concept": (1, judge_concept),
    "check_todo2_decision": (2, judge_decision),
    "check_todo3_retrain": (3, judge_retrain),
}


# --- In the notebook ----------------------------------------------------------------------


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
        reg = ev["registry"]
        if check_id == "check_todo3_retrain" and "challenger_pred" in exp and reg.get("exists"):
            rows = recent_eval_rows(namespace.get("DATA_PATH"), exp["recent_eval_rows"])
            for version in reg["to_predict"]:
                try:
                    reg["predictions"][str(version)] = {
                        "predictions": predictions(uri, f"models:/{params['MODEL_NAME']}/{version}", rows)
                    }
                except Exception as exc:
                    reg["predictions"][str(version)] = {"prediction_error": f"{type(exc).__name__}: {exc}"}
        return ev, exp

    checking.run_self_check(CHECKS, check_id, gather)
