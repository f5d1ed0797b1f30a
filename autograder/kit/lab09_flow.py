"""Lab 09, Task 6: a workflow file run with the course's runner against *probe* operations.

Whether a scheduled retraining workflow is wired right (drift check, then retrain, release gate,
promote, and roll back only when the gate fails after a promotion; each step with the right
user's credentials and the previous step's outputs) does not depend on how well the model
trains. So the check runs the student's file with ``autograder.kit.workflow`` in fresh
workspaces where ``ops.py`` is a probe: each call records its command, arguments and the user it
would log in as, and answers as the scenario says (no drift; drift and a release that holds;
drift and a release the gate rejects). The notebook's self-check runs this in a subprocess; the
grader runs it inside the submission's sandbox (``lab09_probe``).
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from typing import Any

WORKFLOW_FILE = "retrain.yml"
STEP_TIMEOUT = 30.0
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "USER", "LOGNAME")
SCENARIOS = {
    "quiet": {"drifted": "false", "gate_fails": False},
    "release": {"drifted": "true", "gate_fails": False},
    "rollback": {"drifted": "true", "gate_fails": True},
}
PROBE = r'''
"""A stand-in for ops.py: records each call and answers as the scenario says."""
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
scenario = json.loads((HERE / "scenario.json").read_text())
command, args = sys.argv[1], sys.argv[2:]
password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
who = {scenario["ds_password"]: "ds", scenario["reviewer_password"]: "reviewer"}.get(password, "none" if not password else "other")
with open(HERE / "calls.jsonl", "a") as f:
    f.write(json.dumps({"command": command, "args": args, "user": os.environ.get("MLFLOW_TRACKING_USERNAME"),
                        "password": who}) + "\n")
outputs = {"drift": {"drifted": scenario["drifted"]}, "retrain": {"run_id": scenario["run_id"]},
           "promote": {"version": scenario["version"], "previous": scenario["previous"]}}.get(command, {})
with open(os.environ["GITHUB_OUTPUT"], "a") as f:
    f.write("".join(f"{k}={v}\n" for k, v in outputs.items()))
if command == "verify" and scenario["gate_fails"]:
    sys.exit("the release gate failed")
'''


def run(workflow: Path, work: Path, users: dict[str, str]) -> dict[str, Any]:
    """Every scenario's calls, and the workflow's triggers and cron lines. ``users``: the data
    scientist's and the reviewer's names (``ds``, ``reviewer``)."""
    import os

    from autograder.kit import workflow as runner

    try:
        doc = runner.load(workflow)
    except runner.WorkflowError as exc:
        return {"error": str(exc)[:300]}
    on = runner.triggers(doc)
    schedule = on.get("schedule")
    cron = [str(s.get("cron")) for s in schedule if isinstance(s, dict)] if isinstance(schedule, list) else []
    found: dict[str, Any] = {"events": sorted(on), "cron": cron, "scenarios": {}}
    if "schedule" not in on:
        return found
    base_env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    text = workflow.read_text(encoding="utf-8")
    for name, scenario in SCENARIOS.items():
        space = work / f"flow-{name}"
        shutil.rmtree(space, ignore_errors=True)
        folder = space / "lab09-governance"
        folder.mkdir(parents=True)
        facts = {
            **scenario,
            "ds_password": secrets.token_hex(8),
            "reviewer_password": secrets.token_hex(8),
            "run_id": f"run{secrets.token_hex(6)}",
            "version": str(10 + secrets.randbelow(80)),
            "previous": str(1 + secrets.randbelow(9)),
            "batch": f"batches/{secrets.token_hex(4)}.csv",
            "max_rmse": str(20 + secrets.randbelow(60)),
        }
        (folder / "scenario.json").write_text(json.dumps(facts), encoding="utf-8")
        (folder / "ops.py").write_text(PROBE, encoding="utf-8")
        (folder / WORKFLOW_FILE).write_text(text, encoding="utf-8")
        try:
            result = runner.Runner(
                doc,
                space,
                event="schedule",
                echo=None,
                step_timeout=STEP_TIMEOUT,
                base_env=base_env,
                env={},
                vars={
                    "BATCH": facts["batch"],
                    "MAX_RMSE": facts["max_rmse"],
                    "DS_USER": users["ds"],
                    "REVIEWER_USER": users["reviewer"],
                },
                secrets={
                    "DS_PASSWORD": facts["ds_password"],
                    "REVIEWER_PASSWORD": facts["reviewer_password"],
                },
            ).run()
            status = result.status
        except runner.WorkflowError as exc:
            status = f"error: {str(exc)[:200]}"
        calls_file = folder / "calls.jsonl"
        calls = (
            [json.loads(line) for line in calls_file.read_text().splitlines()[:50]]
            if calls_file.is_file()
            else []
        )
        found["scenarios"][name] = {
            "status": status,
            "calls": calls,
            "facts": {k: v for k, v in facts.items() if not k.endswith("password")},
        }
    return found


SCENARIO_WORDS = {
    "quiet": "no drift",
    "release": "drift, and the release gate passes",
    "rollback": "drift, and the release gate fails after the promotion",
}
#: Who each command must log in as: the data scientist trains, the reviewer promotes and rolls
#: back; the drift check needs nobody; the gate reads the registry as either.
LOGINS = {
    "drift": None,
    "retrain": ("ds",),
    "promote": ("reviewer",),
    "verify": ("ds", "reviewer"),
    "rollback": ("reviewer",),
}


def expected_calls(name: str, facts: dict[str, Any]) -> list[tuple[str, dict[str, str | None]]]:
    """The calls a right workflow makes in a scenario, in order: (command, options); None: any value."""
    calls: list[tuple[str, dict[str, str | None]]] = [("drift", {"--batch": facts["batch"]})]
    if name == "quiet":
        return calls
    calls += [
        ("retrain", {"--batch": facts["batch"]}),
        ("promote", {"--run": facts["run_id"]}),
        ("verify", {"--version": facts["version"], "--max-rmse": facts["max_rmse"]}),
    ]
    if name == "rollback":
        calls.append(("rollback", {"--to": facts["previous"], "--reason": None}))
    return calls


def options(args: list[str]) -> dict[str, str]:
    """``--name value`` and ``--name=value`` pairs of a command line."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = str(args[i])
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            found[key] = value
        elif arg.startswith("--") and i + 1 < len(args):
            found[arg] = str(args[i + 1])
            i += 1
        i += 1
    return found
