"""The class tracking server: accounts from a roster, and two students running the same lab on
one real server (PostgreSQL started by the test, MLflow with basic auth and workspaces), each
seeing their own runs and refused the other's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autograder import classserver, cli
from autograder.course import LABS

LAB = LABS["01_tracking"]


def _roster(path: Path, rows: list[str]) -> Path:
    path.write_text("student_id,name,email\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


# --- Accounts, without a server ------------------------------------------------------------


def test_each_student_gets_a_workspace_name_and_a_strong_password(tmp_path: Path) -> None:
    roster = _roster(tmp_path / "r.csv", ["José.García,José,j@x.org", "s042,Ana,a@x.org"])
    found = classserver.accounts(roster)
    assert [(a.student_id, a.username) for a in found] == [("José.García", "jose-garcia"), ("s042", "s042")]
    assert all(len(a.password) >= 12 for a in found)  # MLflow refuses shorter passwords
    assert len({a.password for a in found}) == 2
    # A later start keeps the passwords already handed out.
    again = classserver.accounts(roster, {"s042": "kept-password-123"})
    assert next(a.password for a in again if a.username == "s042") == "kept-password-123"


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        (["a.b,A,", "A-B,B,"], "both become user name 'a-b'"),
        (["!!,A,"], "gives no usable user name"),
        (["admin,A,"], "gives no usable user name"),  # the server's own admin
        (["default,A,"], "gives no usable user name"),  # MLflow's shared workspace
    ],
)
def test_a_roster_that_cannot_give_one_account_each_is_one_line(
    tmp_path: Path, rows: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = _roster(tmp_path / "r.csv", rows)
    with pytest.raises(ValueError, match=says):
        classserver.accounts(roster)
    # The command says it in one line, before starting anything.
    assert cli.main(["class-server", "--roster", str(roster), "--data", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d" / "postgres").exists()


def test_without_postgresql_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classserver, "POSTGRES_GLOB", str(tmp_path / "nowhere" / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(classserver.ClassServerError, match="apt-get install postgresql"):
        classserver.postgres_bin()


def test_the_command_without_postgresql_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(classserver, "POSTGRES_GLOB", str(tmp_path / "nowhere" / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path))
    roster = _roster(tmp_path / "r.csv", ["alice,Alice,a@x.org"])
    args = [
        "class-server",
        "--roster",
        str(roster),
        "--data",
        str(tmp_path / "d"),
        "--port",
        str(_free_port()),
    ]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: PostgreSQL's server is not installed") and len(err.strip().splitlines()) == 1
    )


def test_the_newest_installed_postgresql_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for version in ("9.6", "15", "13"):
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        (folder / "initdb").touch()
        (folder / "pg_ctl").touch()
    monkeypatch.setattr(classserver, "POSTGRES_GLOB", str(tmp_path / "*" / "bin"))
    assert classserver.postgres_bin() == tmp_path / "15" / "bin"


# --- Two students on one real server --------------------------------------------------------


@pytest.fixture(scope="module")
def data_folder() -> Iterator[Path]:
    """Outside pytest's private temporary folders: as root, PostgreSQL runs as `postgres`,
    which must reach its data folder."""
    folder = Path(tempfile.mkdtemp(prefix="class-server-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _student_env(url: str, account: classserver.Account) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {
        **env,
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": account.username,
        "MLFLOW_TRACKING_PASSWORD": account.password,
        "MLFLOW_WORKSPACE": account.username,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def _run_lab(env: dict[str, str], out: Path) -> subprocess.Popen[str]:
    """Lab 01's solution, unchanged, as a student's JupyterLab would run it: the parameters as
    they are (TRACKING_URI None: the environment's server), the credentials from the environment."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(LAB.master),
        str(out / "run.ipynb"),
        "--cwd",
        str(out),
        "--no-progress-bar",
        "-k",
        "python3",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class _As:
    """An MLflow client with one user's credentials (MLflow reads them from the environment)."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url, self.env = url, env

    def __call__(self, method: str, *args: object, workspace: str | None = None) -> object:
        from mlflow import MlflowClient

        keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_WORKSPACE")
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update({k: self.env[k] for k in keys})
        if workspace is not None:
            os.environ["MLFLOW_WORKSPACE"] = workspace
        try:
            return getattr(MlflowClient(self.url), method)(*args)
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _refused(call: _As, method: str, *args: object, workspace: str | None = None) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        call(method, *args, workspace=workspace)
    except MlflowException as exc:
        return exc.get_http_status_code() == 403
    return False


@pytest.mark.slow
def test_two_students_run_lab01_on_the_class_server_and_neither_sees_the_other(
    data_folder: Path, tmp_path: Path
) -> None:
    roster = _roster(data_folder / "roster.csv", ["alice,Alice,a@x.org", "Bob.B,Bob,b@x.org"])
    with classserver.running(roster, data_folder / "server", port=_free_port(), workers=1) as server:
        alice, bob = server.accounts
        envs = {a.username: _student_env(server.url, a) for a in (alice, bob)}
        # Both at once, with the same experiment and run names: neither collides nor is refused
        # (every self-check of the lab passes, or papermill fails).
        labs = [_run_lab(env, tmp_path / name) for name, env in envs.items()]
        for lab in labs:
            _, err = lab.communicate(timeout=900)
            assert lab.returncode == 0, err[-3000:]
        as_alice, as_bob = (_As(server.url, envs[a.username]) for a in (alice, bob))

        own = {}
        for who, call in ((alice.username, as_alice), (bob.username, as_bob)):
            experiments = {e.name: e for e in call("search_experiments")}
            assert "lab01-tracking" in experiments, f"{who} sees {sorted(experiments)}"
            exp = experiments["lab01-tracking"]
            runs = call("search_runs", [exp.experiment_id])
            assert "rf-baseline" in {r.info.run_name for r in runs}
            own[who] = (exp.experiment_id, runs[0].info.run_id)
        assert own[alice.username][0] != own[bob.username][0]

        # Each is refused the other's experiment and run by the server (403), through their own
        # workspace or by naming the other's.
        bob_exp, bob_run = own[bob.username]
        alice_exp, alice_run = own[alice.username]
        for workspace in (None, bob.username):
            assert _refused(as_alice, "get_experiment", bob_exp, workspace=workspace)
            assert _refused(as_alice, "get_run", bob_run, workspace=workspace)
            assert _refused(as_alice, "search_runs", [bob_exp], workspace=workspace) or not as_alice(
                "search_runs", [bob_exp], workspace=workspace
            )  # a search shows none of them
        assert _refused(as_bob, "get_experiment", alice_exp, workspace=alice.username)
        assert _refused(as_bob, "get_run", alice_run)
        # ... and the other's artifacts, served by the server itself.
        assert _refused(as_alice, "list_artifacts", bob_run)

        # The refusals are not absence: the admin reads both.
        admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": server.admin_password}
        for who, (exp_id, _) in own.items():
            as_admin = _As(server.url, {**admin, "MLFLOW_WORKSPACE": who})
            assert as_admin("get_experiment", exp_id).name == "lab01-tracking"

    # Started again with a longer roster: the runs and the passwords handed out stay, the new
    # student gets an account.
    roster = _roster(roster, ["alice,Alice,a@x.org", "Bob.B,Bob,b@x.org", "carol,Carol,c@x.org"])
    with classserver.running(roster, data_folder / "server", port=_free_port(), workers=1) as again:
        assert {a.username: a.password for a in again.accounts[:2]} == {
            a.username: a.password for a in (alice, bob)
        }
        as_alice = _As(again.url, _student_env(again.url, alice))
        assert as_alice("get_run", alice_run).info.run_name == "rf-baseline"
        carol = _As(again.url, _student_env(again.url, again.accounts[2]))
        assert [e.name for e in carol("search_experiments")] == []
        assert _refused(carol, "get_experiment", alice_exp, workspace="alice")


# --- make lab on a class server -------------------------------------------------------------


def test_make_lab_on_a_class_server_starts_no_local_ui_and_passes_the_server_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from autograder import launch
    from autograder.kit import labkit

    started: list[tuple[list[str], dict[str, str]]] = []

    class Ended:
        returncode = 0

        def poll(self) -> int:
            return 0

    def fake_start(command: list[str], env: dict[str, str], log: Path | None) -> Ended:
        started.append((command, env))
        return Ended()

    monkeypatch.setattr(launch, "_start", fake_start)
    monkeypatch.setattr(launch, "stop_jupyter", lambda *a: None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.edu/")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret-password")
    monkeypatch.setenv("MLFLOW_WORKSPACE", "alice")
    launch.main(["lab", "--no-browser", "--jupyter-port", str(_free_port())])
    assert len(started) == 1 and "jupyter" in " ".join(started[0][0])  # JupyterLab only, no UI
    env = started[0][1]
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example.edu/"
    assert env[labkit.UI_URL_ENV] == "https://mlflow.example.edu"  # run links open the server's UI
    assert env["MLFLOW_TRACKING_PASSWORD"] == "secret-password"  # from the environment, to the kernels
    out = capsys.readouterr().out
    assert "class server https://mlflow.example.edu/" in out and "as alice, workspace alice" in out
    # A run link opens the student's workspace.
    monkeypatch.setenv(labkit.UI_URL_ENV, env[labkit.UI_URL_ENV])
    assert labkit.run_url("3", "abc") == "https://mlflow.example.edu/#/experiments/3/runs/abc?workspace=alice"
    # A local store in the environment is not a server: make lab opens the course store as before.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert launch.server_from_environment() is None
