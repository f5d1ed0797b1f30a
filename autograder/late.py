"""The late policy: a due date per lab, a penalty per day late, and per-student extensions.

Read from two small CSV files an instructor keeps next to the roster:

- the policy, ``lab,due,penalty_per_day[,max_penalty]``: ``due`` in ISO 8601 (UTC when it has
  no offset), ``penalty_per_day`` the share of the lab's points taken per day late (``0.1``:
  10 % a day), ``max_penalty`` the most it may take (default 1: everything). ``lab`` may be
  ``*`` for every lab without a row of its own;
- the extensions, ``student_id,lab,due`` or ``student_id,lab,days``: a new due date, or days
  added to the lab's, for one student (``lab`` may be ``*``).

A day late is any started 24 hours after the due date (one minute late is one day), as the
learning platforms count it. The penalty is a share of the lab's points possible, as Canvas's
late policy takes it, never more than the score: a grade never goes below 0.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autograder.kit import i18n
from autograder.kit.i18n import Messages

ANY_LAB = "*"

# Every sentence a student or instructor reads about lateness, in one place (for translation).
TEXT = Messages({
    "on_time": "Submitted on time (due {due}).",
    "late": "Submitted {days} day(s) late (due {due}, handed in {submitted}): "
            "-{penalty:g} point(s) ({rate:g} % of the points per day, at most {cap:g} %).",
    "extension": " Your due date includes an extension to {due}.",
    "no_time": "No submission time was found: the late policy could not be applied.",
    "bad_row": "{path}, line {line}: {reason}",
    "missing_columns": "{path}: needs the columns {columns}; found {found}",
})


@dataclass(frozen=True)
class LabPolicy:
    """The due date of one lab and what each day late costs."""

    due: datetime
    penalty_per_day: float = 0.0
    max_penalty: float = 1.0


@dataclass(frozen=True)
class Lateness:
    """What the policy decided for one submission."""

    due: datetime | None
    extended: bool
    days_late: int
    penalty: float  # points taken off
    note: str

    @property
    def late(self) -> bool:
        return self.days_late > 0


@dataclass
class LatePolicy:
    """Due dates and penalties per lab, and each student's extensions."""

    labs: dict[str, LabPolicy] = field(default_factory=dict)
    extensions: dict[tuple[str, str], datetime | timedelta] = field(default_factory=dict)

    @classmethod
    def everywhere(cls, due: datetime) -> LatePolicy:
        """One due date for every lab, no penalty: ``class --due`` (a ``late`` column only)."""
        return cls({ANY_LAB: LabPolicy(_utc(due))})

    def for_lab(self, lab: str) -> LabPolicy | None:
        return self.labs.get(lab) or self.labs.get(ANY_LAB)

    def due_for(self, student_id: str, lab: str) -> tuple[datetime | None, bool]:
        """The due date that applies to this student's lab, and whether an extension made it."""
        policy = self.for_lab(lab)
        extension = self.extensions.get((student_id, lab), self.extensions.get((student_id, ANY_LAB)))
        if isinstance(extension, datetime):
            return extension, True
        if policy is None:
            return None, False
        if isinstance(extension, timedelta):
            return policy.due + extension, True
        return policy.due, False

    def judge(self, student_id: str, lab: str, submitted_at: str | None, score: float,
              max_score: float) -> Lateness | None:
        """The lateness of one submission; None when no due date applies to its lab."""
        due, extended = self.due_for(student_id, lab)
        if due is None:
            return None
        if not submitted_at:
            return Lateness(due, extended, 0, 0.0, TEXT["no_time"])
        submitted = _utc(datetime.fromisoformat(submitted_at))
        days = max(0, math.ceil((submitted - due) / timedelta(days=1)))
        policy = self.for_lab(lab)
        rate = policy.penalty_per_day if policy else 0.0
        cap = policy.max_penalty if policy else 1.0
        penalty = min(score, round(min(cap, rate * days) * max_score, 6)) if days else 0.0
        when = _show(due)
        if days:
            note = TEXT["late"].format(days=days, due=when, submitted=_show(submitted), penalty=penalty,
                                       rate=100 * rate, cap=100 * cap)
        else:
            note = TEXT["on_time"].format(due=when)
        if extended:
            note += TEXT["extension"].format(due=when)
        return Lateness(due, extended, days, penalty, note)

    def to_json(self) -> dict[str, Any]:
        """As plain data, kept in the output folder so that a regrade applies the same policy."""
        return {
            "labs": {lab: [p.due.isoformat(), p.penalty_per_day, p.max_penalty] for lab, p in self.labs.items()},
            "extensions": [[s, lab, v.isoformat() if isinstance(v, datetime) else v.total_seconds()]
                           for (s, lab), v in self.extensions.items()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatePolicy:
        labs = {lab: LabPolicy(datetime.fromisoformat(d), float(p), float(c)) for lab, (d, p, c) in data["labs"].items()}
        extensions: dict[tuple[str, str], datetime | timedelta] = {
            (s, lab): datetime.fromisoformat(v) if isinstance(v, str) else timedelta(seconds=v)
            for s, lab, v in data["extensions"]
        }
        return cls(labs, extensions)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _show(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _rows(path: Path, required: set[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a small CSV file (BOM and surrounding spaces tolerated), with line numbers."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            found = [c.strip() for c in reader.fieldnames or []]
            if not required <= set(found):
                raise ValueError(TEXT["missing_columns"].format(path=path, columns=", ".join(sorted(required)),
                                                                found=", ".join(found) or "nothing"))
            return [(n, {(k or "").strip(): (v or "").strip() for k, v in row.items()})
                    for n, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None


def _when(text: str, path: Path, line: int) -> datetime:
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(TEXT["bad_row"].format(path=path, line=line,
                                                reason=f"not an ISO 8601 date-time: {text!r}")) from None


def _share(text: str, name: str, path: Path, line: int, default: float) -> float:
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise ValueError(TEXT["bad_row"].format(path=path, line=line,
                                                reason=f"{name} must be a share between 0 and 1, got {text!r}"))
    return value


def read_policy(path: Path, extensions: Path | None = None) -> LatePolicy:
    """The policy CSV and, if given, the extensions CSV. Bad input: a one-line ``ValueError``."""
    policy = LatePolicy()
    for line, row in _rows(path, {"lab", "due", "penalty_per_day"}):
        if not row["lab"]:
            raise ValueError(TEXT["bad_row"].format(path=path, line=line, reason="no lab"))
        policy.labs[row["lab"]] = LabPolicy(
            _when(row["due"], path, line),
            _share(row["penalty_per_day"], "penalty_per_day", path, line, 0.0),
            _share(row.get("max_penalty", ""), "max_penalty", path, line, 1.0),
        )
    if extensions is not None:
        policy.extensions = read_extensions(extensions)
    return policy


def read_extensions(path: Path) -> dict[tuple[str, str], datetime | timedelta]:
    """``student_id,lab,due`` (a new due date) or ``student_id,lab,days`` (days added)."""
    found: dict[tuple[str, str], datetime | timedelta] = {}
    for line, row in _rows(path, {"student_id", "lab"}):
        if not row["student_id"] or not row["lab"]:
            raise ValueError(TEXT["bad_row"].format(path=path, line=line, reason="no student_id or lab"))
        key = (row["student_id"], row["lab"])
        if row.get("due"):
            found[key] = _when(row["due"], path, line)
        elif row.get("days"):
            try:
                days = float(row["days"])
            except ValueError:
                days = math.nan
            if not 0 <= days <= 366:
                raise ValueError(TEXT["bad_row"].format(path=path, line=line,
                                                        reason=f"days must be between 0 and 366, got {row['days']!r}"))
            found[key] = timedelta(days=days)
        else:
            raise ValueError(TEXT["bad_row"].format(path=path, line=line, reason="needs a due or a days value"))
    return found


def annotate(records: list[dict[str, Any]], policy: LatePolicy | None) -> None:
    """Give each class record its ``late_policy`` (due, days late, penalty, note) and its
    ``final_score`` (the score less the penalty). Without a policy the final score is the score."""
    for record in records:
        record.pop("late_policy", None)
        record["final_score"] = record["score"]
        if policy is None or not record.get("lab"):
            continue
        with i18n.using(record.get("language")):  # the note goes into the student's feedback
            lateness = policy.judge(record["student_id"], record["lab"], record.get("submitted_at"),
                                    float(record["score"]), float(record["max_score"]))
        if lateness is None:
            continue
        record["late_policy"] = {
            "due": lateness.due.isoformat() if lateness.due else None,
            "extended": lateness.extended,
            "days_late": lateness.days_late,
            "penalty": lateness.penalty,
            "note": lateness.note,
        }
        record["final_score"] = round(float(record["score"]) - lateness.penalty, 6)
