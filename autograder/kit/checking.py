"""What every lab's self-checks and judgments share: results, the evidence vocabulary, and
how a notebook's self-check cell reports.

A lab check is two halves (DESIGN.md, "The autograder"):

* **evidence**: plain data (dicts of numbers, strings and lists) read from what the work
  produced: the MLflow store as data, artifact files, a logged model's predictions on given
  rows. Inside the notebook it is gathered in the kernel; at grading, the trusted grader
  reads the store itself and asks a sandboxed process for anything that needs the
  submission's code (a model's predictions).
* **judgment**: a pure function of the evidence and the expected values, returning a
  ``CheckResult``. The same function gives the self-check in the notebook (expected values
  for the default inputs ship as numbers in ``expected/``) and the official score (expected
  values computed by the grader on hidden inputs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import stat
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from autograder.kit.i18n import _, translate

#: Artifact files larger than this are not read (a plot or a report is far smaller).
MAX_ARTIFACT_BYTES = 20 << 20

EXPECTED_DIR = Path(__file__).with_name("expected")
#: A figure larger than this (about 4000 x 4000) is not decoded.
MAX_FIGURE_PIXELS = 16_000_000


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed or not, and a message a student can act on."""

    passed: bool
    message: str


Evidence = dict[str, Any]
Judge = Callable[[Evidence, Mapping[str, Any]], CheckResult]


class SelfCheckFailed(AssertionError):
    """A failed self-check. IPython shows only the message, not a traceback wall."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m✘ {self}\x1b[0m"]


_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings and MLflow's INFO logs while a check runs.

    nbgrader scores a test cell that wrote anything to stderr as 0, and MLflow logs to
    stderr when it loads a model; the check's own verdict is what the student should see.
    """
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)
    progress = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        mlflow_logger.setLevel(level)
        if progress is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = progress


def judge_safely(judge: Judge, evidence: Evidence, expected: Mapping[str, Any]) -> CheckResult:
    """Run one judgment; evidence of an unexpected shape fails the check, never the grader."""
    try:
        return judge(evidence, expected)
    except Exception as exc:
        return CheckResult(False, _("could not check: {error}").format(error=f"{type(exc).__name__}: {exc}"))


#: How a self-check names its task in the notebook (the one place this text lives).
LABEL = "TODO {n}"


def report(result: CheckResult, label: str) -> None:
    """Print a pass line, or raise a one-line failure that IPython shows in red."""
    if not result.passed:
        raise SelfCheckFailed(f"{label}: {result.message}")
    print(f"✔ {label}: {result.message}")


#: A kit's checks: a self-check cell's id -> (its TODO's number, the judgment).
Checks = Mapping[str, tuple[int, Judge]]


def notebook_params(namespace: Mapping[str, Any], param_names: Iterable[str]) -> dict[str, Any]:
    """The lab's parameters as the notebook's namespace holds them (a missing one is left out)."""
    return {name: namespace[name] for name in param_names if name in namespace}


def expected_values(
    lab: str, params: Mapping[str, Any], from_params: Callable[[Mapping[str, Any]], Mapping[str, Any]]
) -> dict[str, Any]:
    """What a self-check compares with: what the parameters alone say, then the values
    shipped for the default inputs (``load_expected``) where they were made for ``params``."""
    return {**from_params(params), **(load_expected(lab, params) or {})}


def run_self_check(
    checks: Checks, check_id: str, gather: Callable[[], tuple[Evidence, Mapping[str, Any]]]
) -> None:
    """The steps every kit's ``self_check`` shares: look the check up, gather the evidence and
    the expected values (``gather``, the kit's own part) and judge them with logs and warnings
    silenced, then print the pass line or raise the one-line failure. An unknown ``check_id``
    fails before anything is read."""
    todo, judge = checks[check_id]
    with quiet():
        ev, exp = gather()
        result = judge_safely(judge, ev, exp)
    report(result, LABEL.format(n=todo))


def load_expected(lab: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The expected values shipped for ``lab``, if they were made for these parameters.

    They are plain numbers computed by the grader's references on the default inputs; under
    official grading the inputs are hidden and differ, so there are none here and the
    self-check judges only what needs no reference (the grader judges the rest)."""
    path = EXPECTED_DIR / f"{lab}.json"
    if not path.is_file():
        return None
    shipped = json.loads(path.read_text(encoding="utf-8"))
    made_for = shipped.get("params", {})
    if any(not same_param_value(params.get(k), v) for k, v in made_for.items()):
        return None
    return shipped["expected"]


# --- This run of the notebook -------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """This run of a notebook: the store its set-up cell connected to, and when.

    A self-check judges what this run of the notebook made, never what an earlier run left
    in the course store: the store outlives the kernel, and an untouched TODO must not pass
    on yesterday's runs. ``client`` reads the session to show a self-check only the runs,
    versions and aliases made since ``started_ms`` (DESIGN.md, "Shape of a lab notebook")."""

    tracking_uri: str
    #: Milliseconds since the epoch: the clock MLflow stamps runs and versions with.
    started_ms: int


_session: Session | None = None


def start_session(tracking_uri: str) -> Session:
    """Record that this process's run of a notebook starts now, on ``tracking_uri``.

    ``labkit.connect`` calls it from every lab's set-up cell. Running that cell again in the
    same kernel keeps the first start, so work done earlier in this kernel still counts; a
    restarted kernel is a new run of the notebook and starts a new session."""
    global _session
    if _session is None or _session.tracking_uri != tracking_uri:
        _session = Session(tracking_uri, int(time.time() * 1000))
    return _session


def session(tracking_uri: str | None = None) -> Session | None:
    """The notebook's session, if a set-up cell in this process connected to ``tracking_uri``.

    None in every other process: the grader's trusted process reads a private copy of a
    fresh store (all of it is the submission's run), and tests read the stores they build."""
    if _session is None or (tracking_uri is not None and tracking_uri != _session.tracking_uri):
        return None
    return _session


def end_session() -> None:
    """Forget the session (tests that play several runs of a notebook in one process)."""
    global _session
    _session = None


class _View:
    """An MLflow entity with some attributes replaced (a registered model's aliases)."""

    def __init__(self, entity: Any, **replaced: Any) -> None:
        self._entity, self._replaced = entity, replaced

    def __getattr__(self, name: str) -> Any:
        replaced = self.__dict__["_replaced"]
        return replaced[name] if name in replaced else getattr(self.__dict__["_entity"], name)


class SessionClient:
    """An ``MlflowClient`` that shows a self-check only what this run of the notebook made.

    Runs started, model versions registered, and aliases set on such versions since the
    session started; an experiment only if this run created it, made it active or ran in
    it. Everything else (``get_run`` by id, artifacts, metric histories) passes through:
    reaching it needs an id that this run's evidence gave. The per-lab kits call the same
    methods on it as on a plain client, so they need no change of their own."""

    def __init__(self, inner: Any, current: Session) -> None:
        self.unfiltered, self.session = inner, current

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unfiltered, name)

    def _new(self, millis: int | None) -> bool:
        return millis is not None and int(millis) >= self.session.started_ms

    def search_runs(self, experiment_ids: Any, filter_string: str = "", *args: Any, **kwargs: Any) -> list[Any]:
        since = f"attributes.start_time >= {self.session.started_ms}"
        clause = f"{filter_string} and {since}" if filter_string.strip() else since
        found = self.unfiltered.search_runs(experiment_ids, clause, *args, **kwargs)
        return [r for r in found if self._new(r.info.start_time)]

    def experiment_in_session(self, experiment: Any) -> bool:
        """Whether this run created ``experiment``, made it active, or started a run in it."""
        if self._new(experiment.creation_time) or active_experiment_id() == experiment.experiment_id:
            return True
        return bool(self.search_runs([experiment.experiment_id], max_results=1))

    def get_experiment_by_name(self, name: str) -> Any:
        experiment = self.unfiltered.get_experiment_by_name(name)
        return experiment if experiment is not None and self.experiment_in_session(experiment) else None

    def search_model_versions(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [mv for mv in self.unfiltered.search_model_versions(*args, **kwargs) if self._new(mv.creation_timestamp)]

    def _registered_view(self, model: Any) -> Any | None:
        """A registered model with only this run's aliases, or None if this run did not touch it."""
        versions = {str(mv.version) for mv in self.search_model_versions(f"name = {quoted(model.name)}")}
        if not versions and not self._new(model.creation_timestamp):
            return None
        aliases = {a: v for a, v in (model.aliases or {}).items() if str(v) in versions}
        latest = [mv for mv in (model.latest_versions or []) if str(mv.version) in versions]
        return _View(model, aliases=aliases, latest_versions=latest)

    def search_registered_models(self, *args: Any, **kwargs: Any) -> list[Any]:
        views = (self._registered_view(m) for m in self.unfiltered.search_registered_models(*args, **kwargs))
        return [v for v in views if v is not None]

    def get_registered_model(self, name: str) -> Any:
        view = self._registered_view(self.unfiltered.get_registered_model(name))
        if view is None:
            raise _not_found(f"Registered Model with name={name} not found in this run of the notebook")
        return view

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        version = self.unfiltered.get_model_version_by_alias(name, alias)
        if not self._new(version.creation_timestamp):
            raise _not_found(f"Registered model alias {alias} not found in this run of the notebook")
        return version


def active_experiment_id() -> str | None:
    """The experiment ``mlflow.set_experiment`` made active in this process, if any.

    MLflow keeps it in a module global, set by nothing else; ``$MLFLOW_EXPERIMENT_ID`` is not
    a substitute, as a process may inherit it. Should MLflow rename the global, this gives
    None and an experiment counts only when this run created it or ran in it."""
    from mlflow.tracking import fluent

    active = getattr(fluent, "_active_experiment_id", None)
    return None if active is None else str(active)


def _not_found(message: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    return MlflowException(message, error_code=RESOURCE_DOES_NOT_EXIST)


def quoted(value: str) -> str:
    """A string literal for an MLflow filter string."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- Evidence vocabulary: the MLflow store read as data ---------------------------------


def client(tracking_uri: str) -> Any:
    """An MLflow client on one store (never the process-wide default).

    In a notebook whose set-up cell connected to this store, the client shows only what
    this run of the notebook made (``SessionClient``): that is what a self-check judges."""
    from mlflow import MlflowClient

    plain = MlflowClient(tracking_uri=tracking_uri)
    current = session(tracking_uri)
    return plain if current is None else SessionClient(plain, current)


def earlier_experiment(mlflow_client: Any, name: str) -> bool:
    """Whether experiment ``name`` exists only from an earlier run of the notebook (so a
    self-check can say that, not "no experiment")."""
    inner = getattr(mlflow_client, "unfiltered", None)
    return inner is not None and mlflow_client.get_experiment_by_name(name) is None and (
        inner.get_experiment_by_name(name) is not None)


def run_record(run: Any) -> dict[str, Any]:
    """A run as plain data."""
    return {
        "id": run.info.run_id,
        "name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "artifact_uri": run.info.artifact_uri,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.log-model")},
    }


def runs(mlflow_client: Any, max_results: int = 500) -> list[dict[str, Any]]:
    """Every run of every experiment, newest first."""
    ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not ids:
        return []
    found = mlflow_client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=max_results)
    return [run_record(r) for r in found]


def experiment_record(mlflow_client: Any, name: str) -> dict[str, Any] | None:
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        return None
    return {"id": experiment.experiment_id, "name": name, "active": experiment.lifecycle_stage == "active"}


def logged_models(mlflow_client: Any, run_id: str) -> list[dict[str, Any]]:
    """The models a run logged, oldest first, as plain data (status, where the files are)."""
    run = mlflow_client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    models = [mlflow_client.get_logged_model(o.model_id) for o in outputs]
    records = [
        {
            "id": m.model_id,
            "name": m.name,
            "status": str(getattr(m.status, "value", m.status)),
            "created": m.creation_timestamp or 0,
            "artifact_location": m.artifact_location,
        }
        for m in models
    ]
    return sorted(records, key=lambda m: m["created"])


def version_run_name(mlflow_client: Any, mv: Any) -> str | None:
    """The name of the run that logged a registered version's model (None if unknown)."""
    run_id = mv.run_id
    try:
        if not run_id and str(mv.source).startswith("models:/"):
            run_id = mlflow_client.get_logged_model(str(mv.source).split("/")[1]).source_run_id
        return mlflow_client.get_run(run_id).info.run_name if run_id else None
    except Exception:  # a deleted run or model: the version has no known role
        return None


def newest_ready(models: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest READY model: a failed ``log_model`` (e.g. untrusted skops types) leaves a
    FAILED one behind, and a student who then fixes the call is graded on the one that worked."""
    ready = [m for m in models if m["status"] == "READY"]
    return ready[-1] if ready else None


def local_path(uri: str, confine_to: Path | None = None) -> Path | None:
    """The local file behind a ``file:`` URI (or a plain path), or None.

    With ``confine_to`` (the grader reading a submission's folder), a path that leads outside
    that folder, through ``..`` or a symlink, is refused: the store is the submission's to
    write, and it must not make the grader read the instructor's files."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    path = Path(unquote(parsed.path))
    if confine_to is not None:
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(Path(os.path.realpath(confine_to))):
            return None
        path = real
    return path


def open_regular(path: str | os.PathLike[str], confine_to: Path | None = None) -> int | None:
    """A read-only descriptor on a regular file, or None.

    For the grader reading a submission's folder (``confine_to``): the path, every folder on
    it included, must resolve inside that folder (a symlinked ``mlflow-store`` or artifact
    folder leads nowhere else), and a FIFO or device is refused before it can block a read."""
    if confine_to is not None:
        real = os.path.realpath(path)
        if not Path(real).is_relative_to(os.path.realpath(confine_to)):
            return None
        path = real
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def read_file(uri: str, confine_to: Path | None = None, limit: int = MAX_ARTIFACT_BYTES) -> bytes | None:
    """The bytes of a regular file behind ``uri`` (at most ``limit``), or None."""
    path = local_path(uri, confine_to)
    fd = None if path is None else open_regular(path, confine_to)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def read_artifact(
    mlflow_client: Any, run: Mapping[str, Any], name: str, confine_to: Path | None = None
) -> bytes | None:
    """A run's artifact file, read as bytes (never loaded or executed)."""
    data = read_file(f"{run['artifact_uri'].rstrip('/')}/{name}", confine_to)
    if data is not None or confine_to is not None:
        return data
    # A remote store (a class server): download it, inside the notebook only.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow_client.download_artifacts(run["id"], name, tmp))
        except Exception:
            return None
        return local.read_bytes() if local.is_file() else None


def artifact_names(mlflow_client: Any, run: Mapping[str, Any], confine_to: Path | None = None) -> list[str]:
    """Top-level artifact names of a run."""
    folder = local_path(run["artifact_uri"], confine_to)
    if folder is not None:
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if confine_to is not None:
        return []
    return sorted(a.path for a in mlflow_client.list_artifacts(run["id"]))


def _download(artifact_uri: str, limit: int = MAX_ARTIFACT_BYTES) -> bytes | None:
    """An artifact of a remote store (a class server proxies them over HTTP), inside the
    notebook only: the grader reads a submission's own folder and never downloads."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp))
        except Exception:
            return None
        if not local.is_file() or local.stat().st_size > limit:
            return None
        return local.read_bytes()


def model_metadata(model: Mapping[str, Any], confine_to: Path | None = None) -> dict[str, Any]:
    """What a logged model's ``MLmodel`` file says, read as YAML data (never loaded):
    its signature's input names and whether it saved an input example."""
    import yaml

    location = model["artifact_location"].rstrip("/")
    text = read_file(f"{location}/MLmodel", confine_to, limit=1 << 20)
    if text is None and confine_to is None and local_path(location) is None:
        text = _download(f"{location}/MLmodel", limit=1 << 20)  # a remote store (a class server)
    if text is None:
        return {"readable": False}
    meta = yaml.safe_load(text) or {}
    inputs = (meta.get("signature") or {}).get("inputs")
    names = [c.get("name") for c in json.loads(inputs)] if isinstance(inputs, str) else None
    return {"readable": True, "input_names": names, "has_example": bool(meta.get("saved_input_example_info"))}


def png_summary(data: bytes | None) -> dict[str, Any] | None:
    """What a PNG shows, decoded as an image (never executed): size and how much is drawn.

    A header alone, a blank canvas or a tiny image is not a plot."""
    if not data or not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    import io

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_FIGURE_PIXELS:  # a bomb is refused, not decoded
                    return {"decodes": False}
                img.load()
                small = img.convert("L").resize((100, 100))
    except Exception:
        return {"decodes": False}
    pixels = list(small.tobytes())  # one byte a pixel in mode "L"
    background = max(set(pixels), key=pixels.count)
    drawn = sum(1 for p in pixels if abs(p - background) > 40) / len(pixels)
    return {"decodes": True, "width": img.width, "height": img.height, "drawn": drawn,
            "levels": len(set(pixels))}


def _local_model(tracking_uri: str, model_uri: str) -> str | None:
    """Where a logged model (``models:/m-...``) of a SQLite store lies on disk, read from the
    store directly: MLflow's own resolution opens the whole tracking store first, a second
    or more of a grading's critical path. None for anything else (a registered name, a
    remote store): MLflow resolves those."""
    import sqlite3

    from autograder.kit.labkit import sqlite_path

    db, model_id = sqlite_path(tracking_uri), model_uri.removeprefix("models:/")
    if db is None or not model_uri.startswith("models:/m-") or "/" in model_id:
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            row = con.execute("SELECT artifact_location FROM logged_models WHERE model_id = ?", (model_id,)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def predictions(tracking_uri: str, model_uri: str, rows: list[dict[str, Any]]) -> list[float]:
    """A logged model's predictions on ``rows`` (records of feature values).

    Loading a model runs the model's code: the grader calls this only inside a
    submission's sandbox (``python -m autograder.kit.predict``), never in its own process."""
    import mlflow
    import numpy as np
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(_local_model(tracking_uri, model_uri) or model_uri)
    frame = pd.DataFrame(rows)
    return [float(v) for v in np.asarray(model.predict(frame), dtype=float).ravel()]


#: A plot: at least this many pixels a side, this share of it drawn on, and this many grey
#: levels (axes, tick labels and anti-aliased marks give a matplotlib figure 70 or more; a
#: filled square or a blank canvas has a handful). This says "a real figure", not "a plot
#: of these predictions": what a figure shows is not checked beyond that.
MIN_FIGURE_SIDE = 200
MIN_DRAWN = 0.01
MIN_LEVELS = 30


def is_plot(figure: Mapping[str, Any]) -> bool:
    """Whether a ``png_summary`` looks like a figure someone plotted."""
    return (
        min(figure["width"], figure["height"]) >= MIN_FIGURE_SIDE
        and figure["drawn"] >= MIN_DRAWN
        and figure.get("levels", 0) >= MIN_LEVELS
    )


# --- Small helpers for judgments and messages --------------------------------------------


def same_param_value(logged: Any, expected: Any) -> bool:
    """Whether a logged parameter (always a string in MLflow) names the expected value:
    ``"0.25"`` for 0.25, ``"100"`` for 100, ``"[20, 60]"`` or ``"20,60"`` for a list."""
    if logged is None:
        return expected is None
    if str(logged) == str(expected):
        return True
    if isinstance(expected, list | tuple):
        return [int(x) for x in re.findall(r"-?\d+", str(logged))] == [int(x) for x in expected]
    try:
        return math.isclose(float(logged), float(expected), rel_tol=1e-9)
    except (TypeError, ValueError):
        return False


def message(messages: Mapping[str, str], key: str, **values: Any) -> str:
    """The text of message ``key`` of a kit's ``messages`` with ``values`` filled in.

    Every kit turns its keys into text here (``_msg = functools.partial(message, MESSAGES)``),
    so another edition of the course (the Spanish one) has one place to change: the English
    text is looked up in the current language's catalog (``i18n``), keyed by its text and key."""
    return translate(messages[key], context=key).format(**values)


def names(mapping: Mapping[str, Any] | list[str]) -> str:
    """``a, b, c`` for messages, or ``none``."""
    return ", ".join(sorted(mapping)) or _("none")


def pairs(mapping: Mapping[str, Any]) -> str:
    """``k=v, k=v`` for messages."""
    return ", ".join(f"{k}={v}" for k, v in mapping.items())
