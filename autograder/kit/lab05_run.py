"""``python -m autograder.kit.lab05_run MODE < job.json``: Lab 05's programs, run for the grader.

The grader runs this inside the submission's sandbox (``SandboxRunner.run_kit``), which
bounds its time and output; it never runs a student's program in its own process.

* ``exec``: become ``python *args`` with the job's environment (the store copy, MODEL_URI),
  in the submission's folder: the exit code and output are the program's own.
* ``workflow``: check the workflow file against GitHub's schema, then run it for real with the
  course's workflow runner (``autograder.kit.workflow``: bash steps, ``needs``, ``if:``,
  ``continue-on-error`` ...) in fresh workspaces where the pipeline's four programs are
  *probes*: each says that it ran, with its arguments and environment, and passes or fails as
  the scenario says (everything passes; the data validation fails; the tests fail; the gate
  fails). So TODO 5 is judged on what its steps really ran, apart from how well TODOs 1-4
  work. Print one line: the job's nonce, then the answer as JSON.

The answer cannot be written by the workflow's steps: they are this process's children, with
their own output pipes, and this process makes itself non-dumpable first, so they cannot open
its output through /proc; killing it leaves no answer (the check fails), and a line without
the nonce, which the steps never see, is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: The pipeline's programs, in the order a workflow must run them, and the probe that stands in
#: for each (its path relative to the workspace).
KINDS = ("data", "tests", "gate", "promote")
PROBES = {"data": "pipeline/validate_data.py", "tests": "pipeline/test_model_behaviour.py",
          "gate": "pipeline/validate_model.py", "promote": "pipeline/promote_model.py"}
#: Scenario -> the program that fails in it (None: none).
SCENARIOS = {"pass": None, "fail_data": "data", "fail_tests": "tests", "fail_gate": "gate"}
MARK = "::lab05-probe::"
STEP_TIMEOUT = 30.0  # seconds a step may take in a probe run
#: What an unanswered TODO cell leaves in the file it writes (nbgrader's stub).
STUB = "raise NotImplementedError()"
_SCRIPT_PROBE = """import json, os, sys
print({mark!r} + json.dumps({{"kind": {kind!r}, "token": {token!r}, "args": sys.argv[1:],
      "env": {{k: os.environ.get(k) for k in ("MODEL_URI", "MLFLOW_TRACKING_URI")}}}}), flush=True)
sys.exit({code})
"""
_TEST_PROBE = """import atexit, json, os, sys


def _record():  # after pytest has put the real output back
    print({mark!r} + json.dumps({{"kind": "tests", "token": {token!r}, "args": sys.argv[1:],
          "env": {{k: os.environ.get(k) for k in ("MODEL_URI", "MLFLOW_TRACKING_URI")}}}}), flush=True)


atexit.register(_record)


def test_probe():
    assert {passes}, "this scenario's tests fail"
"""
#: The environment of a probe run's steps: nothing of the caller's (no MLFLOW_TRACKING_URI that
#: a workflow would get without passing its secret).
_KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "USER", "LOGNAME")


def _probe_workspace(root: Path, workflow_text: str, workflow_rel: str, failing: str | None, token: str,
                     batch: str) -> Path:
    root.mkdir(parents=True)
    (root / "pipeline").mkdir()
    (root / workflow_rel).parent.mkdir(parents=True, exist_ok=True)
    (root / workflow_rel).write_text(workflow_text, encoding="utf-8")
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # the rootdir: no conftest from above
    (root / batch).parent.mkdir(parents=True, exist_ok=True)
    (root / batch).write_text("cpu_usage,memory_usage\n1,2\n", encoding="utf-8")
    for kind, rel in PROBES.items():
        if kind == "tests":
            source = _TEST_PROBE.format(mark=MARK, token=token, passes=failing != "tests")
        else:
            source = _SCRIPT_PROBE.format(mark=MARK, kind=kind, token=token, code=1 if failing == kind else 0)
        (root / rel).write_text(source, encoding="utf-8")
    return root


def _records(output: str, token: str) -> list[dict[str, Any]]:
    found = []
    for line in output.splitlines():
        at = line.find(MARK)
        if at < 0:
            continue
        try:
            record = json.loads(line[at + len(MARK):])
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("token") == token and record.get("kind") in KINDS:
            found.append({"kind": record["kind"], "args": [str(a) for a in record.get("args") or []],
                          "env": {str(k): v for k, v in (record.get("env") or {}).items()}})
    return found


def probe_run(workflow: Path, model_name: str, version: str, batch: str, tracking_uri: str) -> dict[str, Any]:
    """Run ``workflow`` in each scenario with probes for the programs. Returns ``{"events": [...],
    "scenarios": {name: {"status", "ran": [{kind, args, env, job, step}], "steps": [...]}}}``,
    or ``{"error": "todo" | "yaml" | "not_workflow" | "unreadable" | "run", "detail": ...}``."""
    from autograder.kit import workflow as runner

    try:
        text = Path(workflow).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {"error": "unreadable", "detail": str(exc)[:200]}
    if STUB in text:
        return {"error": "todo", "detail": ""}
    try:
        doc = runner.load(Path(workflow))
    except runner.WorkflowError as exc:
        kind = "yaml" if "not valid YAML" in str(exc) else "not_workflow"
        detail = str(exc).split("is not valid YAML: ", 1)[-1]
        return {"error": kind, "detail": detail[:300]}
    events = list(runner.triggers(doc))
    answer: dict[str, Any] = {"events": events, "scenarios": {}}
    if "push" not in events:
        return answer
    base_env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
    rel = Path(workflow).as_posix() if not Path(workflow).is_absolute() else "pipeline/model-ci.yml"
    with tempfile.TemporaryDirectory(prefix="lab05-probe-") as tmp:
        for scenario, failing in SCENARIOS.items():
            token = secrets.token_hex(8)
            root = _probe_workspace(Path(tmp) / scenario, text, rel, failing, token, batch)
            try:
                result = runner.Runner(doc, root, event="push", vars={"CANDIDATE_VERSION": version, "BATCH": batch},
                                       secrets={"MLFLOW_TRACKING_URI": tracking_uri}, env={}, base_env=base_env,
                                       echo=None, step_timeout=STEP_TIMEOUT, name="model-ci").run()
            except runner.WorkflowError as exc:
                return {"error": "run", "detail": str(exc)[:300]}
            ran, steps = [], []
            for job in result.jobs:
                if not job.steps and job.reason:
                    steps.append({"job": job.id, "step": "", "status": job.status, "code": None,
                                  "reason": job.reason, "tail": ""})
                for step in job.steps:
                    for record in _records(step.output, token):
                        ran.append({**record, "job": job.id, "step": step.name})
                    tail = [line for line in step.output.splitlines() if MARK not in line][-3:]
                    steps.append({"job": job.id, "step": step.name, "status": step.status, "code": step.code,
                                  "reason": step.reason, "tail": " | ".join(tail)[-300:]})
            answer["scenarios"][scenario] = {"status": result.status, "ran": ran, "steps": steps}
    return answer


def _not_dumpable() -> None:
    """Children of this process (the workflow's steps) cannot open its files through /proc."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4


def schema_check(workflow: Path) -> dict[str, Any]:
    """check-jsonschema against GitHub's workflow schema (vendored in the package: offline)."""
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(workflow)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})
    return {"code": done.returncode, "output": (done.stdout + done.stderr)[-6000:]}


def main() -> None:
    mode = sys.argv[1]
    if mode == "workflow":
        _not_dumpable()
    job = json.load(sys.stdin)
    if mode == "exec":
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "NO_COLOR": "1", **job.get("env", {})}
        os.execve(sys.executable, [sys.executable, *job["args"]], env)
    elif mode == "workflow":
        path = Path(job["file"])
        answer: dict[str, Any] = {"schema": schema_check(path) if path.is_file() else None}
        answer["run"] = probe_run(path, job["model_name"], job["version"], job["batch"], job["tracking_uri"])
        sys.stdout.write("\n" + job["nonce"] + json.dumps(answer) + "\n")
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
