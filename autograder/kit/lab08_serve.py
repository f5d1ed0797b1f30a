"""``python -m autograder.kit.lab08_serve < job.json``: start Lab 08's service as a real process on
a free loopback port, drive it with the grader's rows, lint its Dockerfile, and print the raw
answers as one JSON line.

``job.json`` is ``{"model_name": ..., "aliases": {"champion": "2", "challenger": "1"},
"share": 0.4, "window": 40, "rows": {...}, "nonce": ..., "dockerfile": "FROM ..."}`` (rows as ``lab08.drive_rows`` makes them). The
aliases are set in the store first (the grader swaps the notebook's roles: a service that
hard-codes a version then reports the wrong one), the given wiring is copied over
``service.py``, and the service gets the grader's canary share, drift window and a fresh audit
file. The grader runs this inside the submission's sandbox: the service is the submission's code,
a child of this process as the same user. So this process makes itself undumpable before it
starts anything (the service can neither write its answer nor read its memory), and its answer
carries the job's ``nonce``, which the grader requires: a line printed by anyone else is ignored.
The Dockerfile linted is ``dockerfile``, the text the grader read itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab08, labkit

#: Seconds the service may take to answer /health (imports and two models: a few seconds).
START_TIMEOUT = 60.0
AUDIT_NAME = ".grader-audit.jsonl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((lab08.HOST, 0))
        return sock.getsockname()[1]


def store_db() -> Path | None:
    return labkit.sqlite_path(os.environ.get("MLFLOW_TRACKING_URI", ""))


def set_alias(db: Path, name: str, alias: str, version: str) -> None:
    """Point an alias at a version, in the store's own table (MLflow's client takes seconds to import)."""
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        moved = con.execute("UPDATE registered_model_aliases SET version = ? WHERE name = ? AND alias = ?",
                            (int(version), name, alias)).rowcount
        if not moved:
            con.execute("INSERT INTO registered_model_aliases (alias, version, name) VALUES (?, ?, ?)",
                        (alias, int(version), name))


@contextlib.contextmanager
def hidden_artifacts(db: Path) -> Iterator[dict[str, Any]]:
    """The store's artifact folder out of reach while requests are served: a model loaded at
    start-up keeps answering, one loaded per request cannot."""
    folder = db.parent / "artifacts"
    away = db.parent / "artifacts.hidden"
    moved = False
    try:
        if folder.is_dir():
            folder.rename(away)
            moved = True
        yield {}
    finally:
        if moved:
            away.rename(folder)


def _wait(url: str, process: subprocess.Popen[bytes], log: Any) -> str | None:
    """None once /health answers, else why not."""
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    log.seek(0)
    tail = log.read()[-4000:].decode("utf-8", "replace").strip().splitlines()[-4:]
    why = "it exited" if process.poll() is not None else f"no answer within {START_TIMEOUT:g} s"
    return f"GET /health did not answer ({why}): {' | '.join(tail)[:400]}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the service and whatever it started (its own session; plain kill where there are none)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    with contextlib.suppress(Exception):
        process.wait(timeout=10)


def serve(job: Mapping[str, Any], workdir: Path) -> dict[str, Any]:
    import httpx

    folder = workdir / lab08.SERVICE_DIR
    db = store_db()
    if not folder.is_dir():
        return {"started": False, "error": f"no folder {lab08.SERVICE_DIR}/ (run the notebook's cells in order)"}
    if db is None or not db.is_file():
        return {"started": False, "error": "no MLflow store"}
    for alias, version in job["aliases"].items():
        set_alias(db, job["model_name"], alias, version)
    lab08.install_app(folder)
    audit = workdir / AUDIT_NAME
    audit.unlink(missing_ok=True)
    port = free_port()
    env = {**os.environ, "MODEL_NAME": job["model_name"], "CANARY_SHARE": str(job["share"]),
           "DRIFT_WINDOW": str(job["window"]), "AUDIT_LOG": str(audit),
           "REFERENCE_DATA": str(folder / lab08.REFERENCE_FILE), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "service:from_env", "--host", lab08.HOST,
            "--port", str(port), "--no-access-log"]
    url = f"http://{lab08.HOST}:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            error = _wait(url, process, log)
            if error:
                return {"started": False, "error": error}
            champion = str(job["aliases"][lab08.CHAMPION])

            def rollback() -> str:
                set_alias(db, job["model_name"], lab08.CHALLENGER, champion)
                return champion

            hooks = {"hide_model": lambda: hidden_artifacts(db), "rollback": rollback}
            with httpx.Client(base_url=url, timeout=30) as http:
                return lab08.drive(http, job["rows"], audit, hooks)
        finally:
            _stop(process)


def keep_to_myself() -> None:
    """Close this process to the service it starts: the service runs as the same user, and a
    process of the same user may open /proc/<pid>/fd/1 (this driver's answer to the grader),
    read /proc/<pid>/mem (the job, and its nonce) or ptrace it, unless the process is not
    dumpable. The flag is not inherited across exec: the service itself stays ordinary."""
    if not sys.platform.startswith("linux"):
        return  # (no /proc to reach it through; macOS and Windows grade in a container)
    import ctypes

    pr_set_dumpable = 4
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def main() -> None:
    keep_to_myself()
    job = json.load(sys.stdin)
    workdir = Path.cwd()
    # Linted first, while none of the submission's code runs, and the text the grader read
    # itself (the file judged is the file linted, and nothing can swap it meanwhile).
    hadolint = lab08.lint_text(job.get("dockerfile"))
    # Said at once: a service that hangs the drive until the grader stops it costs the
    # service's tasks, not the Dockerfile's (the grader keeps the last line with its nonce).
    early = {"started": False, "error": "the drive did not finish: the grader stopped it at its time limit"}
    sys.stdout.write("\n" + json.dumps({"nonce": job.get("nonce"), "service": early, "hadolint": hadolint}) + "\n")
    sys.stdout.flush()
    try:
        found = serve(job, workdir)
    except Exception as exc:  # the submission's service failing is evidence, not a crash
        found = {"started": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    answer = {"nonce": job.get("nonce"), "service": found, "hadolint": hadolint}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
