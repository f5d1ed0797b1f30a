"""Small helpers the lab notebooks call in their locked set-up cells.

They exist so that a notebook opened from ``labs/NN_x/`` in JupyterLab, the same
notebook run by papermill in CI, and a submission executed by the grader in a
temporary directory all talk to the right MLflow store and read the same data,
without students pasting path logic into every lab.
"""

from __future__ import annotations

import logging
import os
import posixpath
import sys
import warnings
from pathlib import Path
from urllib.request import pathname2url, url2pathname

#: The repository (or unpacked bundle) root. Computed here, not imported from the grader's
#: ``course`` module: this file is part of the kit, the only half of the autograder a
#: sandboxed notebook can see. ``COURSE_ROOT`` overrides it.
ROOT = Path(os.environ.get("COURSE_ROOT") or Path(__file__).resolve().parents[2])
STORE_DIR = ROOT / "mlflow-store"
MAIN_DATASET = ROOT / "data" / "devops_metrics.csv"

FEATURES = ["cpu_usage", "memory_usage", "disk_io", "network_latency", "concurrent_users"]
TARGET = "response_time_ms"
#: Where the MLflow UI is: ``make lab`` puts the address it started the UI on (``PORT``) in
#: ``$MLFLOW_UI_URL`` for the kernels; without it, the default port of ``make lab``/``make mlflow``.
UI_URL_ENV = "MLFLOW_UI_URL"
UI_URL = "http://127.0.0.1:5000"

#: Modules whose own warnings are the stack's noise, not the student's fault. They go to
#: stderr, and nbgrader scores a test cell that wrote to stderr as 0 (stack-facts.md).
#: Warnings raised by notebook code are attributed to ``__main__`` and stay visible.
STACK_MODULES = r"(mlflow|sqlalchemy|alembic|pydantic|skops|sklearn|pandas|google|opentelemetry)(\.|$)"

# MLflow reads this variable to place the artifacts of experiments it creates (it is how
# `mlflow server --default-artifact-root` reaches the store). Without it, artifacts land in
# ./mlruns under whatever directory the kernel started in, away from the course store.
_ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"


def sqlite_uri(db_path: str | os.PathLike[str]) -> str:
    """A tracking URI for a sqlite file, correct on Windows and POSIX.

    The same rule as MLflow's ``mlflow.utils.file_utils.path_to_local_sqlite_uri`` (a test
    compares the two), written out here because importing that module imports all of
    MLflow: 3 s on the grader's critical path, before a submission can start running.
    """
    path = posixpath.abspath(pathname2url(os.path.abspath(db_path)))
    return ("sqlite://" if sys.platform == "win32" else "sqlite:///") + path


def sqlite_path(uri: str) -> Path | None:
    """The database file behind a ``sqlite:`` tracking URI, or None for other stores."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :].startswith(":memory:"):
        return None
    # What follows the prefix is a URL path: relative, /absolute, or C:/absolute on Windows.
    return Path(url2pathname(uri[len(prefix) :]))


def course_store_uri() -> str:
    """The course-level store shared by JupyterLab, the MLflow UI and every lab."""
    return sqlite_uri(STORE_DIR / "mlflow.db")


def artifact_root_for(uri: str) -> str | None:
    """Artifacts live next to a sqlite database, in ``artifacts/``; None for other stores."""
    db = sqlite_path(uri)
    return (db.parent / "artifacts").resolve().as_uri() if db else None


def quiet_stack_warnings() -> None:
    """Hide warnings the MLflow/pandas/SQLAlchemy stack raises about itself."""
    warnings.filterwarnings("ignore", module=STACK_MODULES)


class _Stdout:
    """A stream that writes to whatever ``sys.stdout`` is at the time of the write (a kernel
    swaps it), and stays silent while the stream it stands in for is disabled."""

    def __init__(self, replaces: object = None) -> None:
        self.replaces = replaces

    @property
    def enabled(self) -> bool:  # MLflow's disable_logging() switches its stream off this way
        return bool(getattr(self.replaces, "enabled", True))

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if self.replaces is not None:
            self.replaces.enabled = value  # type: ignore[attr-defined]

    def write(self, text: str) -> int:
        return sys.stdout.write(text) if self.enabled else 0

    def flush(self) -> None:
        if self.enabled:
            sys.stdout.flush()


def info_to_stdout() -> None:
    """Send MLflow's INFO lines and notices ("Successfully registered model ...", "Created
    version '2' of model ...") to stdout, its warnings and errors still to stderr: JupyterLab
    paints stderr red, so a routine line looked like an error, and nbgrader scores a test cell
    that wrote to stderr as 0."""
    from mlflow.utils import logging_utils

    # MLflow prints its notices with eprint(), to this stream (its logger keeps its own reference).
    stream = getattr(logging_utils, "MLFLOW_LOGGING_STREAM", None)
    if stream is not None and not isinstance(stream, _Stdout):
        logging_utils.MLFLOW_LOGGING_STREAM = _Stdout(stream)
    logger = logging.getLogger("mlflow")
    if any(getattr(handler, "_course_info", False) for handler in logger.handlers):
        return  # connect() ran before in this kernel
    formatter = logger.handlers[0].formatter if logger.handlers else None
    for handler in logger.handlers:
        handler.addFilter(lambda record: record.levelno >= logging.WARNING)
    info = logging.StreamHandler(_Stdout())
    info._course_info = True  # type: ignore[attr-defined]
    info.setFormatter(formatter)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    logger.addHandler(info)


def connect(tracking_uri: str | None = None) -> str:
    """Point MLflow at one store and return its URI.

    Order: the argument (papermill and the grader set it), ``$MLFLOW_TRACKING_URI``
    (``make lab`` sets it), then the course store at the repository root. MLflow's own
    default is ``sqlite:///mlflow.db`` relative to the kernel's directory, which would give
    every lab folder its own store, invisible to the MLflow UI.
    """
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
    quiet_stack_warnings()
    # "Creating initial MLflow database tables..." is MLflow's business, not the lab's.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    # "Experiment with name ... does not exist. Creating a new experiment." is an INFO line on
    # stderr, which JupyterLab paints red like an error: creating the experiment is expected.
    logging.getLogger("mlflow.tracking.fluent").setLevel(logging.WARNING)
    info_to_stdout()
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or course_store_uri()
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        os.environ[_ARTIFACT_ROOT_ENV] = artifact_root_for(uri) or ""
    mlflow.set_tracking_uri(uri)
    from autograder.kit.checking import start_session  # self-checks judge this run only

    start_session(uri)
    return uri


def data_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The dataset to read: the given path, else the course's ``data/devops_metrics.csv``."""
    resolved = Path(path) if path else MAIN_DATASET
    if not resolved.is_file():
        from autograder.kit.i18n import _  # light: Babel is read only for another language

        raise FileNotFoundError(
            _("Dataset not found: {path}. Run `make data` at the repository root to create it.").format(
                path=resolved
            )
        )
    return resolved


def ui_url() -> str:
    """The MLflow UI's address: the one ``make lab`` started, else the default port."""
    return (os.environ.get(UI_URL_ENV) or UI_URL).rstrip("/")


def run_url(experiment_id: str, run_id: str) -> str:
    """Where a run is in the MLflow UI that ``make lab`` (or ``make mlflow``) started."""
    # On a class server, the UI opens the run in the student's workspace (MLflow's own links do too).
    workspace = os.environ.get("MLFLOW_WORKSPACE")
    suffix = f"?workspace={workspace}" if workspace else ""
    return f"{ui_url()}/#/experiments/{experiment_id}/runs/{run_id}{suffix}"
