"""Self-checks judge this run of the notebook, never what an earlier run left in the store.

The course store outlives the kernel: reopening Lab 01 the next day, it still holds yesterday's
experiment, run and model. Each test here plays two runs of a notebook in one process, on a real
SQLite store: the first leaves its work behind, the "kernel restarts" (the session ends and
MLflow's process state is reset), and the second run's self-checks must say what is missing,
then pass on the work the second run does itself. No notebook is executed (a few seconds each).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import fluent

from autograder.kit import checking, lab01, lab02, labkit
from autograder.kit.checking import SelfCheckFailed

#: Lab 01's parameters, with a seed other than the shipped one: the self-check then judges
#: what needs no reference (whether the work is there), which is what these tests are about.
LAB01_PARAMS = {"EXPERIMENT_NAME": "lab01-tracking", "RUN_NAME": "rf-baseline", "SEED": 7, "TEST_SIZE": 0.25,
                "N_ESTIMATORS": 10, "MAX_DEPTH": 4}


def restart_kernel() -> None:
    """What a new kernel starts without: a session, an active run, an active experiment."""
    mlflow.end_run()
    checking.end_session()
    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh course store; the process's MLflow state and session are put back afterwards."""
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI", "_MLFLOW_SERVER_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    previous = mlflow.get_tracking_uri()
    uri = labkit.sqlite_uri(tmp_path / "mlflow-store" / "mlflow.db")
    yield uri
    mlflow.end_run()
    checking.end_session()
    mlflow.set_tracking_uri(previous)


def outcome(module: Any, check_id: str, namespace: dict[str, Any]) -> str:
    """What the self-check cell shows: its pass line, or its one-line failure."""
    try:
        module.self_check(check_id, namespace)
    except SelfCheckFailed as failure:
        return f"✘ {failure}"
    return "✔"


def lab01_todos_1_to_4(params: dict[str, Any]) -> None:
    """Lab 01's TODOs 1-4 done as a student would (the values are not judged here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mlflow.set_experiment(params["EXPERIMENT_NAME"])
    mlflow.start_run(run_name=params["RUN_NAME"])
    mlflow.log_params({"model_type": "RandomForestRegressor", "n_estimators": params["N_ESTIMATORS"],
                       "max_depth": params["MAX_DEPTH"], "random_state": params["SEED"],
                       "test_size": params["TEST_SIZE"]})
    mlflow.log_metrics({"rmse": 10.0, "mae": 5.0, "r2": 0.9})
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(range(200), [i * 1.1 % 97 for i in range(200)], s=6)
    ax.plot([0, 200], [0, 200], color="black")
    ax.set_title("Predicted vs actual")
    mlflow.log_figure(fig, lab01.FIGURE)
    plt.close(fig)


def test_lab01_untouched_todos_fail_the_next_day_and_pass_on_todays_work(store: str) -> None:
    params = dict(LAB01_PARAMS)
    checks = list(lab01.CHECKS)

    # Yesterday: TODOs 1-4 done; every one of their self-checks passed.
    labkit.connect(store)
    lab01_todos_1_to_4(params)
    assert [outcome(lab01, c, params) for c in checks[:4]] == ["✔"] * 4
    restart_kernel()
    time.sleep(0.01)  # the next run of the notebook starts later than yesterday's run

    # Today, the same store, nothing done yet: each self-check says what is missing.
    labkit.connect(store)
    today = {c: outcome(lab01, c, params) for c in checks}
    assert all(o.startswith("✘") for o in today.values()), today
    assert "earlier run of this notebook" in today["check_todo1_experiment"]
    assert "mlflow.set_experiment" in today["check_todo1_experiment"]
    assert "mlflow.start_run" in today["check_todo2_params"]
    assert "Do TODO 2 first" in today["check_todo3_metrics"]

    # Today's TODO 1 alone: only its self-check passes (yesterday's run still does not count).
    mlflow.set_experiment(params["EXPERIMENT_NAME"])
    assert outcome(lab01, "check_todo1_experiment", params) == "✔"
    assert outcome(lab01, "check_todo2_params", params).startswith("✘")

    # Today's TODOs 2-4: their self-checks pass on today's run.
    lab01_todos_1_to_4(params)
    assert [outcome(lab01, c, params) for c in checks[:4]] == ["✔"] * 4

    # The store still holds both runs: the grader and the UI see everything, as before.
    assert len(checking.runs(checking.client(store).unfiltered)) == 2


def test_setup_cell_run_again_in_the_same_kernel_keeps_the_work_of_this_kernel(store: str) -> None:
    params = dict(LAB01_PARAMS)
    labkit.connect(store)
    lab01_todos_1_to_4(params)
    time.sleep(0.01)
    labkit.connect(store)  # the student re-runs the set-up cell: same kernel, same run of the notebook
    assert outcome(lab01, "check_todo2_params", params) == "✔"


def test_only_a_notebook_kernel_is_filtered(store: str, tmp_path: Path) -> None:
    """The grader's trusted process never connects: it reads a whole (fresh) store. A client
    on another store than the session's (the grader's private copy) is not filtered either."""
    assert checking.session() is None
    assert not isinstance(checking.client(store), checking.SessionClient)
    labkit.connect(store)
    assert isinstance(checking.client(store), checking.SessionClient)
    other = labkit.sqlite_uri(tmp_path / "copy" / "mlflow.db")
    assert not isinstance(checking.client(other), checking.SessionClient)


def test_registry_versions_and_aliases_of_an_earlier_run_are_not_shown(store: str) -> None:
    """Labs 04-07 judge registered versions and aliases: yesterday's champion is not today's."""
    from sklearn.dummy import DummyRegressor

    name = "lab-model"
    model = DummyRegressor().fit([[0.0], [1.0]], [0.0, 1.0])

    def register() -> str:
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                            pip_requirements=["scikit-learn"])
        return str(info.registered_model_version)

    labkit.connect(store)
    old = register()
    mlflow.MlflowClient(store).set_registered_model_alias(name, "champion", old)
    restart_kernel()
    time.sleep(0.01)

    labkit.connect(store)
    view = checking.client(store)
    assert view.search_registered_models(filter_string=f"name = '{name}'") == []
    assert view.search_model_versions(f"name = '{name}'") == []
    with pytest.raises(mlflow.exceptions.MlflowException, match="not found"):
        view.get_model_version_by_alias(name, "champion")

    new = register()  # today's version: the model shows, yesterday's alias on it does not
    [registered] = view.search_registered_models(filter_string=f"name = '{name}'")
    assert registered.aliases == {}
    assert [str(mv.version) for mv in view.search_model_versions(f"name = '{name}'")] == [new]
    mlflow.MlflowClient(store).set_registered_model_alias(name, "champion", new)
    [registered] = view.search_registered_models(filter_string=f"name = '{name}'")
    assert {a: str(v) for a, v in registered.aliases.items()} == {"champion": new}
    assert str(view.get_model_version_by_alias(name, "champion").version) == new


def test_lab02_sweep_of_an_earlier_run_does_not_pass_todays_checks(store: str) -> None:
    """Lab 02's set-up cell makes the experiment active itself: the runs are what tells
    yesterday from today."""
    params = {"EXPERIMENT_NAME": "lab02-tuning", "PARENT_RUN_NAME": "rf-grid-search", "TRIAL_RUN_NAME": "rf-trial",
              "SEED": 7, "TEST_SIZE": 0.25, "CV_FOLDS": 3, "N_ESTIMATORS_GRID": [20], "MAX_DEPTH_GRID": [4]}
    labkit.connect(store)
    mlflow.set_experiment(params["EXPERIMENT_NAME"])
    with mlflow.start_run(run_name=params["PARENT_RUN_NAME"]):
        mlflow.log_params({"model_type": "RandomForestRegressor", "random_state": 7, "cv_folds": 3,
                           "n_estimators_grid": [20], "max_depth_grid": [4]})
        mlflow.set_tags({"sweep": params["PARENT_RUN_NAME"], "search": "grid"})
    assert outcome(lab02, "check_todo2_parent", params) == "✔"
    restart_kernel()
    time.sleep(0.01)

    labkit.connect(store)
    mlflow.set_experiment(params["EXPERIMENT_NAME"])
    assert "no run named 'rf-grid-search'" in outcome(lab02, "check_todo2_parent", params)
