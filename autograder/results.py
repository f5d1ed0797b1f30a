"""The result of grading one notebook: the one typed record that ``grade``, ``class``, the
terminal table, the feedback file and the class report all share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CheckOutcome:
    id: str
    points: float
    max_points: float
    passed: bool
    message: str


@dataclass
class GradeResult:
    path: str
    lab: str | None
    score: float
    max_score: float
    checks: list[CheckOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The notebook's language: its feedback and messages are written in it.
    language: str = "en"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> GradeResult:
        """A result back from its JSON record (extra keys, e.g. a class's, are ignored)."""
        checks = [CheckOutcome(**c) for c in record.get("checks", [])]
        keys = ("path", "lab", "score", "max_score", "errors", "restored", "seconds", "language")
        return cls(**{k: record[k] for k in keys if k in record}, checks=checks)
