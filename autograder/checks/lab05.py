"""Checks for Lab 05, CI/CD for machine learning.

The student's work is four programs and a workflow file that the notebook writes into its
working directory (``pipeline/``); the evidence is what they do when they run.

- Inside the notebook (``strict=False``) a check reads the job history that the notebook's CI
  runner (``run_step``) records in the experiment CI_EXPERIMENT (command, exit code, output of
  every step), and the registry. That is quick, and it already catches a gate that never fails,
  a promotion that ignores tags, or a validation blind to missing values.
- The grader (``strict=True``) runs the student's programs itself, in processes it controls,
  from the submission's working directory, against copies of the submission's store (so that
  nothing it does changes the evidence), on inputs the notebook never saw: batches with one
  fault each, thresholds a model cannot meet, models with one flaw each.

The grader executes a notebook in a temporary directory whose store is
``<workdir>/mlflow-store/mlflow.db`` (``autograder.store``): the files are found there. Inside
a kernel, the files are in the kernel's working directory.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import functools
import itertools
import json
import math
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from autograder import course, labkit
from autograder.checks.base import Check, CheckResult, LabContext, client, self_check_for

#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = [
    "EXPERIMENT_NAME",
    "CI_EXPERIMENT",
    "MODEL_NAME",
    "CHAMPION_RUN",
    "POOR_RUN",
    "CANDIDATE_RUN",
    "SEED",
]

#: The files the notebook writes (relative to its working directory), by task.
DATA_SCRIPT = "pipeline/validate_data.py"
GATE_SCRIPT = "pipeline/validate_model.py"
TEST_FILE = "pipeline/test_model_behaviour.py"
PROMOTE_SCRIPT = "pipeline/promote_model.py"
WORKFLOW = "pipeline/model-ci.yml"
TODO_OF = {DATA_SCRIPT: 1, GATE_SCRIPT: 2, TEST_FILE: 3, PROMOTE_SCRIPT: 4, WORKFLOW: 5}

GOOD_BATCH = "batch_no_drift.csv"  # in data/production/
BAD_BATCH = "batch_bad.csv"  # made by the notebook's set-up, in batches/
#: What the set-up broke in the bad batch: column -> the fault.
BAD_BATCH_FAULTS = {
    "network_latency": "the column is missing",
    "memory_usage": "missing values",
    "cpu_usage": "values of 130%",
    "concurrent_users": "the text 'unknown'",
}
#: The gate's defaults (the lab's text and the script's argparse say the same).
MIN_R2, MAX_LATENCY_MS = 0.70, 200.0
GATE_TAGS = ("validation_passed", "r2", "p95_latency_ms")
PROMOTION_TAGS = ("promoted_by", "promoted_at", "promotion_reason")
REQUIRED_TESTS = ("test_invariance_to_extra_columns", "test_directional_users", "test_directional_cpu")
#: Tolerance for the gate's r2 tag against the grader's own R² (rounding to 3 digits passes).
R2_RTOL = 2e-3
PROMOTION_REASON = "autograder check"
STEP_TIMEOUT = 120  # seconds for one program the grader runs
FEATURES = labkit.FEATURES

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "no_file": (
        "no file {file} in {folder}. Run the TODO {todo} cell: its first line, %%writefile {file}, "
        "writes the file."
    ),
    "no_setup": (
        "the registry has no version of '{name}' from the run '{run}'. Run the set-up cells above "
        "(from the top of the notebook)."
    ),
    "not_run": "the job history ('{experiment}') has no run of {what}. Run the cell after TODO {todo}.",
    "crashed": "{what} crashed: {error}. Fix the script (the cell after TODO {todo} shows the whole error).",
    # TODO 1
    "good_rejected": (
        "validate_data.py rejected the good batch {batch} (exit code {code}); a batch without problems "
        "must pass with exit code 0. Its output ended with: {tail}"
    ),
    "bad_accepted": (
        "validate_data.py accepted {what} (exit code 0). It must exit with 1 when it finds a problem."
    ),
    "bad_unnamed": (
        "validate_data.py rejected {what}, but its report does not name the column{s} {columns} "
        "({faults}). Report each problem on its own line, naming its column."
    ),
    "data_ok": "validate_data.py accepts the good batch and rejects {what}, naming every problem.",
    "the_bad_batch": "batches/batch_bad.csv",
    "fault_batches": "batches with one fault each ({faults})",
    "fault_missing_values": "missing values",
    "fault_above_range": "a value above its range",
    "fault_negative": "a negative value",
    "fault_text": "text in a number column",
    "fault_no_column": "a missing column",
    "one_fault": "a batch with {fault} in '{column}'",
    # pieces of sentences
    "run_on": "{script} on {target}",
    "on_target": "{script}, on {target},",
    "target_good": "the good batch {batch}",
    "target_version": "version {version} ({run})",
    "champion_moved": "champion -> version {version}",
    "at_line": "line {line}: {error}",
    "line_suffix": " (line {line})",
    "exit_code": "exit code {code}",
    "timed_out": "timed out after {seconds} s",
    "none": "none",
    # TODO 2
    "gate_passed_poor": (
        "the gate passed version {version} ({run}) with exit code 0, although its R² on the batch is "
        "{r2:.3f} (minimum {min_r2}; the champion has {champion_r2:.3f}). A failing gate must exit with 1."
    ),
    "gate_tagged_poor": (
        "version {version} ({run}) has the tag validation_passed={value}, although it fails the gate. "
        "Tag a version only when every rule passed."
    ),
    "gate_failed_candidate": (
        "the gate failed version {version} ({run}), which meets every rule (R² {r2:.3f} ≥ {min_r2}, better "
        "than the champion's {champion_r2:.3f}); exit code {code}. Its output ended with: {tail}"
    ),
    "gate_no_tag": (
        "the gate passed version {version} but did not tag it {tag}{expected} (its tags: {found}). Call "
        "client.set_model_version_tag(args.model_name, args.version, '{tag}', ...)."
    ),
    "gate_wrong_r2": (
        "version {version} has the tag r2={found}, but its R² on the batch is {expected:.4f}. Tag the R² "
        "the gate measured: r2_of(model, X, y)."
    ),
    "gate_bad_latency": (
        "version {version} has the tag p95_latency_ms={found}; expected the measured p95 latency in ms, "
        "a number above 0 and below {budget:g}."
    ),
    "gate_ok": (
        "the gate fails version {poor} (R² {poor_r2:.3f}) and passes version {candidate} (R² "
        "{candidate_r2:.3f}), tagged validation_passed=true, r2={r2_tag}, p95_latency_ms={latency_tag}."
    ),
    "gate_strict_ok": (
        "the gate enforces R², latency and the comparison with the champion, changes nothing when it "
        "fails, and tags version {candidate} when it passes."
    ),
    "gate_ignored_rule": "the gate passed {case} (exit code 0). {fix}",
    "case_champion": (
        "version {version} ({run}, R² {r2:.3f}) with --min-r2 0, although the champion scores R² "
        "{champion_r2:.3f} on the same batch"
    ),
    "fix_champion": "Fail a version whose R² is below the champion's minus --tolerance.",
    "case_r2": "version {version} with --min-r2 0.99, although its R² is {r2:.3f}",
    "fix_r2": "Fail a version whose R² is below args.min_r2.",
    "case_latency": "version {version} with --max-latency-ms 0.001, a budget no model can meet",
    "fix_latency": "Measure the p95 latency with p95_latency_ms(model, X) and fail a version above args.max_latency_ms.",
    "gate_changed": (
        "the gate failed {case}, as it should, but changed the registry: {changes}. A failing gate must "
        "change nothing."
    ),
    # TODO 3
    "no_tests": (
        "{file} has no test function{s} {missing} (found: {found}). Name the tests exactly as the TODO says."
    ),
    "syntax_error": "{file} is not valid Python: {error}",
    "tests_fail_candidate": (
        "the behavioural tests fail on version {version} ({run}), a good model: {failed}. {detail}"
    ),
    "tests_not_collected": ("pytest could not run {file} (exit code {code}): {tail}"),
    "test_missed_flaw": ("{test} passed on a model {flaw}; it must fail on such a model. {fix}"),
    "flaw_cpu": "whose predictions fall as the CPU rises (1.5 ms less per CPU point)",
    "fix_cpu": "Predict TYPICAL and TYPICAL with 20 more CPU points, and assert that no prediction drops by more than TOLERANCE_MS.",
    "flaw_users": "whose predictions fall as users grow (0.2 ms less per user)",
    "fix_users": "Predict TYPICAL and TYPICAL with twice the users, and assert that no prediction drops by more than TOLERANCE_MS.",
    "flaw_columns": "that fails on a request with extra columns (timestamp, region)",
    "fix_columns": "Predict TYPICAL with the columns timestamp and region added (and reordered), and compare with the predictions for TYPICAL.",
    "tests_ok": "the behavioural tests {names} pass on version {version}.",
    "tests_strict_ok": (
        "the behavioural tests pass on version {version} and each catches its flaw (CPU, users, extra columns)."
    ),
    # TODO 4
    "promoted_poor": (
        "promote_model.py promoted version {version} ({run}) with exit code {code}, although it lacks the "
        "tag validation_passed=true (its tags: {tags}). Refuse it: print why and return 1."
    ),
    "poor_is_champion": (
        "the alias 'champion' points to version {version} ({run}), a version that never passed the gate. "
        "Refuse to promote a version without validation_passed=true."
    ),
    "poor_tagged": "version {version} ({run}) has promotion tags ({tags}) although it was refused: change nothing when refusing.",
    "promote_failed": (
        "promote_model.py did not promote version {version} (exit code {code}), although it has "
        "validation_passed=true. Its output ended with: {tail}"
    ),
    "alias_not_moved": (
        "promote_model.py exited with 0 for version {version}, but 'champion' points to version {champion}. "
        "Move it: client.set_registered_model_alias(args.model_name, 'champion', args.version)."
    ),
    "promotion_untagged": (
        "version {version} was promoted without the tag{s} {missing} (its tags: {found}). Record who, when "
        "and why: promoted_by, promoted_at, promotion_reason."
    ),
    "bad_promoted_at": "the tag promoted_at='{found}' is not an ISO 8601 time; use datetime.now(timezone.utc).isoformat().",
    "bad_reason": "the tag promotion_reason is '{found}'; expected the --reason given, '{expected}'.",
    "promote_ok": "promote_model.py refused version {poor} and promoted version {candidate}, with {tags}.",
    "promote_refusal_only": (
        "promote_model.py refused version {poor}, which has no validation_passed tag. (Version {candidate} "
        "was refused too, correctly: it has no validation_passed=true yet. Do TODO 2, then run this again.)"
    ),
    "promote_refused_false": (
        "promote_model.py promoted version {version} whose tag is validation_passed=false (exit code 0). "
        "Compare the tag's value too: tags.get('validation_passed') != 'true'."
    ),
    "promote_strict_ok": (
        "promote_model.py refuses versions without validation_passed=true, leaving the alias alone, and "
        "promotes a validated one, recording who, when and why."
    ),
    # TODO 5
    "workflow_invalid": "{file} does not follow GitHub's workflow schema (check-jsonschema): {details}",
    "workflow_not_yaml": (
        "{file} is not valid YAML: {error}. Check the indentation (spaces only) and that every line "
        "of the TODO 5 cell is part of the workflow."
    ),
    "workflow_not_mapping": "{file} must hold a mapping with the keys name, on and jobs.",
    "workflow_no_push": "{file} does not run on push: its `on:` is {found}. Use `on: push` (or `on: {{push: ...}}`).",
    "workflow_missing": ("{file} has no step that runs {missing}. Add a step with `run: {example}`."),
    "workflow_order": (
        "in {file}, the step that runs {later} can start before, or without, the one that runs {earlier}. "
        "Put them in one job in that order, or give the later job `needs: <the earlier job>`."
    ),
    "workflow_ok": "{file} is a valid GitHub workflow that runs on push: tests, then gate, then promotion.",
    "step_tests": "the behavioural tests",
    "step_gate": "the quality gate",
    "step_promote": "the promotion",
}

#: The workflow's steps, in their order: message key of their name -> (what the command
#: contains, an example command).
_STEP_PATTERNS = {
    "step_tests": ("pytest", "python -m pytest pipeline/test_model_behaviour.py"),
    "step_gate": ("validate_model.py", "python pipeline/validate_model.py ..."),
    "step_promote": ("promote_model.py", "python pipeline/promote_model.py ..."),
}


def _msg(key: str, **values: Any) -> str:
    return MESSAGES[key].format(**values)


def _pairs(tags: dict[str, str]) -> str:
    """``k=v, k=v`` for messages, or ``none``."""
    return ", ".join(f"{k}={v}" for k, v in tags.items()) or MESSAGES["none"]


# --------------------------------------------------------------------------- where things are


def workdir(ctx: LabContext) -> Path:
    """The directory the notebook ran in, where its %%writefile cells put the files.

    Graded: the parent of the submission's ``mlflow-store/``. In a kernel (JupyterLab,
    papermill, nbgrader): the current directory, which is the kernel's.
    """
    db = labkit.sqlite_path(ctx.tracking_uri)
    if db is not None:
        store_dir = db.resolve().parent
        if store_dir.name == "mlflow-store" and store_dir != course.STORE_DIR.resolve():
            return store_dir.parent
    return Path.cwd()


def good_batch(ctx: LabContext) -> Path:
    return Path(ctx.data_path).parent / "production" / GOOD_BATCH


def _need_file(ctx: LabContext, rel: str) -> CheckResult | None:
    folder = workdir(ctx)
    if not (folder / rel).is_file():
        return CheckResult(False, _msg("no_file", file=rel, folder=folder, todo=TODO_OF[rel]))
    return None


def _run_name(mlflow_client: Any, run_id: str | None) -> str | None:
    if not run_id:
        return None
    try:
        return mlflow_client.get_run(run_id).info.run_name
    except Exception:  # a version whose run was deleted has no role
        return None


def role_versions(ctx: LabContext) -> dict[str, Any]:
    """role ('champion', 'poor', 'candidate') -> the newest version registered from its run."""
    mlflow_client = client(ctx)
    p = ctx.params
    roles = {p["CHAMPION_RUN"]: "champion", p["POOR_RUN"]: "poor", p["CANDIDATE_RUN"]: "candidate"}
    found: dict[str, Any] = {}
    for mv in mlflow_client.search_model_versions(f"name = '{p['MODEL_NAME']}'"):
        role = roles.get(_run_name(mlflow_client, mv.run_id))
        if role and (role not in found or int(mv.version) > int(found[role].version)):
            found[role] = mv
    return found


def _need_roles(ctx: LabContext) -> tuple[dict[str, Any], CheckResult | None]:
    versions = role_versions(ctx)
    p = ctx.params
    for role, run in (
        ("champion", p["CHAMPION_RUN"]),
        ("poor", p["POOR_RUN"]),
        ("candidate", p["CANDIDATE_RUN"]),
    ):
        if role not in versions:
            return versions, CheckResult(False, _msg("no_setup", name=p["MODEL_NAME"], run=run))
    return versions, None


def _tags(mlflow_client: Any, name: str, version: str) -> dict[str, str]:
    return dict(mlflow_client.get_model_version(name, version).tags)


def _champion(mlflow_client: Any, name: str) -> str | None:
    try:
        return str(mlflow_client.get_model_version_by_alias(name, "champion").version)
    except Exception:  # no alias
        return None


# --------------------------------------------------------------------------- the job history


@dataclass
class Step:
    """One step the notebook's CI runner ran: its arguments, extra environment, exit code."""

    run_id: str
    args: list[str]
    env: dict[str, str]
    code: int
    output: str | None = None

    def option(self, name: str) -> str | None:
        return next((self.args[i + 1] for i, a in enumerate(self.args[:-1]) if a == name), None)

    def runs(self, script: str) -> bool:
        return any(a.replace("\\", "/").endswith(script) for a in self.args)


def ci_steps(ctx: LabContext) -> list[Step]:
    """The steps recorded in the job history, newest first."""
    mlflow_client = client(ctx)
    experiment = mlflow_client.get_experiment_by_name(ctx.params["CI_EXPERIMENT"])
    if experiment is None:
        return []
    runs = mlflow_client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1000
    )
    steps = []
    for run in runs:
        tags = run.data.tags
        try:
            steps.append(
                Step(
                    run.info.run_id,
                    shlex.split(tags["ci.command"]),
                    json.loads(tags.get("ci.env") or "{}"),
                    int(tags["ci.exit_code"]),
                )
            )
        except (KeyError, ValueError):
            continue
    return steps


def step_output(ctx: LabContext, step: Step) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client(ctx).download_artifacts(step.run_id, "output.txt", tmp)
        except Exception:  # no output recorded
            return ""
        return Path(path).read_text(encoding="utf-8", errors="replace")


def _last(steps: list[Step], match: Callable[[Step], bool]) -> Step | None:
    return next((s for s in steps if match(s)), None)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(output: str, lines: int = 2) -> str:
    kept = [line.strip() for line in _ANSI.sub("", output).strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


def _crash(output: str) -> str | None:
    """The exception line of a Python traceback in ``output``, or None."""
    if "Traceback (most recent call last)" not in output:
        return None
    return _tail(output, 1)


# --------------------------------------------------------------------------- running programs


@dataclass
class Job:
    """A program the grader runs: ``python *args`` in ``cwd`` on the store ``uri``."""

    args: list[str]
    cwd: Path
    uri: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    code: int
    output: str


def _job_env(job: Job) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "_MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=job.uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK="true",
        PYTHONWARNINGS="ignore",
        PYTHONDONTWRITEBYTECODE="1",
        NO_COLOR="1",
        **job.env,
    )
    return env


def _plain_run(jobs: list[Job]) -> list[Outcome]:
    """Run each program in a new interpreter, a few at a time, each with a time limit."""

    def one(job: Job) -> Outcome:
        try:
            proc = subprocess.run(
                [sys.executable, *job.args],
                cwd=job.cwd,
                env=_job_env(job),
                capture_output=True,
                text=True,
                timeout=STEP_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            return Outcome(proc.returncode, proc.stdout + proc.stderr)
        except subprocess.TimeoutExpired:
            return Outcome(124, _msg("timed_out", seconds=STEP_TIMEOUT))

    with ThreadPoolExecutor(max_workers=_workers(len(jobs))) as pool:
        return list(pool.map(one, jobs))


def _workers(count: int) -> int:
    return max(1, min(count, max(2, os.cpu_count() or 2), 4))


def run_jobs(jobs: list[Job]) -> list[Outcome]:
    """Run the programs as ``python <args>`` would, a few at a time, each with a time limit.

    On Linux a warm runner does it (a process that imported MLflow, pandas, scikit-learn and
    pytest once, and forks a child per program): every program of this lab imports MLflow,
    which costs about 3 s of CPU per interpreter, 40 s for one submission. Elsewhere, or if
    the runner fails, each program gets a new interpreter."""
    if not jobs:
        return []
    outcomes = RUNNER.run(jobs)
    return outcomes if outcomes is not None else _plain_run(jobs)


# --------------------------------------------------------------------------- the warm runner

#: What every program of this lab imports: the warm runner imports it once.
_PRELOAD = (
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "skops.io",
    "pandas",
    "sklearn.metrics",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "pytest",
    "check_jsonschema",
)


class WarmRunner:
    """The grader's side of the warm runner (``_serve``): one per grader process, started by
    ``prepare`` while the notebook runs, stopped at exit or when its stdin closes."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.lock = threading.Lock()
        self.failed = not sys.platform.startswith("linux")

    def _start(self) -> bool:
        if self.failed:
            return False
        if self.proc is not None and self.proc.poll() is None:
            return True
        root = str(Path(__file__).resolve().parents[2])
        env = _job_env(Job([], Path.cwd(), ""))
        env.pop("MLFLOW_TRACKING_URI")
        env["PYTHONPATH"] = os.pathsep.join(p for p in [root, env.get("PYTHONPATH", "")] if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from autograder.checks.lab05 import _serve; _serve()", *_PRELOAD],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd=tempfile.gettempdir(),
            )
            ready = self.proc.stdout.readline() if self.proc.stdout else ""
        except OSError:
            ready = ""
        if not ready.startswith("{"):
            self._give_up()
            return False
        atexit.register(self.stop)
        return True

    def start(self) -> None:
        with self.lock:
            self._start()

    def run(self, jobs: list[Job]) -> list[Outcome] | None:
        """The outcomes, or None if the runner cannot be used."""
        with self.lock, tempfile.TemporaryDirectory(prefix="lab05-out-") as tmp:
            if not self._start():
                return None
            outs = [Path(tmp) / f"{i}.out" for i in range(len(jobs))]
            request = {
                "jobs": [
                    {"args": job.args, "cwd": str(job.cwd), "env": _job_env(job), "out": str(out)}
                    for job, out in zip(jobs, outs, strict=True)
                ],
                "workers": _workers(len(jobs)),
                "timeout": STEP_TIMEOUT,
            }
            try:
                assert self.proc is not None and self.proc.stdin and self.proc.stdout
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                codes = json.loads(self.proc.stdout.readline())["codes"]
            except (OSError, ValueError, KeyError, AssertionError):
                self._give_up()
                return None
            return [
                Outcome(code, out.read_text(encoding="utf-8", errors="replace") if out.exists() else "")
                for code, out in zip(codes, outs, strict=True)
            ]

    def _give_up(self) -> None:
        self.failed = True
        self.stop()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()


RUNNER = WarmRunner()


def _serve() -> None:
    """The warm runner itself (Linux): import the modules named in argv once, then run each job
    of each request in a forked child, as ``python <args>`` would, and answer with the exit
    codes. A request is one JSON line on stdin; the answer, one JSON line on stdout."""
    import importlib
    import signal
    import time

    for name in sys.argv[1:]:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    # Two one-off costs every program would pay again: SQLAlchemy's mapper set-up, and the
    # map of installed packages MLflow builds to compare a model's requirements (0.8 s).
    with contextlib.suppress(Exception):
        from sqlalchemy.orm import configure_mappers

        configure_mappers()
    with contextlib.suppress(Exception):
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
    print(json.dumps({"ready": True}), flush=True)
    running: dict[int, tuple[int, float]] = {}  # pid -> (job index, deadline)
    try:
        for line in sys.stdin:
            request = json.loads(line)
            jobs, workers, timeout = request["jobs"], request["workers"], request["timeout"]
            codes: list[int | None] = [None] * len(jobs)
            pending = list(range(len(jobs)))
            while pending or running:
                while pending and len(running) < workers:
                    index = pending.pop(0)
                    pid = os.fork()
                    if pid == 0:
                        _child(jobs[index])
                    running[pid] = (index, time.monotonic() + timeout)
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid:
                    index, _ = running.pop(pid)
                    codes[index] = os.waitstatus_to_exitcode(status)
                    continue
                for pid, (index, deadline) in list(running.items()):
                    if time.monotonic() > deadline:
                        with contextlib.suppress(OSError):
                            os.killpg(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        del running[pid]
                        codes[index] = 124
                        with open(jobs[index]["out"], "a", encoding="utf-8") as out:
                            out.write(f"\ntimed out after {timeout} s\n")
                time.sleep(0.02)
            print(json.dumps({"codes": codes}), flush=True)
    finally:  # interrupted (Ctrl-C reaches the grader's process group): stop what still runs
        for pid in running:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def _child(job: dict[str, Any]) -> None:
    """In a forked child of the warm runner: become ``python <args>`` in the job's directory,
    environment and output file, run, and exit with the program's exit code."""
    import runpy
    import traceback

    code = 1
    try:
        os.setsid()  # its own process group: a timeout kills what it started too
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        args = job["args"]
        if args[0] == "-m":  # python -m module: the current directory comes first on sys.path
            sys.argv = [args[1], *args[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:  # python script.py: the script's directory comes first
            sys.argv = list(args)
            script = os.path.abspath(args[0])
            sys.path[0] = os.path.dirname(script)
            runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException as exc:
        # The traceback python itself would print: from the program's frames on, not the runner's.
        tb = exc.__traceback__
        while tb is not None and (
            tb.tb_frame.f_code.co_filename in (__file__, runpy.__file__)
            or "runpy" in tb.tb_frame.f_code.co_filename
        ):
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb)
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code & 0xFF)


def store_copy(ctx: LabContext, folder: Path) -> str:
    """A copy of the submission's store in ``folder`` (the artifacts stay shared, read-only)."""
    source = labkit.sqlite_path(ctx.tracking_uri)
    target = folder / "mlflow.db"
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
    return labkit.sqlite_uri(target)


def _client_on(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _prepare_copy(
    uri: str, name: str, champion: str, version: str, remove: tuple[str, ...], add: dict[str, str]
) -> Any:
    """Put a copy in a known state: champion on its version, ``version`` without the tags in
    ``remove`` and with those in ``add``."""
    mlflow_client = _client_on(uri)
    mlflow_client.set_registered_model_alias(name, "champion", champion)
    tags = _tags(mlflow_client, name, version)
    for key in remove:
        if key in tags:
            mlflow_client.delete_model_version_tag(name, version, key)
    for key, value in add.items():
        mlflow_client.set_model_version_tag(name, version, key, value)
    return mlflow_client


# --------------------------------------------------------------------------- references


@functools.lru_cache(maxsize=32)
def _r2(tracking_uri: str, name: str, version: str, batch: str) -> float:
    import mlflow
    import pandas as pd
    from sklearn.metrics import r2_score

    mlflow.set_tracking_uri(tracking_uri)
    data = pd.read_csv(batch)
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return float(r2_score(data[labkit.TARGET], model.predict(data[FEATURES])))


def r2_on_batch(ctx: LabContext, version: str) -> float:
    """The grader's own R² of a registered version on the good batch."""
    return _r2(ctx.tracking_uri, ctx.params["MODEL_NAME"], str(version), str(good_batch(ctx)))


def prepare(ctx: LabContext) -> None:
    """Import what the checks need while the notebook runs (the grader calls this in a thread)."""
    import importlib

    RUNNER.start()
    for name in (*_PRELOAD, "yaml"):
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    with contextlib.suppress(Exception):  # see _serve
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()


# --------------------------------------------------------------------------- TODO 1


def _fault_batches(good: Path, folder: Path) -> dict[str, tuple[str, str, Path]]:
    """One batch per fault: key -> (column, description, path)."""
    import pandas as pd

    df = pd.read_csv(good).head(300)
    faults: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "fault_missing_values": ("disk_io", lambda d: d.assign(disk_io=d["disk_io"].mask(d.index % 40 == 3))),
        "fault_above_range": (
            "memory_usage",
            lambda d: d.assign(memory_usage=d["memory_usage"].mask(d.index == 7, 104.5)),
        ),
        "fault_negative": (
            "network_latency",
            lambda d: d.assign(network_latency=d["network_latency"].mask(d.index == 11, -3.0)),
        ),
        "fault_text": (
            "cpu_usage",
            lambda d: d.assign(cpu_usage=d["cpu_usage"].astype(object).mask(d.index == 5, "high")),
        ),
        "fault_no_column": ("concurrent_users", lambda d: d.drop(columns=["concurrent_users"])),
    }
    batches = {}
    for key, (column, broken) in faults.items():
        path = folder / f"{key}.csv"
        broken(df.copy()).to_csv(path, index=False)
        batches[key] = (column, MESSAGES[key], path)
    return batches


def _judge_good(output: str, code: int, batch: str) -> CheckResult | None:
    crash = _crash(output)
    if crash:
        return CheckResult(
            False,
            _msg(
                "crashed",
                what=_msg("on_target", script="validate_data.py", target=_msg("target_good", batch=batch)),
                error=crash,
                todo=1,
            ),
        )
    if code != 0:
        return CheckResult(False, _msg("good_rejected", batch=batch, code=code, tail=_tail(output)))
    return None


def _judge_rejection(output: str, code: int, what: str, columns: dict[str, str]) -> CheckResult | None:
    crash = _crash(output)
    if crash:
        return CheckResult(
            False,
            _msg(
                "crashed", what=_msg("on_target", script="validate_data.py", target=what), error=crash, todo=1
            ),
        )
    if code == 0:
        return CheckResult(False, _msg("bad_accepted", what=what))
    unnamed = [c for c in columns if c not in output]
    if unnamed:
        return CheckResult(
            False,
            _msg(
                "bad_unnamed",
                what=what,
                s="s" if len(unnamed) > 1 else "",
                columns=", ".join(unnamed),
                faults="; ".join(f"{c}: {columns[c]}" for c in unnamed),
            ),
        )
    return None


def check_data(ctx: LabContext, strict: bool = False) -> CheckResult:
    missing = _need_file(ctx, DATA_SCRIPT)
    if missing:
        return missing
    good = good_batch(ctx)
    if strict:
        with tempfile.TemporaryDirectory(prefix="lab05-data-") as tmp:
            batches = _fault_batches(good, Path(tmp))
            paths = [good] + [path for _, _, path in batches.values()]
            cwd, uri = workdir(ctx), ctx.tracking_uri
            outcomes = run_jobs([Job([DATA_SCRIPT, str(p)], cwd, uri) for p in paths])
        first, rest = outcomes[0], outcomes[1:]
        problem = _judge_good(first.output, first.code, good.name)
        if problem:
            return problem
        for (column, fault, _), outcome in zip(batches.values(), rest, strict=True):
            what = _msg("one_fault", fault=fault, column=column)
            problem = _judge_rejection(outcome.output, outcome.code, what, {column: fault})
            if problem:
                return problem
        faults = ", ".join(fault for _, fault, _ in batches.values())
        return CheckResult(True, _msg("data_ok", what=_msg("fault_batches", faults=faults)))
    steps = ci_steps(ctx)
    good_step = _last(steps, lambda s: s.runs("validate_data.py") and s.runs(GOOD_BATCH))
    bad_step = _last(steps, lambda s: s.runs("validate_data.py") and s.runs(BAD_BATCH))
    if good_step is None or bad_step is None:
        what = _msg(
            "run_on", script="validate_data.py", target=GOOD_BATCH if good_step is None else BAD_BATCH
        )
        return CheckResult(False, _msg("not_run", experiment=ctx.params["CI_EXPERIMENT"], what=what, todo=1))
    problem = _judge_good(step_output(ctx, good_step), good_step.code, GOOD_BATCH)
    if problem:
        return problem
    what = _msg("the_bad_batch")
    problem = _judge_rejection(step_output(ctx, bad_step), bad_step.code, what, BAD_BATCH_FAULTS)
    return problem or CheckResult(True, _msg("data_ok", what=what))


# --------------------------------------------------------------------------- TODO 2


def _gate_args(name: str, version: str, batch: Path, *extra: str) -> list[str]:
    return [GATE_SCRIPT, "--model-name", name, "--version", str(version), "--data", str(batch), *extra]


def _check_gate_tags(tags: dict[str, str], version: str, expected_r2: float) -> CheckResult | None:
    def no_tag(tag: str, expected: str = "") -> CheckResult:
        found = _pairs(tags)
        return CheckResult(
            False, _msg("gate_no_tag", version=version, tag=tag, expected=expected, found=found)
        )

    if tags.get("validation_passed") != "true":
        return no_tag("validation_passed", "=true")
    for tag in ("r2", "p95_latency_ms"):
        if tag not in tags:
            return no_tag(tag)
    try:
        r2 = float(tags["r2"])
    except ValueError:
        r2 = math.nan
    if not math.isclose(r2, expected_r2, rel_tol=R2_RTOL, abs_tol=1e-3):
        return CheckResult(
            False, _msg("gate_wrong_r2", version=version, found=tags["r2"], expected=expected_r2)
        )
    try:
        latency = float(tags["p95_latency_ms"])
    except ValueError:
        latency = math.nan
    if not 0 < latency < MAX_LATENCY_MS:
        return CheckResult(
            False,
            _msg("gate_bad_latency", version=version, found=tags["p95_latency_ms"], budget=MAX_LATENCY_MS),
        )
    return None


def check_gate(ctx: LabContext, strict: bool = False) -> CheckResult:
    missing = _need_file(ctx, GATE_SCRIPT)
    if missing:
        return missing
    versions, problem = _need_roles(ctx)
    if problem:
        return problem
    p = ctx.params
    name = p["MODEL_NAME"]
    poor, candidate, champion = (str(versions[r].version) for r in ("poor", "candidate", "champion"))
    r2 = {v: r2_on_batch(ctx, v) for v in (poor, candidate, champion)}
    if strict:
        return _check_gate_strict(ctx, name, poor, candidate, champion, r2)
    steps = ci_steps(ctx)
    mlflow_client = client(ctx)
    poor_step = _last(steps, lambda s: s.runs("validate_model.py") and s.option("--version") == poor)
    if poor_step is None:
        what = _msg(
            "run_on",
            script="validate_model.py",
            target=_msg("target_version", version=poor, run=p["POOR_RUN"]),
        )
        return CheckResult(False, _msg("not_run", experiment=p["CI_EXPERIMENT"], what=what, todo=2))
    if poor_step.code == 0:
        return CheckResult(
            False,
            _msg(
                "gate_passed_poor",
                version=poor,
                run=p["POOR_RUN"],
                r2=r2[poor],
                min_r2=MIN_R2,
                champion_r2=r2[champion],
            ),
        )
    crash = _crash(step_output(ctx, poor_step))
    if crash:
        return CheckResult(
            False,
            _msg(
                "crashed",
                what=_msg(
                    "on_target",
                    script="validate_model.py",
                    target=_msg("target_version", version=poor, run=p["POOR_RUN"]),
                ),
                error=crash,
                todo=2,
            ),
        )
    poor_tags = _tags(mlflow_client, name, poor)
    if "validation_passed" in poor_tags:
        return CheckResult(
            False,
            _msg("gate_tagged_poor", version=poor, run=p["POOR_RUN"], value=poor_tags["validation_passed"]),
        )
    candidate_step = _last(
        steps, lambda s: s.runs("validate_model.py") and s.option("--version") == candidate
    )
    if candidate_step is None:
        what = _msg(
            "run_on",
            script="validate_model.py",
            target=_msg("target_version", version=candidate, run=p["CANDIDATE_RUN"]),
        )
        return CheckResult(False, _msg("not_run", experiment=p["CI_EXPERIMENT"], what=what, todo=2))
    if candidate_step.code != 0:
        output = step_output(ctx, candidate_step)
        crash = _crash(output)
        if crash:
            return CheckResult(False, _msg("crashed", what="validate_model.py", error=crash, todo=2))
        return CheckResult(
            False,
            _msg(
                "gate_failed_candidate",
                version=candidate,
                run=p["CANDIDATE_RUN"],
                r2=r2[candidate],
                min_r2=MIN_R2,
                champion_r2=r2[champion],
                code=candidate_step.code,
                tail=_tail(output),
            ),
        )
    tags = _tags(mlflow_client, name, candidate)
    problem = _check_gate_tags(tags, candidate, r2[candidate])
    if problem:
        return problem
    return CheckResult(
        True,
        _msg(
            "gate_ok",
            poor=poor,
            poor_r2=r2[poor],
            candidate=candidate,
            candidate_r2=r2[candidate],
            r2_tag=tags["r2"],
            latency_tag=tags["p95_latency_ms"],
        ),
    )


def _check_gate_strict(
    ctx: LabContext, name: str, poor: str, candidate: str, champion: str, r2: dict[str, float]
) -> CheckResult:
    """Run the gate on copies of the store: three cases it must fail, one it must pass."""
    p = ctx.params
    batch = good_batch(ctx)
    cases = [
        (
            poor,
            ("--min-r2", "0"),
            _msg("case_champion", version=poor, run=p["POOR_RUN"], r2=r2[poor], champion_r2=r2[champion]),
            "fix_champion",
        ),
        (candidate, ("--min-r2", "0.99"), _msg("case_r2", version=candidate, r2=r2[candidate]), "fix_r2"),
        (candidate, ("--max-latency-ms", "0.001"), _msg("case_latency", version=candidate), "fix_latency"),
        (candidate, (), "", ""),  # must pass
    ]
    with tempfile.TemporaryDirectory(prefix="lab05-gate-", ignore_cleanup_errors=True) as tmp:
        jobs, clients, before = [], [], []
        for i, (version, extra, _, _) in enumerate(cases):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            uri = store_copy(ctx, folder)
            copy_client = _prepare_copy(uri, name, champion, version, GATE_TAGS, {})
            clients.append(copy_client)
            before.append(_tags(copy_client, name, version))
            jobs.append(Job(_gate_args(name, version, batch, *extra), workdir(ctx), uri))
        outcomes = run_jobs(jobs)
        for (version, _, case, fix), outcome, copy_client, tags_before in zip(
            cases, outcomes, clients, before, strict=True
        ):
            crash = _crash(outcome.output)
            if crash:
                return CheckResult(False, _msg("crashed", what="validate_model.py", error=crash, todo=2))
            after = _tags(copy_client, name, version)
            if case:  # must fail, and change nothing
                if outcome.code == 0:
                    return CheckResult(False, _msg("gate_ignored_rule", case=case, fix=MESSAGES[fix]))
                changes = [
                    f"{k}={after.get(k)}"
                    for k in sorted(set(after) | set(tags_before))
                    if after.get(k) != tags_before.get(k)
                ]
                moved = _champion(copy_client, name)
                if moved != champion:
                    changes.append(_msg("champion_moved", version=moved))
                if changes:
                    return CheckResult(False, _msg("gate_changed", case=case, changes=", ".join(changes)))
            else:
                if outcome.code != 0:
                    return CheckResult(
                        False,
                        _msg(
                            "gate_failed_candidate",
                            version=version,
                            run=p["CANDIDATE_RUN"],
                            r2=r2[version],
                            min_r2=MIN_R2,
                            champion_r2=r2[champion],
                            code=outcome.code,
                            tail=_tail(outcome.output),
                        ),
                    )
                problem = _check_gate_tags(after, version, r2[version])
                if problem:
                    return problem
    return CheckResult(True, _msg("gate_strict_ok", candidate=candidate))


# --------------------------------------------------------------------------- TODO 3


def _test_names(path: Path) -> tuple[list[str], str | None]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError as exc:
        return [], _msg("at_line", line=exc.lineno, error=exc.msg)
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")], None


@functools.lru_cache(maxsize=1)
def flawed_models() -> dict[str, str]:
    """Three small models with one flaw each, saved in a temporary folder: flaw -> path.

    Linear models with plausible response times for typical readings (so that the given
    minimum-functionality test passes), except that one falls as the CPU rises, one falls as
    users grow, and one was saved without a signature (it raises on extra columns)."""
    import shutil

    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    root = Path(tempfile.mkdtemp(prefix="lab05-flawed-"))
    atexit.register(shutil.rmtree, root, True)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "cpu_usage": rng.uniform(5, 100, 300),
            "memory_usage": rng.uniform(15, 95, 300),
            "disk_io": rng.uniform(1, 200, 300),
            "network_latency": rng.uniform(2, 100, 300),
            "concurrent_users": rng.integers(10, 900, 300),
        }
    )
    sane = {
        "cpu_usage": 1.5,
        "memory_usage": 0.5,
        "disk_io": 0.3,
        "network_latency": 2.0,
        "concurrent_users": 0.2,
    }
    variants = {
        "cpu": ({**sane, "cpu_usage": -1.5}, 200.0, True),
        "users": ({**sane, "concurrent_users": -0.2}, 200.0, True),
        "columns": (sane, 40.0, False),
    }
    paths = {}
    for flaw, (coef, intercept, signed) in variants.items():
        y = intercept + sum(X[c] * w for c, w in coef.items())
        model = LinearRegression().fit(X, y)
        path = root / flaw
        signature = infer_signature(X, model.predict(X)) if signed else None
        mlflow.sklearn.save_model(model, str(path), signature=signature, pip_requirements=["scikit-learn"])
        paths[flaw] = str(path)
    return paths


def _junit(path: Path) -> dict[str, str]:
    """test name -> 'passed', 'failed' (failure or error) or 'skipped', from a JUnit XML report."""
    if not path.is_file():
        return {}
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
        results[case.get("name", "").split("[")[0]] = outcome
    return results


def _pytest_job(ctx: LabContext, model_uri: str, report: Path, ini: Path) -> Job:
    args = [
        "-m",
        "pytest",
        TEST_FILE,
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(ini),
        "--rootdir",
        str(workdir(ctx)),
        f"--junitxml={report}",
    ]
    return Job(args, workdir(ctx), ctx.tracking_uri, {"MODEL_URI": model_uri})


def check_tests(ctx: LabContext, strict: bool = False) -> CheckResult:
    missing = _need_file(ctx, TEST_FILE)
    if missing:
        return missing
    names, error = _test_names(workdir(ctx) / TEST_FILE)
    if error:
        return CheckResult(False, _msg("syntax_error", file=TEST_FILE, error=error))
    absent = [t for t in REQUIRED_TESTS if t not in names]
    if absent:
        return CheckResult(
            False,
            _msg(
                "no_tests",
                file=TEST_FILE,
                s="s" if len(absent) > 1 else "",
                missing=", ".join(absent),
                found=", ".join(names) or MESSAGES["none"],
            ),
        )
    versions, problem = _need_roles(ctx)
    if problem:
        return problem
    p = ctx.params
    candidate = str(versions["candidate"].version)
    if strict:
        return _check_tests_strict(ctx, candidate)
    step = _last(
        ci_steps(ctx), lambda s: s.runs("pytest") and s.env.get("MODEL_URI", "").endswith(f"/{candidate}")
    )
    if step is None:
        what = _msg(
            "run_on",
            script="pytest",
            target=_msg("target_version", version=candidate, run=p["CANDIDATE_RUN"]),
        )
        return CheckResult(False, _msg("not_run", experiment=p["CI_EXPERIMENT"], what=what, todo=3))
    if step.code != 0:
        output = step_output(ctx, step)
        failed = [
            line.split(" ")[0]
            for line in output.splitlines()
            if " FAILED" in line or line.startswith("FAILED")
        ]
        return CheckResult(
            False,
            _msg(
                "tests_fail_candidate",
                version=candidate,
                run=p["CANDIDATE_RUN"],
                failed=", ".join(failed) or _msg("exit_code", code=step.code),
                detail=_tail(output),
            ),
        )
    return CheckResult(True, _msg("tests_ok", names=", ".join(REQUIRED_TESTS), version=candidate))


def _check_tests_strict(ctx: LabContext, candidate: str) -> CheckResult:
    p = ctx.params
    models = flawed_models()
    targets = {"candidate": f"models:/{p['MODEL_NAME']}/{candidate}", **models}
    expected_failure = {
        "cpu": "test_directional_cpu",
        "users": "test_directional_users",
        "columns": "test_invariance_to_extra_columns",
    }
    with tempfile.TemporaryDirectory(prefix="lab05-tests-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        reports = {key: Path(tmp) / f"{key}.xml" for key in targets}
        outcomes = dict(
            zip(
                targets,
                run_jobs([_pytest_job(ctx, uri, reports[key], ini) for key, uri in targets.items()]),
                strict=True,
            )
        )
        results = {key: _junit(reports[key]) for key in targets}
    good, good_results = outcomes["candidate"], results["candidate"]
    if not good_results:
        return CheckResult(
            False, _msg("tests_not_collected", file=TEST_FILE, code=good.code, tail=_tail(good.output, 3))
        )
    failed = [t for t, outcome in good_results.items() if outcome != "passed"]
    if good.code != 0 or failed:
        return CheckResult(
            False,
            _msg(
                "tests_fail_candidate",
                version=candidate,
                run=p["CANDIDATE_RUN"],
                failed=", ".join(failed) or _msg("exit_code", code=good.code),
                detail=_tail(good.output),
            ),
        )
    for flaw, test in expected_failure.items():
        if results[flaw].get(test) == "passed":
            return CheckResult(
                False,
                _msg(
                    "test_missed_flaw", test=test, flaw=MESSAGES[f"flaw_{flaw}"], fix=MESSAGES[f"fix_{flaw}"]
                ),
            )
    return CheckResult(True, _msg("tests_strict_ok", version=candidate))


# --------------------------------------------------------------------------- TODO 4


def _promote_args(name: str, version: str, reason: str) -> list[str]:
    return [PROMOTE_SCRIPT, "--model-name", name, "--version", str(version), "--reason", reason]


def _check_promotion_record(tags: dict[str, str], version: str, reason: str | None) -> CheckResult | None:
    absent = [t for t in PROMOTION_TAGS if not tags.get(t)]
    if absent:
        found = _pairs(tags)
        return CheckResult(
            False,
            _msg(
                "promotion_untagged",
                version=version,
                s="s" if len(absent) > 1 else "",
                missing=", ".join(absent),
                found=found,
            ),
        )
    try:
        datetime.fromisoformat(tags["promoted_at"].replace("Z", "+00:00"))
    except ValueError:
        return CheckResult(False, _msg("bad_promoted_at", found=tags["promoted_at"]))
    if reason is not None and tags["promotion_reason"] != reason:
        return CheckResult(False, _msg("bad_reason", found=tags["promotion_reason"], expected=reason))
    return None


def check_promote(ctx: LabContext, strict: bool = False) -> CheckResult:
    missing = _need_file(ctx, PROMOTE_SCRIPT)
    if missing:
        return missing
    versions, problem = _need_roles(ctx)
    if problem:
        return problem
    p = ctx.params
    name = p["MODEL_NAME"]
    poor, candidate, champion = (str(versions[r].version) for r in ("poor", "candidate", "champion"))
    if strict:
        return _check_promote_strict(ctx, name, poor, candidate, champion)
    mlflow_client = client(ctx)
    steps = ci_steps(ctx)
    poor_step = _last(steps, lambda s: s.runs("promote_model.py") and s.option("--version") == poor)
    if poor_step is None:
        what = _msg(
            "run_on",
            script="promote_model.py",
            target=_msg("target_version", version=poor, run=p["POOR_RUN"]),
        )
        return CheckResult(False, _msg("not_run", experiment=p["CI_EXPERIMENT"], what=what, todo=4))
    poor_tags = _tags(mlflow_client, name, poor)
    shown = _pairs(poor_tags)
    if poor_step.code == 0:
        return CheckResult(False, _msg("promoted_poor", version=poor, run=p["POOR_RUN"], code=0, tags=shown))
    crash = _crash(step_output(ctx, poor_step))
    if crash:
        return CheckResult(False, _msg("crashed", what="promote_model.py", error=crash, todo=4))
    if _champion(mlflow_client, name) == poor:
        return CheckResult(False, _msg("poor_is_champion", version=poor, run=p["POOR_RUN"]))
    recorded = [t for t in PROMOTION_TAGS if t in poor_tags]
    if recorded:
        return CheckResult(
            False, _msg("poor_tagged", version=poor, run=p["POOR_RUN"], tags=", ".join(recorded))
        )
    candidate_step = _last(steps, lambda s: s.runs("promote_model.py") and s.option("--version") == candidate)
    if candidate_step is None:
        what = _msg(
            "run_on",
            script="promote_model.py",
            target=_msg("target_version", version=candidate, run=p["CANDIDATE_RUN"]),
        )
        return CheckResult(False, _msg("not_run", experiment=p["CI_EXPERIMENT"], what=what, todo=4))
    tags = _tags(mlflow_client, name, candidate)
    if tags.get("validation_passed") != "true":
        if candidate_step.code == 0:
            shown = _pairs(tags)
            return CheckResult(
                False, _msg("promoted_poor", version=candidate, run=p["CANDIDATE_RUN"], code=0, tags=shown)
            )
        return CheckResult(True, _msg("promote_refusal_only", poor=poor, candidate=candidate))
    if candidate_step.code != 0:
        output = step_output(ctx, candidate_step)
        crash = _crash(output)
        if crash:
            return CheckResult(False, _msg("crashed", what="promote_model.py", error=crash, todo=4))
        return CheckResult(
            False, _msg("promote_failed", version=candidate, code=candidate_step.code, tail=_tail(output))
        )
    now = _champion(mlflow_client, name)
    if now != candidate:
        return CheckResult(False, _msg("alias_not_moved", version=candidate, champion=now))
    problem = _check_promotion_record(tags, candidate, candidate_step.option("--reason"))
    if problem:
        return problem
    return CheckResult(
        True, _msg("promote_ok", poor=poor, candidate=candidate, tags=", ".join(PROMOTION_TAGS))
    )


def _check_promote_strict(
    ctx: LabContext, name: str, poor: str, candidate: str, champion: str
) -> CheckResult:
    """Run the promotion on copies of the store: two versions it must refuse, one to promote."""
    p = ctx.params
    run_of = {poor: p["POOR_RUN"], candidate: p["CANDIDATE_RUN"]}
    validated = {"validation_passed": "true", "r2": "0.83", "p95_latency_ms": "9.9"}
    cases = [
        (poor, {}, "untagged"),
        (candidate, {"validation_passed": "false"}, "false"),
        (candidate, validated, ""),  # must be promoted
    ]
    with tempfile.TemporaryDirectory(prefix="lab05-promote-", ignore_cleanup_errors=True) as tmp:
        jobs, clients, before = [], [], []
        for i, (version, add, _) in enumerate(cases):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            uri = store_copy(ctx, folder)
            remove = GATE_TAGS + PROMOTION_TAGS + ("previous_champion",)
            copy_client = _prepare_copy(uri, name, champion, version, remove, add)
            clients.append(copy_client)
            before.append(_tags(copy_client, name, version))
            jobs.append(Job(_promote_args(name, version, PROMOTION_REASON), workdir(ctx), uri))
        outcomes = run_jobs(jobs)
        for (version, _, refusal), outcome, copy_client, tags_before in zip(
            cases, outcomes, clients, before, strict=True
        ):
            crash = _crash(outcome.output)
            if crash:
                return CheckResult(False, _msg("crashed", what="promote_model.py", error=crash, todo=4))
            after = _tags(copy_client, name, version)
            now = _champion(copy_client, name)
            if refusal == "untagged":
                shown = _pairs(tags_before)
                if outcome.code == 0 or now != champion:
                    return CheckResult(
                        False,
                        _msg(
                            "promoted_poor",
                            version=version,
                            run=run_of[version],
                            code=outcome.code,
                            tags=shown,
                        ),
                    )
            elif refusal == "false":
                if outcome.code == 0 or now != champion:
                    return CheckResult(False, _msg("promote_refused_false", version=version))
            else:
                if outcome.code != 0:
                    return CheckResult(
                        False,
                        _msg(
                            "promote_failed", version=version, code=outcome.code, tail=_tail(outcome.output)
                        ),
                    )
                if now != version:
                    return CheckResult(False, _msg("alias_not_moved", version=version, champion=now))
                problem = _check_promotion_record(after, version, PROMOTION_REASON)
                if problem:
                    return problem
                continue
            recorded = [t for t in PROMOTION_TAGS if t in after]
            if recorded:
                return CheckResult(
                    False, _msg("poor_tagged", version=version, run=run_of[version], tags=", ".join(recorded))
                )
    return CheckResult(True, _msg("promote_strict_ok"))


# --------------------------------------------------------------------------- TODO 5


def _events(doc: dict[Any, Any]) -> list[str]:
    on = doc.get("on", doc.get(True))  # YAML 1.1 (PyYAML) reads the key `on` as True
    if isinstance(on, str):
        return [on]
    if isinstance(on, list):
        return [str(e) for e in on]
    if isinstance(on, dict):
        return [str(e) for e in on]
    return []


def _needs(job: Any) -> list[str]:
    needs = job.get("needs", []) if isinstance(job, dict) else []
    return [needs] if isinstance(needs, str) else [str(n) for n in needs or []]


def workflow_problem(doc: Any, file: str) -> CheckResult | None:
    """What is wrong with the workflow's structure (schema apart), or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        return CheckResult(False, _msg("workflow_not_mapping", file=file))
    events = _events(doc)
    if "push" not in events:
        return CheckResult(
            False, _msg("workflow_no_push", file=file, found=", ".join(events) or MESSAGES["none"])
        )
    jobs = doc["jobs"]
    # Where each command runs: (job, step index, position in the step's script).
    where: dict[str, list[tuple[str, int, int]]] = {what: [] for what in _STEP_PATTERNS}
    for job_id, job in jobs.items():
        steps = job.get("steps", []) if isinstance(job, dict) else []
        for index, step in enumerate(steps or []):
            command = str(step.get("run", "")) if isinstance(step, dict) else ""
            for what, (pattern, _) in _STEP_PATTERNS.items():
                if pattern in command:
                    where[what].append((str(job_id), index, command.index(pattern)))
    for what, found in where.items():
        if not found:
            return CheckResult(
                False,
                _msg("workflow_missing", file=file, missing=MESSAGES[what], example=_STEP_PATTERNS[what][1]),
            )

    def ancestors(job_id: str, seen: frozenset[str] = frozenset()) -> set[str]:
        direct = set(_needs(jobs.get(job_id)))
        result = set(direct)
        for parent in direct - seen:
            result |= ancestors(parent, seen | {job_id})
        return result

    def before(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
        return (a[0] == b[0] and a[1:] < b[1:]) or a[0] in ancestors(b[0])

    for earlier, later in itertools.pairwise(_STEP_PATTERNS):
        if not any(before(a, b) for a in where[earlier] for b in where[later]):
            return CheckResult(
                False, _msg("workflow_order", file=file, earlier=MESSAGES[earlier], later=MESSAGES[later])
            )
    return None


def _schema_error(output: str) -> str:
    """The most useful line of check-jsonschema's report: its best match, else the first error."""
    lines = [line.strip() for line in _ANSI.sub("", output).splitlines() if line.strip()]
    if "Best Match:" in lines[:-1]:
        return lines[lines.index("Best Match:") + 1]
    errors = [line for line in lines if "::$" in line]
    return (errors[0] if errors else _tail(output))[:300]


def check_workflow(ctx: LabContext, strict: bool = False) -> CheckResult:
    missing = _need_file(ctx, WORKFLOW)
    if missing:
        return missing
    import yaml

    path = workdir(ctx) / WORKFLOW
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = _msg("line_suffix", line=mark.line + 1) if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return CheckResult(False, _msg("workflow_not_yaml", file=WORKFLOW, error=f"{problem}{where}"))
    if strict:
        args = ["-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", WORKFLOW]
        [outcome] = run_jobs([Job(args, workdir(ctx), ctx.tracking_uri)])
        code, output = outcome.code, outcome.output
    else:
        step = _last(ci_steps(ctx), lambda s: s.runs("check_jsonschema") and s.runs("model-ci.yml"))
        if step is None:
            what = _msg("run_on", script="check_jsonschema", target=WORKFLOW)
            return CheckResult(
                False, _msg("not_run", experiment=ctx.params["CI_EXPERIMENT"], what=what, todo=5)
            )
        code, output = step.code, step_output(ctx, step)
    if code != 0:
        return CheckResult(False, _msg("workflow_invalid", file=WORKFLOW, details=_schema_error(output)))
    return workflow_problem(doc, WORKFLOW) or CheckResult(True, _msg("workflow_ok", file=WORKFLOW))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, check).
CHECKS: dict[str, tuple[int, Check]] = {
    "check_todo1_data": (1, check_data),
    "check_todo2_gate": (2, check_gate),
    "check_todo3_tests": (3, check_tests),
    "check_todo4_promote": (4, check_promote),
    "check_todo5_workflow": (5, check_workflow),
}


self_check = self_check_for(CHECKS, PARAMS)
