"""Lab 09's given history: a registry that has lived for eight weeks, made from a seed.

Governance questions (who trained this, who promoted it, when, why; how often do we deploy,
how often does it break) need a past. The lab cannot wait eight weeks, so its set-up writes
one into the store, the way the earlier labs would have left it: training runs with the user
who ran them, the dataset digest and the Git commit Lab 07 taught (lineage), a registered
version per run, and an audit log of every move of ``@champion`` (promotions and rollbacks),
plus the CI history of the commits, as the JSON a CI system exports.

Everything is a pure function of the seed: the grader writes the same history from its hidden
seed and knows what the store held before the student's code ran.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: 2025-01-06 00:00 UTC: the history starts here (before any notebook runs, on any clock).
BASE_MS = 1_736_121_600_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: The history spans eight weeks; the report covers the last ``REPORT_DAYS`` of them.
HISTORY_DAYS = 56
REPORT_END_MS = BASE_MS + HISTORY_DAYS * DAY_MS
SCIENTISTS = ("ana", "bruno", "carla", "diego")
REVIEWERS = ("elena", "farid", "grace")
METRICS = ("rmse", "mae", "r2", "rmse_low_load", "rmse_high_load")
PROMOTE_REASONS = (
    "rmse {rmse:.1f} beats the champion on the holdout",
    "retrained on the new data version after a drift alert",
    "better on the high-load slice (rmse_high_load {rmse_high_load:.1f})",
    "scheduled retraining passed the gate",
)
ROLLBACK_REASONS = (
    "p95 latency alerts within hours of the release",
    "error budget burned: predictions off on high load",
    "drift monitor fired right after the release",
)
#: Tags of the audit log's events (one run per move of an alias).
AUDIT_TAGS = ("audit.model", "audit.action", "audit.version", "audit.previous", "audit.actor", "audit.reason")


def _sha(*parts: Any) -> str:
    return hashlib.sha1("-".join(map(str, parts)).encode()).hexdigest()  # noqa: S324 (an id, not security)


def history(seed: int) -> dict[str, Any]:
    """The seeded past: ``runs`` (one per version, in order), ``events`` (moves of @champion,
    in time order) and ``ci_runs`` (the CI system's runs, one per commit, some failed)."""
    rng = random.Random(f"lab09-history-{seed}")
    for _ in range(100):
        found = _draw(rng, seed)
        in_window = [e for e in found["events"] if e["time_ms"] > REPORT_END_MS - 28 * DAY_MS]
        if (
            sum(e["action"] == "promote" for e in in_window) >= 2
            and any(e["action"] == "rollback" for e in in_window)
            and any(e["action"] == "rollback" for e in found["events"][:-1])
        ):
            return found
    raise RuntimeError("no history drawn")  # pragma: no cover (the draw above always succeeds)


def _draw(rng: random.Random, seed: int) -> dict[str, Any]:
    count = rng.randint(6, 8)
    commit_days = sorted(rng.uniform(0, HISTORY_DAYS - 6) for _ in range(count))
    runs, data_version = [], 1
    for i, day in enumerate(commit_days, start=1):
        if i > 1 and rng.random() < 0.5:
            data_version += 1
        commit_ms = BASE_MS + int(day * DAY_MS)
        start = commit_ms + int(rng.uniform(0.5, 6) * HOUR_MS)
        rmse = rng.uniform(18, 30)
        runs.append(
            {
                "name": f"train-{i:02d}",
                "version": str(i),
                "user": rng.choice(SCIENTISTS),
                "commit": _sha("commit", seed, i),
                "commit_ms": commit_ms,
                "digest": hashlib.md5(f"data-{seed}-{data_version}".encode()).hexdigest(),  # noqa: S324 (DVC's md5)
                "data_version": data_version,
                "start_ms": start,
                "end_ms": start + rng.randint(120, 1800) * 1000,
                "metrics": {
                    "rmse": round(rmse, 4),
                    "mae": round(rmse * rng.uniform(0.7, 0.8), 4),
                    "r2": round(rng.uniform(0.80, 0.93), 4),
                    "rmse_low_load": round(rmse * rng.uniform(0.5, 0.7), 4),
                    "rmse_high_load": round(rmse * rng.uniform(1.3, 1.8), 4),
                },
                "approved_by": sorted(rng.sample(REVIEWERS, rng.randint(1, 2))),
            }
        )
    events: list[dict[str, Any]] = []
    champion, last = "", BASE_MS
    # The newest version is the candidate of the lab: trained, never promoted.
    for run in runs[:-1]:
        if champion and rng.random() < 0.2:
            continue  # the gate stopped it: trained, registered, never promoted
        when = max(run["end_ms"] + int(rng.uniform(2, 48) * HOUR_MS), last + HOUR_MS)
        reason = rng.choice(PROMOTE_REASONS).format(**run["metrics"])
        events.append(
            {
                "action": "promote",
                "version": run["version"],
                "previous": champion,
                "actor": rng.choice(REVIEWERS),
                "reason": reason,
                "time_ms": when,
            }
        )
        last = when
        if champion and rng.random() < 0.4:
            back = when + int(rng.uniform(0.5, 20) * HOUR_MS)
            events.append(
                {
                    "action": "rollback",
                    "version": champion,
                    "previous": run["version"],
                    "actor": rng.choice(REVIEWERS),
                    "reason": rng.choice(ROLLBACK_REASONS),
                    "time_ms": back,
                }
            )
            last = back
        else:
            champion = run["version"]
    ci_runs = []
    for i, run in enumerate(runs, start=1):
        retries = 1 if rng.random() < 0.3 else 0  # a flaky first attempt, then a green re-run
        for attempt in range(retries + 1):
            created = run["commit_ms"] + rng.randint(30, 300) * 1000 + attempt * HOUR_MS // 2
            ci_runs.append(
                {
                    "id": 1000 + len(ci_runs),
                    "workflow": "ci",
                    "event": "push",
                    "head_sha": run["commit"],
                    "commit_time": _iso(run["commit_ms"]),
                    "created_at": _iso(created),
                    "updated_at": _iso(created + rng.randint(180, 900) * 1000),
                    "conclusion": "success" if attempt == retries else "failure",
                }
            )
        if rng.random() < 0.4:  # a commit that failed CI and never became a version
            commit_ms = run["commit_ms"] + int(rng.uniform(1, 20) * HOUR_MS)
            created = commit_ms + rng.randint(30, 300) * 1000
            ci_runs.append(
                {
                    "id": 1000 + len(ci_runs),
                    "workflow": "ci",
                    "event": "push",
                    "head_sha": _sha("broken", seed, i),
                    "commit_time": _iso(commit_ms),
                    "created_at": _iso(created),
                    "updated_at": _iso(created + rng.randint(60, 400) * 1000),
                    "conclusion": "failure",
                }
            )
    return {"runs": runs, "events": events, "ci_runs": ci_runs, "report_end_ms": REPORT_END_MS}


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def champion_after(events: list[Mapping[str, Any]]) -> str:
    """The version @champion points to after these events."""
    return str(events[-1]["version"]) if events else ""


def write(tracking_uri: str, seed: int, names: Mapping[str, str], ci_file: Path) -> dict[str, Any]:
    """Write the seeded history into a store (directly, before its server starts) and the CI
    history into ``ci_file``; return the history. ``names``: the experiment, audit experiment
    and registered model names (``EXPERIMENT_NAME``, ``AUDIT_EXPERIMENT``, ``MODEL_NAME``)."""
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

    past = history(seed)
    client = MlflowClient(tracking_uri)
    if client.search_registered_models(f"name = '{names['MODEL_NAME']}'"):
        raise RuntimeError(
            f"the store {tracking_uri} already holds '{names['MODEL_NAME']}': Lab 09 needs a fresh "
            "store (leave TRACKING_URI as None: the lab makes its own)"
        )
    training = client.create_experiment(names["EXPERIMENT_NAME"])
    audit = client.create_experiment(names["AUDIT_EXPERIMENT"])
    client.create_registered_model(
        names["MODEL_NAME"], description="API response time (ms) from load figures"
    )
    for run in past["runs"]:
        made = client.create_run(
            training,
            start_time=run["start_ms"],
            run_name=run["name"],
            tags={"mlflow.user": run["user"], "git_commit": run["commit"]},
        )
        run_id = made.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, run["end_ms"], 0) for k, v in run["metrics"].items()],
            params=[Param("n_estimators", "100"), Param("data_version", f"v{run['data_version']}")],
        )
        dataset = Dataset(
            name="devops_metrics",
            digest=run["digest"],
            source_type="local",
            source=json.dumps({"uri": "data/metrics.csv"}),
        )
        client.log_inputs(
            run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])]
        )
        client.set_terminated(run_id, "FINISHED", end_time=run["end_ms"])
        client.create_model_version(
            names["MODEL_NAME"],
            source=f"{made.info.artifact_uri}/model",
            run_id=run_id,
            tags={"approved_by": ", ".join(run["approved_by"])},
        )
    for event in past["events"]:
        tags = dict(
            zip(
                AUDIT_TAGS,
                (
                    names["MODEL_NAME"],
                    event["action"],
                    event["version"],
                    event["previous"],
                    event["actor"],
                    event["reason"],
                ),
                strict=True,
            )
        )
        made = client.create_run(
            audit,
            start_time=event["time_ms"],
            tags={**tags, "mlflow.user": event["actor"]},
            run_name=f"{event['action']}-v{event['version']}",
        )
        client.set_terminated(made.info.run_id, "FINISHED", end_time=event["time_ms"])
    client.set_registered_model_alias(names["MODEL_NAME"], "champion", champion_after(past["events"]))
    ci_file.parent.mkdir(parents=True, exist_ok=True)
    ci_file.write_text(json.dumps({"workflow_runs": past["ci_runs"]}, indent=1), encoding="utf-8")
    return past
