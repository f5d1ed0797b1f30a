"""``make lab``: JupyterLab on the labs and the MLflow UI on the course store, together.

Written in Python rather than as a shell recipe because of what a student meets:

- **Ctrl+C stops both, and says so.** JupyterLab and the UI each run in a session of their
  own, so the terminal's Ctrl+C reaches only this launcher, which stops both process trees
  (kernels included) and prints what it stopped. Before, the Ctrl+C also reached the UI,
  which died silently while JupyterLab asked "Shutdown this Jupyter server (y/[n])?" and
  went on running.
- **One port for each, and everything follows it.** ``PORT`` is the UI's, ``JUPYTER_PORT``
  JupyterLab's (no silent move to the next free port); the kernels get the UI's address in
  ``MLFLOW_UI_URL``, so the run links the labs print point at this UI. A busy port is the
  one line the student sees, before anything starts.
- **A quiet start.** The UI's log goes to a file, JupyterLab logs only warnings, and the
  launcher prints the two addresses once each answers.
- **The UI as the labs describe it.** The UI is MLflow's own app served by uvicorn in one
  process (``mlflow ui`` adds a CLI parent and a job runner with seven huey consumers that no
  lab uses: 13 processes and 2.6 GB became 4 and about 0.6 GB). Its front page carries the
  course's first-visit settings (``UI_DEFAULTS``): MLflow 3.17's UI keeps these choices only
  in the browser's storage, and no server option sets them.
- **No instructor tools for students.** nbgrader's server and lab extensions are off in
  ``make lab`` (they offer Create Assignment, the formgrader and a Validate button that logs
  runs into the student's store); ``make lab-instructor`` keeps them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from autograder import course
from autograder.kit import i18n, labkit
from autograder.kit.i18n import Messages
from autograder.processes import kill_all, tree

# Every line the launcher prints, in one place (for translation).
TEXT = Messages({
    "store": "==> MLflow store: {uri}",
    "ui": "==> MLflow UI:  {url}",
    "ui_reused": "==> MLflow UI:  {url}  (already running: an MLflow server answers on port {port}, so it is used)",
    "lab": "==> JupyterLab: {url}",
    "ready": "==> Ready in {seconds:.0f} s. Open 01_tracking/01_tracking.ipynb. Ctrl+C here stops both.",
    "no_edition": (
        "==> No notebooks in language '{lang}' here ({folder} is missing). "
        "This copy of the course has: {available}"
    ),
    "port_busy": (
        "==> Port {port} is in use by another program, so nothing was started. "
        "Pick another port: make {target} {variable}={suggestion}"
    ),
    "ui_failed": "==> The MLflow UI did not start (its log: {log}); nothing is left running. Last lines:",
    "lab_failed": "==> JupyterLab did not start; nothing is left running.",
    "slow": "==> Still starting after {seconds:.0f} s (a busy machine?); waiting.",
    "stopping": "==> Ctrl+C: stopping JupyterLab and the MLflow UI...",
    "stopped": "==> Stopped JupyterLab and the MLflow UI.",
    "lab_ended": "==> JupyterLab ended; stopped the MLflow UI too.",
    "ui_died": (
        "==> The MLflow UI stopped on its own (its log: {log}); stopping JupyterLab too, so that "
        "nothing runs half-way. Start again with make lab."
    ),
    "ui_only": "==> MLflow UI on {uri}: {url}  (Ctrl+C stops it)",
    "ui_stopped": "==> Stopped the MLflow UI.",
    "server": "==> MLflow: the class server {uri} (its UI at the same address), as {user}, workspace {workspace}",
    "no_user": "==> Note: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are not set: a class server "
               "will refuse the labs. Set them (and MLFLOW_WORKSPACE) from the account your instructor gave you.",
})

#: The MLflow UI's first-visit settings, written to the browser's storage before MLflow's app
#: reads them (only where the browser holds no value yet: a choice the student made stays).
#: Keys and values as MLflow 3.17's ``useLocalStorage`` hook stores them (``<key>_v<version>``,
#: JSON); a test checks each key still exists in the installed UI's JavaScript.
UI_DEFAULTS: dict[str, Any] = {
    # Open experiments in the classic "Model training" view with its Runs tab, which the labs
    # describe, not the GenAI traces dashboard (the UI's default when nothing is stored).
    "mlflow.workflowType_v1": "machine_learning",
    # The "Information about UI telemetry" banner: telemetry is off (MLFLOW_DISABLE_TELEMETRY),
    # so there is nothing to inform about.
    "mlflow.telemetry.info.alert.dismissed_v1": True,
    "mlflow.settings.telemetry.enabled_v1": False,
    # The Assistant opens itself on the first visit to a local server; it needs an LLM
    # provider and a network, which a classroom may not have, and no lab uses it.
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
    "mlflow.assistant.panelOpen_v1": False,
    # A modal that advertises the new models UI over the registry page (Labs 04, 06, 07).
    "_mlflow_model_registry_promo_modal_dismissed_v1": True,
    # The home page's "Getting Started" cards advertise GenAI demos; folded, the list of
    # experiments that Lab 01 points to is at the top.
    "mlflow.home.getting-started.collapsed_v1": True,
    # The "Detect Issues" pop-up over the GenAI views, should a student switch to them.
    "mlflow.detectIssues.guidanceShown_v1": True,
    "mlflow.flagForReview.guidanceShown_v1": True,
}
#: The Assistant's floating button stays hidden: see above.
UI_STYLE = '[data-assistant-ui="true"] { display: none !important; }'

#: How MLflow's server reads its configuration (``mlflow/server/constants.py``; a test compares).
SERVER_ENV = {
    "backend": "_MLFLOW_SERVER_FILE_STORE",
    "registry": "_MLFLOW_SERVER_REGISTRY_STORE",
    "artifacts": "_MLFLOW_SERVER_ARTIFACT_ROOT",
}
#: nbgrader's parts that only instructors use: off in ``make lab``, on in ``make lab-instructor``.
NBGRADER_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
)
NBGRADER_LAB_EXTENSION = "@jupyter/nbgrader"
#: JupyterLab's news: a toast asks "Would you like to get notified about official Jupyter news?"
#: on the first visit, over the lab, and the answer would fetch from the internet.
ANNOUNCEMENTS_PLUGIN = "@jupyterlab/apputils-extension:announcements"

START_TIMEOUT = 120.0  # seconds before giving up on a server that does not answer
SLOW_NOTICE = 20.0  # seconds before saying that the start is slow


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def answers(url: str, timeout: float = 1.0) -> str | None:
    """The body of a GET on ``url`` when it answers 200, else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
            return response.read(4096).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def is_mlflow_server(port: int) -> bool:
    """True when an MLflow server answers on the port (its ``/version`` is a version number)."""
    body = answers(f"http://127.0.0.1:{port}/version")
    return bool(body) and body.strip()[:1].isdigit()


def _tool(name: str) -> str:
    """A console script of this environment (the venv's bin/ or Scripts/)."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


# --- The MLflow UI ------------------------------------------------------------------------


def ui_index_html(original: str) -> str:
    """MLflow's front page with the course's first-visit settings written before its app loads."""
    values = json.dumps({key: json.dumps(value) for key, value in UI_DEFAULTS.items()})
    script = (
        "<script>(function(){var d=" + values + ";try{for(var k in d){"
        "if(window.localStorage.getItem(k)===null){window.localStorage.setItem(k,d[k]);}}}"
        "catch(e){}})();</script>"
        f"<style>{UI_STYLE}</style>"
    )
    head = original.find("<head>")
    if head < 0:
        return script + original
    return original[: head + len("<head>")] + script + original[head + len("<head>") :]


def ui_app() -> Any:
    """MLflow's ASGI app, with its front page carrying ``UI_DEFAULTS``.

    Only ``GET /`` is answered here: the UI is a single page (``/#/...`` routes), so every
    visit, a run link included, loads this page first. Everything else is MLflow's.
    """
    import mlflow.server
    from mlflow.server.fastapi_app import app as mlflow_app

    index = Path(mlflow.server.__file__).parent / "js" / "build" / "index.html"
    page = ui_index_html(index.read_text(encoding="utf-8")).encode("utf-8") if index.is_file() else None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if page is not None and scope["type"] == "http" and scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
                (b"cache-control", b"no-cache"),
                (b"x-content-type-options", b"nosniff"),
                (b"x-frame-options", b"SAMEORIGIN"),
            ]})
            await send({"type": "http.response.body", "body": page if scope["method"] == "GET" else b""})
            return
        await mlflow_app(scope, receive, send)

    return app


def ui_environment(uri: str) -> dict[str, str]:
    """What the UI process needs in its environment: the store, and MLflow's extras off."""
    artifacts = labkit.artifact_root_for(uri) or ""
    return {
        SERVER_ENV["backend"]: uri,
        SERVER_ENV["registry"]: uri,
        SERVER_ENV["artifacts"]: artifacts,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
        # No job runner: its consumers serve GenAI features (judges, issue detection) no lab uses.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_ENABLE_REMOTE_ASSISTANT": "false",
    }


def serve_ui(uri: str, port: int) -> None:
    """Run the MLflow UI on ``uri`` in this process, on 127.0.0.1:port (blocks)."""
    os.environ.update(ui_environment(uri))
    db = labkit.sqlite_path(uri)
    if db is not None and not db.exists():
        from autograder import store

        db.parent.mkdir(parents=True, exist_ok=True)
        store.create(db)
    labkit.quiet_stack_warnings()
    import uvicorn

    app = ui_app()
    # uvicorn stops gracefully on Ctrl+C or SIGTERM, then raises the signal again for the handler
    # it found: with the default one, a KeyboardInterrupt traceback.
    for sig in _stop_signals():
        signal.signal(sig, signal.SIG_IGN)
    # No lifespan: MLflow's only reaps the Assistant's Docker sandboxes (a call to `docker` at
    # every start where a client is installed), and its cancellation printed a traceback on Ctrl+C.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="off", timeout_graceful_shutdown=3)


def ui_command(uri: str, port: int) -> list[str]:
    """The UI as a process of its own (see ``serve_ui``)."""
    return [sys.executable, "-m", "autograder.launch", "ui", "--store-uri", uri, "--port", str(port), "--serve"]


# --- JupyterLab -----------------------------------------------------------------------------


def notebook_dir(lang: str = course.SOURCE_LANGUAGE) -> Path:
    """Where JupyterLab opens: ``labs/``, or ``labs/<lang>/`` for another edition."""
    return course.LABS_DIR if lang == course.SOURCE_LANGUAGE else course.LABS_DIR / lang


def jupyter_command(port: int, instructor: bool, open_browser: bool, lang: str = course.SOURCE_LANGUAGE,
                    settings_dir: Path | None = None) -> list[str]:
    """JupyterLab on ``labs/`` (or the ``lang`` edition's folder) on exactly ``port``, logging
    warnings only; ``settings_dir`` holds the defaults of this start (its interface language)."""
    command = [
        _tool("jupyter"), "lab", f"--notebook-dir={notebook_dir(lang)}",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--ServerApp.log_level=WARN", "--LabApp.log_level=WARN",
        f"--ServerApp.open_browser={open_browser}",
        "--ServerApp.contents_manager_class=autograder.launch.CourseContentsManager",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if settings_dir is not None:
        command.append(f"--LabApp.app_settings_dir={settings_dir}")
    if not instructor:
        command += [f"--ServerApp.jpserver_extensions={name}=False" for name in NBGRADER_SERVER_EXTENSIONS]
    if os.name == "posix":
        # Kernels talk over Unix sockets in Jupyter's runtime folder: no open TCP ports, and no
        # "Kernel is running over TCP without encryption" warning at every kernel start.
        command.append("--KernelManager.transport=ipc")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers run as root; jupyter refuses without it
    return command


def kernel_language_info() -> dict[str, Any]:
    """What this Python's ipykernel reports as its ``language_info`` (a test compares)."""
    return {
        "name": "python",
        "version": sys.version.split()[0],
        "mimetype": "text/x-python",
        "codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
        "pygments_lexer": f"ipython{sys.version_info[0]}",
        "nbconvert_exporter": "python",
        "file_extension": ".py",
    }


@functools.cache
def _contents_manager_class() -> type:
    """JupyterLab's file manager, handing notebooks out with this kernel's ``language_info``.

    When a kernel starts, JupyterLab writes the kernel's ``language_info`` (with the exact
    Python version) into the open notebook: a lab saved under any other Python is then marked
    modified before the student typed anything. Served with the kernel's own values already in
    place, nothing changes when the kernel starts. The file on disk is not touched.
    """
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

    class CourseContentsManager(AsyncLargeFileManager):  # type: ignore[misc]
        async def get(self, path: str, content: bool = True, type: str | None = None,  # noqa: A002
                      format: str | None = None, **kwargs: Any) -> dict[str, Any]:  # noqa: A002
            model: dict[str, Any] = await super().get(path, content=content, type=type, format=format, **kwargs)
            notebook = model.get("content") if model.get("type") == "notebook" else None
            if notebook is not None:
                metadata = notebook.metadata
                if (metadata.get("kernelspec", {}).get("name") == "python3"
                        and metadata.get("language_info", {}).get("name") == "python"):
                    metadata["language_info"] = kernel_language_info()
            return model

    return CourseContentsManager


def __getattr__(name: str) -> Any:
    """``CourseContentsManager`` is built on first use, by JupyterLab's process only: the
    launcher itself never imports jupyter_server."""
    if name == "CourseContentsManager":
        return _contents_manager_class()
    raise AttributeError(name)


#: JupyterLab's interface language for each edition: a locale of an installed language pack
#: (``jupyterlab-language-pack-es-ES`` is pinned). English is JupyterLab's own.
JUPYTERLAB_LOCALES = {"es": "es_ES"}
TRANSLATION_PLUGIN = "@jupyterlab/translation-extension:plugin"


def lab_settings_dir(config_dir: Path, lang: str) -> Path | None:
    """JupyterLab's default settings for this start, in ``config_dir``: the interface in
    ``lang`` (an ``overrides.json``: a default, so a language the student picks in
    Settings > Language still wins). None for English, JupyterLab's own language."""
    locale = JUPYTERLAB_LOCALES.get(lang)
    if locale is None:
        return None
    folder = config_dir / "lab-settings"
    folder.mkdir(exist_ok=True)
    (folder / "overrides.json").write_text(json.dumps({TRANSLATION_PLUGIN: {"locale": locale}}))
    return folder


def student_config_dir(instructor: bool) -> Path:
    """A Jupyter config folder for this start: JupyterLab's news off, and nbgrader's lab
    extension off for students.

    JupyterLab reads disabled extensions from ``labconfig/page_config.json`` in every config
    folder; one of our own, on ``JUPYTER_CONFIG_PATH``, changes nothing in the student's own
    Jupyter settings.
    """
    folder = Path(tempfile.mkdtemp(prefix="mlops-lab-jupyter-"))
    disabled = {ANNOUNCEMENTS_PLUGIN: True} | ({} if instructor else {NBGRADER_LAB_EXTENSION: True})
    (folder / "labconfig").mkdir()
    (folder / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled}))
    return folder


def wants_browser() -> bool:
    """Open a browser only where there is a screen: a headless Linux box has none."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


# --- make lab -------------------------------------------------------------------------------


def _start(command: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    """A process in a session of its own (the terminal's Ctrl+C reaches only the launcher)."""
    out = open(log, "wb") if log else None  # noqa: SIM115 (the child holds it)
    try:
        kwargs: dict[str, Any] = {"env": env, "stdin": subprocess.DEVNULL}
        if out is not None:
            kwargs.update(stdout=out, stderr=subprocess.STDOUT)
        if os.name == "posix":
            kwargs["start_new_session"] = True
        else:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        return subprocess.Popen(command, **kwargs)
    finally:
        if out is not None:
            out.close()


def stop_jupyter(process: subprocess.Popen[bytes] | None, port: int, token: str) -> None:
    """Ask JupyterLab to shut down (it stops its kernels), then stop whatever is left."""
    if process is None:
        return
    processes = tree(process.pid)  # now: a kernel whose server is gone has no parent to find it by
    if process.poll() is None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
        try:
            urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 (loopback only)
            process.wait(timeout=10)
        except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
            pass
    kill_all(processes, grace=5)


def stop_tree(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a process and every process it started (politely first: JupyterLab shuts its
    kernels down, the UI closes its store)."""
    if process is not None:
        kill_all(tree(process.pid), grace=5)


def _tail(log: Path, lines: int = 15) -> str:
    """The end of a log, to show why a server did not start without sending the student to it."""
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Stop(Exception):
    """Ctrl+C, SIGTERM or a closed terminal: stop both servers."""


def _raise_stop(signum: int, frame: Any) -> None:
    """The launcher's handler for Ctrl+C, SIGTERM and SIGHUP: unwind to the clean-up."""
    raise _Stop


def remote(uri: str) -> bool:
    """A tracking server (a class server) rather than a store on this machine."""
    return uri.startswith(("http://", "https://"))


def server_from_environment() -> str | None:
    """``$MLFLOW_TRACKING_URI`` when it is a server's address (``make lab`` on a class server);
    a local store there is ignored, as before: ``make lab`` opens the course store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri if remote(uri) else None


def lab(port: int = 5000, jupyter_port: int = 8888, instructor: bool = False,
        open_browser: bool | None = None, store_uri: str | None = None, lang: str | None = None) -> int:
    """Start the UI and JupyterLab, print both addresses once they answer, and stop both
    together: on Ctrl+C, when JupyterLab ends, or when the UI dies. On a tracking server
    (``store_uri`` is http(s)), only JupyterLab: the server serves its own UI, and the
    credentials stay in the environment the kernels inherit, never in a notebook. ``lang``
    (default ``$COURSE_LANG``): the edition JupyterLab opens, in an interface in that language."""
    started = time.monotonic()
    lang = i18n.set_language(lang or os.environ.get(i18n.ENV) or course.default_language())
    if not notebook_dir(lang).is_dir():
        held = [code for code in i18n.LANGUAGES if any(notebook_dir(code).glob("[0-9][0-9]*_*/*.ipynb"))]
        available = ", ".join(f"make lab COURSE_LANG={code}" for code in held) or "-"
        print(TEXT["no_edition"].format(lang=lang, folder=notebook_dir(lang), available=available), flush=True)
        return 1
    uri = store_uri or labkit.course_store_uri()
    target = "lab-instructor" if instructor else "lab"
    if lang != course.default_language():  # the advice keeps the student in their edition
        target += f" COURSE_LANG={lang}"
    reuse_ui = False
    on_server = remote(uri)
    if on_server:
        reuse_ui = True  # nothing to start: the server is the UI
    elif not port_free(port):
        if not is_mlflow_server(port):
            print(TEXT["port_busy"].format(port=port, target=target, variable="PORT", suggestion=port + 1), flush=True)
            return 1
        reuse_ui = True
    if not port_free(jupyter_port):
        print(TEXT["port_busy"].format(port=jupyter_port, target=target, variable="JUPYTER_PORT",
                                       suggestion=jupyter_port + 1), flush=True)
        return 1

    ui_url = uri.rstrip("/") if on_server else f"http://127.0.0.1:{port}"
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    config_dir = student_config_dir(instructor)
    settings_dir = lab_settings_dir(config_dir, lang)
    env = {**os.environ, i18n.ENV: lang, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true", labkit.UI_URL_ENV: ui_url, "JUPYTER_TOKEN": token,
           "JUPYTER_CONFIG_PATH": os.pathsep.join(filter(None, [str(config_dir), os.environ.get("JUPYTER_CONFIG_PATH")]))}
    db = labkit.sqlite_path(uri)
    log_dir = db.parent if db is not None else course.STORE_DIR  # the UI's log beside its store
    log_dir.mkdir(parents=True, exist_ok=True)
    ui_log = log_dir / "ui.log"
    if on_server:
        user, workspace = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_WORKSPACE")
        print(TEXT["server"].format(uri=uri, user=user or "-", workspace=workspace or "-"), flush=True)
        if not user or not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
            print(TEXT["no_user"], flush=True)
    else:
        print(TEXT["store"].format(uri=uri), flush=True)

    previous = {sig: signal.signal(sig, _raise_stop) for sig in _stop_signals()}
    ui = jupyter = None
    try:
        ui = None if reuse_ui else _start(ui_command(uri, port), env, ui_log)
        browser = wants_browser() if open_browser is None else open_browser
        jupyter = _start(jupyter_command(jupyter_port, instructor, browser, lang, settings_dir), env, None)
        lab_url = f"http://127.0.0.1:{jupyter_port}/lab?token={token}"
        if reuse_ui and not on_server:
            print(TEXT["ui_reused"].format(url=ui_url, port=port), flush=True)
        waiting = {"ui": ui is not None, "lab": True}
        noticed = False
        while any(waiting.values()):
            if ui is not None and ui.poll() is not None:
                print(TEXT["ui_failed"].format(log=ui_log), flush=True)
                print(_tail(ui_log), flush=True)
                return 1
            if jupyter.poll() is not None:
                print(TEXT["lab_failed"], flush=True)
                return 1
            if waiting["ui"] and answers(f"{ui_url}/health") is not None:
                waiting["ui"] = False
                print(TEXT["ui"].format(url=ui_url), flush=True)
            if waiting["lab"] and answers(f"http://127.0.0.1:{jupyter_port}/api") is not None:
                waiting["lab"] = False
                print(TEXT["lab"].format(url=lab_url), flush=True)
            elapsed = time.monotonic() - started
            if elapsed > START_TIMEOUT:
                print(TEXT["ui_failed" if waiting["ui"] else "lab_failed"].format(log=ui_log), flush=True)
                return 1
            if elapsed > SLOW_NOTICE and not noticed:
                noticed = True
                print(TEXT["slow"].format(seconds=elapsed), flush=True)
            time.sleep(0.2)
        print(TEXT["ready"].format(seconds=time.monotonic() - started), flush=True)
        while True:
            if jupyter.poll() is not None:
                print(TEXT["lab_ended"], flush=True)
                return jupyter.returncode
            if ui is not None and ui.poll() is not None:
                print(TEXT["ui_died"].format(log=ui_log), flush=True)
                return 1
            time.sleep(0.5)
    except _Stop:
        for sig in _stop_signals():
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl+C must not cut the clean-up short
        print("\n" + TEXT["stopping"], flush=True)
        stop_jupyter(jupyter, jupyter_port, token)
        stop_tree(ui)
        jupyter = ui = None
        print(TEXT["stopped"], flush=True)
        return 0
    finally:
        for sig in _stop_signals():
            signal.signal(sig, signal.SIG_IGN)
        stop_jupyter(jupyter, jupyter_port, token)
        stop_tree(ui)
        shutil.rmtree(config_dir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ui_only(port: int, store_uri: str | None = None) -> int:
    """``make mlflow``: only the UI, in the foreground, stopped by Ctrl+C."""
    uri = store_uri or labkit.course_store_uri()
    if not port_free(port):
        print(TEXT["port_busy"].format(port=port, target="mlflow", variable="PORT", suggestion=port + 1), flush=True)
        return 1
    url = f"http://127.0.0.1:{port}"
    print(TEXT["ui_only"].format(uri=uri, url=url), flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn stops on Ctrl+C by itself, normally
        serve_ui(uri, port)
    print(TEXT["ui_stopped"], flush=True)
    return 0


def _stop_signals() -> list[signal.Signals]:
    """The signals that mean "stop" on this system (Windows has no SIGHUP)."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


def main(argv: list[str] | None = None) -> int:
    """``python -m autograder.launch [lab|ui] ...`` (the Makefile's lab, lab-instructor, mlflow)."""
    parser = argparse.ArgumentParser(prog="python -m autograder.launch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lab_parser = sub.add_parser("lab", help="JupyterLab and the MLflow UI, together")
    lab_parser.add_argument("--port", type=int, default=5000, help="the MLflow UI's port (default 5000)")
    lab_parser.add_argument("--jupyter-port", type=int, default=8888, help="JupyterLab's port (default 8888)")
    lab_parser.add_argument("--instructor", action="store_true", help="with nbgrader's instructor tools")
    lab_parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab_parser.add_argument("--store-uri", default=None, help="a tracking URI (default: the course store)")
    lab_parser.add_argument("--lang", default=None, help="the course's language: en or es (default $COURSE_LANG, else en)")
    ui_parser = sub.add_parser("ui", help="only the MLflow UI")
    ui_parser.add_argument("--port", type=int, default=5000)
    ui_parser.add_argument("--store-uri", default=None)
    ui_parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the UI process of `lab`
    args = parser.parse_args(argv)
    if args.command == "ui":
        if args.serve:
            serve_ui(args.store_uri or labkit.course_store_uri(), args.port)
            return 0
        return ui_only(args.port, args.store_uri)
    store_uri = args.store_uri or server_from_environment()
    return lab(args.port, args.jupyter_port, args.instructor, False if args.no_browser else None, store_uri,
               args.lang)


if __name__ == "__main__":
    sys.exit(main())
