"""A fresh, empty MLflow store for each submission, in a few milliseconds.

Creating a sqlite store runs MLflow's migrations: about 3 s, more than a third of a
Lab 01 run. The grader migrates one template per MLflow version, keeps it in a cache
directory, and copies it for each submission (the trick from fmind/mlops-python-package
PR #129). A copy is only as trustworthy as the template, and student code runs as the same
user, so the template is checked to be empty before every copy.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sqlite3
import tempfile
from importlib.metadata import version
from pathlib import Path

from autograder.kit import labkit

#: Tables that must be empty in a fresh store (the Default experiment aside).
_EMPTY_TABLES = ("runs", "registered_models", "logged_models", "model_versions")


def cache_dir() -> Path:
    """Where the grader keeps its templates; ``AUTOGRADER_CACHE`` overrides it."""
    base = os.environ.get("AUTOGRADER_CACHE") or Path(tempfile.gettempdir()) / "mlops-course-autograder"
    return Path(base)


def _is_pristine(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            if con.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] != 1:
                return False
            return all(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] == 0 for t in _EMPTY_TABLES)
    except sqlite3.Error:
        return False


def template() -> Path:
    """A migrated, empty store for the installed MLflow, made once and then reused."""
    target = cache_dir() / f"mlflow-{version('mlflow')}" / "mlflow.db"
    if target.exists() and _is_pristine(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and move it into place, so that parallel graders never
    # see a half-migrated file.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        create(Path(tmp) / "mlflow.db")
        os.replace(Path(tmp) / "mlflow.db", target)
    return target


def create(db: Path) -> None:
    """Create and migrate a sqlite store, artifacts in ``artifacts/`` beside it."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # migration chatter
    store = SqlAlchemyStore(labkit.sqlite_uri(db), labkit.artifact_root_for(labkit.sqlite_uri(db)))
    store.engine.dispose()


def store_uri(workdir: Path) -> str:
    """The tracking URI of a submission's store (known before the store exists)."""
    return labkit.sqlite_uri(workdir / "mlflow-store" / "mlflow.db")


def fresh_store(workdir: Path, template_db: Path) -> str:
    """Copy the template into ``workdir/mlflow-store`` and return its tracking URI."""
    db = workdir / "mlflow-store" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db, db)
    uri = store_uri(workdir)
    # The Default experiment keeps the artifact folder it was created with: point it into
    # this submission's own directory, or a submission that skips set_experiment would
    # write into the shared template's folder.
    with sqlite3.connect(db) as con:
        con.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (labkit.artifact_root_for(uri) + "/0",),
        )
    return uri


#: A submission's store larger than this is not read.
MAX_STORE_BYTES = 128 << 20


def private_copy(workdir: Path, private: Path, extras: tuple[str, ...] = ()) -> str:
    """Copy a graded submission's store into the grader's private folder; return its URI.

    Read as data only, from the grader's own copy: the submission's file may be a symlink
    (or sit in a symlinked folder) to something of the instructor's, a FIFO that blocks a
    read forever, or huge. A journal left by a killed kernel comes too, so SQLite can roll
    back the half-written transaction in the copy. The copy's schema must be MLflow's, table
    for table: a view or trigger planted in place of a table would run inside the grader."""
    from autograder.kit.checking import open_regular

    source = workdir / "mlflow-store" / "mlflow.db"
    target = private / "mlflow-store" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-journal", "-wal"):
        src = Path(f"{source}{suffix}")
        if suffix and not os.path.lexists(src):
            continue
        fd = open_regular(src, confine_to=workdir)
        if fd is None:
            raise ValueError("the notebook's MLflow store is missing or not a regular file (was it deleted?)")
        with os.fdopen(fd, "rb") as f:
            if os.fstat(fd).st_size > MAX_STORE_BYTES:
                raise ValueError(f"the notebook's MLflow store is larger than {MAX_STORE_BYTES >> 20} MiB")
            with open(f"{target}{suffix}", "wb") as out:
                shutil.copyfileobj(f, out)
    schema, (base, full) = _schema(target), _accepted(extras)
    if schema is None or base is None or full is None or not base <= schema <= full:
        raise ValueError("the notebook's MLflow store was altered: its tables are not MLflow's")
    return labkit.sqlite_uri(target)


@functools.lru_cache(maxsize=8)
def _accepted(extras: tuple[str, ...]) -> tuple[frozenset | None, frozenset | None]:
    """MLflow's schema, and MLflow's plus what the lab's own set-up adds (``extras``)."""
    base = _schema(template())
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "mlflow.db"
        shutil.copyfile(template(), db)
        with contextlib.closing(sqlite3.connect(db)) as con:
            for statement in extras:
                con.execute(statement)
            con.commit()
        full = _schema(db)
    return (None if base is None else frozenset(base)), (None if full is None else frozenset(full))


def _schema(db: Path) -> set[tuple[str, str, str, str]] | None:
    """Every table, index, view and trigger of a database, as SQLite records them."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            rows = con.execute("SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master").fetchall()
    except sqlite3.Error:
        return None
    # sqlite_stat tables come and go with ANALYZE; they hold statistics, not code.
    return {tuple(r) for r in rows if not r[1].startswith("sqlite_stat")}
