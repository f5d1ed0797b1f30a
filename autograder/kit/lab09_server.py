"""Lab 09's MLflow server with authentication, started and stopped from a notebook or a driver.

``mlflow server --app-name basic-auth`` (the ``mlflow[auth]`` extra) puts a login in front of
every REST call and keeps users and their permissions in a database of its own. The lab runs
it on loopback, on a free port, with ``default_permission = NO_PERMISSIONS``: a user sees only
what someone granted them (MLflow's default, ``READ``, lets every account read everything).

The server must never outlive the notebook: it is stopped by ``Server.stop`` (the lab's last
cell), by ``atexit`` when the kernel exits, and, on Linux, by the kernel's death itself (the
server asks the system for SIGTERM when its parent dies), so a crashed kernel leaves no server.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.kit.i18n import _

HOST = "127.0.0.1"
CONFIG_FILE = "basic_auth.ini"
AUTH_DB = "basic_auth.db"
ADMIN = "admin"
CONFIG = """[mlflow]
# A user sees nothing until someone grants them a permission (MLflow's default is READ).
default_permission = NO_PERMISSIONS
# Users, passwords (hashed) and permissions live in this database, not in the tracking store.
database_uri = {database_uri}
admin_username = {admin}
# Checking a password costs a deliberately slow hash: remember a good one for a minute.
auth_cache_ttl_seconds = 60
"""


def free_port() -> int:
    """A port nobody listens on now (binding port 0 lets the system pick one)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover (runs in the child, between fork and exec)
    """Ask Linux to send SIGTERM to this process when its parent (the kernel) dies."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def write_config(folder: Path, admin: str = ADMIN, database: Path | None = None) -> Path:
    """The auth app's configuration file: default permission, auth database, admin's name
    (the admin's password is given to the server by an environment variable, never written)."""
    from autograder.kit.labkit import sqlite_uri

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    path.write_text(
        CONFIG.format(database_uri=sqlite_uri(database or folder / AUTH_DB), admin=admin), encoding="utf-8"
    )
    return path


@dataclass
class Server:
    """A running MLflow server with basic auth: its URL, its admin, its process."""

    url: str
    process: subprocess.Popen
    admin: str
    admin_password: str = field(repr=False)
    log: Any = field(repr=False, default=None)

    def stop(self) -> None:
        """Stop the server and the uvicorn process it started (idempotent)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        else:  # the server is gone; its uvicorn child may not be
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self.log is not None:
            self.log.close()
            self.log = None

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def start(
    folder: Path,
    store_uri: str,
    artifact_root: str,
    admin: str = ADMIN,
    admin_password: str | None = None,
    config: Path | None = None,
    timeout: float = 90.0,
) -> Server:
    """Start ``mlflow server --app-name basic-auth`` on a free loopback port; wait until it
    answers; return it. ``config``: the auth configuration (default: ``folder/basic_auth.ini``)."""
    import httpx

    config = config or write_config(folder, admin)
    password = admin_password or secrets.token_urlsafe(24)
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        # CSRF protection of the auth app's forms wants a secret of its own.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        store_uri,
        "--default-artifact-root",
        artifact_root,
        "--no-serve-artifacts",
    ]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Server.stop)
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    server = Server(f"http://{HOST}:{port}", process, admin, password, log)
    atexit.register(server.stop)
    started = time.monotonic()
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        if process.poll() is not None or time.monotonic() - started > timeout:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            server.stop()
            raise RuntimeError(
                _("the MLflow server did not answer {url}/health; its last output:").format(url=server.url) + f"\n{tail}"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def credentials(username: str, password: str) -> Iterator[None]:
    """Within the block, MLflow's clients send this user's name and password (MLflow reads
    ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` at every request); the previous values return after."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict(zip(keys, (username, password), strict=True)))
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
