"""``python -m autograder.kit.lab09_probe``: ask a Lab 09 submission's server what each role may
do, and run its workflow.

Run by the grader inside the submission's sandbox, after the notebook (its server is gone by
then). It reads a job (JSON on stdin) naming the ``parts`` to answer. For Lab 09a (``access``,
``promote``) it starts ``mlflow server --app-name basic-auth`` again on the submission's store
and the submission's user database, as an administrator of its own (a fresh name and password,
in a configuration file deleted once the server is up), gives the three role users fresh
passwords, and asks the same questions as the notebook's self-checks: the access matrix (Task 1)
and ``promote`` called with each role's own client (Task 3). For Lab 09b (``flow``) it runs the
submission's workflow against stand-in operations (Task 3, ``lab09_flow``). It prints one JSON
line carrying the job's nonce; the trusted grader judges it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from autograder.kit import lab09_registry as registry
from autograder.kit import lab09_server, labkit


def _config(folder: Path, admin: str, password: str) -> Path:
    """The probe's auth configuration: the lab's default permission, the submission's users."""
    text = lab09_server.CONFIG.format(
        database_uri=labkit.sqlite_uri(folder / lab09_server.AUTH_DB), admin=admin
    )
    path = folder / f"probe-{secrets.token_hex(6)}.ini"
    path.write_text(f"{text}admin_password = {password}\n", encoding="utf-8")
    return path


def probe(job: dict[str, Any]) -> dict[str, Any]:
    from mlflow.server import get_app_client

    params, roles = job["params"], job["users"]
    folder = Path(registry.SERVER_DIR).resolve()
    if not (folder / lab09_server.AUTH_DB).is_file():
        return {
            "access": {
                "error": f"no user database {registry.SERVER_DIR}/{lab09_server.AUTH_DB}: the notebook's "
                "server never ran"
            },
            "promote": {"error": "the notebook's server never ran"},
        }
    admin = (f"grader-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
    config = _config(folder, *admin)
    os.environ[registry.QUIET_LINKS] = "true"
    running = lab09_server.start(
        folder,
        job["tracking_uri"],
        labkit.artifact_root_for(job["tracking_uri"]) or "",
        admin=admin[0],
        admin_password=admin[1],
        config=config,
    )
    config.unlink()
    os.environ.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    answer: dict[str, Any] = {}
    try:
        users = {}
        with lab09_server.credentials(*admin):
            auth = get_app_client("basic-auth", tracking_uri=running.url)
            for role, name in roles.items():
                password = secrets.token_urlsafe(16)
                with contextlib.suppress(Exception):  # no such user: its logins fail, the judgment says so
                    auth.update_user_password(name, password)
                users[role] = (name, password)
        try:
            answer["access"] = registry.probe_access(running.url, admin, users, params)
        except Exception as exc:
            answer["access"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        os.environ["MLFLOW_TRACKING_URI"] = running.url
        remote = RemotePromote(Path(registry.GOVERNANCE_DIR).resolve() / registry.PROMOTE_FILE)
        try:
            answer["promote"] = registry.probe_promote(running.url, admin, users, params, remote)
        except Exception as exc:
            answer["promote"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        finally:
            remote.close()
    finally:
        running.stop()
    return answer


#: The program that runs the student's promote(): a process of its own, which never holds the
#: grader's admin password or the answer's nonce. It reads one call per line (the user, the
#: model, the version, the reason) and answers one line each on a descriptor of its own; what
#: the student's code prints goes to stderr. What it answers is only whether promote raised:
#: where @champion points and which audit event exists, the probe reads from the server itself.
CHILD = r"""
import importlib.util, json, os, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.path.insert(0, sys.argv[1])
from mlflow import MlflowClient
try:
    spec = importlib.util.spec_from_file_location("student_promote", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    promote, problem = module.promote, None
except BaseException as exc:
    promote, problem = None, f"{type(exc).__name__}: {exc}"
for line in sys.stdin:
    call = json.loads(line)
    os.environ.update(MLFLOW_TRACKING_USERNAME=call["user"], MLFLOW_TRACKING_PASSWORD=call["password"])
    raised = problem
    if promote is not None:
        try:
            promote(MlflowClient(call["url"]), call["name"], call["version"], call["reason"])
        except BaseException as exc:
            raised = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    out.write(json.dumps({"raised": raised}) + "\n")
    out.flush()
"""


class RemotePromote:
    """``promote(client, name, version, reason)`` run by the student's code in a child process,
    with the credentials the probe has set for this call (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``)."""

    def __init__(self, path: Path) -> None:
        kit_root = str(Path(registry.__file__).resolve().parents[2])
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-E", "-s", "-c", CHILD, kit_root, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            close_fds=True,
        )

    def __call__(self, client: Any, name: str, version: str, reason: str) -> None:
        call = {
            "url": client.tracking_uri,
            "name": name,
            "version": version,
            "reason": reason,
            "user": os.environ.get("MLFLOW_TRACKING_USERNAME", ""),
            "password": os.environ.get("MLFLOW_TRACKING_PASSWORD", ""),
        }
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(call) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        try:
            raised = json.loads(line)["raised"] if line else "the process running promote() died"
        except (ValueError, KeyError, TypeError):
            raised = "promote()'s process answered nonsense"
        if raised is not None:
            raise RuntimeError(str(raised)[:300])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def flow(job: dict[str, Any]) -> dict[str, Any]:
    """Lab 09b's Task 3: the workflow file against probe operations (no server needed)."""
    import tempfile

    from autograder.kit import lab09_flow

    users = {"ds": job["users"]["data_scientist"], "reviewer": job["users"]["reviewer"]}
    path = Path(registry.GOVERNANCE_DIR).resolve() / lab09_flow.WORKFLOW_FILE
    if not path.is_file():
        return {
            "error": f"{registry.GOVERNANCE_DIR}/{lab09_flow.WORKFLOW_FILE} is missing: run the TODO 3 cell"
        }
    with tempfile.TemporaryDirectory(prefix="lab09-flow-") as tmp:
        return lab09_flow.run(path, Path(tmp), users)


def _not_dumpable() -> None:
    """Processes this one starts (the workflow's steps, the student's promote) cannot open its
    memory or its output through /proc: the nonce and the admin password stay here."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(4, 0)  # PR_SET_DUMPABLE = 4


#: What a job may ask for: the workflow (09b), the server's answers (09a).
PARTS = ("flow", "access", "promote")


def main() -> None:
    _not_dumpable()
    job = json.loads(sys.stdin.read())
    parts = job.get("parts") or PARTS
    labkit.quiet_stack_warnings()
    answer: dict[str, Any] = {}
    if "flow" in parts:
        try:
            answer["flow"] = flow(job)
        except Exception as exc:
            answer["flow"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    if "access" in parts or "promote" in parts:
        try:
            answer.update(probe(job))
        except Exception as exc:
            answer.update(
                access={"error": f"{type(exc).__name__}: {str(exc)[:300]}"},
                promote={"error": f"{type(exc).__name__}: {str(exc)[:300]}"},
            )
    # The student's code ran in this process and may have written to stdout: the answer is the
    # last line, and it carries the nonce the grader gave.
    sys.stdout.write("\n" + json.dumps({**answer, "nonce": job["nonce"]}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
