"""Grade a whole class: find the submissions, grade them in parallel, resume after a stop.

Each submission is graded exactly as ``autograder grade`` does (own directory, kernel and
MLflow store), as one task on Dask: a local cluster of worker processes by default, or the
workers of any Dask scheduler (``Cluster``). A worker writes its result file itself,
atomically, the moment it finishes: a batch stopped by Ctrl+C, a crash or a closed laptop
keeps every grade it finished, and the same command started again grades only the rest.

A result file is named by a hash of the exact (student id, lab, path) of its submission and
holds them, with the submission's sha256: a result is reused only for that very submission,
so two students whose ids differ only in accents or punctuation never share a grade.

The output folder is written by this trusted process alone and must never be visible to a
submission (the sandbox guarantees it): resume trusts a well-formed result file it finds
there, and nothing but the sha256 ties it to its submission.

Submissions handed in as a zip are hostile too: ``unpack`` refuses path escapes, links, zip
bombs, and archives too big or with too many members, before and while extracting.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autograder.course import LABS, lab_for_notebook
from autograder.hidden import submission_seed

#: Files a submission folder may hold that are not submissions.
_SKIP_PARTS = {".ipynb_checkpoints", "__MACOSX"}


@dataclass(frozen=True)
class Submission:
    """One notebook handed in: who, for which lab (when the layout says), where, when."""

    student_id: str
    lab_hint: str | None
    path: Path
    submitted_at: str | None

    @property
    def lab(self) -> str:
        """The lab it is for, as far as the layout or the file name says (else the file's stem)."""
        return self.lab_hint or _lab_from_name(self.path.name) or self.path.stem

    @property
    def key(self) -> str:
        """A readable name, not unique: ``result_file_name`` is what tells submissions apart."""
        return f"{self.student_id}__{self.lab}"


def _lab_from_name(name: str) -> str | None:
    lab = lab_for_notebook(name)
    return lab.lab_id if lab else None


def _student_from_name(stem: str) -> str:
    """``alice_01_tracking`` -> ``alice``; ``01_tracking-bob`` -> ``bob``; ``carol`` -> ``carol``."""
    for lab_id in LABS:
        stem = stem.replace(lab_id, "")
    return stem.strip("_-. ") or "unknown"


def _timestamp(path: Path, folder: Path) -> str:
    """When it was handed in: nbgrader's ``timestamp.txt`` if there is one, else the file's time."""
    stamp = folder / "timestamp.txt"
    if stamp.is_file():
        text = stamp.read_text(encoding="utf-8").strip()
        try:
            return _as_utc(datetime.fromisoformat(text.replace(" UTC", "+00:00"))).isoformat()
        except ValueError:
            pass
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: Limits on a zip of submissions (a class of 200 notebooks is a few tens of MB).
MAX_UNZIPPED = 1024**3  # bytes, all members together
MAX_MEMBERS = 20_000
MAX_RATIO = 200  # uncompressed : compressed, for a member larger than RATIO_FROM
RATIO_FROM = 1024**2  # bytes
_CHUNK = 1024**2


def _mib(n: float) -> str:
    return f"{n / 1024**2:.1f} MiB"


def _targets(archive: Path, zf: zipfile.ZipFile, into: Path) -> list[tuple[zipfile.ZipInfo, Path]]:
    """Check the central directory before anything is extracted: where each member would
    land, and that the archive is no link farm, no bomb and not too big."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"{archive}: refused: {len(infos)} members in the archive (the limit is {MAX_MEMBERS})")
    root = into.resolve()
    total = 0
    targets = []
    for info in infos:
        target = (root / info.filename).resolve()
        if not target.is_relative_to(root) or (target == root and not info.is_dir()):
            raise ValueError(f"{archive}: refused: unsafe path in archive: {info.filename}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError(f"{archive}: refused: symbolic link in archive: {info.filename}")
        if info.flag_bits & 0x1:
            raise ValueError(f"{archive}: refused: encrypted member in archive: {info.filename}")
        if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ValueError(
                f"{archive}: refused: {info.filename} expands {info.file_size / max(info.compress_size, 1):.0f}:1 "
                f"to {_mib(info.file_size)} (a zip bomb; the limit is {MAX_RATIO}:1)"
            )
        total += info.file_size
        if total > MAX_UNZIPPED:
            raise ValueError(f"{archive}: refused: more than {_mib(MAX_UNZIPPED)} once unzipped")
        targets.append((info, target))
    return targets


def _extract(archive: Path, zf: zipfile.ZipFile, targets: list[tuple[zipfile.ZipInfo, Path]]) -> None:
    """Extract member by member, counting the bytes that come out: a header that lies
    about its sizes lets out no more than the limits allow."""
    written = 0
    for info, target in targets:
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            member = 0
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    member += len(chunk)
                    written += len(chunk)
                    if written > MAX_UNZIPPED:
                        raise ValueError(f"{archive}: refused: more than {_mib(MAX_UNZIPPED)} once unzipped")
                    if member > info.file_size:
                        raise ValueError(f"{archive}: refused: {info.filename} is larger than its header says")
                    dst.write(chunk)
        except ValueError:
            target.unlink(missing_ok=True)
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            if target.is_file():
                target.unlink()
            raise ValueError(f"{archive}: refused: {info.filename} cannot be extracted ({exc})") from None
        stamp = datetime(*info.date_time).timestamp()
        os.utime(target, (stamp, stamp))


def unpack(archive: Path, into: Path) -> Path:
    """Extract a zip of submissions into ``into``, keeping each member's time (it may decide
    lateness). Refused with a one-line ``ValueError``, checked on the central directory
    before anything is written and again on the bytes as they come out: a member that would
    land outside ``into``, a symbolic link, an encrypted member, a member that expands more
    than ``MAX_RATIO``:1 (when larger than ``RATIO_FROM``), more than ``MAX_MEMBERS``
    members, or more than ``MAX_UNZIPPED`` bytes in all."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            _extract(archive, zf, _targets(archive, zf, into))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{archive}: not a readable zip ({exc})") from None
    # An archive made by zipping a folder holds that folder: look inside it.
    entries = [e for e in into.iterdir() if e.name not in _SKIP_PARTS]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name != "submitted":
        return entries[0]
    return into


def collect(root: Path) -> list[Submission]:
    """Every notebook under ``root``: nbgrader's ``submitted/<student>/<lab>/<nb>.ipynb``,
    ``<student>/<nb>.ipynb``, or a flat folder of notebooks named by student."""
    if (root / "submitted").is_dir():
        root = root / "submitted"
    found = []
    for path in sorted(root.rglob("*.ipynb")):
        parts = path.relative_to(root).parts
        if _SKIP_PARTS & set(parts):
            continue
        if len(parts) >= 3:  # nbgrader: student / lab / notebook
            found.append(Submission(parts[-3], parts[-2], path, _timestamp(path, path.parent)))
        elif len(parts) == 2:  # student / notebook
            found.append(Submission(parts[0], _lab_from_name(path.name), path, _timestamp(path, path.parent)))
        else:  # flat: the file name names the student
            found.append(
                Submission(_student_from_name(path.stem), _lab_from_name(path.name), path, _timestamp(path, root))
            )
    return found


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def result_file_name(student_id: str, lab: str, path: str) -> str:
    """The result file of one submission: a readable prefix, then a hash of the exact
    (student id, lab, path), so ids that differ only in accents or punctuation
    (``josé``/``josè``, ``a b``/``a_b``) never share a file."""
    identity = json.dumps([student_id, lab, path], ensure_ascii=False).encode("utf-8")
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{student_id}__{lab}").strip("_-")[:60] or "submission"
    return f"{readable}-{hashlib.sha256(identity).hexdigest()[:32]}.json"


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it: never a half-written grade."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


#: Seconds on top of a notebook's time limit that its whole grading may take.
WATCHDOG_MARGIN = 300


class GradingStalled(Exception):
    """The watchdog fired."""


def _arm_watchdog(seconds: int) -> Any:
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        return None

    def fire(signum: int, frame: Any) -> None:
        raise GradingStalled(f"grading took longer than {seconds} s and was stopped")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    return previous


def _disarm_watchdog(previous: Any) -> None:
    if previous is not None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def grade_one(job: dict[str, Any]) -> dict[str, Any]:
    """Grade one submission and write its result file (runs in a worker process)."""
    from autograder.grade import GradeResult, grade_notebook
    from autograder.hidden import discard, hidden_inputs
    from autograder.notebook import GradingError

    path = Path(job["path"])
    inputs = None
    # A watchdog for the whole grading, the grader's own reading and judging included: a
    # submission that found a way to stall them costs its own grade, not the batch.
    limit = int(job["total_timeout"] + WATCHDOG_MARGIN)
    previous = _arm_watchdog(limit)
    try:
        if job.get("variant") is not None:  # the student's own data, a hidden seed
            from autograder.variants import grading_inputs

            inputs = grading_inputs(job["variant"], job["seed"])
        else:
            inputs = hidden_inputs(job["seed"]) if job.get("seed") is not None else None
        result = grade_notebook(path, job["cell_timeout"], job["total_timeout"],
                                sandboxed=job.get("sandboxed", True), inputs=inputs, slot=job.get("slot", 0))
    except GradingError as exc:
        result = GradeResult(str(path), job["lab_hint"], 0.0, 0.0, errors=[str(exc)])
    except Exception as exc:  # the grader's own failure is recorded, never stops the batch
        result = GradeResult(str(path), job["lab_hint"], 0.0, 0.0, errors=[f"could not grade: {exc!r}"])
    finally:
        _disarm_watchdog(previous)
        if inputs is not None:
            discard(inputs)  # this submission's own variant
    record = {
        **result.to_json(),
        "path": job["display"],
        "student_id": job["student_id"],
        "lab": result.lab or job["lab_hint"],
        "submitted_at": job["submitted_at"],
        "sha256": job["sha256"],
        "seed": job.get("seed"),
        "variant": job.get("variant"),
        "key": job["key"],
    }
    _write_atomic(Path(job["result_file"]), json.dumps(record, indent=2))
    return record


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _well_formed_check(check: Any, fields: set[str]) -> bool:
    return (
        isinstance(check, dict)
        and set(check) == fields
        and isinstance(check["id"], str)
        and _number(check["points"])
        and _number(check["max_points"])
        and 0 <= check["points"] <= check["max_points"]
        and isinstance(check["passed"], bool)
        and isinstance(check["message"], str)
    )


def reusable(record: Any, key: dict[str, str], sha256: str, seed: int | None = None,
             variant: int | None = None) -> bool:
    """Whether a result file found on resume is this very submission's grade: its stored
    student id, lab, path, sha256, hidden seed and variant match exactly, and it is well formed
    (numbers where numbers are, 0 <= score <= max_score, the checks a list of checks adding up to both)."""
    from autograder.results import CheckOutcome

    if not isinstance(record, dict) or record.get("key") != key or record.get("sha256") != sha256:
        return False
    if record.get("seed") != seed or record.get("variant") != variant:  # graded on other inputs
        return False
    if record.get("student_id") != key["student_id"] or not isinstance(record.get("path"), str):
        return False
    if not (record.get("lab") is None or isinstance(record["lab"], str)):
        return False
    score, max_score, checks = record.get("score"), record.get("max_score"), record.get("checks")
    if not (_number(score) and _number(max_score) and 0 <= score <= max_score and isinstance(checks, list)):
        return False
    names = {f.name for f in fields(CheckOutcome)}
    if not all(_well_formed_check(c, names) for c in checks):
        return False
    if checks and not (
        math.isclose(score, sum(c["points"] for c in checks), abs_tol=1e-6)
        and math.isclose(max_score, sum(c["max_points"] for c in checks), abs_tol=1e-6)
    ):
        return False
    return (
        _strings(record.get("errors"))
        and _strings(record.get("restored"))
        and _number(record.get("seconds", 0.0))
        and (record.get("submitted_at") is None or isinstance(record["submitted_at"], str))
    )


def pending_jobs(
    submissions: list[Submission],
    root: Path,
    results_dir: Path,
    cell_timeout: float,
    total_timeout: float,
    seed: int | None = None,
    secret: bytes | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split into (already graded, to grade). A result is reused only for the very same
    submission (student id, lab, path and content) graded on the same hidden ``seed`` (and, with
    an instructor ``secret``, the same student variant), and only when it is well formed; a
    student who re-submits, or a damaged result file, is graded again."""
    done, todo = [], []
    for sub in submissions:
        job = make_job(sub, root, results_dir, cell_timeout, total_timeout, seed, secret)
        result_file = Path(job["result_file"])
        if result_file.is_file():
            try:
                record = json.loads(result_file.read_text(encoding="utf-8"))
            except (ValueError, OSError):  # not JSON, not UTF-8: graded again
                record = None
            if reusable(record, job["key"], job["sha256"], job["seed"], job["variant"]):
                done.append(record)
                continue
        todo.append(job)
    return done, todo


def make_job(sub: Submission, root: Path, results_dir: Path, cell_timeout: float, total_timeout: float,
             seed: int | None = None, secret: bytes | None = None) -> dict[str, Any]:
    """Everything a worker needs to grade one submission (its hidden seed and variant derived
    here, in the trusted process: a worker never sees the secret)."""
    from autograder.variants import variant_seed

    display = sub.path.relative_to(root).as_posix()
    sha = _digest(sub.path)
    return {
        "path": str(sub.path),
        "display": display,
        "student_id": sub.student_id,
        "lab_hint": sub.lab_hint or _lab_from_name(sub.path.name),
        "submitted_at": sub.submitted_at,
        "sha256": sha,
        "key": {"student_id": sub.student_id, "lab": sub.lab, "path": display},
        "result_file": str(results_dir / result_file_name(sub.student_id, sub.lab, display)),
        "cell_timeout": cell_timeout,
        "total_timeout": total_timeout,
        "seed": None if seed is None else submission_seed(seed, sub.student_id, sub.lab or "", display, sha),
        "variant": None if secret is None else variant_seed(secret, sub.student_id),
    }


#: How long to try to reach a Dask scheduler given by address.
SCHEDULER_TIMEOUT = "30s"


@dataclass(frozen=True)
class Cluster:
    """Where a class is graded: one task per submission on Dask, on a local cluster of ``jobs``
    worker processes (the default) or on the workers of the Dask scheduler at ``scheduler``
    (``tcp://host:8786``: a SLURM cluster through dask-jobqueue, Kubernetes, ...). ``engine="pool"``
    is the process pool that graded classes before Dask, kept to compare them (``make bench``).

    A remote cluster's workers need the course installed (the same environment), bubblewrap,
    and the submissions and the output folder at the same paths (a shared file system, as on
    most SLURM clusters): a worker reads the notebook and writes its result file itself."""

    jobs: int = 0  # local workers; 0: one per core
    scheduler: str | None = None
    engine: str = "dask"

    def workers(self, tasks: int) -> int:
        return max(1, min(self.jobs or os.cpu_count() or 1, tasks))


def run_jobs(todo: list[dict[str, Any]], jobs: int | Cluster, progress: bool = True) -> list[dict[str, Any]]:
    """Grade ``todo`` with a progress bar: on Dask (``jobs`` local workers, or a ``Cluster``)."""
    cluster = jobs if isinstance(jobs, Cluster) else Cluster(jobs=jobs)
    if not todo:
        return []
    if cluster.engine == "pool":
        return _run_on_pool(todo, cluster.workers(len(todo)), progress)
    if cluster.engine != "dask":
        raise ValueError(f"no such grading engine: {cluster.engine!r} (dask or pool)")
    return _run_on_dask(todo, cluster, progress)


def _failed_record(job: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """The row of a submission whose grading process died: recorded, and the batch goes on."""
    return {"path": job["display"], "student_id": job["student_id"], "lab": job["lab_hint"],
            "score": 0.0, "max_score": 0.0, "checks": [], "errors": [f"worker failed: {exc!r}"],
            "restored": [], "seconds": 0.0, "submitted_at": job["submitted_at"]}


def _collect(futures: dict[Any, dict[str, Any]], completed: Any, progress: bool) -> list[dict[str, Any]]:
    from tqdm import tqdm

    records: list[dict[str, Any]] = []
    with tqdm(total=len(futures), unit="nb", desc="grading", disable=not progress) as bar:
        for future in completed:
            try:
                records.append(future.result())
            except Exception as exc:  # a worker that died: record it, keep going
                records.append(_failed_record(futures[future], exc))
            bar.update(1)
    return records


def _run_on_pool(todo: list[dict[str, Any]], workers: int, progress: bool) -> list[dict[str, Any]]:
    # spawn: the same behaviour on Linux, macOS and Windows, and no forked grader threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(grade_one, job): job for job in todo}
        return _collect(futures, as_completed(futures), progress)


def _run_on_dask(todo: list[dict[str, Any]], cluster: Cluster, progress: bool) -> list[dict[str, Any]]:
    """One Dask task per submission. A local cluster's workers are separate processes with one
    thread each (a grading is one sandboxed kernel: one core)."""
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    with contextlib.ExitStack() as stack:
        if cluster.scheduler:
            try:
                client = stack.enter_context(Client(cluster.scheduler, timeout=SCHEDULER_TIMEOUT))
            except OSError as exc:  # refused, unknown host, timed out
                raise OSError(f"cannot reach the Dask scheduler at {cluster.scheduler}: {exc}") from None
        else:
            # No dashboard (it needs bokeh); the scheduler's small HTTP server (health checks)
            # on a free port rather than 8787, which another cluster may hold.
            local = stack.enter_context(LocalCluster(n_workers=cluster.workers(len(todo)), threads_per_worker=1,
                                                     processes=True, dashboard_address=":0",
                                                     scheduler_kwargs={"dashboard": False},
                                                     silence_logs=logging.ERROR))
            client = stack.enter_context(Client(local))
        futures = {client.submit(grade_task, job, key=f"grade-{i}-{job['sha256'][:12]}", pure=False): job
                   for i, job in enumerate(todo)}
        try:
            return _collect(futures, dask_completed(futures), progress)
        finally:
            client.cancel(list(futures))  # Ctrl+C: nothing left running on the cluster
            with contextlib.suppress(Exception):
                client.run(stop_grader)


def stop_grader() -> None:
    """Stop this worker's grading process (the client asks every worker when a class is done)."""
    global _grader
    with _grader_lock:
        grader, _grader = _grader, None
    if grader is not None:
        grader.shutdown(wait=True, cancel_futures=True)


def _exit_with_parent(parent: int) -> None:
    """In a grading process: end when the Dask worker that started it is gone (killed, or
    closed without ``stop_grader``), rather than live on as an orphan."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


#: This Dask worker's grading process (see ``grade_task``).
_grader: ProcessPoolExecutor | None = None
_grader_lock = threading.Lock()


def grade_task(job: dict[str, Any]) -> dict[str, Any]:
    """A Dask task: grade one submission in this worker's own grading process.

    Dask runs a task in a worker thread, where no SIGALRM watchdog can be armed; the grading
    process runs ``grade_one`` in its main thread, exactly as the process pool did, and lives
    as long as the worker (MLflow and the grader are imported once per worker, not per
    submission). A grading process that dies fails its own submission only; the next task
    starts a new one."""
    global _grader
    with _grader_lock:
        if _grader is None:
            # Dask starts its workers as daemons, and a daemon may not start processes.
            multiprocessing.current_process().daemon = False
            _grader = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_exit_with_parent, initargs=(os.getpid(),))
        grader = _grader
    try:
        return grader.submit(grade_one, job).result()
    except BrokenProcessPool:
        with _grader_lock:
            if _grader is grader:
                _grader = None
        raise


@dataclass
class ClassSummary:
    graded_now: int
    kept: int
    out: Path


def class_seed(out: Path, seed: int | None) -> int:
    """The class's hidden seed: the one given, else the one kept in ``out``, else a new one."""
    from autograder.hidden import new_seed

    kept = out / ".hidden-seed"
    if seed is None and kept.is_file():
        with contextlib.suppress(ValueError):
            seed = int(kept.read_text(encoding="utf-8").strip())
    if seed is None:
        seed = new_seed()
    kept.write_text(f"{seed}\n", encoding="utf-8")
    return seed


#: What a class's output folder remembers of how it was graded (never the secret itself).
SETTINGS = ".class-settings.json"


@dataclass
class ClassOptions:
    """The instructor's choices beyond the submissions themselves: the late policy, the roster
    (for the exports), the variants' secret, and whether to write the similarity report."""

    policy: Any = None  # late.LatePolicy
    roster: dict[str, Any] | None = None  # student_id -> roster.Student
    secret: bytes | None = None
    similarity: bool = True


def _check_settings(out: Path, options: ClassOptions) -> None:
    """Refuse to mix variants: a folder graded with one secret (or none) is not resumed with
    another; the policy and variants' fingerprint are kept for regrades."""
    from autograder import variants

    path = out / SETTINGS
    fingerprint = variants.fingerprint(options.secret) if options.secret is not None else None
    kept: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(ValueError, OSError):
            kept = json.loads(path.read_text(encoding="utf-8"))
    if "variants" in kept and kept["variants"] != fingerprint:
        raise ValueError(f"{out}: graded {'with another instructor secret' if kept['variants'] else 'without variants'}"
                         f"; use the same --variants as before, or another --out")
    settings = {"variants": fingerprint, "policy": options.policy.to_json() if options.policy else None}
    _write_atomic(path, json.dumps(settings, indent=2))


def kept_policy(out: Path) -> Any:
    """The late policy a class was graded with (for a regrade), or None."""
    from autograder.late import LatePolicy

    path = out / SETTINGS
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return LatePolicy.from_json(data["policy"]) if data.get("policy") else None


def grade_class(
    source: Path,
    out: Path,
    jobs: int | Cluster | None = None,
    due: datetime | None = None,
    cell_timeout: float = 120.0,
    total_timeout: float = 600.0,
    progress: bool = True,
    sandboxed: bool = True,
    seed: int | None = None,
    options: ClassOptions | None = None,
) -> ClassSummary:
    """Grade every submission under ``source`` (folder or zip) into ``out``.

    Every submission of one class runs on hidden inputs drawn from one class seed (fair, and a
    resumed batch continues on them): the seed is drawn once and kept in ``out/.hidden-seed``,
    which no sandbox can see. With an instructor secret (``options.secret``), each submission
    runs on its student's own data variant, with its hidden seed."""
    from autograder.late import LatePolicy

    options = options or ClassOptions()
    if due is not None and options.policy is None:
        options.policy = LatePolicy.everywhere(due)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, options)
    seed = class_seed(out, seed)
    with submissions_of(source) as (root, submissions):
        done, todo = pending_jobs(submissions, root, out / "results", cell_timeout, total_timeout, seed,
                                  options.secret)
        if done:
            print(f"resuming: {len(done)} already graded, {len(todo)} to grade")
        for slot, job in enumerate(todo):
            job.update(sandboxed=sandboxed, slot=slot % 4000)  # one uid per submission
        records = done + run_jobs(todo, jobs or os.cpu_count() or 1, progress)
        write_class_outputs(records, out, options, submissions)
    return ClassSummary(graded_now=len(todo), kept=len(done), out=out)


@contextlib.contextmanager
def submissions_of(source: Path) -> Any:
    """(root, submissions) of a folder or a zip (unpacked into a temporary folder meanwhile)."""
    unpacked: Path | None = None
    try:
        if source.is_file() and zipfile.is_zipfile(source):
            unpacked = Path(tempfile.mkdtemp(prefix="submissions-"))
            root = unpack(source, unpacked)
        elif source.is_dir():
            root = source
        else:
            raise FileNotFoundError(f"{source}: not a folder or a zip of submissions")
        submissions = collect(root)
        if not submissions:
            raise FileNotFoundError(f"{source}: no .ipynb submissions found")
        yield root, submissions
    finally:
        if unpacked is not None:
            shutil.rmtree(unpacked, ignore_errors=True)


def write_class_outputs(records: list[dict[str, Any]], out: Path, options: ClassOptions,
                        submissions: list[Submission]) -> None:
    """grades.csv, feedback, the class report (with the similarity report) and the exports."""
    from autograder import classreport, regrade, similarity

    report = ""
    if options.similarity:
        report = similarity.report_html(similarity.class_similarity(
            [(s.student_id, s.lab, s.path) for s in submissions]))
    classreport.write_outputs(records, out, policy=options.policy, roster=options.roster,
                              similarity_html=report, regrade_log=regrade.read_log(out))
