"""Lab 03b, choosing a model: evidence and judgments (no reference computation here).

The notebook's given set-up trains Lab 03a's four models again, each in its own child run
under one parent run, with its cross-validated R² (``cv_r2_mean``, ``cv_r2_std``). The tasks
add each model's single-row latency (Task 1), a comparison plot on the parent run (Task 2), the
decision of a selection rule as tags (Task 3) and the winner's scores on the test split
(Task 4). The grader gathers the evidence from the store as data, applies the rule itself to
the metrics in the store, and calls the same judgments with values it computed on hidden inputs.
Latency depends on the machine: it is judged for presence and plausibility only, and the
decision is judged against the latencies the run measured.

The lab teaches Lab 02's lesson: the models are chosen on cross-validated scores of the
training split, and the test split gives its word once, on the winner only (``test_*``
metrics on the winner's run). A winner chosen on the test split loses Task 3; test scores on
the other runs lose Task 4.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import checking
from autograder.kit.checking import (
    CheckResult,
    Evidence,
    Judge,
    artifact_names,
    client,
    experiment_record,
    is_plot,
    names,
    pairs,
    png_summary,
    read_artifact,
    run_record,
)
from autograder.kit.i18n import _
from autograder.kit.lab03a import MAX_RUNS, MODEL_TYPES, SELECTION

LAB = "03b_selection"
#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = [
    "EXPERIMENT_NAME",
    "PARENT_RUN_NAME",
    "SEED",
    "TEST_SIZE",
    "CV_FOLDS",
    "N_ESTIMATORS",
    "MAX_DEPTH",
    "LATENCY_CALLS",
    "LATENCY_BUDGET_MS",
]
#: On the test split, logged into the winner's run only (Task 4).
TEST_METRICS = ("test_rmse", "test_mae", "test_r2")
LATENCY = "latency_p50_ms"
FIGURE = "comparison.png"
DECISION_TAG = "decision"
WINNER_TAG = "winner_run_id"
WINNER, OVER_BUDGET, LOWER_R2 = "winner", "over_budget", "lower_r2"
DECISIONS = (WINNER, OVER_BUDGET, LOWER_R2)
NO_WINNER = "none"
#: Relative tolerance for the test-split metrics: rounding to 3-4 significant digits passes,
#: a metric computed on other rows, or as MSE instead of RMSE, does not.
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
    "missing_latency": (
        "run '{run}' lacks metric '{metric}'; found: {found}. Log it with "
        "mlflow.log_metric('{metric}', ...) inside that model's run."
    ),
    "implausible_latency": (
        "run '{run}' has {metric}={value:.3g}, which is not the time of one predict() call in "
        "milliseconds. Time one row per call, take the median, and multiply seconds by 1000."
    ),
    "latency_ok": "all {count} runs have {metric} ({values}).",
    "no_parent": "no run named '{parent}' in experiment '{experiment}'. Run the cells above TODO 1.",
    "no_figure": (
        "run '{parent}' has no artifact '{figure}'; found: {found}. Log it into the parent run, "
        "reopened with mlflow.start_run(run_id=...), using mlflow.log_figure(..., '{figure}')."
    ),
    "not_png": "artifact '{figure}' is not a PNG image; log the matplotlib figure with mlflow.log_figure.",
    "not_a_plot": (
        "artifact '{figure}' is not a plot: it is {width}x{height} pixels with {drawn:.1%} drawn on. "
        "Draw the bars on the figure's two axes and log that figure."
    ),
    "figure_ok": "run '{parent}' has the figure '{figure}'.",
    "rule_needs_metrics": (
        "the rule needs {selection} and {metric} in every model's run; missing in: {missing}. "
        "Run the set-up above TODO 1 (it logs {selection}) and finish TODO 1 first."
    ),
    "no_decision": (
        "run '{run}' has no tag '{tag}'. Tag every model's run with its decision: "
        "mlflow.MlflowClient().set_tag(run_id, '{tag}', decision)."
    ),
    "unknown_decision": "run '{run}' is tagged {tag}={found}; a decision is one of {allowed}.",
    "many_winners": "{count} runs are tagged {tag}={winner} ({runs}); the rule picks at most one.",
    "wrong_decision": (
        "run '{run}' is tagged {tag}={found}, but with {selection}={r2:.4g} and {metric}={latency:.3g} ms "
        "under a budget of {budget:g} ms the rule gives {tag}={expected}. {why}"
    ),
    "why_over_budget": "A model slower than the budget is out, whatever its R².",
    "why_winner": "The winner is the best cross-validated R² (cv_r2_mean) among the models within the budget.",
    "why_lower_r2": "Only the best cv_r2_mean within the budget wins; the others within it are lower_r2.",
    "why_test": (
        "These decisions are the rule applied to the R² on the test split: choose on cv_r2_mean, and keep "
        "the test split for the winner's final word (Task 4)."
    ),
    "no_winner_tag": (
        "the experiment has no tag '{tag}'. Record the winner: "
        "mlflow.set_experiment_tag('{tag}', winner_run_id)."
    ),
    "wrong_winner_tag": (
        "the experiment tag {tag} is '{found}', but the run tagged winner is {expected} ('{run}'). "
        "Set it to the winner's run id."
    ),
    "wrong_no_winner_tag": (
        "no run is tagged winner, so there is no winner; the experiment tag {tag} should be "
        "'{none}', not '{found}'."
    ),
    "decision_ok": (
        "the recorded decision follows the rule: winner '{run}' ({selection}={r2:.4g}, {metric}={latency:.3g} ms, "
        "budget {budget:g} ms); over budget: {over}."
    ),
    "decision_ok_no_winner": "the recorded decision follows the rule: no model is within {budget:g} ms.",
    "decision_recorded": (
        "every run has a decision ({values}) and the experiment names the winner; "
        "the grader checks them against the rule."
    ),
    "final_needs_winner": (
        "no winner is recorded (no run tagged {tag}={winner}, no experiment tag {winner_tag}): the final "
        "word on the test split is for the winner. Finish TODO 3 first."
    ),
    "final_unknown_winner": (
        "the experiment tag {winner_tag} is '{found}', which is none of the model runs: finish TODO 3 first."
    ),
    "test_on_others": (
        "run(s) {runs} hold test-split metrics ({metrics}), but only the winner '{winner}' may: a score on "
        "the test split of a model you did not choose invites choosing on it. Score the winner alone."
    ),
    "test_without_winner": (
        "no model is within the budget, so there is no winner to score, yet run(s) {runs} hold test-split "
        "metrics."
    ),
    "missing_test": (
        "the winner's run '{run}' lacks {missing}; found: {found}. Score models[winner_name] on X_test "
        "against y_test and log them into its run (winner_run_id)."
    ),
    "wrong_test": (
        "the winner's run '{run}' has {wrong}, but its model gives {expected} on the test split. "
        "Compare the winner's predictions for X_test with y_test."
    ),
    "final_ok": "the winner '{run}' alone was scored on the test split: {values} (cv_r2_mean {cv:.4g}).",
    "final_logged": (
        "the winner '{run}' alone holds test-split metrics ({values}); the grader checks the values on its "
        "own data."
    ),
    "final_no_winner": "no model is within the budget, and no run was scored on the test split.",
}


_msg = functools.partial(checking.message, MESSAGES)


# --- Evidence -----------------------------------------------------------------------------


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the store holds for this lab, as plain data: the experiment and its tags, the
    newest parent run and its figure, and the newest child run of each model's name. ``run_id``
    is unused: the runs are found by name. ``confine_to``: the submission's folder, when the
    grader reads it."""
    mlflow_client = client(tracking_uri)
    experiment = experiment_record(mlflow_client, params["EXPERIMENT_NAME"])
    found: Evidence = {"experiment": experiment, "parent": None, "candidates": {}}
    if experiment is None:
        return found
    experiment["tags"] = dict(mlflow_client.get_experiment(experiment["id"]).tags)
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
    found["candidates"] = candidates
    found["artifacts"] = artifact_names(mlflow_client, parent, confine_to)
    found["figure"] = (
        png_summary(read_artifact(mlflow_client, parent, FIGURE, confine_to)) if FIGURE in found["artifacts"] else None
    )
    return found


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the TODOs ask for that the parameters alone decide (no reference needed)."""
    return {
        "experiment_name": params["EXPERIMENT_NAME"],
        "parent_run_name": params["PARENT_RUN_NAME"],
        "budget_ms": float(params["LATENCY_BUDGET_MS"]),
    }


# --- Judgments ----------------------------------------------------------------------------


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


def _close(logged: float, want: float) -> bool:
    return math.isclose(logged, want, rel_tol=METRIC_RTOL, abs_tol=1e-4)


def judge_latency(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    candidates, failure = _candidate_runs(ev, exp)
    if candidates is None:
        return failure
    low, high = LATENCY_RANGE_MS
    for name, run in candidates.items():
        logged = run["metrics"]
        if LATENCY not in logged:
            return CheckResult(False, _msg("missing_latency", run=name, metric=LATENCY, found=names(logged)))
        value = logged[LATENCY]
        if not (math.isfinite(value) and low <= value <= high):
            return CheckResult(False, _msg("implausible_latency", run=name, metric=LATENCY, value=value))
    values = ", ".join(f"{name} {run['metrics'][LATENCY]:.3g} ms" for name, run in candidates.items())
    return CheckResult(True, _msg("latency_ok", count=len(candidates), metric=LATENCY, values=values))


def judge_figure(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    parent_name = exp["parent_run_name"]
    if ev.get("parent") is None:
        return CheckResult(False, _msg("no_parent", parent=parent_name, experiment=exp["experiment_name"]))
    if FIGURE not in ev.get("artifacts", []):
        found = ", ".join(ev.get("artifacts", [])) or _("none")
        return CheckResult(False, _msg("no_figure", parent=parent_name, figure=FIGURE, found=found))
    figure = ev.get("figure")
    if not figure or not figure.get("decodes"):
        return CheckResult(False, _msg("not_png", figure=FIGURE))
    if not is_plot(figure):
        return CheckResult(False, _msg("not_a_plot", figure=FIGURE,
                                       **{k: figure[k] for k in ("width", "height", "drawn")}))
    return CheckResult(True, _msg("figure_ok", parent=parent_name, figure=FIGURE))


def judge_decision(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """Every run carries one decision, the experiment's winner tag names the run tagged
    winner; with the rule's own decisions at hand (the grader applies the rule to the
    metrics in the store), every run's decision is the rule's."""
    candidates, failure = _candidate_runs(ev, exp)
    if candidates is None:
        return failure
    budget = exp["budget_ms"]
    incomplete = [name for name, run in candidates.items() if not {SELECTION, LATENCY} <= set(run["metrics"])]
    if incomplete:
        return CheckResult(False, _msg("rule_needs_metrics", selection=SELECTION, metric=LATENCY,
                                       missing=", ".join(incomplete)))
    tagged = {name: run["tags"].get(DECISION_TAG) for name, run in candidates.items()}
    for name, found in tagged.items():
        if found is None:
            return CheckResult(False, _msg("no_decision", run=name, tag=DECISION_TAG))
        if found not in DECISIONS:
            return CheckResult(False, _msg("unknown_decision", run=name, tag=DECISION_TAG, found=found,
                                           allowed=", ".join(DECISIONS)))
    rule = exp.get("decisions")
    metrics = {name: (run["metrics"][SELECTION], run["metrics"][LATENCY]) for name, run in candidates.items()}
    if rule is not None:
        # The rule applied to the test split's R² (the grader's references): the typical mistake.
        on_test = tagged == exp.get("test_decisions") and tagged != rule
        for name, found in tagged.items():
            if found != rule.get(name):
                r2, latency = metrics[name]
                why = "why_test" if on_test else f"why_{rule.get(name)}" if rule.get(name) in DECISIONS else None
                return CheckResult(False, _msg(
                    "wrong_decision", run=name, tag=DECISION_TAG, found=found, expected=rule.get(name), r2=r2,
                    selection=SELECTION, metric=LATENCY, latency=latency, budget=budget,
                    why=_msg(why) if why else ""))
    winners = [name for name, found in tagged.items() if found == WINNER]
    if len(winners) > 1:
        return CheckResult(False, _msg("many_winners", count=len(winners), tag=DECISION_TAG, winner=WINNER,
                                       runs=", ".join(winners)))
    recorded = ((ev.get("experiment") or {}).get("tags") or {}).get(WINNER_TAG)
    if not winners:
        if recorded not in (None, NO_WINNER):
            return CheckResult(False, _msg("wrong_no_winner_tag", tag=WINNER_TAG, none=NO_WINNER, found=recorded))
        if rule is None:
            return CheckResult(True, _msg("decision_recorded", values=pairs(tagged)))
        return CheckResult(True, _msg("decision_ok_no_winner", budget=budget))
    winner = winners[0]
    if recorded is None:
        return CheckResult(False, _msg("no_winner_tag", tag=WINNER_TAG))
    winner_id = candidates[winner]["id"]
    if recorded != winner_id:
        return CheckResult(False, _msg("wrong_winner_tag", tag=WINNER_TAG, found=recorded, expected=winner_id,
                                       run=winner))
    if rule is None:
        return CheckResult(True, _msg("decision_recorded", values=pairs(tagged)))
    over = ", ".join(name for name, decision in tagged.items() if decision == OVER_BUDGET) or _("none")
    r2, latency = metrics[winner]
    return CheckResult(True, _msg("decision_ok", run=winner, selection=SELECTION, r2=r2, metric=LATENCY,
                                  latency=latency, budget=budget, over=over))


def judge_final(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """The winner the submission recorded (its decision tag, else the experiment's winner tag),
    and no other run, holds test-split metrics; with the references at hand, they are its
    model's scores on the test split. Judged on the recorded winner, right or wrong, so that a
    wrong choice costs Task 3 only."""
    candidates, failure = _candidate_runs(ev, exp)
    if candidates is None:
        return failure
    tested = {name: sorted(m for m in TEST_METRICS if m in run["metrics"]) for name, run in candidates.items()}
    recorded = ((ev.get("experiment") or {}).get("tags") or {}).get(WINNER_TAG)
    tagged = [name for name, run in candidates.items() if run["tags"].get(DECISION_TAG) == WINNER]
    by_id = {run["id"]: name for name, run in candidates.items()}
    if len(tagged) == 1:
        winner = tagged[0]
    elif recorded == NO_WINNER and not tagged:
        scored = [name for name, found in tested.items() if found]
        if scored:
            return CheckResult(False, _msg("test_without_winner", runs=", ".join(scored)))
        return CheckResult(True, _msg("final_no_winner"))
    elif recorded in by_id:
        winner = by_id[recorded]
    elif recorded is not None:
        return CheckResult(False, _msg("final_unknown_winner", winner_tag=WINNER_TAG, found=recorded))
    else:
        return CheckResult(False, _msg("final_needs_winner", tag=DECISION_TAG, winner=WINNER, winner_tag=WINNER_TAG))
    others = [name for name, found in tested.items() if found and name != winner]
    if others:
        found = sorted({m for name in others for m in tested[name]})
        return CheckResult(False, _msg("test_on_others", runs=", ".join(others), metrics=", ".join(found),
                                       winner=winner))
    logged = candidates[winner]["metrics"]
    missing = [m for m in TEST_METRICS if m not in logged]
    if missing:
        return CheckResult(False, _msg("missing_test", run=winner, missing=", ".join(missing), found=names(logged)))
    values = pairs({m: f"{logged[m]:.4g}" for m in TEST_METRICS})
    ref = (exp.get("test_metrics") or {}).get(winner)
    if ref is None:
        return CheckResult(True, _msg("final_logged", run=winner, values=values))
    wrong = [m for m in TEST_METRICS if not _close(logged[m], ref[m])]
    if wrong:
        return CheckResult(False, _msg("wrong_test", run=winner, wrong=pairs({m: f"{logged[m]:.4g}" for m in wrong}),
                                       expected=pairs({m: f"{ref[m]:.4g}" for m in wrong})))
    return CheckResult(True, _msg("final_ok", run=winner, values=values, cv=logged.get(SELECTION, math.nan)))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_latency": (1, judge_latency),
    "check_todo2_figure": (2, judge_figure),
    "check_todo3_decision": (3, judge_decision),
    "check_todo4_final": (4, judge_final),
}


# --- In the notebook ----------------------------------------------------------------------


def self_check(check_id: str, namespace: Mapping[str, Any]) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure.

    Judges this run of the notebook against the values shipped for the default inputs. The
    decision is judged for its structure here; the grader also applies the rule to it."""
    import mlflow

    params = checking.notebook_params(namespace, PARAMS)

    def gather() -> tuple[Evidence, dict[str, Any]]:
        ev = evidence(mlflow.get_tracking_uri(), params)
        return ev, checking.expected_values(LAB, params, expected_from_params)

    checking.run_self_check(CHECKS, check_id, gather)
