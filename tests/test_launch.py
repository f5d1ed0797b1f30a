"""``make lab`` without a browser: what the launcher starts and how, against the installed
MLflow, JupyterLab and nbgrader (an upgrade that renames what the launcher relies on fails
here, not in front of a student). The browser test (test_browser.py) runs it end to end."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from autograder import launch, store
from autograder.kit import labkit

MLFLOW_JS = Path(__import__("mlflow.server", fromlist=["x"]).__file__).parent / "js" / "build" / "static" / "js"


@pytest.fixture(scope="module")
def mlflow_js() -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in MLFLOW_JS.glob("*.js"))


@pytest.mark.parametrize("key", sorted(launch.UI_DEFAULTS))
def test_each_ui_default_is_a_setting_the_installed_mlflow_ui_reads(key: str, mlflow_js: str) -> None:
    name, version = re.fullmatch(r"(.+)_v(\d+)", key).groups()  # type: ignore[union-attr]
    # MLflow's useLocalStorage hook stores {key, version} under "<key>_v<version>".
    read_by_hook = f'key:"{name}",version:{version}' in mlflow_js
    read_by_constant = f'"{name}"' in mlflow_js  # keys kept in constants (the telemetry ones)
    assert read_by_hook or read_by_constant, f"MLflow's UI no longer reads {key}: the UI may open elsewhere"


def test_the_ui_defaults_to_the_classic_view_that_the_labs_describe(mlflow_js: str) -> None:
    # The stored workflow type decides the experiment page; without one, MLflow opens GenAI.
    assert 'key:"mlflow.workflowType",version:1,initialValue:' in mlflow_js
    assert 'MACHINE_LEARNING="machine_learning"' in mlflow_js
    assert launch.UI_DEFAULTS["mlflow.workflowType_v1"] == "machine_learning"
    assert 'data-assistant-ui":"true"' in mlflow_js  # what UI_STYLE hides


def test_the_front_page_sets_the_defaults_before_mlflow_loads_and_keeps_a_students_choice() -> None:
    original = '<!doctype html><html><head><script src="/static-files/main.js"></script></head><body></body></html>'
    page = launch.ui_index_html(original)
    script = page[page.index("<script>") : page.index("</script>")]
    assert page.index("<script>") < page.index('src="/static-files/main.js"')
    assert "getItem(k)===null" in script  # only where the browser holds nothing yet
    stored = json.loads(re.search(r"var d=(\{.*?\});", script).group(1))  # type: ignore[union-attr]
    assert {k: json.loads(v) for k, v in stored.items()} == launch.UI_DEFAULTS
    assert page.replace(page[page.index("<script>") : page.index("</style>") + len("</style>")], "") == original


def test_the_ui_app_serves_mlflow_with_the_course_front_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    db = tmp_path / "mlflow.db"
    db.write_bytes(store.template().read_bytes())
    for name, value in launch.ui_environment(labkit.sqlite_uri(db)).items():
        monkeypatch.setenv(name, value)
    client = TestClient(launch.ui_app(), base_url="http://127.0.0.1:5000")  # MLflow checks the Host
    front = client.get("/")
    assert front.status_code == 200 and "mlflow.workflowType_v1" in front.text and "static-files" in front.text
    assert client.get("/health").text == "OK"  # everything else is MLflow's own
    experiments = client.post("/ajax-api/2.0/mlflow/experiments/search", json={"max_results": 10}).json()
    assert [e["name"] for e in experiments["experiments"]] == ["Default"]  # the store it was given


def test_the_server_reads_the_store_from_the_variables_the_launcher_sets() -> None:
    from mlflow.server import constants

    assert launch.SERVER_ENV == {
        "backend": constants.BACKEND_STORE_URI_ENV_VAR,
        "registry": constants.REGISTRY_STORE_URI_ENV_VAR,
        "artifacts": constants.ARTIFACT_ROOT_ENV_VAR,
    }
    env = launch.ui_environment("sqlite:////x/mlflow.db")
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"  # no job runner, no huey consumers
    assert env[constants.ARTIFACT_ROOT_ENV_VAR] == labkit.artifact_root_for("sqlite:////x/mlflow.db")


def test_notebooks_are_served_with_the_language_info_their_kernel_reports() -> None:
    from ipykernel.ipkernel import IPythonKernel

    assert launch.kernel_language_info() == IPythonKernel.language_info


def test_the_contents_manager_fills_language_info_in_memory_only(tmp_path: Path) -> None:
    import asyncio

    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                             "display_name": "Python 3 (ipykernel)"},
                                            "language_info": {"name": "python"}})
    nbformat.write(nb, tmp_path / "lab.ipynb")
    before = (tmp_path / "lab.ipynb").read_bytes()
    manager = launch.CourseContentsManager(root_dir=str(tmp_path))
    model = asyncio.run(manager.get("lab.ipynb"))
    assert model["content"]["metadata"]["language_info"] == launch.kernel_language_info()
    assert (tmp_path / "lab.ipynb").read_bytes() == before
    other = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "ir", "display_name": "R"}, "language_info": {"name": "R"}})
    nbformat.write(other, tmp_path / "r.ipynb")
    assert asyncio.run(manager.get("r.ipynb"))["content"]["metadata"]["language_info"] == {"name": "R"}


def test_students_get_no_instructor_tools_and_instructors_keep_them() -> None:
    import importlib.util

    student = launch.jupyter_command(8890, instructor=False, open_browser=False)
    instructor = launch.jupyter_command(8890, instructor=True, open_browser=False)
    for name in launch.NBGRADER_SERVER_EXTENSIONS:
        assert importlib.util.find_spec(name) is not None, name  # still nbgrader's names
        assert f"--ServerApp.jpserver_extensions={name}=False" in student
        assert not [arg for arg in instructor if name in arg]
    for command in (student, instructor):
        assert "--ServerApp.port=8890" in command and "--ServerApp.port_retries=0" in command


def test_the_student_config_disables_nbgrader_lab_extension_by_its_installed_name() -> None:
    import sys

    packages = Path(sys.prefix, "share", "jupyter", "labextensions").glob("**/package.json")
    names = {json.loads(p.read_text())["name"] for p in packages if "node_modules" not in p.parts}
    assert launch.NBGRADER_LAB_EXTENSION in names
    core = Path(sys.prefix, "share", "jupyter", "lab", "static").glob("*.js")
    assert any(f'id:"{launch.ANNOUNCEMENTS_PLUGIN}"' in p.read_text(errors="replace") for p in core)
    news = {launch.ANNOUNCEMENTS_PLUGIN: True}
    for instructor, disabled in ((False, news | {launch.NBGRADER_LAB_EXTENSION: True}), (True, news)):
        folder = launch.student_config_dir(instructor)
        try:
            config = json.loads((folder / "labconfig" / "page_config.json").read_text())
            assert config == {"disabledExtensions": disabled}
        finally:
            import shutil

            shutil.rmtree(folder)


def test_run_links_follow_the_port_make_lab_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(labkit.UI_URL_ENV, raising=False)
    assert labkit.run_url("3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    monkeypatch.setenv(labkit.UI_URL_ENV, "http://127.0.0.1:5123/")
    assert labkit.run_url("3", "abc") == "http://127.0.0.1:5123/#/experiments/3/runs/abc"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something that is not MLflow listens on (macOS's AirPlay on 5000, say)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("which", ["ui", "jupyter"])
def test_a_busy_port_is_the_one_line_and_nothing_starts(which: str, busy_port: int, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(launch, "_start", lambda command, env, log: started.append(command))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        other = int(free.getsockname()[1])
    ports = {"port": busy_port, "jupyter_port": other} if which == "ui" else {"port": other, "jupyter_port": busy_port}
    assert launch.lab(**ports, open_browser=False, store_uri="sqlite:////nowhere/mlflow.db") == 1
    out = capsys.readouterr().out.strip().splitlines()
    variable = "PORT" if which == "ui" else "JUPYTER_PORT"
    assert out == [f"==> Port {busy_port} is in use by another program, so nothing was started. "
                   f"Pick another port: make lab {variable}={busy_port + 1}"]
    assert started == []


def test_creating_the_experiment_prints_nothing_red(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import mlflow

    db = tmp_path / "mlflow.db"
    db.write_bytes(store.template().read_bytes())
    labkit.connect(labkit.sqlite_uri(db))
    capfd.readouterr()
    mlflow.set_experiment("lab01-tracking")  # a new experiment: MLflow logs INFO on stderr
    assert mlflow.get_experiment_by_name("lab01-tracking") is not None
    assert "Creating a new experiment" not in capfd.readouterr().err


def test_mlflow_info_lines_are_not_red_and_its_warnings_still_are(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    db = tmp_path / "mlflow.db"
    db.write_bytes(store.template().read_bytes())
    labkit.connect(labkit.sqlite_uri(db))
    labkit.connect(labkit.sqlite_uri(db))  # a lab may connect twice: each line still printed once
    capfd.readouterr()
    registry = logging.getLogger("mlflow.tracking._model_registry.fluent")
    registry.info("Created version '2' of model 'devops-response-time'.")
    registry.warning("a real warning")
    out, err = capfd.readouterr()
    assert out.count("Created version '2' of model 'devops-response-time'.") == 1 and "Created" not in err
    assert "a real warning" in err and "a real warning" not in out


def test_mlflow_notices_are_not_red(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import mlflow
    from mlflow.utils import logging_utils

    db = tmp_path / "mlflow.db"
    db.write_bytes(store.template().read_bytes())
    labkit.connect(labkit.sqlite_uri(db))
    mlflow.set_experiment("notices")
    from sklearn.linear_model import LinearRegression

    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="model",
                                        pip_requirements=["scikit-learn"])
    capfd.readouterr()
    mlflow.register_model(info.model_uri, "devops-response-time")  # MLflow eprint()s its notices
    out, err = capfd.readouterr()
    assert "Successfully registered model 'devops-response-time'." in out, (out, err)
    assert "registered model" not in err.lower(), err
    logging_utils.disable_logging()  # MLflow's own switch still silences them
    try:
        logging_utils.eprint("hidden")
        assert "hidden" not in capfd.readouterr().out
    finally:
        logging_utils.enable_logging()


def test_the_spanish_edition_opens_its_notebooks_in_a_spanish_jupyterlab(tmp_path: Path) -> None:
    """`make lab COURSE_LANG=es`: JupyterLab on labs/es/, its interface language es_ES by
    default (a real JupyterLab answers with the pinned language pack's Spanish menus)."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = launch.student_config_dir(False)
    settings = launch.lab_settings_dir(config, "es")
    assert launch.lab_settings_dir(config, "en") is None  # English: JupyterLab's own
    command = launch.jupyter_command(port, instructor=False, open_browser=False, lang="es", settings_dir=settings)
    assert f"--notebook-dir={launch.course.LABS_DIR / 'es'}" in command
    token = "t" * 48
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
           "JUPYTER_CONFIG_PATH": str(config)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def get(path: str) -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?token={token}", timeout=5) as r:
                return json.loads(r.read())

        deadline = time.monotonic() + 90
        while True:
            try:
                get("/api/status")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(0.5)
        plugin = get(f"/lab/api/settings/{launch.TRANSLATION_PLUGIN}")
        # overrides.json sets the default the interface starts with; the student's own
        # Settings > Language choice (user settings, empty here) would still win.
        assert plugin["schema"]["properties"]["locale"]["default"] == "es_ES", plugin["schema"]["properties"]["locale"]
        assert "locale" not in plugin.get("settings", {})
        menus = get("/lab/api/translations/es_ES")["data"]["jupyterlab"]
        assert menus["menu\x04File"] == ["Archivo"] and menus["Run All Cells"] == ["Ejecutar todas las celdas"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        import shutil

        shutil.rmtree(config, ignore_errors=True)
