"""The grader on Lab 02 (hyperparameter tuning): full marks, zero, partial credit, the
typical mistakes, each costing the points of the task it breaks, and hostile submissions
(values copied from a run on the course data, work faked so that it merely exists).

The tests marked ``grading`` execute a notebook (about 25-40 s each); the others judge evidence
directly, or run one cell's code on a small store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import nbformat
import pytest

from autograder import hidden
from autograder.course import LABS
from autograder.kit import lab02, labkit
from autograder.kit.checking import EXPECTED_DIR, SelfCheckFailed, png_summary
from autograder.notebook import grade_id
from tests.conftest import grading, make_submission, partial_todos, points, solution_code

LAB = LABS["02_tuning"]
MAX = {
    "check_todo1_scores": 2,
    "check_todo2_parent": 1,
    "check_todo3_sweep": 3,
    "check_todo4_best": 2,
    "check_todo5_surface": 2,
}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}
#: A hidden seed on which the best test_r2 and the best cv_r2_mean are different configurations.
SEED = 12345
ALL = set(TODO_CHECK)

# TODO 4 of the master, with the order of the search changed.
BEST_BY = """
children = mlflow.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string=f"tags.mlflow.parentRunId = '{{parent.info.run_id}}'",
    order_by=["{order}"],
)
best = children.iloc[0]
mlflow.set_tag("best_run_id", best["run_id"])
mlflow.log_params({{"best_n_estimators": best["params.n_estimators"], "best_max_depth": best["params.max_depth"]}})
mlflow.log_metrics({{"best_cv_r2_mean": best["metrics.cv_r2_mean"], "best_test_r2": best["metrics.test_r2"]}})
"""


def message(result, check_id: str) -> str:
    return next(c.message for c in result.checks if c.id == check_id)


@grading
def test_solution_earns_full_marks(grade) -> None:
    result = grade(make_submission(done=ALL, lab=LAB))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []
    assert "6 child run(s)" in message(result, "check_todo1_scores")  # every child re-computed


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB))
    assert (result.score, result.max_score) == (0, 10)
    assert [c.passed for c in result.checks] == [False] * 5
    messages = {c.id: c.message for c in result.checks}
    assert "evaluate()" in messages["check_todo1_scores"]
    assert "mlflow.log_params" in messages["check_todo2_parent"]
    assert "nested=True" in messages["check_todo3_sweep"]
    assert "mlflow.search_runs" in messages["check_todo4_best"]
    assert "mlflow.log_figure" in messages["check_todo5_surface"]
    # TODO 1 defines a function: its stub raises in the given trial cell, not in its own.
    raised = [e.split()[0] for e in result.errors if "NotImplementedError" in e]
    assert raised == ["trial", "todo2", "todo3"], result.errors
    # TODOs 4 and 5 work on the sweep of TODO 3: they say so in one line, before their stubs.
    waiting = [e.split()[0] for e in result.errors if "needs the sweep of TODO 3" in e]
    assert waiting == ["todo4", "todo5"], result.errors


@grading
def test_partial_work_earns_exactly_the_points_of_the_done_todos(grade) -> None:
    done = partial_todos(LAB)
    result = grade(make_submission(done=done, lab=LAB))
    expected = {TODO_CHECK[n]: (MAX[TODO_CHECK[n]] if n in done else 0) for n in TODO_CHECK}
    assert points(result) == expected, [c.message for c in result.checks]


def _sweep(chosen: str) -> dict:
    """A parent with three scored children whose best by cross-validation (rf-b) and best on the
    test split (rf-a) differ, recording ``chosen`` as its best with that child's values."""
    kids = [{"id": f"id-{n}", "name": f"rf-{n}", "params": {"n_estimators": str(e), "max_depth": str(d)},
             "metrics": {"cv_r2_mean": cv, "test_r2": test}}
            for n, e, d, cv, test in (("a", 50, 4, 0.80, 0.91), ("b", 100, 8, 0.85, 0.85), ("c", 200, 12, 0.70, 0.70))]
    best = next(k for k in kids if k["name"] == chosen)
    parent = {"name": "rf-grid-search", "tags": {"best_run_id": best["id"]},
              "params": {"best_n_estimators": best["params"]["n_estimators"],
                         "best_max_depth": best["params"]["max_depth"]},
              "metrics": {"best_cv_r2_mean": best["metrics"]["cv_r2_mean"], "best_test_r2": best["metrics"]["test_r2"]}}
    return {"parent": parent, "children": kids}


def test_a_run_name_where_the_run_id_belongs_is_named_as_such() -> None:
    """A run's name looks like an answer, but names repeat from sweep to sweep: the message
    says it is a name and where the id is; an unknown value is still "not a child run"."""
    sweep = _sweep("rf-b")
    sweep["parent"]["tags"]["best_run_id"] = "rf-b"
    result = lab02.judge_best(sweep, COURSE)
    assert not result.passed and "the NAME of a child run" in result.message, result.message
    assert "'run_id' column" in result.message
    sweep["parent"]["tags"]["best_run_id"] = "0123456789abcdef"
    result = lab02.judge_best(sweep, COURSE)
    assert not result.passed and "not a child run" in result.message, result.message


def _cell(gid: str) -> str:
    """The master's answer to a TODO cell, as a student who solved it has it."""
    return solution_code(next(c for c in nbformat.read(LAB.master, as_version=4).cells if grade_id(c) == gid))


@pytest.fixture
def notebook_globals(tmp_path, monkeypatch) -> Iterator[dict]:
    """What Lab 02's cells see after TODO 2 on a fresh store: an experiment and an active parent
    run (MLflow's process-wide state is put back afterwards)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import pandas as pd

    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(labkit.sqlite_uri(tmp_path / "mlflow.db"))
    experiment = mlflow.set_experiment("lab02-tuning")
    parent = mlflow.start_run(run_name="rf-grid-search")
    master = nbformat.read(LAB.master, as_version=4).cells
    namespace = {"mlflow": mlflow, "pd": pd, "plt": plt, "lab02": lab02, "experiment": experiment, "parent": parent,
                 "results": []}
    exec(next(c.source for c in master if grade_id(c) == "plot_helper"), namespace)
    yield namespace
    mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_todo4_and_todo5_after_an_untouched_todo3_say_todo3_comes_first(notebook_globals) -> None:
    """An untouched TODO 3 used to make correct TODOs 4 and 5 fail with a raw IndexError (the
    first row of an empty search) and KeyError (a pivot of no rows). Now each says, in one line,
    that TODO 3 comes first; once the sweep has a child, the same cells run."""
    import mlflow

    for todo in (4, 5):
        with pytest.raises(SelfCheckFailed, match=f"TODO {todo} needs the sweep of TODO 3 first"):
            exec(_cell(f"todo{todo}"), notebook_globals)
    assert "best" not in notebook_globals  # stopped before the student's own code ran

    with mlflow.start_run(run_name="rf-n20-d4", nested=True):
        mlflow.log_params({"n_estimators": 20, "max_depth": 4})
        mlflow.log_metrics({"cv_r2_mean": 0.8, "cv_r2_std": 0.01, "test_r2": 0.82, "test_rmse": 40.0})
    notebook_globals["results"] = [{"n_estimators": 20, "max_depth": 4, "cv_r2_mean": 0.8}]
    exec(_cell("todo4"), notebook_globals)
    assert notebook_globals["best"]["tags.mlflow.runName"] == "rf-n20-d4"
    exec(_cell("todo5"), notebook_globals)
    assert notebook_globals["surface"].shape == (1, 1)


def test_todo4_without_the_parent_of_todo2_says_so(notebook_globals) -> None:
    del notebook_globals["parent"]
    with pytest.raises(SelfCheckFailed, match="needs the parent run of TODO 2"):
        exec(_cell("todo4"), notebook_globals)


def test_the_best_picked_on_the_test_split_is_not_the_best() -> None:
    """Choosing on the test split (against the lab's lesson) names a child that is not the best
    by cross-validation; choosing by cv_r2_mean passes."""
    assert lab02.judge_best(_sweep("rf-b"), COURSE).passed
    result = lab02.judge_best(_sweep("rf-a"), COURSE)
    assert not result.passed and "'rf-b' has the highest cv_r2_mean" in result.message, result.message



@grading
def test_two_typical_mistakes_each_lose_only_their_task(grade) -> None:
    """A metric logged under another name (TODO 1) and the best picked in the wrong direction
    (TODO 4): each costs its own task, and the sweep, which logs what evaluate() returns
    whatever its keys, keeps its points."""
    todo1 = solution_code(next(c for c in nbformat.read(LAB.master, as_version=4).cells if grade_id(c) == "todo1"))
    assert '"test_rmse":' in todo1
    replace = {"todo1": todo1.replace('"test_rmse":', '"rmse":'),
               "todo4": BEST_BY.format(order="metrics.cv_r2_mean ASC")}
    result = grade(make_submission(done=ALL, replace=replace, lab=LAB), inputs=hidden.hidden_inputs(SEED))
    lost = ("check_todo1_scores", "check_todo4_best")
    assert points(result) == {**MAX, **dict.fromkeys(lost, 0)}, [c.message for c in result.checks]
    assert "lacks metric(s) test_rmse; found: cv_r2_mean, cv_r2_std, rmse, test_r2" in message(
        result, "check_todo1_scores"
    )
    assert "LOWEST" in message(result, "check_todo4_best")


@grading
def test_children_not_nested_lose_the_sweep_and_what_needs_it(grade) -> None:
    """Ending the parent to get past "Run ... is already active" leaves the children on their
    own. The sweep fails, and so do the tasks that read the children through their parent
    (TODO 4) or log on the parent (TODO 5, which then lands in a new run); TODOs 1-2 keep
    their points."""
    loose = """
results = []
for n_estimators, max_depth in GRID:
    mlflow.end_run()
    with mlflow.start_run(run_name=f"rf-n{n_estimators}-d{max_depth}", nested=True):
        mlflow.log_param("n_estimators", n_estimators)
        mlflow.log_param("max_depth", max_depth)
        mlflow.set_tag("sweep", PARENT_RUN_NAME)
        metrics = evaluate(n_estimators, max_depth)
        mlflow.log_metrics(metrics)
    results.append({"n_estimators": n_estimators, "max_depth": max_depth, **metrics})
"""
    result = grade(make_submission(done=ALL, replace={"todo3": loose}, lab=LAB))
    lost = ("check_todo3_sweep", "check_todo4_best", "check_todo5_surface")
    assert points(result) == {**MAX, **dict.fromkeys(lost, 0)}, [c.message for c in result.checks]
    assert "not nested" in message(result, "check_todo3_sweep")
    assert "not in the parent run" in message(result, "check_todo5_surface")


# --- Hostile submissions ------------------------------------------------------------------

#: What a run of the solution on the course data logs, as numbers a student could copy
#: from the MLflow UI (4 decimals): the scores of the grid's first configuration and the best.
COURSE = json.loads((EXPECTED_DIR / "02_tuning.json").read_text())["expected"]
TRIAL = {m: round(COURSE["scores"][0][m], 4) for m in lab02.METRICS}
WINNER = max(COURSE["scores"], key=lambda s: s["cv_r2_mean"])

COPIED_TODO1 = f"""
COPIED = {{{tuple(COURSE["grid"][0])}: {TRIAL!r}}}  # from the UI, run on the course data


def evaluate(n_estimators, max_depth):
    if (n_estimators, max_depth) in COPIED:
        return dict(COPIED[(n_estimators, max_depth)])
    model = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=SEED, n_jobs=-1)
    scores = cross_val_score(model, X_train, y_train, cv=CV_FOLDS, scoring="r2")
    y_pred = model.fit(X_train, y_train).predict(X_test)
    return {{"cv_r2_mean": scores.mean(), "cv_r2_std": scores.std(),
            "test_r2": r2_score(y_test, y_pred), "test_rmse": root_mean_squared_error(y_test, y_pred)}}
"""
COPIED_TODO2 = solution_code(
    next(c for c in nbformat.read(LAB.master, as_version=4).cells if grade_id(c) == "todo2")
).replace('"random_state": SEED', '"random_state": 42')
COPIED_TODO4 = f"""
children = mlflow.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string=f"tags.mlflow.parentRunId = '{{parent.info.run_id}}'",
    order_by=["metrics.cv_r2_mean DESC"],
)
mlflow.set_tag("best_run_id", children.iloc[0]["run_id"])
mlflow.log_params({{"best_n_estimators": {WINNER["n_estimators"]}, "best_max_depth": {WINNER["max_depth"]}}})
mlflow.log_metrics({{"best_cv_r2_mean": {WINNER["cv_r2_mean"]:.4f}, "best_test_r2": {WINNER["test_r2"]:.4f}}})
"""


def test_the_copied_values_would_pass_on_the_course_data() -> None:
    """The premise of the next test: the numbers it copies are right on the course data."""
    assert COURSE["parent_params"]["random_state"] == 42
    trial = {"name": "rf-trial", "start_time": 0, "metrics": TRIAL}
    assert lab02.judge_scores({"trial": trial}, COURSE).passed


@grading
def test_values_copied_from_a_run_on_the_course_data_lose_their_tasks(grade) -> None:
    """evaluate() answers the trial's configuration with numbers copied from the UI, the
    parent's settings are typed in, and the best configuration's parameters and scores too.
    On hidden inputs none of them is what the work gives: TODOs 1, 2 and 4 lose their points;
    the sweep (which logs what evaluate() returns) and the plot keep theirs."""
    replace = {"todo1": COPIED_TODO1, "todo2": COPIED_TODO2, "todo4": COPIED_TODO4}
    result = grade(make_submission(done=ALL, replace=replace, lab=LAB), inputs=hidden.hidden_inputs(SEED))
    lost = ("check_todo1_scores", "check_todo2_parent", "check_todo4_best")
    assert points(result) == {**MAX, **dict.fromkeys(lost, 0)}, [c.message for c in result.checks]
    assert "re-computation gives" in message(result, "check_todo1_scores")
    assert f"random_state=42; expected random_state={SEED % 10_000}" in message(result, "check_todo2_parent")
    assert "but its best_run_id" in message(result, "check_todo4_best")


# The sweep's children exist, named, with their parameters, tag and four metrics, but the
# metrics are made up rather than what evaluate() gives; the surface is a PNG header alone.
FAKE_SWEEP = """
results = []
for n_estimators, max_depth in GRID:
    with mlflow.start_run(run_name=f"rf-n{n_estimators}-d{max_depth}", nested=True):
        mlflow.log_param("n_estimators", n_estimators)
        mlflow.log_param("max_depth", max_depth)
        mlflow.set_tag("sweep", PARENT_RUN_NAME)
        metrics = {"cv_r2_mean": 0.9 - max_depth / 100 - n_estimators / 10_000, "cv_r2_std": 0.01,
                   "test_r2": 0.9, "test_rmse": 20.0}
        mlflow.log_metrics(metrics)
    results.append({"n_estimators": n_estimators, "max_depth": max_depth, **metrics})
"""
HEADER_ONLY_PNG = """
from pathlib import Path

Path("cv_r2_surface.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(64))
mlflow.log_artifact("cv_r2_surface.png")
"""


def test_a_header_only_png_is_not_a_plot() -> None:
    assert png_summary(b"\x89PNG\r\n\x1a\n" + bytes(64)) == {"decodes": False}
    ev = {"parent": {"name": "rf-grid-search"}, "parent_artifacts": [lab02.SURFACE],
          "surface": {"decodes": True, "width": 640, "height": 480, "drawn": 0.0}}
    result = lab02.judge_surface(ev, COURSE)
    assert not result.passed and "not a plot" in result.message


@grading
def test_a_sweep_with_made_up_metrics_and_a_png_header_earn_nothing(grade) -> None:
    """Naive checks (the children exist with metrics; the artifact exists and starts like a
    PNG) would pass this. The children's metrics are not what evaluate() gives for their
    configuration (the first one differs from the trial run of the same configuration), and
    the artifact does not decode as an image."""
    replace = {"todo3": FAKE_SWEEP, "todo5": HEADER_ONLY_PNG}
    result = grade(make_submission(done=ALL, replace=replace, lab=LAB), inputs=hidden.hidden_inputs(SEED))
    lost = ("check_todo1_scores", "check_todo3_sweep", "check_todo5_surface")
    assert points(result) == {**MAX, **dict.fromkeys(lost, 0)}, [c.message for c in result.checks]
    assert "the trial run of the same configuration" in message(result, "check_todo3_sweep")
    assert "evaluate() must use its arguments" in message(result, "check_todo1_scores")
    assert "not a PNG image" in message(result, "check_todo5_surface")
