"""``python -m autograder.kit.lab08_serve < job.json``: start Lab 08's service as a real process on
a free loopback port, drive it with the grader's rows, lint its Dockerfile, and print the raw
answers as one JSON line.

``job.json`` is ``{"model_name": ..., "aliases": {"champion": "2", "challenger": "1"},
"share": 0.4, "window": 40, "rows": {...}, "nonce": ..., "dockerfile": "FROM ..."}`` (rows as ``lab08.drive_rows`` makes them),
and what to drive: ``"drift"``, ``"rollback"``, ``"load_test"`` (each true when absent: Lab 08a's
service has none of them), and ``"base"`` (Lab 08b: the kit's own model part is copied over
``svc_model.py``, as the wiring is, so that only part b's parts are the student's). The
aliases are set in the store first (the grader swaps the notebook's roles: a service that
hard-codes a version then reports the wrong one), the given wiring is copied over
``service.py``, and the service gets the grader's canary share, drift window and a fresh audit
file. The grader runs this inside the submission's sandbox: the service is the submission's code,
a child of this process as the same user. So this process makes itself undumpable before it
starts anything (the service can neither write its answer nor read its memory), and its answer
carries the job's ``nonce``, which the grader requires: a line printed by anyone else is ignored.
The Dockerfile linted is ``dockerfile``, the text the grader read itself.

Two measurements of this process:

* model loads: the service starts through this module's launcher (``LAUNCHER``), which wraps
  MLflow's and skops' loaders before the submission's code is imported and writes one byte per
  load into a pipe this process reads; loads after start-up (before any rollback) are loads per
  request, whatever path, copy or cache they load from (the store's ``artifacts/`` is also
  hidden during the probe). The wrappers live in the service's process: code that unwraps them
  on purpose hides its loads, which no honest mistake does;
* the load test: the student's ``load_test`` runs in a child process of its own against a
  relay (``Relay``) this process owns, which forwards to the service and keeps, per request,
  the row it carried, what the service answered and how long the service took.
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
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from autograder.kit import lab08_service as lab08
from autograder.kit import labkit
from autograder.kit.i18n import _

#: Seconds the service may take to answer /health (imports and two models: a few seconds).
START_TIMEOUT = 60.0
AUDIT_NAME = ".grader-audit.jsonl"
#: Seconds the student's load test may take (about a hundred requests: seconds; the whole
#: driver has the grader's RUN_TIMEOUT).
LOAD_TIMEOUT = 30.0
#: The most requests the relay keeps, and the largest body it reads.
MAX_RELAYED, MAX_BODY = 5000, 1 << 16

#: How the service starts (``python -c LAUNCHER host port``): MLflow's loaders wrapped, each call
#: one byte into the pipe ``LAB08_LOADS_FD`` (never blocking: a full pipe already says enough),
#: then uvicorn on the given wiring's factory. Self-contained: no import of this package.
LAUNCHER = """
import os, sys
sys.path.insert(0, os.getcwd())
fd = int(os.environ.pop("LAB08_LOADS_FD"))
os.set_blocking(fd, False)
import mlflow.pyfunc, mlflow.sklearn
try:
    import skops.io
except ImportError:
    skops = None

def counted(module, name):
    original = getattr(module, name, None)
    if original is None:
        return
    def load(*args, **kwargs):
        try:
            os.write(fd, b"1")
        except OSError:
            pass
        return original(*args, **kwargs)
    load.__doc__ = original.__doc__
    setattr(module, name, load)

for module, name in ((mlflow.pyfunc, "load_model"), (mlflow.pyfunc, "load_pyfunc"), (mlflow.sklearn, "load_model"),
                     (skops and skops.io, "load")):
    if module:
        counted(module, name)
import uvicorn
uvicorn.run("service:from_env", factory=True, host=sys.argv[1], port=int(sys.argv[2]), access_log=False)
"""

#: The student's load test, in a process of its own (``python -c LOAD_RUNNER``): the job on
#: stdin, its records and summary as the last line of stdout.
LOAD_RUNNER = """
import json, os, sys
sys.path.insert(0, os.getcwd())
job = json.load(sys.stdin)
import loadtest
records = loadtest.load_test(job["url"], job["rows"], job["concurrency"])
summary = loadtest.summarize(records, job["challenger"])
print()
print(json.dumps({"records": records, "summary": summary}, default=str))
"""


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


class LoadCounter:
    """The read end of the launcher's pipe: how many times the service called a model loader."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.total = 0

    def loads(self) -> int:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.read_fd, 65536):
                self.total += len(chunk)
        return self.total

    def close_writer(self) -> None:
        """Once the service holds its copy: the number is closed once only (it may be reused)."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_writer()
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1


@contextlib.contextmanager
def probe(db: Path, counter: LoadCounter, since: int) -> Iterator[dict[str, Any]]:
    """The probe's window: the store's artifacts hidden, and, when it ends, the loads counted
    since ``since`` (the count once the service answered /health: start-up is over)."""
    counted: dict[str, Any] = {}
    try:
        with hidden_artifacts(db):
            yield counted
    finally:
        counted["loads"] = counter.loads() - since


class Relay:
    """A loopback HTTP relay between the student's load test and the service: what the service
    really received (the row each ``/predict`` carried), what it answered, and how long it took,
    measured here, where neither the load test nor the service reaches."""

    def __init__(self, upstream: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=upstream, timeout=30)
        self.relayed: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                relay.forward(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                relay.forward(self, "POST")

        self.server = ThreadingHTTPServer((lab08.HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{lab08.HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Relay:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()

    def forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        import httpx

        length = int(handler.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            handler.close_connection = True
        body = handler.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        started = time.perf_counter()
        try:
            response = self.client.request(method, handler.path, content=body,
                                           headers={"content-type": handler.headers.get("Content-Type") or
                                                    "application/json"})
            status, content = response.status_code, response.content[:lab08.MAX_TEXT]
            kind = response.headers.get("content-type", "application/json")
        except httpx.HTTPError as exc:
            status, content, kind = 502, f"relay: {type(exc).__name__}".encode(), "text/plain"
        ms = (time.perf_counter() - started) * 1000
        with self.lock:
            self.in_flight -= 1
            if method == "POST" and handler.path.split("?")[0] == "/predict" and len(self.relayed) < MAX_RELAYED:
                self.relayed.append(_relayed(body, status, content, ms))
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)


def _relayed(body: bytes, status: int, content: bytes, ms: float) -> dict[str, Any]:
    """One relayed request as data: the row it carried, the answer's fields, the service's time."""
    try:
        row, answer = json.loads(body), json.loads(content)
    except ValueError:
        row, answer = None, None
    answer = answer if isinstance(answer, dict) else {}
    return {"digest": lab08.row_digest(row), "status": status, "ms": ms,
            **{k: lab08._small(answer.get(k)) for k in ("version", "prediction")}}


def run_load_test(folder: Path, url: str, rows: list[Any], challenger: str) -> dict[str, Any]:
    """The student's ``load_test`` and ``summarize`` (their ``loadtest.py``) run in a process of
    their own against ``url``: their records and summary, as data, or why not."""
    if not (folder / lab08.LOAD_PART).is_file():
        return {"error": f"no {lab08.LOAD_PART} in {lab08.SERVICE_DIR}/ (run the load test's TODO cell)"}
    job = {"url": url, "rows": rows, "concurrency": lab08.LOAD_CONCURRENCY, "challenger": challenger}
    env = {k: v for k, v in os.environ.items() if k not in ("CANARY_SHARE", "MODEL_NAME")}
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen([sys.executable, "-c", LOAD_RUNNER], cwd=folder, env=env, stdin=subprocess.PIPE,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with contextlib.suppress(BrokenPipeError):
                process.communicate(json.dumps(job).encode(), timeout=LOAD_TIMEOUT)
        except subprocess.TimeoutExpired:
            return {"error": f"load_test did not finish within {LOAD_TIMEOUT:g} s"}
        finally:
            _stop(process)
        out.seek(0)
        text = out.read(8 * lab08.MAX_TEXT).decode("utf-8", "replace")
    lines = text.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return {"error": " | ".join(lines[-3:])[-400:] or f"it exited with {process.returncode}"}
    records = answer.get("records")
    kept = [{k: lab08._small(r.get(k)) for k in ("latency_ms", "status", "version", "prediction")}
            if isinstance(r, dict) else str(r)[:200] for r in records[:len(rows) + 1]] if isinstance(records, list) else None
    summary = answer.get("summary")
    return {"records": kept, "summary": {str(k)[:40]: lab08._small(v) for k, v in list(summary.items())[:10]}
            if isinstance(summary, dict) else None}


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
    why = _("it exited") if process.poll() is not None else _("no answer within {seconds} s").format(
        seconds=f"{START_TIMEOUT:g}")
    return _("GET /health did not answer ({why}): {output}").format(why=why, output=" | ".join(tail)[:400])


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
    if job.get("base"):
        lab08.install_base(folder)
    audit = workdir / AUDIT_NAME
    audit.unlink(missing_ok=True)
    port = free_port()
    counter = LoadCounter()
    env = {**os.environ, "MODEL_NAME": job["model_name"], "CANARY_SHARE": str(job["share"]),
           "DRIFT_WINDOW": str(job["window"]), "AUDIT_LOG": str(audit),
           "REFERENCE_DATA": str(folder / lab08.REFERENCE_FILE), "PYTHONUNBUFFERED": "1",
           "LAB08_LOADS_FD": str(counter.write_fd)}
    argv = [sys.executable, "-c", LAUNCHER, lab08.HOST, str(port)]
    url = f"http://{lab08.HOST}:{port}"
    with tempfile.TemporaryFile() as log:
        try:
            process = subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(counter.write_fd,))
        except BaseException:
            counter.close()
            raise
        counter.close_writer()
        try:
            error = _wait(url, process, log)
            if error:
                return {"started": False, "error": error}
            started = counter.loads()
            champion = str(job["aliases"][lab08.CHAMPION])

            def rollback() -> str:
                set_alias(db, job["model_name"], lab08.CHALLENGER, champion)
                return champion

            def load_test(rows: list[Any]) -> dict[str, Any]:
                with Relay(url) as relay:
                    found = run_load_test(folder, relay.url, rows, str(job["aliases"][lab08.CHALLENGER]))
                return {**found, "relayed": relay.relayed, "max_in_flight": relay.max_in_flight}

            hooks = {"hide_model": lambda: probe(db, counter, started), "rollback": rollback, "load_test": load_test}
            hooks = {k: v for k, v in hooks.items() if job.get(k, True)}
            with httpx.Client(base_url=url, timeout=30) as http:
                return lab08.drive(http, job["rows"], audit, hooks, drift=job.get("drift", True))
        finally:
            _stop(process)
            counter.close()


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
