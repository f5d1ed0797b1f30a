"""A class tracking server: one MLflow server for a whole class, started from the roster.

``python -m autograder class-server --roster roster.csv --data DIR`` (``make class-server``)
starts, in one command:

- **PostgreSQL**, a cluster of its own in ``DIR/postgres`` (initialised on the first start,
  with Debian's binaries from ``/usr/lib/postgresql/*/bin``), listening only on a Unix socket,
  with a password. Two databases: ``tracking`` (runs, models) and ``auth`` (users, grants).
- **MLflow's tracking server** on it with the basic-auth app (the ``mlflow[auth]`` extra), its
  ``default_permission`` at ``NO_PERMISSIONS``, artifacts proxied by the server into
  ``DIR/artifacts`` (students need no access to the disk or a bucket), and MLflow's
  **workspaces** on.
- **One account and one workspace per student** of the roster. The workspace is how the labs
  run unchanged by a whole class: experiment and registered-model names are unique per
  workspace, not per server, so every student's Lab 01 creates its own ``lab01-tracking``. Each
  student is a member (``USE``) of their own workspace only: they create experiments and models
  there (and, as their creator, get ``MANAGE`` on them) and are refused (403) anything in
  anyone else's. The admin account sees everything.

Passwords are drawn here and kept in ``DIR/students.csv`` (mode 0600, for the instructor to
hand out; a later start with a longer roster adds the new students and keeps everyone else's
password). A student connects with four environment variables, never written in a notebook::

    MLFLOW_TRACKING_URI=http://server:5000  MLFLOW_TRACKING_USERNAME=alice
    MLFLOW_TRACKING_PASSWORD=...            MLFLOW_WORKSPACE=alice

Why a workspace per student rather than renaming the labs' experiments per student: nothing in
the notebooks, the kit or the grader changes, the subprocesses a lab starts (Lab 05's pipeline
scripts, Lab 08's service) inherit the variables and land in the same workspace, and the MLflow
UI shows each student their own experiments under the names the labs use.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autograder.kit.i18n import Messages
from autograder.roster import read_roster

#: Where Debian (and Ubuntu) install PostgreSQL's server binaries, one folder per major version.
POSTGRES_GLOB = "/usr/lib/postgresql/*/bin"
#: The PostgreSQL role that owns the class's databases.
DB_USER = "course"
DATABASES = ("tracking", "auth")
ADMIN = "admin"
#: The role each student holds in their own workspace.
ROLE = "student"
#: MLflow's workspace names (``WorkspaceNameValidator``): what a student's user name must be too.
WORKSPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RESERVED = {"workspaces", "api", "ajax-api", "static-files", "default", ADMIN}
START_TIMEOUT = 180.0  # seconds for the server to answer (a first start creates ~100 tables)
#: The credentials file's columns.
CREDENTIALS = ("student_id", "name", "email", "username", "workspace", "password")


class ClassServerError(OSError):
    """Why the class server cannot start, in one line (an ``OSError``: what is missing or
    failing is on this machine, and the command line prints it as one line)."""


@dataclass(frozen=True)
class Account:
    """A student's account: their user name is also the name of their workspace."""

    student_id: str
    name: str
    email: str
    username: str
    password: str


def username_for(student_id: str) -> str:
    """A student id as an MLflow workspace name: lowercase ASCII letters, digits and inner
    hyphens (``José.García`` -> ``jose-garcia``)."""
    ascii_id = unicodedata.normalize("NFKD", student_id).encode("ascii", "ignore").decode()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", ascii_id.lower())).strip("-")[:63].strip("-")


def accounts(roster: Path, kept: dict[str, str] | None = None) -> list[Account]:
    """One account per roster row; a kept password (by user name) stays, others are drawn.

    A one-line ``ValueError`` when two students would get the same user name, or one gets
    no usable name."""
    kept = kept or {}
    found: dict[str, Account] = {}
    for sid, student in read_roster(roster).items():
        name = username_for(sid)
        if len(name) < 2 or not WORKSPACE_NAME.match(name) or name in RESERVED:
            raise ValueError(
                f"{roster}: student_id {sid!r} gives no usable user name ({name!r}): use letters and digits"
            )
        if name in found:
            raise ValueError(
                f"{roster}: student_ids {found[name].student_id!r} and {sid!r} both become "
                f"user name {name!r}: make them differ in letters or digits"
            )
        found[name] = Account(
            sid, student.name, student.email, name, kept.get(name) or secrets.token_urlsafe(12)
        )
    return list(found.values())


def read_credentials(path: Path) -> dict[str, str]:
    """user name -> password, from an earlier start's credentials file (empty if none)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f) if row.get("username")}


def write_credentials(path: Path, found: list[Account]) -> None:
    """The instructor's list of accounts to hand out (readable by the instructor only)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CREDENTIALS)
        for a in found:
            writer.writerow([a.student_id, a.name, a.email, a.username, a.username, a.password])


def _secret(path: Path, length: int = 24) -> str:
    """A secret kept in a 0600 file: drawn on the first start, the same on every later one."""
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(length)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server binaries: the newest Debian version, else ``PATH``."""

    def version(folder: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", Path(folder).parent.name))

    for folder in sorted(glob.glob(POSTGRES_GLOB), key=version, reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    import shutil

    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    raise ClassServerError(
        f"PostgreSQL's server is not installed (no initdb in {POSTGRES_GLOB} or on PATH): "
        "install it, e.g. `apt-get install postgresql`"
    )


def _unprivileged() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, it runs as the ``postgres`` user."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ClassServerError(
            "running as root, and there is no `postgres` user to run PostgreSQL as: "
            "start the class server as an ordinary user"
        ) from None
    return entry.pw_uid, entry.pw_gid


class Postgres:
    """A PostgreSQL cluster of the class's own in ``folder``, reached by a Unix socket only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "postgres"
        self.bin = postgres_bin()
        self.owner = _unprivileged()
        self.password = _secret(folder / "postgres-password")
        # A Unix socket's path is limited to about 100 bytes: a deep folder gets one in /tmp.
        self.socket_dir = folder / "socket"
        if len(str(self.socket_dir)) > 80:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="class-pg-"))
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self.owner:
            os.chown(self.socket_dir, *self.owner)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs = {"user": self.owner[0], "group": self.owner[1], "extra_groups": []} if self.owner else {}
        return subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )  # type: ignore[call-overload]

    def _check(self, what: str, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ClassServerError(f"PostgreSQL: {what} failed: {last[0]}")

    def init(self) -> None:
        """Create the cluster on the first start (password authentication, UTF-8)."""
        if (self.data / "PG_VERSION").is_file():
            return
        self.data.mkdir(mode=0o700, exist_ok=True)
        pwfile = self.folder / ".pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        try:
            if self.owner:
                for path in (self.data, pwfile):
                    os.chown(path, *self.owner)
            probe = self._run("test", "-w", str(self.data))
            if probe.returncode != 0:
                raise ClassServerError(
                    f"the postgres user cannot reach {self.data}: choose a --data folder "
                    "outside root's private folders, or run as an ordinary user"
                )
            self._check(
                "initdb",
                self._run(
                    self.bin / "initdb",
                    "-D",
                    self.data,
                    "-U",
                    DB_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ),
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        options = f"-c listen_addresses='' -k {self.socket_dir}"
        log = self.data / "server.log"
        self._check(
            "start",
            self._run(
                self.bin / "pg_ctl", "-D", self.data, "-l", log, "-o", options, "-w", "-t", "60", "start"
            ),
        )
        import psycopg2

        try:
            connection = psycopg2.connect(
                host=str(self.socket_dir), user=DB_USER, password=self.password, dbname="postgres"
            )
        except psycopg2.Error as exc:
            raise ClassServerError(f"PostgreSQL: cannot connect ({str(exc).strip()})") from None
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                for name in DATABASES:
                    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cursor.fetchone() is None:
                        cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()

    def stop(self) -> None:
        self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def uri(self, database: str) -> str:
        """SQLAlchemy's address of one database, through the socket."""
        return f"postgresql+psycopg2://{DB_USER}:{self.password}@/{database}?host={self.socket_dir}"


# --- MLflow -------------------------------------------------------------------------------


def auth_config(path: Path, database_uri: str) -> Path:
    """MLflow's basic-auth settings: nobody reads what they were not granted."""
    text = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the database password
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def server_command(tracking_uri: str, artifacts: Path, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        tracking_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--enable-workspaces",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (the server we started)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def provision(url: str, admin_password: str, found: list[Account]) -> int:
    """Create what is missing: each student's user, workspace, and membership of it.
    Returns how many students were new. Run again with the same roster, it changes nothing."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    with _credentials(ADMIN, admin_password):
        auth = get_app_client("basic-auth", tracking_uri=url)
        client = MlflowClient(url)
        workspaces = {w.name for w in client.list_workspaces()}
        new = 0
        for a in found:
            try:
                auth.get_user(a.username)
                auth.update_user_password(a.username, a.password)  # the file's password is the one
            except MlflowException:
                auth.create_user(a.username, a.password)
                new += 1
            if a.username not in workspaces:
                client.create_workspace(a.username, description=f"{a.name or a.student_id}'s labs")
            role = next((r for r in auth.list_roles(a.username) if r.name == ROLE), None)
            if role is None:
                role = auth.create_role(a.username, ROLE, "a student's own workspace")
                auth.add_role_permission(role.id, "workspace", "*", "USE")
            if role.id not in {r.id for r in auth.list_user_roles(a.username)}:
                auth.assign_role(a.username, role.id)
    return new


@contextlib.contextmanager
def _credentials(username: str, password: str) -> Iterator[None]:
    """MLflow's client reads credentials from the environment only: set them for a moment."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_WORKSPACE")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update(MLFLOW_TRACKING_USERNAME=username, MLFLOW_TRACKING_PASSWORD=password)
    os.environ.pop("MLFLOW_WORKSPACE", None)
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


@dataclass(frozen=True)
class ClassServer:
    """A running class server: its address, the admin's password, the students' accounts."""

    url: str
    admin_password: str
    credentials: Path
    accounts: list[Account]
    log: Path


@contextlib.contextmanager
def running(
    roster: Path, folder: Path, host: str = "127.0.0.1", port: int = 5000, workers: int = 2
) -> Iterator[ClassServer]:
    """Start PostgreSQL and the server, create the roster's accounts; stop both on exit."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    credentials = folder / "students.csv"
    found = accounts(roster, read_credentials(credentials))  # a bad roster stops before anything starts
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0:
            raise ClassServerError(f"port {port} is in use: choose another with --port")
    pg = Postgres(folder)
    pg.init()
    pg.start()
    server = None
    log = folder / "server.log"
    try:
        admin_password = _secret(folder / "admin-password")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MLFLOW_TRACKING_") and k != "MLFLOW_WORKSPACE"
        }
        env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(auth_config(folder / "auth.ini", pg.uri("auth"))),
            MLFLOW_AUTH_ADMIN_PASSWORD=admin_password,
            MLFLOW_FLASK_SERVER_SECRET_KEY=_secret(folder / "flask-secret", 32),
            # MLflow's job runner (seven huey consumers) serves GenAI features no lab uses.
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        (folder / "artifacts").mkdir(exist_ok=True)
        with open(log, "ab") as out:
            server = subprocess.Popen(
                server_command(pg.uri("tracking"), folder / "artifacts", host, port, workers),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        local = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(f"{local}/health"):
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
                raise ClassServerError(f"the MLflow server did not start (its log: {log}): {tail[0]}")
            time.sleep(0.5)
        try:
            provision(local, admin_password, found)
        except Exception as exc:  # the server's own refusal, e.g. an account it cannot create
            raise ClassServerError(f"could not create the students' accounts: {exc}") from None
        write_credentials(credentials, found)
        yield ClassServer(local, admin_password, credentials, found, log)
    finally:
        if server is not None:
            from autograder.processes import kill_all, tree

            kill_all(tree(server.pid), grace=10)
        pg.stop()


#: What ``serve`` prints, in one place.
TEXT = Messages({
    "ready": "==> Class server: {url}  ({n} students; the MLflow UI at the same address)",
    "admin": "==> Admin: user {admin}, password in {password_file}",
    "students": "==> Students' accounts (hand each student their row): {credentials}",
    "connect": "==> A student connects with MLFLOW_TRACKING_URI={url} MLFLOW_TRACKING_USERNAME=<username> "
    "MLFLOW_TRACKING_PASSWORD=<password> MLFLOW_WORKSPACE=<username>, then make lab",
    "stop": "==> Ctrl+C stops the server and its database; the data stays in {folder}",
    "stopped": "==> Stopped the class server.",
})


def serve(roster: Path, folder: Path, host: str, port: int, workers: int) -> int:
    """The instructor's command: run the class server until Ctrl+C (or SIGTERM)."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with running(roster, folder, host, port, workers) as server:
            url = f"http://{host}:{port}" if host not in ("0.0.0.0", "") else server.url
            print(TEXT["ready"].format(url=url, n=len(server.accounts)), flush=True)
            print(
                TEXT["admin"].format(admin=ADMIN, password_file=folder.resolve() / "admin-password"),
                flush=True,
            )
            print(TEXT["students"].format(credentials=server.credentials), flush=True)
            print(TEXT["connect"].format(url=url), flush=True)
            print(TEXT["stop"].format(folder=folder.resolve()), flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(TEXT["stopped"], flush=True)
    return 0
