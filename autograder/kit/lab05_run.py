"""``python -m autograder.kit.lab05_run MODE < job.json``: Lab 05's programs, run for the grader.

The grader runs this inside the submission's sandbox (``SandboxRunner.run_kit``), which
bounds its time and output; it never runs a student's program in its own process.

* ``exec``: become ``python *args`` with the job's environment (the store copy, MODEL_URI),
  in the submission's folder: the exit code and output are the program's own.
* ``workflow``: dry-run the workflow file the way GitHub Actions runs it (jobs ordered by
  ``needs``, steps in order, a failing step stops its job and the jobs that need it), with a
  stand-in ``python``/``pytest`` that records which program each step calls and fails the one
  a scenario says; print what ran, in order, as one JSON line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: What the stand-in records for a command, by what its arguments name (the last match wins).
_KINDS = (("validate_data.py", "data"), ("pytest", "tests"), ("test_model_behaviour", "tests"),
          ("validate_model.py", "gate"), ("promote_model.py", "promote"))
#: The scenarios of a dry run: which program fails (None: none).
SCENARIOS = {"pass": None, "fail_tests": "tests", "fail_gate": "gate"}
STEP_TIMEOUT = 30
_STAND_IN = """#!/bin/bash
kind=other
for a in "$0" "$@"; do
  case "$a" in
{cases}
  esac
done
echo "$kind" >> "$LAB05_DRY_LOG"
[ "$kind" = "$LAB05_DRY_FAIL" ] && exit 1
exit 0
"""
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _events(doc: dict[Any, Any]) -> list[str]:
    on = doc.get("on", doc.get(True))  # YAML 1.1 (PyYAML) reads the key `on` as True
    if isinstance(on, str):
        return [on]
    if isinstance(on, list | dict):
        return [str(e) for e in on]
    return []


def _needs(job: Any) -> list[str]:
    needs = job.get("needs", []) if isinstance(job, dict) else []
    return [needs] if isinstance(needs, str) else [str(n) for n in needs or []] if isinstance(needs, list) else []


def _runs_anyway(item: Any) -> bool:
    condition = str(item.get("if", "")) if isinstance(item, dict) else ""
    return any(word in condition for word in ("always()", "failure()", "cancelled()"))


def _expand(text: Any, env: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        if expr.startswith("env."):
            return env.get(expr[4:], "")
        if expr.startswith("vars."):
            return "1"
        return "dry-run"

    return _EXPR.sub(value, str(text))


def _env(block: Any, env: dict[str, str]) -> dict[str, str]:
    if not isinstance(block, dict):
        return env
    return {**env, **{str(k): _expand(v, env) for k, v in block.items()}}


def _run_scenario(doc: dict[Any, Any], folder: Path, tmp: Path, fail: str | None) -> list[str]:
    log = tmp / "log"
    log.write_text("", encoding="utf-8")
    base = {**os.environ, "PATH": f"{tmp / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "LAB05_DRY_LOG": str(log), "LAB05_DRY_FAIL": fail or "", "GITHUB_ACTIONS": "true"}
    base = _env(doc.get("env"), base)
    jobs = {str(k): v for k, v in doc["jobs"].items()}
    state: dict[str, bool] = {}  # job -> succeeded
    progress = True
    while progress:
        progress = False
        for job_id, job in jobs.items():
            needs = _needs(job)
            if job_id in state or any(n not in state for n in needs):
                continue
            progress = True
            if not all(state[n] for n in needs) and not _runs_anyway(job):
                state[job_id] = False
                continue
            state[job_id] = _run_job(job, folder, tmp, _env(job.get("env") if isinstance(job, dict) else None, base))
    return [line for line in log.read_text(encoding="utf-8").split() if line]


def _run_job(job: Any, folder: Path, tmp: Path, env: dict[str, str]) -> bool:
    ok = True
    steps = job.get("steps") if isinstance(job, dict) else None
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, dict) or "run" not in step or (not ok and not _runs_anyway(step)):
            continue
        step_env = _env(step.get("env"), env)
        script = tmp / "step.sh"
        script.write_text(_expand(step["run"], step_env), encoding="utf-8")
        try:
            code = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=folder,
                                  env=step_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=STEP_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            code = 124
        if code != 0 and str(step.get("continue-on-error", "")).lower() != "true":
            ok = False
    return ok


def dry_run(workflow: Path, folder: Path | None = None) -> dict[str, Any]:
    """What each scenario's dry run of ``workflow`` ran, in order: ``{"events": [...],
    "scenarios": {name: ["tests", "gate", ...]}}``, or ``{"error": ..., "detail": ...}``."""
    import yaml

    folder = folder or Path.cwd()
    try:
        doc = yaml.safe_load((folder / workflow).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return {"error": "yaml", "detail": f"{problem}{where}"}
    except (OSError, ValueError) as exc:
        return {"error": "unreadable", "detail": str(exc)[:200]}
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        return {"error": "not_mapping", "detail": ""}
    with tempfile.TemporaryDirectory(prefix="dry-run-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "bin").mkdir()
        cases = "\n".join(f"    *{pattern}*) kind={kind};;" for pattern, kind in _KINDS)
        for name in ("python", "python3", "pytest", "pip", "pip3"):
            stand_in = tmp / "bin" / name
            stand_in.write_text(_STAND_IN.format(cases=cases), encoding="utf-8")
            stand_in.chmod(0o755)
        scenarios = {name: _run_scenario(doc, folder, tmp, fail) for name, fail in SCENARIOS.items()}
    return {"events": _events(doc), "scenarios": scenarios}


def main() -> None:
    mode = sys.argv[1]
    job = json.load(sys.stdin)
    if mode == "exec":
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "NO_COLOR": "1", **job.get("env", {})}
        os.execve(sys.executable, [sys.executable, *job["args"]], env)
    elif mode == "workflow":
        answer = dry_run(Path(job["file"]))
        sys.stdout.write("\n" + json.dumps(answer) + "\n")
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
