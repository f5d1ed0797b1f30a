"""What every lab's checks share: the context they read, their result, and how a
notebook's self-check cell calls them.

A check is a plain function ``(ctx, strict) -> CheckResult`` that looks only at
evidence (the MLflow store, files, the data), never at variables in the student's
kernel. The notebook calls it for instant feedback; the grader calls the same
function again from its own process, so a student cell that rewrites later cells
inside the kernel cannot change the official score (DESIGN.md, "Threat model").
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.kit.checking import CheckResult


@dataclass(frozen=True)
class LabContext:
    """Everything a check may look at.

    ``params`` are the values of the lab's parameters cell (as the grader or papermill
    set them); ``run_id`` is the run the student is working on when the check runs
    inside the notebook, or None to let the check find the lab's run in the store.
    """

    tracking_uri: str
    data_path: Path
    params: Mapping[str, Any] = field(default_factory=dict)
    run_id: str | None = None


_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"

Check = Callable[[LabContext, bool], CheckResult]


class SelfCheckFailed(AssertionError):
    """A failed self-check. IPython shows only the message, not a traceback wall."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m✘ {self}\x1b[0m"]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings and MLflow's INFO logs while a check runs.

    nbgrader scores a test cell that wrote anything to stderr as 0, and MLflow logs to
    stderr when it loads a model; the check's own verdict is what the student should see.
    """
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)
    # A check that downloads an artifact would otherwise draw MLflow's progress-bar widget.
    progress = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        mlflow_logger.setLevel(level)
        if progress is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = progress


def run_check(check: Check, ctx: LabContext, strict: bool) -> CheckResult:
    """Run one check; an unexpected error becomes a failed result, never a crash."""
    try:
        with quiet():
            return check(ctx, strict)
    except Exception as exc:  # a broken store or artifact must not stop the grading
        return CheckResult(False, f"could not check: {type(exc).__name__}: {exc}")


def context_from_namespace(
    namespace: Mapping[str, Any], param_names: list[str], data_path: Path
) -> LabContext:
    """Build the context inside a notebook from its parameters and the active run."""
    import mlflow

    active = mlflow.active_run()
    return LabContext(
        tracking_uri=mlflow.get_tracking_uri(),
        data_path=data_path,
        params={name: namespace[name] for name in param_names if name in namespace},
        run_id=active.info.run_id if active else None,
    )


#: How a self-check names its task in the notebook (the one place this text lives).
LABEL = "TODO {n}"


def self_check_for(
    checks: Mapping[str, tuple[int, Check]], param_names: list[str]
) -> Callable[..., None]:
    """The ``self_check(check_id, globals())`` function a lab's test cells call."""

    def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
        """Run one check from a test cell: print a pass line or raise a clear failure."""
        from autograder import labkit

        todo, check = checks[check_id]
        ctx = context_from_namespace(namespace, param_names, labkit.data_path(namespace.get("DATA_PATH")))
        report(run_check(check, ctx, strict), LABEL.format(n=todo))

    return self_check


def client(ctx: LabContext) -> Any:
    """An MLflow client on the context's store (never the process-wide default)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=ctx.tracking_uri)


def newest_ready_model(ctx: LabContext, run: Any) -> tuple[Any | None, bool]:
    """The newest READY logged model of a run, and whether the run has any model at all:
    a failed ``log_model`` (e.g. untrusted skops types) leaves a FAILED model behind, and a
    student who then fixes the call must be graded on the model that worked."""
    mlflow_client = client(ctx)
    outputs = run.outputs.model_outputs if run.outputs else []
    models = [mlflow_client.get_logged_model(o.model_id) for o in outputs]
    ready = [m for m in models if str(getattr(m.status, "value", m.status)) == "READY"]
    ready.sort(key=lambda m: m.creation_timestamp or 0)
    return (ready[-1] if ready else None), bool(models)


def newest_run_named(ctx: LabContext, run_name: str) -> Any | None:
    """The newest run named ``run_name``: in the lab's experiment (``EXPERIMENT_NAME``),
    else in any experiment, so that a student who skipped set_experiment is still graded."""
    mlflow_client = client(ctx)
    experiment_ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not experiment_ids:
        return None
    runs = mlflow_client.search_runs(
        experiment_ids,
        filter_string=f"attributes.run_name = '{run_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    experiment = mlflow_client.get_experiment_by_name(ctx.params["EXPERIMENT_NAME"])
    own = [r for r in runs if experiment and r.info.experiment_id == experiment.experiment_id]
    return (own or runs or [None])[0]


def same_param_value(logged: str, expected: Any) -> bool:
    """Whether a logged parameter (always a string in MLflow) names the expected value:
    ``"0.25"`` for 0.25, ``"100"`` for 100, ``"[20, 60]"`` or ``"20,60"`` for a list."""
    if str(logged) == str(expected):
        return True
    if isinstance(expected, list | tuple):
        return [int(x) for x in re.findall(r"-?\d+", str(logged))] == [int(x) for x in expected]
    try:
        return math.isclose(float(logged), float(expected), rel_tol=1e-9)
    except (TypeError, ValueError):
        return False


def names(mapping: Mapping[str, Any]) -> str:
    """``a, b, c`` for messages, or ``none``."""
    return ", ".join(sorted(mapping)) or "none"


def pairs(mapping: Mapping[str, Any]) -> str:
    """``k=v, k=v`` for messages."""
    return ", ".join(f"{k}={v}" for k, v in mapping.items())


def report(result: CheckResult, label: str) -> None:
    """Print a pass line, or raise a one-line failure that IPython shows in red."""
    if not result.passed:
        raise SelfCheckFailed(f"{label}: {result.message}")
    print(f"✔ {label}: {result.message}")
