"""Lab 09b references: the seeded history's events and its DORA metrics and cost, recomputed from
the hidden seed (the history is a pure function of it), and the submission's workflow run in its
sandbox against stand-in operations (``autograder.kit.lab09_probe``)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import lab09_history as past
from autograder.kit import lab09_registry as registry
from autograder.kit import lab09b
from autograder.labspec import LabSpec, SandboxRunner
from autograder.references import lab09_registry as shared


def dora(history: Mapping[str, Any], price_per_hour: float) -> dict[str, float]:
    """The lab's six numbers over the ``REPORT_DAYS`` days that end at the report's end."""
    end = history["report_end_ms"]
    start = end - registry.REPORT_DAYS * past.DAY_MS
    events = history["events"]
    by_version = {run["version"]: run for run in history["runs"]}
    window = [e for e in events if start < e["time_ms"] <= end]
    deploys = [e for e in window if e["action"] == "promote"]
    rollbacks = [e for e in window if e["action"] == "rollback"]
    promoted_at = {e["version"]: e["time_ms"] for e in events if e["action"] == "promote"}
    lead = [(e["time_ms"] - by_version[e["version"]]["commit_ms"]) / past.HOUR_MS for e in deploys]
    failed = [
        d
        for d in deploys
        if any(
            e["action"] == "rollback" and e["previous"] == d["version"] and e["time_ms"] > d["time_ms"]
            for e in events
        )
    ]
    restore = [(e["time_ms"] - promoted_at[e["previous"]]) / past.HOUR_MS for e in rollbacks]
    compute = sum(
        (r["end_ms"] - r["start_ms"]) / past.HOUR_MS for r in history["runs"] if start < r["start_ms"] <= end
    )
    return {
        "deployment_frequency": len(deploys) / (registry.REPORT_DAYS / 7),
        "lead_time_hours": float(statistics.median(lead)),
        "change_failure_rate": len(failed) / len(deploys),
        "time_to_restore_hours": float(statistics.median(restore)),
        "compute_hours": compute,
        "cost_usd": compute * price_per_hour,
    }


def expected(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every expected value of the part on these inputs (the data file is not used)."""
    history = past.history(int(params["SEED"]))
    return {
        **shared.base_expected(params, lab09b.PARAMS),
        "seeded_events": [
            {"action": e["action"], "version": e["version"], "time_ms": e["time_ms"]}
            for e in history["events"]
        ],
        "dora": dora(history, float(params["PRICE_PER_HOUR"])),
    }


def run_code(ev: dict[str, Any], exp: dict[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Run the submission's workflow in its sandbox against stand-in operations (``lab09_probe``)."""
    shared.run_probe(ev, exp, runner, ("flow",))


SPEC = LabSpec(lab=lab09b, expected=expected, run_code=run_code)
