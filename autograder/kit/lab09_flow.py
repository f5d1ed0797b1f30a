"""Lab 09b, Task 3: a workflow file run with the course's runner against *probe* operations.

Whether a scheduled retraining workflow is wired right (drift check, then retrain, release gate,
promote, and roll back only when the gate fails after a promotion; each step with the right
user's credentials and the previous step's outputs) does not depend on how well the model
trains. So the check runs the student's file with ``autograder.kit.workflow`` in fresh
workspaces where ``ops.py`` is a probe: each call records its command, arguments and the user it
would log in as, and answers as the scenario says (no drift; drift and a release that holds;
drift and a release the gate rejects). The notebook's self-check runs this in a subprocess; the
grader runs it inside the submission's sandbox (``lab09_probe``).

The record of calls is not the probe's word: the steps can read the probe and write any file it
writes. On Linux the probe holds nothing: it asks this process over a Unix socket
(``autograder.kit.peers``), which identifies the caller from the kernel and /proc (a Python
running the workspace's ``ops.py``, its arguments, the user and password in its environment),
records the call and sends the scenario's answer (the step outputs, or the gate's failure). The
scenario's facts never reach a file. A step that writes the record, asks from a script of its
own or runs a copy of the probe records nothing. Elsewhere (a self-check on macOS or Windows) the
probe records its calls in a file, as a self-check may trust.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from autograder.kit import peers

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


#: The environment variable that tells the probe where this process listens.
SOCKET_ENV = "LAB09_OPS_SOCKET"
PROBE_ASKS = r'''
"""A stand-in for ops.py: asks the process running the workflow what this call answers."""
import json
import os
import socket
import sys

with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.connect(os.environ["LAB09_OPS_SOCKET"])
    s.sendall(b"?")
    reply = b"".join(iter(lambda: s.recv(4096), b""))
answer = json.loads(reply or b'{"exit": "no answer"}')
with open(os.environ["GITHUB_OUTPUT"], "a") as f:
    f.write("".join(f"{k}={v}\n" for k, v in answer.get("outputs", {}).items()))
if answer.get("exit"):
    sys.exit(answer["exit"])
'''


def _outputs(command: str, facts: dict[str, Any]) -> dict[str, str]:
    """What ``ops.py <command>`` writes to the step's outputs in a scenario."""
    return {
        "drift": {"drifted": facts["drifted"]},
        "retrain": {"run_id": facts["run_id"]},
        "promote": {"version": facts["version"], "previous": facts["previous"]},
    }.get(command, {})


def _call(peer: peers.Peer | None, ops: Path, facts: dict[str, Any]) -> dict[str, Any] | None:
    """The call a caller makes, as the kernel and /proc show it: a Python running ``ops`` with a
    command; None for anything else (``python -c``, a copy of the probe, another program)."""
    if peer is None or not peer.is_python():
        return None
    args = peers.script_args(peer.argv)
    if len(args) < 2 or args[0] in ("-c", "-m") or not peers.is_file(args[0], peer.cwd, ops):
        return None
    password = peer.environ.get("MLFLOW_TRACKING_PASSWORD")
    who = {facts["ds_password"]: "ds", facts["reviewer_password"]: "reviewer"}
    return {
        "command": args[1],
        "args": args[2:],
        "user": peer.environ.get("MLFLOW_TRACKING_USERNAME"),
        "password": who.get(password or "", "none" if not password else "other"),
    }


class _Ops(peers.Listener):
    """Records the calls of one scenario and answers each as the scenario says."""

    def __init__(self, path: Path, ops: Path, facts: dict[str, Any]) -> None:
        self.ops, self.facts = ops, facts
        self.calls: list[dict[str, Any]] = []
        super().__init__(path, self._answer)

    def _answer(self, peer: peers.Peer | None) -> bytes:
        call = _call(peer, self.ops, self.facts)
        if call is None:
            return json.dumps({"exit": "not a run of ops.py"}).encode()
        if len(self.calls) < 50:
            self.calls.append(call)
        fails = call["command"] == "verify" and self.facts["gate_fails"]
        answer = {
            "outputs": _outputs(call["command"], self.facts),
            "exit": "the release gate failed" if fails else None,
        }
        return json.dumps(answer).encode()


def run(workflow: Path, work: Path, users: dict[str, str]) -> dict[str, Any]:
    """Every scenario's calls, and the workflow's triggers and cron lines. ``users``: the data
    scientist's and the reviewer's names (``ds``, ``reviewer``)."""
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
    asks = peers.supported()
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
        ops = folder / "ops.py"
        (work / f"{name}.sock").unlink(missing_ok=True)
        listener = _Ops(work / f"{name}.sock", ops, facts) if asks else None
        if listener is None:  # the probe's own word, in a self-check off Linux
            (folder / "scenario.json").write_text(json.dumps(facts), encoding="utf-8")
        ops.write_text(PROBE_ASKS if asks else PROBE, encoding="utf-8")
        (folder / WORKFLOW_FILE).write_text(text, encoding="utf-8")
        env = {**base_env, SOCKET_ENV: str(listener.path)} if listener else base_env
        try:
            result = runner.Runner(
                doc,
                space,
                event="schedule",
                echo=None,
                step_timeout=STEP_TIMEOUT,
                base_env=env,
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
        finally:
            if listener is not None:
                listener.close()
        calls_file = folder / "calls.jsonl"
        if listener is not None:
            calls = listener.calls
        elif calls_file.is_file():
            calls = [json.loads(line) for line in calls_file.read_text().splitlines()[:50]]
        else:
            calls = []
        found["scenarios"][name] = {
            "status": status,
            "calls": calls,
            "facts": {k: v for k, v in facts.items() if not k.endswith("password")},
        }
    return found


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
