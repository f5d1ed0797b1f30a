"""Regrades, with a trail: one student's lab, or one check for a whole class after fixing it.

A regrade runs the submission again exactly as the class grading did (same sandbox, same
student variant and hidden seed, as these derive from the submission), then:

- for one student's lab, the new grade replaces the old one;
- for one check (``--check``), every submission of the lab is run again and only that check's
  outcome is replaced: the others keep the points they had, so fixing one check moves nothing else.

Each regraded submission gets an entry in ``OUT/regrade-log.jsonl`` (one JSON object a line,
appended, never rewritten): when, who, why, which check, the score before and after. The
feedback of that student's lab lists its entries, and ``grades.csv`` counts them.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autograder.kit.i18n import Messages

LOG = "regrade-log.jsonl"

# Sentences the instructor reads, in one place (for translation).
TEXT = Messages({
    "no_submission": "no submission of {who} for lab {lab} in {source}",
    "no_check": "lab {lab} has no check {check}; its checks: {checks}",
    "no_reason": "a regrade needs a reason (--why)",
    "not_graded": "{n} submission(s) of the class have no grade yet (run `class` on them first): they are left out",
    "bad_line": "{path}, line {line}: not a regrade entry, skipped",
})


def read_log(out: Path) -> list[dict[str, Any]]:
    """Every entry of the regrade log (none if there is no log yet). A damaged line is
    skipped with a warning, never lost: the file is only ever appended to."""
    path = out / LOG
    if not path.is_file():
        return []
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not {"student_id", "lab", "when", "who", "why", "old_score",
                                                   "new_score"} <= set(entry):
                raise ValueError
        except ValueError:
            print(f"warning: {TEXT['bad_line'].format(path=path, line=n)}")
            continue
        entries.append(entry)
    return entries


def append_log(out: Path, entries: list[dict[str, Any]]) -> None:
    """Append entries to the log, one JSON line each, flushed to disk before returning."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOG, "a", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def merge_check(old: dict[str, Any], new: dict[str, Any], check: str) -> dict[str, Any]:
    """The old record with only ``check``'s outcome taken from the new one (score recomputed)."""
    outcome = next((c for c in new.get("checks", []) if c["id"] == check), None)
    if outcome is None or not old.get("checks"):
        return new  # nothing to keep from the old grade: the new one stands whole
    merged = dict(old)
    merged["checks"] = [outcome if c["id"] == check else c for c in old["checks"]]
    merged["score"] = round(sum(c["points"] for c in merged["checks"]), 6)
    merged["max_score"] = round(sum(c["max_points"] for c in merged["checks"]), 6)
    return merged


def entry(record: dict[str, Any], old_score: float | None, why: str, who: str, check: str | None,
          when: datetime | None = None) -> dict[str, Any]:
    """One line of the log."""
    return {
        "when": (when or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S"),
        "who": who,
        "why": why,
        "student_id": record["student_id"],
        "lab": record.get("lab") or "",
        "path": record.get("path"),
        "check": check,
        "old_score": old_score,
        "new_score": record["score"],
    }


def _lab_checks(lab: str) -> list[str]:
    import nbformat

    from autograder.course import LABS
    from autograder.notebook import graded_cells

    if lab not in LABS:
        raise ValueError(f"no such lab: {lab}")
    return list(graded_cells(nbformat.read(LABS[lab].master, as_version=4)))


def regrade(
    source: Path,
    out: Path,
    lab: str,
    why: str,
    student: str | None = None,
    check: str | None = None,
    who: str | None = None,
    options: Any = None,
    jobs: int | None = None,
    cell_timeout: float = 120.0,
    total_timeout: float = 600.0,
    sandboxed: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Regrade ``student``'s ``lab`` (or, with ``check`` and no student, that check for every
    submission of the lab), log each one, and rewrite the class's outputs. Returns the entries."""
    from autograder import classroom

    if not why.strip():
        raise ValueError(TEXT["no_reason"])
    checks = _lab_checks(lab)
    if check is not None and check not in checks:
        raise ValueError(TEXT["no_check"].format(lab=lab, check=check, checks=", ".join(checks)))
    options = options or classroom.ClassOptions()
    if options.policy is None:
        options.policy = classroom.kept_policy(out)
    who = who or getpass.getuser()
    classroom._check_settings(out, options)
    seed = classroom.class_seed(out, None)
    results = out / "results"
    with classroom.submissions_of(source) as (root, submissions):
        targets = [s for s in submissions if s.lab == lab and (student is None or s.student_id == student)]
        if not targets:
            raise ValueError(TEXT["no_submission"].format(who=student or "anyone", lab=lab, source=source))
        done, todo = classroom.pending_jobs(submissions, root, results, cell_timeout, total_timeout, seed,
                                            options.secret)
        jobs_now = [classroom.make_job(s, root, results, cell_timeout, total_timeout, seed, options.secret)
                    for s in targets]
        chosen = {j["result_file"] for j in jobs_now}
        missing = [j for j in todo if j["result_file"] not in chosen]
        if missing:
            print(TEXT["not_graded"].format(n=len(missing)))
        old = {}
        for job in jobs_now:
            path = Path(job["result_file"])
            if path.is_file():
                with contextlib.suppress(ValueError):
                    old[job["result_file"]] = json.loads(path.read_text(encoding="utf-8"))
        for slot, job in enumerate(jobs_now):
            job.update(sandboxed=sandboxed, slot=slot % 4000)
        fresh = classroom.run_jobs(jobs_now, jobs or os.cpu_count() or 1, progress)
        entries = []
        by_file = {j["result_file"]: j for j in jobs_now}
        regraded: dict[str, dict[str, Any]] = {}
        for record in fresh:
            job = next(j for j in jobs_now if j["display"] == record["path"] and j["student_id"] == record["student_id"])
            before = old.get(job["result_file"])
            if check is not None and before is not None and classroom.reusable(
                    before, job["key"], job["sha256"], job["seed"], job["variant"]):
                record = merge_check(before, record, check)
                classroom._write_atomic(Path(job["result_file"]), json.dumps(record, indent=2))
            regraded[job["result_file"]] = record
            entries.append(entry(record, before.get("score") if isinstance(before, dict) else None, why, who, check))
        append_log(out, entries)
        records = [r for r in done if classroom.result_file_name(r["student_id"], r["key"]["lab"], r["path"])
                   not in {Path(f).name for f in by_file}] + list(regraded.values())
        classroom.write_class_outputs(records, out, options, submissions)
    return entries
