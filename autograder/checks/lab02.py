"""Checks for Lab 02, hyperparameter tuning.

Each check reads the MLflow store. The scores the lab logs are re-computed here from the
data (the forests are small and seeded, so this takes seconds and is exact); the sweep's
structure is read from the runs' tags (``mlflow.parentRunId``); the best configuration the
parent records is compared with the best child by the metric actually stored.
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
    pairs,
    same_param_value,
    self_check_for,
)

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
        "child run '{run}' has no metrics. Log what evaluate() returns with mlflow.log_metrics(metrics)."
    ),
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
    "surface_ok": "the parent run '{run}' has the figure '{figure}'.",
}


def _msg(key: str, **values: Any) -> str:
    return MESSAGES[key].format(**values)


# ---------------------------------------------------------------------------------------
# Finding the runs
# ---------------------------------------------------------------------------------------


def _search(ctx: LabContext, filter_string: str = "", max_results: int = 1000) -> list[Any]:
    """Runs of every experiment, newest first."""
    mlflow_client = client(ctx)
    experiment_ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not experiment_ids:
        return []
    return list(
        mlflow_client.search_runs(
            experiment_ids, filter_string, order_by=["attributes.start_time DESC"], max_results=max_results
        )
    )


def _quoted(value: str) -> str:
    return "'" + str(value).replace("'", "\\'") + "'"


def _named(ctx: LabContext, name: str) -> list[Any]:
    return _search(ctx, f"tags.mlflow.runName = {_quoted(name)}")


def find_trial(ctx: LabContext) -> Any | None:
    """The newest run named TRIAL_RUN_NAME."""
    return next(iter(_named(ctx, ctx.params["TRIAL_RUN_NAME"])), None)


def find_parent(ctx: LabContext) -> Any | None:
    """The sweep's parent: the notebook's active run if it is the parent, else the newest
    top-level run named PARENT_RUN_NAME."""
    name = ctx.params["PARENT_RUN_NAME"]
    if ctx.run_id:
        active = client(ctx).get_run(ctx.run_id)
        if active.info.run_name == name and PARENT_TAG not in active.data.tags:
            return active
    return next((r for r in _named(ctx, name) if PARENT_TAG not in r.data.tags), None)


def children(ctx: LabContext, parent: Any) -> list[Any]:
    """The runs whose mlflow.parentRunId is the parent's id, newest first."""
    return _search(ctx, f"tags.{PARENT_TAG} = {_quoted(parent.info.run_id)}")


def grid(ctx: LabContext) -> list[tuple[int, int]]:
    return [(int(n), int(d)) for n in ctx.params["N_ESTIMATORS_GRID"] for d in ctx.params["MAX_DEPTH_GRID"]]


def _as_int(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def config_of(run: Any) -> tuple[int | None, int | None]:
    params = run.data.params
    return _as_int(params.get("n_estimators")), _as_int(params.get("max_depth"))


def child_name(n_estimators: int, max_depth: int) -> str:
    """The run name the lab asks for, one per configuration."""
    return f"rf-n{n_estimators}-d{max_depth}"


def _fmt(values: dict[str, float]) -> str:
    return pairs({k: f"{v:.4g}" for k, v in values.items()})


# ---------------------------------------------------------------------------------------
# The reference: the lab's scores, re-computed
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _split(data_path: str, seed: int, test_size: float) -> tuple[Any, Any, Any, Any]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    return tuple(train_test_split(df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed))


@functools.lru_cache(maxsize=64)
def _scores(
    data_path: str, seed: int, test_size: float, cv_folds: int, n_estimators: int, max_depth: int
) -> dict[str, Any]:
    """Score one configuration the way the lab's evaluate() does."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score, root_mean_squared_error
    from sklearn.model_selection import cross_val_score

    X_train, X_test, y_train, y_test = _split(data_path, seed, test_size)
    model = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=-1)
    cv = cross_val_score(model, X_train, y_train, cv=cv_folds, scoring="r2")
    y_pred = model.fit(X_train, y_train).predict(X_test)
    return {
        "cv_r2_mean": float(cv.mean()),
        "cv_r2_std": float(cv.std()),
        "cv_r2_std_sample": float(cv.std(ddof=1)),  # np.std(ddof=1) / statistics.stdev also pass
        "test_r2": float(r2_score(y_test, y_pred)),
        "test_rmse": float(root_mean_squared_error(y_test, y_pred)),
    }


def reference(ctx: LabContext, n_estimators: int, max_depth: int) -> dict[str, Any]:
    p = ctx.params
    return _scores(
        str(ctx.data_path), int(p["SEED"]), float(p["TEST_SIZE"]), int(p["CV_FOLDS"]), n_estimators, max_depth
    )


def prepare(ctx: LabContext) -> None:
    """Warm up while the notebook runs (the grader calls this in a thread): a client on the
    store, and the scores of every configuration of the grid."""
    client(ctx).search_experiments()
    for n_estimators, max_depth in grid(ctx):
        reference(ctx, n_estimators, max_depth)


def _close(logged: float, expected: float) -> bool:
    return math.isclose(logged, expected, rel_tol=METRIC_RTOL, abs_tol=1e-4)


def _wrong_scores(logged: dict[str, float], ref: dict[str, Any]) -> list[str]:
    wrong = [m for m in METRICS if m != "cv_r2_std" and not _close(logged[m], ref[m])]
    std = logged["cv_r2_std"]
    if not (_close(std, ref["cv_r2_std"]) or _close(std, ref["cv_r2_std_sample"])):
        wrong.insert(1, "cv_r2_std")
    return wrong


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------


def check_scores(ctx: LabContext, strict: bool = False) -> CheckResult:
    """TODO 1, evaluate(): the trial run's metrics, and those of every child of a sweep
    started after it, equal a re-computation for their configuration."""
    trial = find_trial(ctx)
    name = ctx.params["TRIAL_RUN_NAME"]
    if trial is None:
        return CheckResult(False, _msg("no_trial", name=name))
    logged = trial.data.metrics
    if not logged:
        return CheckResult(False, _msg("trial_no_metrics", run=name))
    missing = [m for m in METRICS if m not in logged]
    if missing:
        return CheckResult(False, _msg("trial_missing", run=name, missing=", ".join(missing), found=names(logged)))
    n, d = grid(ctx)[0]
    ref = reference(ctx, n, d)
    wrong = _wrong_scores(logged, ref)
    if wrong:
        return CheckResult(
            False,
            _msg(
                "trial_wrong",
                run=name,
                n=n,
                d=d,
                wrong=_fmt({m: logged[m] for m in wrong}),
                expected=_fmt({m: ref[m] for m in wrong}),
            ),
        )
    # The sweep logs evaluate() of each configuration: check them all, not only the trial one.
    # Only a parent started after the trial counts (older ones may come from an earlier session).
    checked = 0
    parent = find_parent(ctx)
    if parent is not None and parent.info.start_time >= trial.info.start_time:
        grid_set = set(grid(ctx))
        for child in children(ctx, parent):
            config = config_of(child)
            metrics = child.data.metrics
            if config not in grid_set or any(m not in metrics for m in METRICS):
                continue  # the sweep's own check reports these
            child_ref = reference(ctx, *config)
            wrong = _wrong_scores(metrics, child_ref)
            if wrong:
                return CheckResult(
                    False,
                    _msg(
                        "child_wrong",
                        run=child.info.run_name,
                        n=config[0],
                        d=config[1],
                        wrong=_fmt({m: metrics[m] for m in wrong}),
                        expected=_fmt({m: child_ref[m] for m in wrong}),
                    ),
                )
            checked += 1
    extra = _msg("scores_children", count=checked) if checked else ""
    return CheckResult(True, _msg("scores_ok", run=name, values=_fmt({m: logged[m] for m in METRICS}), children=extra))


def expected_parent_params(ctx: LabContext) -> dict[str, Any]:
    p = ctx.params
    return {
        "model_type": "RandomForestRegressor",
        "random_state": p["SEED"],
        "cv_folds": p["CV_FOLDS"],
        "n_estimators_grid": list(p["N_ESTIMATORS_GRID"]),
        "max_depth_grid": list(p["MAX_DEPTH_GRID"]),
    }


def expected_parent_tags(ctx: LabContext) -> dict[str, str]:
    return {"sweep": ctx.params["PARENT_RUN_NAME"], "search": "grid"}


def check_parent(ctx: LabContext, strict: bool = False) -> CheckResult:
    """TODO 2: the parent run holds the sweep's settings (parameters) and its tags."""
    parent = find_parent(ctx)
    if parent is None:
        return CheckResult(False, _msg("no_parent", name=ctx.params["PARENT_RUN_NAME"]))
    run = parent.info.run_name
    expected = expected_parent_params(ctx)
    logged = parent.data.params
    missing = [k for k in expected if k not in logged]
    if missing:
        return CheckResult(
            False, _msg("parent_missing_params", run=run, missing=", ".join(missing), found=names(logged))
        )
    wrong = {k: logged[k] for k in expected if not same_param_value(logged[k], expected[k])}
    if wrong:
        return CheckResult(
            False,
            _msg("parent_wrong_params", run=run, wrong=pairs(wrong), expected=pairs({k: expected[k] for k in wrong})),
        )
    tags = expected_parent_tags(ctx)
    user_tags = {k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")}
    missing = [k for k in tags if k not in user_tags]
    if missing:
        return CheckResult(
            False, _msg("parent_missing_tags", run=run, missing=", ".join(missing), found=names(user_tags))
        )
    wrong = {k: user_tags[k] for k in tags if user_tags[k] != tags[k]}
    if wrong:
        return CheckResult(
            False, _msg("parent_wrong_tags", run=run, wrong=pairs(wrong), expected=pairs({k: tags[k] for k in wrong}))
        )
    return CheckResult(True, _msg("parent_ok", run=run, params=", ".join(expected), tags=pairs(tags)))


def _config_list(configs: list[tuple[int, int]]) -> str:
    return "; ".join(f"n_estimators={n}, max_depth={d}" for n, d in configs)


def _child_problem(child: Any, the_grid: list[tuple[int, int]], tag: str) -> str | None:
    """What is wrong with one child run of the sweep, or None."""
    name = child.info.run_name
    params = child.data.params
    missing = [k for k in ("n_estimators", "max_depth") if k not in params]
    if missing:
        return _msg("child_missing_params", run=name, missing=", ".join(missing), found=names(params))
    config = config_of(child)
    if config not in the_grid:
        n, d = params["n_estimators"], params["max_depth"]
        return _msg("child_off_grid", run=name, n=n, d=d, grid=_config_list(the_grid))
    n, d = config
    if name != child_name(n, d):
        return _msg("child_wrong_name", n=n, d=d, found=name, expected=child_name(n, d))
    if child.data.tags.get("sweep") != tag:
        return _msg("child_no_tag", run=name, found=child.data.tags.get("sweep"), expected=tag)
    if not child.data.metrics:
        return _msg("child_no_metrics", run=name)
    if child.info.status != "FINISHED":
        return _msg("child_not_finished", run=name, status=child.info.status)
    return None


def check_sweep(ctx: LabContext, strict: bool = False) -> CheckResult:
    """TODO 3: one nested child run per configuration, named, with its parameters, the sweep
    tag and metrics. Strict (the hidden test): exactly one child per configuration."""
    parent = find_parent(ctx)
    if parent is None:
        return CheckResult(False, _msg("no_parent", name=ctx.params["PARENT_RUN_NAME"]))
    run = parent.info.run_name
    kids = children(ctx, parent)
    the_grid = grid(ctx)
    if not kids:
        loose = [
            r
            for r in _search(ctx)
            if r.info.start_time >= parent.info.start_time
            and r.info.run_id != parent.info.run_id
            and config_of(r) in the_grid
        ]
        if loose:
            found = ", ".join(sorted({r.info.run_name for r in loose}))
            return CheckResult(False, _msg("not_nested", run=run, count=len(loose), found=found))
        return CheckResult(False, _msg("no_children", run=run))
    found: dict[tuple[int, int], int] = {}
    tag = ctx.params["PARENT_RUN_NAME"]
    for child in sorted(kids, key=lambda r: r.info.start_time):
        problem = _child_problem(child, the_grid, tag)
        if problem:
            # In a notebook, a child may be left from an earlier try; the grader's store is fresh.
            return CheckResult(False, problem + ("" if strict else MESSAGES["rerun_hint"]))
        found[config_of(child)] = found.get(config_of(child), 0) + 1
    missing_configs = [c for c in the_grid if c not in found]
    if missing_configs:
        return CheckResult(False, _msg("missing_configs", run=run, missing=_config_list(missing_configs)))
    dupes = [c for c, count in found.items() if count > 1]
    if strict and dupes:
        return CheckResult(False, _msg("duplicate_configs", run=run, dupes=_config_list(dupes)))
    return CheckResult(True, _msg("sweep_ok", run=run, count=len(kids)))


def check_best(ctx: LabContext, strict: bool = False) -> CheckResult:
    """TODO 4: the parent records the child with the highest cross-validated R² (as stored),
    its hyperparameters and its scores."""
    parent = find_parent(ctx)
    if parent is None:
        return CheckResult(False, _msg("no_parent", name=ctx.params["PARENT_RUN_NAME"]))
    run = parent.info.run_name
    scored = [c for c in children(ctx, parent) if SELECTION in c.data.metrics]
    if not scored:
        return CheckResult(False, _msg("best_no_children", run=run, metric=SELECTION))
    tags, params, metrics = parent.data.tags, parent.data.params, parent.data.metrics
    chosen_id = tags.get(BEST_TAG) or params.get(BEST_TAG)
    if not chosen_id:
        user_tags = {k: v for k, v in tags.items() if not k.startswith("mlflow.")}
        return CheckResult(False, _msg("best_no_tag", run=run, tag=BEST_TAG, found=names(user_tags)))
    kids = {c.info.run_id: c for c in children(ctx, parent)}
    if chosen_id not in kids:
        return CheckResult(False, _msg("best_not_child", tag=BEST_TAG, found=chosen_id, run=run))
    chosen = kids[chosen_id]
    if SELECTION not in chosen.data.metrics:
        return CheckResult(False, _msg("best_unscored", tag=BEST_TAG, chosen=chosen.info.run_name, metric=SELECTION))
    values = {c.info.run_id: c.data.metrics[SELECTION] for c in scored}
    top, bottom = max(values.values()), min(values.values())
    value = values[chosen_id]
    if not math.isclose(value, top, rel_tol=1e-12, abs_tol=1e-12):
        winner = max(scored, key=lambda c: c.data.metrics[SELECTION]).info.run_name
        key = "best_is_worst" if math.isclose(value, bottom, rel_tol=1e-12, abs_tol=1e-12) else "best_not_best"
        return CheckResult(
            False,
            _msg(key, tag=BEST_TAG, chosen=chosen.info.run_name, metric=SELECTION, value=value, winner=winner, top=top),
        )
    missing = [k for k in BEST_PARAMS if k not in params]
    if missing:
        return CheckResult(False, _msg("best_missing_params", missing=", ".join(missing), found=names(params)))
    expected = {k: chosen.data.params.get(source) for k, source in BEST_PARAMS.items()}
    wrong = {k: params[k] for k in BEST_PARAMS if not same_param_value(params[k], expected[k])}
    if wrong:
        return CheckResult(
            False,
            _msg(
                "best_wrong_params",
                wrong=pairs(wrong),
                tag=BEST_TAG,
                chosen=chosen.info.run_name,
                expected=pairs({k: expected[k] for k in wrong}),
            ),
        )
    missing = [k for k in BEST_METRICS if k not in metrics]
    if missing:
        return CheckResult(False, _msg("best_missing_metrics", missing=", ".join(missing), found=names(metrics)))
    expected_metrics = {k: chosen.data.metrics[s] for k, s in BEST_METRICS.items() if s in chosen.data.metrics}
    wrong = {k: metrics[k] for k, v in expected_metrics.items() if not math.isclose(metrics[k], v, rel_tol=1e-6)}
    if wrong:
        return CheckResult(
            False,
            _msg(
                "best_wrong_metrics",
                wrong=_fmt(wrong),
                tag=BEST_TAG,
                chosen=chosen.info.run_name,
                expected=_fmt({k: expected_metrics[k] for k in wrong}),
            ),
        )
    test = chosen.data.metrics.get("test_r2")
    return CheckResult(
        True,
        _msg(
            "best_ok",
            chosen=chosen.info.run_name,
            n=chosen.data.params.get("n_estimators"),
            d=chosen.data.params.get("max_depth"),
            metric=SELECTION,
            value=value,
            test="unknown" if test is None else f"{test:.4f}",
        ),
    )


def check_surface(ctx: LabContext, strict: bool = False) -> CheckResult:
    """TODO 5: the score surface is a PNG artifact of the parent run."""
    parent = find_parent(ctx)
    if parent is None:
        return CheckResult(False, _msg("no_parent", name=ctx.params["PARENT_RUN_NAME"]))
    run = parent.info.run_name
    mlflow_client = client(ctx)
    found = [a.path for a in mlflow_client.list_artifacts(parent.info.run_id)]
    if SURFACE not in found:
        # Say where it went, if it went somewhere (a child still active, a run started anew).
        later = [
            r for r in _search(ctx, max_results=50)
            if r.info.run_id != parent.info.run_id and r.info.start_time >= parent.info.start_time
        ]
        for other in later:
            if SURFACE in [a.path for a in mlflow_client.list_artifacts(other.info.run_id)]:
                return CheckResult(False, _msg("surface_elsewhere", figure=SURFACE, other=other.info.run_name, run=run))
        return CheckResult(False, _msg("no_surface", run=run, figure=SURFACE, found=", ".join(found) or "none"))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow_client.download_artifacts(parent.info.run_id, SURFACE, tmp))
        header = local.read_bytes()[:8]
    if header != b"\x89PNG\r\n\x1a\n":
        return CheckResult(False, _msg("not_png", figure=SURFACE))
    return CheckResult(True, _msg("surface_ok", run=run, figure=SURFACE))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, check).
CHECKS: dict[str, tuple[int, Check]] = {
    "check_todo1_scores": (1, check_scores),
    "check_todo2_parent": (2, check_parent),
    "check_todo3_sweep": (3, check_sweep),
    "check_todo4_best": (4, check_best),
    "check_todo5_surface": (5, check_surface),
}


self_check = self_check_for(CHECKS, PARAMS)
