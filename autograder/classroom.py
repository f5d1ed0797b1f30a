"""Grade a whole class: find the submissions, grade them in parallel, resume after a stop.

Each submission is graded exactly as ``autograder grade`` does (own directory, kernel and
MLflow store), in a pool of worker processes. A worker writes its result file itself,
atomically, the moment it finishes: a batch stopped by Ctrl+C, a crash or a closed laptop
keeps every grade it finished, and the same command started again grades only the rest.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autograder.course import LABS, lab_for_notebook

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
    def key(self) -> str:
        lab = self.lab_hint or _lab_from_name(self.path.name) or self.path.stem
        return f"{self.student_id}__{lab}"


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


def unpack(archive: Path, into: Path) -> Path:
    """Extract a zip of submissions, refusing members that would land outside ``into``,
    and keeping each member's time (it may decide lateness)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = (into / info.filename).resolve()
            if not target.is_relative_to(into.resolve()):
                raise ValueError(f"{archive}: unsafe path in archive: {info.filename}")
            zf.extract(info, into)
            if not info.is_dir():
                stamp = datetime(*info.date_time).timestamp()
                os.utime(target, (stamp, stamp))
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
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it: never a half-written grade."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def grade_one(job: dict[str, Any]) -> dict[str, Any]:
    """Grade one submission and write its result file (runs in a worker process)."""
    from autograder.grade import GradeResult, grade_notebook
    from autograder.notebook import GradingError

    path = Path(job["path"])
    try:
        result = grade_notebook(path, job["cell_timeout"], job["total_timeout"])
    except GradingError as exc:
        result = GradeResult(str(path), job["lab_hint"], 0.0, 0.0, errors=[str(exc)])
    except Exception as exc:  # the grader's own failure is recorded, never stops the batch
        result = GradeResult(str(path), job["lab_hint"], 0.0, 0.0, errors=[f"could not grade: {exc!r}"])
    record = {
        **result.to_json(),
        "path": job["display"],
        "student_id": job["student_id"],
        "lab": result.lab or job["lab_hint"],
        "submitted_at": job["submitted_at"],
        "sha256": job["sha256"],
    }
    _write_atomic(Path(job["result_file"]), json.dumps(record, indent=2))
    return record


def pending_jobs(
    submissions: list[Submission], root: Path, results_dir: Path, cell_timeout: float, total_timeout: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split into (already graded, to grade). A result counts only for the same file content,
    so a student who re-submits is graded again."""
    done, todo = [], []
    for sub in submissions:
        result_file = results_dir / f"{_safe(sub.key)}.json"
        sha = _digest(sub.path)
        if result_file.exists():
            try:
                record = json.loads(result_file.read_text(encoding="utf-8"))
                if record.get("sha256") == sha:
                    done.append(record)
                    continue
            except (json.JSONDecodeError, OSError):
                pass  # a damaged result is graded again
        todo.append(
            {
                "path": str(sub.path),
                "display": sub.path.relative_to(root).as_posix(),
                "student_id": sub.student_id,
                "lab_hint": sub.lab_hint or _lab_from_name(sub.path.name),
                "submitted_at": sub.submitted_at,
                "sha256": sha,
                "result_file": str(result_file),
                "cell_timeout": cell_timeout,
                "total_timeout": total_timeout,
            }
        )
    return done, todo


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name)


def run_jobs(todo: list[dict[str, Any]], jobs: int, progress: bool = True) -> list[dict[str, Any]]:
    """Grade ``todo`` on ``jobs`` worker processes with a progress bar."""
    from tqdm import tqdm

    records: list[dict[str, Any]] = []
    if not todo:
        return records
    # spawn: the same behaviour on Linux, macOS and Windows, and no forked grader threads.
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo))), mp_context=context) as pool,
        tqdm(total=len(todo), unit="nb", desc="grading", disable=not progress) as bar,
    ):
        futures = {pool.submit(grade_one, job): job for job in todo}
        for future in as_completed(futures):
            job = futures[future]
            try:
                records.append(future.result())
            except Exception as exc:  # a worker that died: record it, keep going
                records.append(
                    {"path": job["display"], "student_id": job["student_id"], "lab": job["lab_hint"],
                     "score": 0.0, "max_score": 0.0, "checks": [], "errors": [f"worker failed: {exc!r}"],
                     "restored": [], "seconds": 0.0, "submitted_at": job["submitted_at"]}
                )
            bar.update(1)
    return records


@dataclass
class ClassSummary:
    graded_now: int
    kept: int
    out: Path


def grade_class(
    source: Path,
    out: Path,
    jobs: int | None = None,
    due: datetime | None = None,
    cell_timeout: float = 120.0,
    total_timeout: float = 600.0,
    progress: bool = True,
) -> ClassSummary:
    """Grade every submission under ``source`` (folder or zip) into ``out``."""
    from autograder import classreport

    out.mkdir(parents=True, exist_ok=True)
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
        done, todo = pending_jobs(submissions, root, out / "results", cell_timeout, total_timeout)
        if done:
            print(f"resuming: {len(done)} already graded, {len(todo)} to grade")
        records = done + run_jobs(todo, jobs or os.cpu_count() or 1, progress)
    finally:
        if unpacked is not None:
            shutil.rmtree(unpacked, ignore_errors=True)
    classreport.write_outputs(records, out, due)
    return ClassSummary(graded_now=len(todo), kept=len(done), out=out)
