"""``make lab``: JupyterLab on the labs and the MLflow UI on the course store, together.

Written in Python rather than as a shell recipe because of the clean-up: the UI is a
background process with children of its own (uvicorn), which a shell's Ctrl+C does not
reach (background jobs ignore SIGINT) and a plain ``kill`` of its PID leaves behind,
holding the port. Here the UI's whole process tree is stopped when JupyterLab ends,
however it ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from autograder import course
from autograder.kit import labkit
from autograder.processes import kill_all, tree

# Every line the launcher prints, in one place (for translation).
TEXT = {
    "store": "==> MLflow store: {uri}",
    "ui": "==> MLflow UI: http://127.0.0.1:{port}  (log: {log})",
    "port_busy": (
        "==> Port {port} is already in use, so the MLflow UI was not started. If it is an MLflow UI "
        "on this course's store, use it; otherwise run `make lab PORT=5001`."
    ),
    "lab": "==> JupyterLab on {labs}. Stop both with Ctrl+C (twice, or answer y).",
}


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _tool(name: str) -> str:
    """A console script of this environment (the venv's bin/ or Scripts/)."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


def ui_command(uri: str, port: int) -> list[str]:
    """The MLflow UI on the course store; one worker is plenty for one student."""
    artifacts = labkit.artifact_root_for(uri) or ""
    return [_tool("mlflow"), "ui", "--backend-store-uri", uri, "--default-artifact-root", artifacts,
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def stop_tree(process: subprocess.Popen[bytes]) -> None:
    """Stop a process and every process it started (politely first: the UI saves its state)."""
    kill_all(tree(process.pid), grace=5)


def lab(port: int) -> int:
    """Start the UI (unless the port is taken), then JupyterLab in the foreground."""
    from autograder import store

    uri = labkit.course_store_uri()
    db = labkit.sqlite_path(uri)
    if db is not None and not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        store.create(db)  # before the UI and a notebook race to create it
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    print(TEXT["store"].format(uri=uri), flush=True)
    ui = None
    if port_free(port):
        log = course.STORE_DIR / "ui.log"
        with open(log, "wb") as out:
            ui = subprocess.Popen(ui_command(uri, port), stdout=out, stderr=subprocess.STDOUT, env=env)
        print(TEXT["ui"].format(port=port, log=log), flush=True)
    else:
        print(TEXT["port_busy"].format(port=port), flush=True)
    command = [_tool("jupyter"), "lab", f"--notebook-dir={course.LABS_DIR}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers run as root; jupyter refuses without it
    print(TEXT["lab"].format(labs=course.LABS_DIR), flush=True)
    jupyter = subprocess.Popen(command, env=env)
    try:
        while True:
            try:
                return jupyter.wait()
            except KeyboardInterrupt:
                continue  # JupyterLab got the Ctrl+C too and decides when to stop
    finally:
        if ui is not None:
            stop_tree(ui)
