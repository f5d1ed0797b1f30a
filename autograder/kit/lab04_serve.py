"""``python -m autograder.kit.lab04_serve < job.json``: start a notebook's model-server command
on a free loopback port, send it the grader's rows, and print its answer as one JSON line.

``job.json`` is ``{"command": [...], "rows": [{feature: value}, ...], "format": "dataframe_split"}``:
the command Lab 04's notebook recorded (its ``-p``/``--port`` value is replaced by a free port),
the grader's own rows, and the request format the notebook used. The answer is
``{"predictions": [...]}`` or ``{"serve_error": "..."}``.

The grader runs this inside the submission's sandbox, never in its own process: the command
is the submission's, and so is the model it serves. A server the notebook only claimed to
run cannot answer rows it never saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from autograder.kit.i18n import _
from autograder.kit.labkit import FEATURES

HOST = "127.0.0.1"
#: Seconds the server may take to answer /ping (MLflow's server takes about 10 s).
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def with_port(command: list[str], port: int) -> list[str] | None:
    """The command with its port option set to ``port``, or None if it names no port."""
    out, found = list(command), False
    for i, part in enumerate(out):
        if part in ("-p", "--port") and i + 1 < len(out):
            out[i + 1], found = str(port), True
        elif part.startswith("--port="):
            out[i], found = f"--port={port}", True
    return out if found else None


def request_body(rows: list[dict[str, Any]], kind: str | None) -> dict[str, Any]:
    """The rows in the request format the notebook used (a documented one)."""
    if kind in ("dataframe_records", "inputs", "instances"):
        return {kind: rows}
    return {"dataframe_split": {"columns": FEATURES, "data": [[r[f] for f in FEATURES] for r in rows]}}


def _pinged(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=1) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and everything it started (uvicorn runs in a child process)."""
    import psutil

    try:
        parent = psutil.Process(process.pid)
        tree = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        tree = []
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(tree, timeout=5)
    with contextlib.suppress(Exception):
        process.wait(timeout=5)


def serve(command: Any, rows: list[dict[str, Any]], kind: str | None = None) -> dict[str, Any]:
    if not isinstance(command, list) or not command or not all(isinstance(p, str) for p in command):
        return {"serve_error": "the recorded command is not a list of strings"}
    port = free_port()
    argv = with_port(command, port)
    if argv is None:
        return {"serve_error": "the command names no port (-p PORT)"}
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    url = f"http://{HOST}:{port}"
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        try:
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            return {"serve_error": f"the command could not start: {exc}"}
        try:
            while not _pinged(url):
                if process.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
                    why = _("it exited") if process.poll() is not None else _("no answer within {seconds} s").format(
                        seconds=f"{START_TIMEOUT:g}")
                    return {"serve_error": _("{url}/ping did not answer ({why}): {output}").format(
                        url=url, why=why, output=" | ".join(tail)[:300])}
                time.sleep(0.25)
            body = json.dumps(request_body(rows, kind)).encode()
            request = urllib.request.Request(f"{url}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    reply = json.loads(answer.read(4 << 20))
            except (OSError, ValueError) as exc:
                return {"serve_error": f"POST /invocations failed: {str(exc)[:300]}"}
        finally:
            _stop(process)
    values = reply.get("predictions") if isinstance(reply, dict) else None
    if not isinstance(values, list):
        return {"serve_error": f"the answer has no list 'predictions': {str(reply)[:200]}"}
    try:
        return {"predictions": [float(v) for v in values]}
    except (TypeError, ValueError):
        return {"serve_error": f"the predictions are not numbers: {str(values)[:200]}"}


def main() -> None:
    job = json.load(sys.stdin)
    try:
        answer = serve(job.get("command"), job.get("rows") or [], job.get("format"))
    except Exception as exc:  # the submission's server failing is evidence, not a crash
        answer = {"serve_error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
