"""Lab 02, hyperparameter tuning: evidence and judgments (no reference computation here).

The notebook's self-check cells call ``self_check``; the grader reads the same evidence
from the store as data and calls the same judgments with the scores its references computed
on hidden inputs. The sweep's structure is read from the runs' tags (``mlflow.parentRunId``);
the best configuration the parent records is compared with the best child by the metric
actually stored.
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
    SelfCheckFailed,
    artifact_names,
    client,
    is_plot,
    names,
    pairs,
    png_summary,
    quiet,
    read_artifact,
    run_record,
    same_param_value,
)
from autograder.kit.i18n import _

LAB = "02_tuning"
#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = [
    "EXPERIMENT_NAME",
    "PARENT_RUN_NAME",
    "TRIAL_RUN_NAME",
    "SEED",
    "TEST_SIZE",
    "CV_FOLDS",
    "N_ESTIMATORS_GRID",
    "MAX_DEPTH_GRID",
]
METRICS = ("cv_r2_mean", "cv_r2_std", "test_r2", "test_rmse")
#: The metric the sweep is decided on (higher is better).
SELECTION = "cv_r2_mean"
SURFACE = "cv_r2_surface.png"
PARENT_TAG = "mlflow.parentRunId"
BEST_TAG = "best_run_id"
BEST_PARAMS = {"best_n_estimators": "n_estimators", "best_max_depth": "max_depth"}
BEST_METRICS = {"best_cv_r2_mean": "cv_r2_mean", "best_test_r2": "test_r2"}
#: Relative tolerance for logged metrics: rounding to 3-4 significant digits passes, a score
#: computed on the wrong split or with another number of folds does not.
METRIC_RTOL = 1e-3
#: The same evaluate() on the same configuration gives the same numbers (seeded forests).
SAME_RTOL = 1e-6
#: How many runs started after the parent are read, to say where misplaced work went.
LATER_RUNS = 50

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "no_trial": (
        "no run named '{name}' in the store. Run the given cell after TODO 1 that logs a trial run."
    ),
    "trial_no_metrics": (
        "run '{run}' has no metrics: the trial cell could not log what evaluate() returns. "
        "Write evaluate() in TODO 1, run it, then run the trial cell again."
    ),
    "trial_missing": (
        "run '{run}' lacks metric(s) {missing}; found: {found}. evaluate() must return a dict with "
        "the keys cv_r2_mean, cv_r2_std, test_r2 and test_rmse."
    ),
    "trial_wrong": (
        "run '{run}' (n_estimators={n}, max_depth={d}) has {wrong}, but a re-computation gives "
        "{expected}. cv_* come from cross_val_score(model, X_train, y_train, cv=CV_FOLDS, "
        "scoring='r2'); test_* from `model` fitted on X_train and scored on X_test."
    ),
    "child_wrong": (
        "child run '{run}' (n_estimators={n}, max_depth={d}) has {wrong}, but a re-computation for "
        "that configuration gives {expected}. evaluate() must use its arguments, and each child "
        "must log evaluate() of its own configuration."
    ),
    "scores_ok": "run '{run}' has {values}, matching a re-computation{children}.",
    "scores_children": ", and so do the metrics of the sweep's {count} child run(s)",
    "scores_logged": (
        "run '{run}' has {values} (the grader re-computes the values on its own data)."
    ),
    "no_parent": (
        "no run named '{name}' in the store. Run the cell of TODO 2: it starts the parent run "
        "with mlflow.start_run(run_name=PARENT_RUN_NAME)."
    ),
    "parent_missing_params": (
        "the parent run '{run}' lacks parameter(s) {missing}; found: {found}. Log them in one call "
        "with mlflow.log_params({{...}})."
    ),
    "parent_wrong_params": "the parent run '{run}' has {wrong}; expected {expected}.",
    "parent_missing_tags": (
        "the parent run '{run}' lacks tag(s) {missing}; found: {found}. Set them with "
        "mlflow.set_tags({{...}})."
    ),
    "parent_wrong_tags": "the parent run '{run}' has tag(s) {wrong}; expected {expected}.",
    "parent_ok": "the parent run '{run}' has parameters {params} and tags {tags}.",
    "no_children": (
        "the parent run '{run}' has no child runs. Start each configuration's run inside it with "
        "`with mlflow.start_run(run_name=..., nested=True):` while the parent is active."
    ),
    "not_nested": (
        "the parent run '{run}' has no child runs, but {count} run(s) with the grid's parameters "
        "are not nested under it ({found}). Start each with nested=True while the parent is the "
        "active run; do not end the parent with mlflow.end_run() first."
    ),
    "child_missing_params": (
        "child run '{run}' lacks parameter(s) {missing}; found: {found}. Log each with "
        "mlflow.log_param(key, value)."
    ),
    "child_off_grid": (
        "child run '{run}' has n_estimators={n}, max_depth={d}: not a configuration of the grid "
        "{grid}."
    ),
    "child_wrong_name": "the child run for n_estimators={n}, max_depth={d} is named '{found}'; name it '{expected}'.",
    "child_no_tag": (
        "child run '{run}' has tag sweep={found}; set it to '{expected}' with "
        "mlflow.set_tag('sweep', PARENT_RUN_NAME)."
    ),
    "child_no_metrics": (
        "child run '{run}' has no metrics. Log the dict that evaluate() returns with mlflow.log_metrics(...)."
    ),
    "child_other_keys": (
        "child run '{run}' has metric(s) {found}, but evaluate() returned {expected} in the trial run. "
        "Log the dict evaluate(n_estimators, max_depth) returns, as it is."
    ),
    "child_not_evaluated": (
        "child run '{run}' has {wrong}, but evaluate({n}, {d}) gives {expected}{source}. "
        "Log the metrics evaluate(n_estimators, max_depth) returns for that child's configuration."
    ),
    "source_trial": " (the trial run of the same configuration)",
    "source_reference": " (a re-computation)",
    "child_not_finished": (
        "child run '{run}' is {status}, not FINISHED. Start each child with `with mlflow.start_run(...)`, "
        "so that it ends before the next one starts."
    ),
    "missing_configs": (
        "the sweep under '{run}' lacks a child run for {missing}. Each configuration of GRID needs "
        "its own child, started while the parent is the active run."
    ),
    "duplicate_configs": (
        "the sweep under '{run}' has several child runs for {dupes}; each configuration should "
        "have exactly one."
    ),
    "rerun_hint": (
        " If that child is left from an earlier attempt, run the cell of TODO 2 again (a fresh "
        "parent), then the sweep."
    ),
    "sweep_ok": (
        "the parent run '{run}' has {count} nested child runs, one per configuration, each with its "
        "parameters, tag and metrics."
    ),
    "best_no_children": (
        "no child run of '{run}' has metric {metric}, so the best cannot be checked. Run the sweep "
        "(TODO 3) first, then pick the best with mlflow.search_runs."
    ),
    "best_no_tag": (
        "the parent run '{run}' has no tag '{tag}'; found tags: {found}. Set it with "
        "mlflow.set_tag('{tag}', best['run_id'])."
    ),
    "best_not_child": "the parent's {tag} is '{found}', which is not a child run of '{run}'.",
    "best_is_a_name": (
        "the parent's {tag} is '{found}', the NAME of a child run; record its run id instead (the "
        "'run_id' column of what mlflow.search_runs returns): names repeat from one sweep to the next, "
        "ids do not."
    ),
    "needs_parent": (
        "TODO {todo} needs the parent run of TODO 2, and there is none: run the cell of TODO 2 first."
    ),
    "needs_children": (
        "TODO {todo} needs the sweep of TODO 3 first: the parent run '{run}' has no child runs with "
        "{metric} yet. Run the cell of TODO 3 until its self-check says ✔, then this cell again."
    ),
    "needs_results": (
        "TODO {todo} needs the sweep of TODO 3 first: `results` holds no configuration yet. Run the "
        "cell of TODO 3 until its self-check says ✔, then this cell again."
    ),
    "best_unscored": "the parent's {tag} names '{chosen}', a child run without metric {metric}.",
    "best_is_worst": (
        "the parent's {tag} names '{chosen}', the child with the LOWEST {metric} ({value:.4f}). "
        "Higher R² is better: order by 'metrics.{metric} DESC' and take the first row."
    ),
    "best_not_best": (
        "the parent's {tag} names '{chosen}' ({metric}={value:.4f}), but '{winner}' has the highest "
        "{metric} ({top:.4f}). Order the children by 'metrics.{metric} DESC' and take the first row."
    ),
    "best_missing_params": (
        "the parent run lacks parameter(s) {missing}; found: {found}. Log the best configuration with "
        "mlflow.log_params({{...}})."
    ),
    "best_wrong_params": "the parent run has {wrong}, but its {tag} '{chosen}' has {expected}.",
    "best_missing_metrics": (
        "the parent run lacks metric(s) {missing}; found: {found}. Log the best child's scores with "
        "mlflow.log_metrics({{...}})."
    ),
    "best_wrong_metrics": "the parent run has {wrong}, but its {tag} '{chosen}' has {expected}.",
    "best_ok": (
        "the parent records '{chosen}' (n_estimators={n}, max_depth={d}) as best: the child with the "
        "highest {metric} ({value:.4f}); its test_r2 is {test}."
    ),
    "no_surface": (
        "the parent run '{run}' has no artifact '{figure}'; found: {found}. Log the figure with "
        "mlflow.log_figure(fig, '{figure}') while the parent is the active run."
    ),
    "surface_elsewhere": (
        "'{figure}' is logged in run '{other}', not in the parent run '{run}'. Log it while the "
        "parent is the active run (after the sweep's `with` blocks have ended)."
    ),
    "not_png": "artifact '{figure}' is not a PNG image; log the matplotlib figure with mlflow.log_figure.",
    "not_a_plot": (
        "artifact '{figure}' is not a plot: it is {width}x{height} pixels with {drawn:.1%} drawn on. "
        "Draw the table with plot_surface(surface) and log that figure."
    ),
    "surface_ok": "the parent run '{run}' has the figure '{figure}'.",
}


_msg = functools.partial(checking.message, MESSAGES)


# --- Evidence -----------------------------------------------------------------------------


def _quoted(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _search(mlflow_client: Any, filter_string: str = "", max_results: int = 1000) -> list[dict[str, Any]]:
    """Runs of every experiment matching ``filter_string``, newest first, as plain data."""
    ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not ids:
        return []
    found = mlflow_client.search_runs(ids, filter_string, order_by=["attributes.start_time DESC"],
                                      max_results=max_results)
    return [run_record(r) for r in found]


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the store holds for this lab, as plain data. ``run_id``: the notebook's active
    run, if any. ``confine_to``: the submission's folder, when the grader reads it."""
    mlflow_client = client(tracking_uri)
    trials = _search(mlflow_client, f"tags.mlflow.runName = {_quoted(params['TRIAL_RUN_NAME'])}", 1)
    found: Evidence = {"trial": trials[0] if trials else None}
    parent = _the_parent(mlflow_client, params, run_id)
    found["parent"] = parent
    if parent is None:
        return found
    kids = _search(mlflow_client, f"tags.{PARENT_TAG} = {_quoted(parent['id'])}")
    found["children"] = sorted(kids, key=lambda r: r["start_time"])
    found["parent_artifacts"] = artifact_names(mlflow_client, parent, confine_to)
    found["surface"] = (png_summary(read_artifact(mlflow_client, parent, SURFACE, confine_to))
                        if SURFACE in found["parent_artifacts"] else None)
    kid_ids = {k["id"] for k in kids}
    later = [r for r in _search(mlflow_client, max_results=LATER_RUNS)
             if r["start_time"] >= parent["start_time"] and r["id"] != parent["id"] and r["id"] not in kid_ids]
    found["later"] = [
        {"id": r["id"], "name": r["name"], "start_time": r["start_time"], "params": r["params"],
         "artifacts": artifact_names(mlflow_client, r, confine_to)}
        for r in later
    ]
    return found


def _the_parent(mlflow_client: Any, params: Mapping[str, Any], run_id: str | None) -> dict[str, Any] | None:
    """The sweep's parent: the notebook's active run if it is the parent, else the newest
    top-level run named PARENT_RUN_NAME."""
    name = params["PARENT_RUN_NAME"]
    if run_id:
        active = run_record(mlflow_client.get_run(run_id))
        if active["name"] == name and PARENT_TAG not in active["tags"]:
            return active
    named = _search(mlflow_client, f"tags.mlflow.runName = {_quoted(name)}")
    return next((r for r in named if PARENT_TAG not in r["tags"]), None)


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the TODOs ask for that the parameters alone decide (no reference needed)."""
    grid = [[int(n), int(d)] for n in params["N_ESTIMATORS_GRID"] for d in params["MAX_DEPTH_GRID"]]
    return {
        "trial_name": params["TRIAL_RUN_NAME"],
        "parent_name": params["PARENT_RUN_NAME"],
        "grid": grid,
        "parent_params": {
            "model_type": "RandomForestRegressor",
            "random_state": params["SEED"],
            "cv_folds": params["CV_FOLDS"],
            "n_estimators_grid": list(params["N_ESTIMATORS_GRID"]),
            "max_depth_grid": list(params["MAX_DEPTH_GRID"]),
        },
        "parent_tags": {"sweep": params["PARENT_RUN_NAME"], "search": "grid"},
        "strict": True,
    }


# --- Helpers of the judgments -------------------------------------------------------------


def _as_int(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def config_of(run: Mapping[str, Any]) -> tuple[int | None, int | None]:
    params = run["params"]
    return _as_int(params.get("n_estimators")), _as_int(params.get("max_depth"))


def child_name(n_estimators: int, max_depth: int) -> str:
    """The run name the lab asks for, one per configuration."""
    return f"rf-n{n_estimators}-d{max_depth}"


def _grid(exp: Mapping[str, Any]) -> list[tuple[int, int]]:
    return [(int(n), int(d)) for n, d in exp["grid"]]


def _fmt(values: Mapping[str, float]) -> str:
    return pairs({k: f"{v:.4g}" for k, v in values.items()})


def _close(logged: float, expected: float, rtol: float = METRIC_RTOL) -> bool:
    return math.isclose(logged, expected, rel_tol=rtol, abs_tol=1e-4 if rtol == METRIC_RTOL else 1e-9)


def _reference(exp: Mapping[str, Any], config: tuple[int | None, int | None]) -> dict[str, float] | None:
    """The reference scores of one configuration, when the expected values hold them."""
    for row in exp.get("scores") or []:
        if (int(row["n_estimators"]), int(row["max_depth"])) == config:
            return row
    return None


def _wrong_scores(logged: Mapping[str, float], ref: Mapping[str, float]) -> list[str]:
    """The metrics that differ from the reference (the sample or population std both pass)."""
    wrong = [m for m in METRICS if m != "cv_r2_std" and not _close(logged[m], ref[m])]
    std = logged["cv_r2_std"]
    if not (_close(std, ref["cv_r2_std"]) or _close(std, ref["cv_r2_std_sample"])):
        wrong.insert(1, "cv_r2_std")
    return wrong


def _has_metrics(run: Mapping[str, Any] | None) -> bool:
    return run is not None and all(m in run["metrics"] for m in METRICS)


def _trial_is_right(ev: Evidence, exp: Mapping[str, Any]) -> bool:
    """Whether the trial run holds the reference scores of the grid's first configuration
    (then evaluate() is right, and every child must hold the reference of its own)."""
    trial, ref = ev.get("trial"), _reference(exp, _grid(exp)[0])
    return ref is not None and _has_metrics(trial) and not _wrong_scores(trial["metrics"], ref)


# --- Judgments ----------------------------------------------------------------------------


def judge_scores(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """TODO 1, evaluate(): the trial run's metrics, and those of every child of a sweep
    started after it, equal the reference for their configuration."""
    trial, name = ev.get("trial"), exp["trial_name"]
    if trial is None:
        return CheckResult(False, _msg("no_trial", name=name))
    logged = trial["metrics"]
    if not logged:
        return CheckResult(False, _msg("trial_no_metrics", run=name))
    missing = [m for m in METRICS if m not in logged]
    if missing:
        return CheckResult(False, _msg("trial_missing", run=name, missing=", ".join(missing), found=names(logged)))
    values = _fmt({m: logged[m] for m in METRICS})
    n, d = _grid(exp)[0]
    ref = _reference(exp, (n, d))
    if ref is None:
        return CheckResult(True, _msg("scores_logged", run=name, values=values))
    wrong = _wrong_scores(logged, ref)
    if wrong:
        return CheckResult(False, _msg("trial_wrong", run=name, n=n, d=d, wrong=_fmt({m: logged[m] for m in wrong}),
                                       expected=_fmt({m: ref[m] for m in wrong})))
    # The sweep logs evaluate() of each configuration: check them all, not only the trial one.
    # Only a parent started after the trial counts (older ones may come from an earlier session).
    checked = 0
    parent = ev.get("parent")
    if parent is not None and parent["start_time"] >= trial["start_time"]:
        for child in ev.get("children", []):
            config = config_of(child)
            child_ref = _reference(exp, config)
            if child_ref is None or not _has_metrics(child):
                continue  # the sweep's own check reports these
            wrong = _wrong_scores(child["metrics"], child_ref)
            if wrong:
                return CheckResult(False, _msg(
                    "child_wrong", run=child["name"], n=config[0], d=config[1],
                    wrong=_fmt({m: child["metrics"][m] for m in wrong}),
                    expected=_fmt({m: child_ref[m] for m in wrong})))
            checked += 1
    extra = _msg("scores_children", count=checked) if checked else ""
    return CheckResult(True, _msg("scores_ok", run=name, values=values, children=extra))


def judge_parent(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """TODO 2: the parent run holds the sweep's settings (parameters) and its tags."""
    parent = ev.get("parent")
    if parent is None:
        return CheckResult(False, _msg("no_parent", name=exp["parent_name"]))
    run, expected, logged = parent["name"], exp["parent_params"], parent["params"]
    missing = [k for k in expected if k not in logged]
    if missing:
        return CheckResult(False, _msg("parent_missing_params", run=run, missing=", ".join(missing),
                                       found=names(logged)))
    wrong = {k: logged[k] for k in expected if not same_param_value(logged[k], expected[k])}
    if wrong:
        return CheckResult(False, _msg("parent_wrong_params", run=run, wrong=pairs(wrong),
                                       expected=pairs({k: expected[k] for k in wrong})))
    tags = exp["parent_tags"]
    user_tags = {k: v for k, v in parent["tags"].items() if not k.startswith("mlflow.")}
    missing = [k for k in tags if k not in user_tags]
    if missing:
        return CheckResult(False, _msg("parent_missing_tags", run=run, missing=", ".join(missing),
                                       found=names(user_tags)))
    wrong = {k: user_tags[k] for k in tags if user_tags[k] != tags[k]}
    if wrong:
        return CheckResult(False, _msg("parent_wrong_tags", run=run, wrong=pairs(wrong),
                                       expected=pairs({k: tags[k] for k in wrong})))
    return CheckResult(True, _msg("parent_ok", run=run, params=", ".join(expected), tags=pairs(tags)))


def _config_list(configs: list[tuple[int, int]]) -> str:
    return "; ".join(f"n_estimators={n}, max_depth={d}" for n, d in configs)


def _child_problem(child: Mapping[str, Any], the_grid: list[tuple[int, int]], tag: str) -> str | None:
    """What is wrong with the structure of one child run of the sweep, or None."""
    name, params = child["name"], child["params"]
    missing = [k for k in ("n_estimators", "max_depth") if k not in params]
    if missing:
        return _msg("child_missing_params", run=name, missing=", ".join(missing), found=names(params))
    config = config_of(child)
    if config not in the_grid:
        return _msg("child_off_grid", run=name, n=params["n_estimators"], d=params["max_depth"],
                    grid=_config_list(the_grid))
    n, d = config
    if name != child_name(n, d):
        return _msg("child_wrong_name", n=n, d=d, found=name, expected=child_name(n, d))
    if child["tags"].get("sweep") != tag:
        return _msg("child_no_tag", run=name, found=child["tags"].get("sweep"), expected=tag)
    if not child["metrics"]:
        return _msg("child_no_metrics", run=name)
    if child["status"] != "FINISHED":
        return _msg("child_not_finished", run=name, status=child["status"])
    return None


def _child_not_evaluated(child: Mapping[str, Any], ev: Evidence, exp: Mapping[str, Any]) -> str | None:
    """Whether a child's metrics are what evaluate() gives for its configuration: the same
    keys and, for the trial's configuration, the same values as the trial run; and, when
    the trial shows evaluate() is right, the reference values of its own configuration."""
    trial, logged, config = ev.get("trial"), child["metrics"], config_of(child)
    if trial is None or not trial["metrics"]:
        return None  # without a trial run, only the structure can be judged (TODO 1 reports it)
    if set(logged) != set(trial["metrics"]):
        return _msg("child_other_keys", run=child["name"], found=names(logged), expected=names(trial["metrics"]))
    if config == _grid(exp)[0]:
        want, source = trial["metrics"], "source_trial"
        wrong = [m for m in logged if not _close(logged[m], want[m], SAME_RTOL)]
    elif _trial_is_right(ev, exp):
        want, source = _reference(exp, config), "source_reference"
        wrong = _wrong_scores(logged, want) if want is not None and _has_metrics(child) else []
    else:
        return None
    if not wrong:
        return None
    return _msg("child_not_evaluated", run=child["name"], n=config[0], d=config[1],
                wrong=_fmt({m: logged[m] for m in wrong}), expected=_fmt({m: want[m] for m in wrong}),
                source=_msg(source))


def judge_sweep(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """TODO 3: one nested child run per configuration, named, with its parameters, the sweep
    tag and the metrics evaluate() gives for it. Strict (the grader, the hidden test): exactly
    one child per configuration."""
    parent = ev.get("parent")
    if parent is None:
        return CheckResult(False, _msg("no_parent", name=exp["parent_name"]))
    run, kids, the_grid = parent["name"], ev.get("children", []), _grid(exp)
    strict = bool(exp.get("strict", True))
    if not kids:
        loose = [r for r in ev.get("later", []) if config_of(r) in the_grid]
        if loose:
            found = ", ".join(sorted({r["name"] for r in loose}))
            return CheckResult(False, _msg("not_nested", run=run, count=len(loose), found=found))
        return CheckResult(False, _msg("no_children", run=run))
    found: dict[tuple[int, int], int] = {}
    for child in kids:
        problem = _child_problem(child, the_grid, exp["parent_name"]) or _child_not_evaluated(child, ev, exp)
        if problem:
            # In a notebook, a child may be left from an earlier try; the grader's store is fresh.
            return CheckResult(False, problem + ("" if strict else _msg("rerun_hint")))
        config = config_of(child)
        found[config] = found.get(config, 0) + 1
    missing_configs = [c for c in the_grid if c not in found]
    if missing_configs:
        return CheckResult(False, _msg("missing_configs", run=run, missing=_config_list(missing_configs)))
    dupes = [c for c, count in found.items() if count > 1]
    if strict and dupes:
        return CheckResult(False, _msg("duplicate_configs", run=run, dupes=_config_list(dupes)))
    return CheckResult(True, _msg("sweep_ok", run=run, count=len(kids)))


def judge_best(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """TODO 4: the parent records the child with the highest cross-validated R² (as stored),
    its hyperparameters and its scores."""
    parent = ev.get("parent")
    if parent is None:
        return CheckResult(False, _msg("no_parent", name=exp["parent_name"]))
    run, kids = parent["name"], ev.get("children", [])
    scored = [c for c in kids if SELECTION in c["metrics"]]
    if not scored:
        return CheckResult(False, _msg("best_no_children", run=run, metric=SELECTION))
    tags, params, metrics = parent["tags"], parent["params"], parent["metrics"]
    chosen_id = tags.get(BEST_TAG) or params.get(BEST_TAG)
    if not chosen_id:
        user_tags = {k: v for k, v in tags.items() if not k.startswith("mlflow.")}
        return CheckResult(False, _msg("best_no_tag", run=run, tag=BEST_TAG, found=names(user_tags)))
    by_id = {c["id"]: c for c in kids}
    if chosen_id not in by_id:
        key = "best_is_a_name" if chosen_id in {c["name"] for c in kids} else "best_not_child"
        return CheckResult(False, _msg(key, tag=BEST_TAG, found=chosen_id, run=run))
    chosen = by_id[chosen_id]
    if SELECTION not in chosen["metrics"]:
        return CheckResult(False, _msg("best_unscored", tag=BEST_TAG, chosen=chosen["name"], metric=SELECTION))
    values = {c["id"]: c["metrics"][SELECTION] for c in scored}
    top, bottom, value = max(values.values()), min(values.values()), values[chosen_id]
    if not math.isclose(value, top, rel_tol=1e-12, abs_tol=1e-12):
        winner = max(scored, key=lambda c: c["metrics"][SELECTION])["name"]
        key = "best_is_worst" if math.isclose(value, bottom, rel_tol=1e-12, abs_tol=1e-12) else "best_not_best"
        return CheckResult(False, _msg(key, tag=BEST_TAG, chosen=chosen["name"], metric=SELECTION, value=value,
                                       winner=winner, top=top))
    missing = [k for k in BEST_PARAMS if k not in params]
    if missing:
        return CheckResult(False, _msg("best_missing_params", missing=", ".join(missing), found=names(params)))
    expected = {k: chosen["params"].get(source) for k, source in BEST_PARAMS.items()}
    wrong = {k: params[k] for k in BEST_PARAMS if not same_param_value(params[k], expected[k])}
    if wrong:
        return CheckResult(False, _msg("best_wrong_params", wrong=pairs(wrong), tag=BEST_TAG, chosen=chosen["name"],
                                       expected=pairs({k: expected[k] for k in wrong})))
    missing = [k for k in BEST_METRICS if k not in metrics]
    if missing:
        return CheckResult(False, _msg("best_missing_metrics", missing=", ".join(missing), found=names(metrics)))
    expected_metrics = {k: chosen["metrics"][s] for k, s in BEST_METRICS.items() if s in chosen["metrics"]}
    wrong = {k: metrics[k] for k, v in expected_metrics.items() if not math.isclose(metrics[k], v, rel_tol=1e-6)}
    if wrong:
        return CheckResult(False, _msg("best_wrong_metrics", wrong=_fmt(wrong), tag=BEST_TAG, chosen=chosen["name"],
                                       expected=_fmt({k: expected_metrics[k] for k in wrong})))
    test = chosen["metrics"].get("test_r2")
    return CheckResult(True, _msg("best_ok", chosen=chosen["name"], n=chosen["params"].get("n_estimators"),
                                  d=chosen["params"].get("max_depth"), metric=SELECTION, value=value,
                                  test=_("unknown") if test is None else f"{test:.4f}"))


def judge_surface(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """TODO 5: the score surface is a plot (a decodable PNG with something drawn on it),
    logged on the parent run."""
    parent = ev.get("parent")
    if parent is None:
        return CheckResult(False, _msg("no_parent", name=exp["parent_name"]))
    run, found = parent["name"], ev.get("parent_artifacts", [])
    if SURFACE not in found:
        # Say where it went, if it went somewhere (a child still active, a run started anew).
        other = next((r for r in ev.get("later", []) if SURFACE in r["artifacts"]), None)
        if other is not None:
            return CheckResult(False, _msg("surface_elsewhere", figure=SURFACE, other=other["name"], run=run))
        return CheckResult(False, _msg("no_surface", run=run, figure=SURFACE, found=names(found)))
    figure = ev.get("surface")
    if not figure or not figure.get("decodes"):
        return CheckResult(False, _msg("not_png", figure=SURFACE))
    if not is_plot(figure):
        return CheckResult(False, _msg("not_a_plot", figure=SURFACE,
                                       **{k: figure[k] for k in ("width", "height", "drawn")}))
    return CheckResult(True, _msg("surface_ok", run=run, figure=SURFACE))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_scores": (1, judge_scores),
    "check_todo2_parent": (2, judge_parent),
    "check_todo3_sweep": (3, judge_sweep),
    "check_todo4_best": (4, judge_best),
    "check_todo5_surface": (5, judge_surface),
}


# --- In the notebook ----------------------------------------------------------------------


def require_sweep(namespace: Mapping[str, Any], todo: int) -> None:
    """Stop TODO 4 or 5 with one line when the sweep of TODO 3 is not there to work on.

    Without it, an untouched TODO 3 makes a correct TODO 4 fail with a raw ``IndexError``
    (the first row of an empty search) and TODO 5 with a ``KeyError`` (a pivot of no rows):
    the student would hunt for a bug in the wrong cell. TODO 4 works on the child runs in
    the store, so the store is what is asked; TODO 5 plots ``results``, so that is."""
    parent = namespace.get("parent")
    if parent is None:
        raise SelfCheckFailed(_msg("needs_parent", todo=todo))
    if todo == 5:
        if not namespace.get("results"):
            raise SelfCheckFailed(_msg("needs_results", todo=todo))
        return
    import mlflow

    with quiet():
        mlflow_client = client(mlflow.get_tracking_uri())
        kids = _search(mlflow_client, f"tags.{PARENT_TAG} = {_quoted(parent.info.run_id)}")
    if not any(SELECTION in k["metrics"] for k in kids):
        raise SelfCheckFailed(_msg("needs_children", todo=todo, run=parent.info.run_name, metric=SELECTION))



def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure.

    Judges this run of the notebook (its active run) against the values shipped for the
    default inputs; ``strict`` (the hidden test) refuses a configuration swept twice, which
    in a notebook may be a child left from an earlier try."""
    import mlflow

    params = checking.notebook_params(namespace, PARAMS)
    active = mlflow.active_run()
    checking.run_self_check(CHECKS, check_id, lambda: (
        evidence(mlflow.get_tracking_uri(), params, active.info.run_id if active else None),
        {**checking.expected_values(LAB, params, expected_from_params), "strict": strict}))
