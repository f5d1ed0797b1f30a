"""Lab 09's shared core, for its two parts (``lab09a``: access, cards, promotion; ``lab09b``:
audit, DORA, the scheduled workflow): evidence, judgments, probes and messages.

Each part's notebook starts ``mlflow server --app-name basic-auth`` on the lab's store (the
seeded history of ``lab09_history`` in it), and the student governs it. The evidence is:

* **access as the server enforces it** (09a Task 1): each role's own client tries what the role
  may and may not do (read the experiment, log a run, move ``@champion``, write the audit log),
  and the server's answer (allowed, or 403) is recorded; an outsider with no grant tries to read.
  At grading, ``autograder.kit.lab09_probe`` starts the server again in the sandbox on the
  submission's store and user database, as an administrator of its own, resets the role users'
  passwords, and asks the same questions;
* **model cards** (09a Task 2): the ``model_card`` tag of each version, compared, field by field,
  with what the registry says about that version (its run's user, dataset digest, commit,
  metrics; its approvals);
* **promotion** (09a Task 3): the student's ``promote`` (``lab09-governance/promote.py``) called
  with each role's credentials on versions of a registered model of the checker's own: one with
  a current card, one without, one with a stale card; the outcome is read in the store (where
  ``@champion`` points, which audit event was written, by whom);
* **audit and DORA** (09b Tasks 1 and 2): the tables and metrics the notebook logged, against the
  audit log and the CI history (the grader's references recompute them from its hidden seed);
* **the scheduled workflow** (09b Task 3): the student's file run by the course's runner against
  stand-in operations (``lab09_flow``).

Part b starts from part a's end state without part a's answers: its set-up (``grant_roles``,
and ``lab09_ops.move_champion`` for the promotion) grants the roles from ``ACCESS`` and
promotes with the kit's own code.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import math
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from autograder.kit import checking
from autograder.kit import lab09_history as past
from autograder.kit import lab09_server as server
from autograder.kit.checking import (
    CheckResult,
    Evidence,
    Judge,
    is_plot,
    png_summary,
    read_artifact,
    run_record,
)

#: Next to the notebook: the server's files (auth config, users' database, CI history) and the
#: student's governance code.
SERVER_DIR = "lab09-server"
GOVERNANCE_DIR = "lab09-governance"
PROMOTE_FILE = "promote.py"
CI_FILE = "ci_runs.json"
CARD_TAG = "model_card"
CHAMPION = "champion"
ROLES = ("data_scientist", "reviewer", "viewer")
AUDIT_FILE = "audit.json"
DASHBOARD_FILE = "dashboard.png"
AUDIT_KEYS = ("version", "action", "trained_by", "promoted_by", "promoted_at", "reason")
DORA_METRICS = (
    "deployment_frequency",
    "lead_time_hours",
    "change_failure_rate",
    "time_to_restore_hours",
    "compute_hours",
    "cost_usd",
)
REPORT_DAYS = 28
METRIC_TOL = 1e-3
#: What each role may do (True) and may not (False), as the server must answer.
ACCESS = {
    "data_scientist": {
        "read_experiment": True,
        "log_run": True,
        "read_model": True,
        "move_champion": False,
        "write_audit": False,
    },
    "reviewer": {
        "read_experiment": True,
        "log_run": False,
        "read_model": True,
        "move_champion": True,
        "write_audit": True,
    },
    "viewer": {
        "read_experiment": True,
        "log_run": False,
        "read_model": True,
        "move_champion": False,
        "read_audit": True,
        "write_audit": False,
    },
    "outsider": {"read_experiment": False, "read_model": False, "read_audit": False},
}

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "no_server": "the lab's server is not running (run the set-up cells above): {error}",
    "probe_error": "the access could not be tested: {error}",
    "login_failed": "{role} could not log in ({detail}): create the user '{user}' with the password in PASSWORDS",
    "access_could": "{role} could {action}, but should be refused (403). {hint}",
    "access_could_not": "{role} could not {action} ({found}), but should be able to. {hint}",
    "access_hint_allowed": "Grant a permission on that resource (auth.grant_user_permission).",
    "access_hint_denied": "That permission is too strong: READ reads, EDIT writes (and moves aliases), MANAGE grants.",
    "access_ok": "the server enforces the three roles: the data scientist trains, the reviewer promotes, "
    "the viewer reads, nobody else sees anything",
    "role_data_scientist": "the data scientist",
    "role_reviewer": "the reviewer",
    "role_viewer": "the viewer",
    "role_outsider": "a user nobody granted anything",
    "role_none": "nobody",
    "role_other": "someone else",
    "action_read_experiment": "read the training experiment",
    "action_log_run": "log a run in it",
    "action_read_model": "read the registered model",
    "action_move_champion": "move @champion",
    "action_read_audit": "read the audit log",
    "action_write_audit": "write to the audit log",
    "no_card": "version {version} has no tag '{tag}': generate its card and attach it (set_model_version_tag)",
    "card_field": "the card of version {version} says {field}: {found!r}, but the registry says {expected!r}",
    "card_missing_field": "the card of version {version} has no line '{field}: ...'",
    "card_metric": "the card of version {version} gives {metric} = {found}, but its run logged {expected}",
    "card_section": "the card of version {version} has no section '## {section}' with a sentence or more",
    "card_ok": "the cards of versions {versions} match the registry (data version, commit, metrics, approvals)",
    "no_promote": "promote.py could not be used: {error}",
    "promote_accepted": "promote() accepted version {version}, which has {what}: it must refuse it "
    "(raise) and leave @champion where it was",
    "what_none": "no model card",
    "what_stale": "a stale card (it describes another version)",
    "promote_refused": "promote() refused version {version}, which has a current card, when the reviewer asked: "
    "{error}",
    "promote_alias": "after the reviewer's promote(), @champion points to {found}, not version {expected}",
    "promote_no_event": "promote() moved @champion but wrote no audit event (a run in '{experiment}' with the tags "
    "audit.model, audit.action, audit.version, audit.previous, audit.actor, audit.reason) for it",
    "promote_event": "the audit event of the promotion says {field} = {found!r}, expected {expected!r}",
    "ds_moved": "the data scientist's promote() moved @champion: promote must act with the caller's own "
    "credentials (the client it is given), which the server refuses",
    "ds_not_server": "with the EDIT permission granted, the data scientist's promote() still failed ({error}): "
    "refusing by user name in your code is not access control; let the server decide",
    "promote_ok": "promote() refuses missing and stale cards, records who promoted and why, and the server "
    "refuses the data scientist",
    "no_report_run": "no run named '{run}' in the experiment '{experiment}'",
    "no_audit_file": "run '{run}' has no artifact '{file}' holding a JSON list of rows",
    "audit_rows": "'{file}' has {found} rows, but the audit log has {expected} moves of @champion up to that report",
    "audit_row": "row {i} of '{file}' says {field} = {found!r}, but the store says {expected!r}",
    "audit_history": "the audit log lost events of the seeded history ({missing}): re-run the set-up",
    "audit_ok": "the audit answers {count} moves of @champion: who trained, who promoted, when and why",
    "dora_missing": "run '{run}' has no metric {names}",
    "dora_wrong": "{metric} = {found:.6g}, but the store and the CI history give {expected:.6g}",
    "dora_no_plot": "run '{run}' has no artifact '{file}' showing a plot",
    "dora_no_expected": "the metrics are logged; the grader compares their values on its own inputs",
    "dora_ok": "DORA metrics and cost match the store: {summary}",
    "flow_error": "the workflow could not be run: {error}",
    "flow_no_schedule": "the workflow is not triggered by a schedule (on: schedule: - cron: '...'); it has: {events}",
    "flow_bad_cron": "the cron line {cron!r} is not five fields (minute hour day month weekday)",
    "flow_no_dispatch": "the workflow has no workflow_dispatch trigger, so nobody can start it by hand",
    "flow_sequence": "with {scenario}, the workflow ran {found}; expected {expected} (in that order)",
    "flow_ran_nothing": "nothing",
    "flow_option": "with {scenario}, '{command}' got {option} {found!r}, expected {expected!r}",
    "flow_any_text": "some text",
    "flow_login": "with {scenario}, '{command}' logged in as {found}; it must log in as {expected} (vars.{var} "
    "and secrets.{secret} in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)",
    "flow_login_found": "{user!r} with the password of {whose}",
    "scenario_quiet": "no drift",
    "scenario_release": "drift, and the release gate passes",
    "scenario_rollback": "drift, and the release gate fails after the promotion",
    "flow_ok": "the schedule ({cron}) and workflow_dispatch start it; drift check, retrain, promote, release gate "
    "and rollback run when they should, each as the right user",
}
_msg = functools.partial(checking.message, MESSAGES)


def role_levels(role: str) -> dict[str, str | None]:
    """The permission a role holds on each of the lab's resources (the training experiment, the
    registered model, the audit log), read off what ``ACCESS`` asks the server to allow: writing
    is ``EDIT``, reading ``READ``, nothing is ``None``. Part b's set-up grants them."""
    rules = ACCESS[role]
    audit = "EDIT" if rules.get("write_audit") else "READ" if rules.get("read_audit") else None
    return {
        "training": "EDIT" if rules["log_run"] else "READ",
        "model": "EDIT" if rules["move_champion"] else "READ",
        "audit": audit,
    }


# --- The model card's format ----------------------------------------------------------------

CARD_LINE = re.compile(r"^\s*(?:[-*]\s*)?\**([A-Za-z][A-Za-z0-9_ ]*?)\**\s*:\s*(.+?)\s*$")


def card_fields(text: str) -> dict[str, str]:
    """``Key: value`` lines of a card (a leading ``-`` and ``**bold**`` allowed), keys in lower
    case: ``card_fields(card)["data version"]``. Given: reading a card is not the task."""
    fields: dict[str, str] = {}
    for line in str(text).splitlines():
        found = CARD_LINE.match(line)
        if found and not line.lstrip().startswith("#"):
            fields.setdefault(found.group(1).strip().lower(), found.group(2).strip().strip("`"))
    return fields


def card_markdown(
    name: str,
    version: str,
    fields: Mapping[str, Any],
    metrics: Mapping[str, float],
    intended_use: str,
    limitations: str,
) -> str:
    """A model card in the lab's format (given: the format is not the task; what goes in is).
    ``fields``: "Data version", "Git commit", "Trained by", "Approved by" -> value."""
    lines = [f"# Model card: {name} version {version}", f"Model version: {version}"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    lines += ["## Intended use", intended_use.strip(), "## Metrics"]
    lines += [f"{key}: {value:.4f}" for key, value in sorted(metrics.items())]
    lines += ["## Limitations", limitations.strip()]
    return "\n".join(lines) + "\n"


def dashboard(
    dora: Mapping[str, float], promotions_ms: list[int], rollbacks_ms: list[int], lead_hours: list[float]
) -> Any:
    """The DORA dashboard (given): promotions and rollbacks on a time line, lead times, cost."""
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    axes[0].scatter(pd.to_datetime(promotions_ms, unit="ms"), [1] * len(promotions_ms), color="tab:green")
    axes[0].scatter(pd.to_datetime(rollbacks_ms, unit="ms"), [0] * len(rollbacks_ms), color="tab:red")
    axes[0].set(
        title=f"{dora['deployment_frequency']:.2f} deploys/week, failure rate {dora['change_failure_rate']:.0%}",
        yticks=[0, 1],
        yticklabels=["rollback", "promotion"],
        ylim=(-0.5, 1.5),
    )
    axes[0].tick_params(axis="x", labelrotation=30)
    axes[1].bar(range(len(lead_hours)), lead_hours, color="tab:blue")
    axes[1].set(
        title=f"lead time, median {dora['lead_time_hours']:.1f} h", xlabel="promotion", ylabel="hours"
    )
    axes[2].bar(
        ["compute (h)", "cost (USD)"],
        [dora["compute_hours"], dora["cost_usd"]],
        color=["tab:orange", "tab:purple"],
    )
    axes[2].set(title=f"time to restore, median {dora['time_to_restore_hours']:.1f} h")
    fig.tight_layout()
    return fig


def card_sections(text: str) -> dict[str, str]:
    """``## Heading`` -> the text under it, headings in lower case."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in str(text).splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def whoami() -> str | None:
    """The user MLflow's clients log in as now (``MLFLOW_TRACKING_USERNAME``)."""
    import os

    return os.environ.get("MLFLOW_TRACKING_USERNAME")


# --- Reading the store --------------------------------------------------------------------


def _plain_client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(mlflow_client: Any, name: str) -> str | None:
    experiment = mlflow_client.get_experiment_by_name(name)
    return None if experiment is None else experiment.experiment_id


def version_records(mlflow_client: Any, name: str) -> dict[str, dict[str, Any]]:
    """Every version of a registered model with what the registry says about it."""
    records = {}
    for mv in mlflow_client.search_model_versions(f"name = '{name}'"):
        record: dict[str, Any] = {"tags": dict(mv.tags), "run_id": mv.run_id}
        with contextlib.suppress(Exception):
            run = mlflow_client.get_run(mv.run_id)
            inputs = run.inputs.dataset_inputs if run.inputs else []
            record.update(
                user=run.info.user_id,
                commit=run.data.tags.get("git_commit"),
                digest=inputs[0].dataset.digest if inputs else None,
                metrics=dict(run.data.metrics),
            )
        records[str(mv.version)] = record
    return records


def audit_events(mlflow_client: Any, experiment: str, model: str) -> list[dict[str, Any]]:
    """The audit log's moves of ``@champion`` for ``model``, oldest first."""
    exp_id = _experiment_id(mlflow_client, experiment)
    if exp_id is None:
        return []
    found = mlflow_client.search_runs([exp_id], max_results=5000, order_by=["attributes.start_time ASC"])
    events = []
    for run in found:
        tags = run.data.tags
        if tags.get("audit.model") == model and tags.get("audit.action") in ("promote", "rollback"):
            events.append(
                {
                    "action": tags["audit.action"],
                    "version": tags.get("audit.version"),
                    "previous": tags.get("audit.previous"),
                    "actor": tags.get("audit.actor"),
                    "reason": tags.get("audit.reason"),
                    "time_ms": run.info.start_time,
                }
            )
    return events


def _report_run(mlflow_client: Any, experiment: str, run_name: str) -> dict[str, Any] | None:
    exp_id = _experiment_id(mlflow_client, experiment)
    if exp_id is None:
        return None
    found = mlflow_client.search_runs(
        [exp_id],
        filter_string=f"attributes.run_name = '{run_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return run_record(found[0]) if found else None


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the store holds for this lab, as plain data (the server is not needed: the store is
    a sqlite file): the versions and the audit log, and the reports where the part's parameters
    name them (09b). ``confine_to``: the submission's folder, when the grader reads it."""
    mlflow_client = _plain_client(tracking_uri)
    versions = version_records(mlflow_client, params["MODEL_NAME"])
    events = audit_events(mlflow_client, params["AUDIT_EXPERIMENT"], params["MODEL_NAME"])
    found: Evidence = {"versions": versions, "events": events}
    if "REPORTS_EXPERIMENT" not in params:  # part a logs no reports
        return found
    audit_run = _report_run(mlflow_client, params["REPORTS_EXPERIMENT"], params["AUDIT_RUN"])
    rows = None
    if audit_run is not None:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            rows = json.loads(read_artifact(mlflow_client, audit_run, AUDIT_FILE, confine_to) or b"null")
    found["audit"] = {
        "run": None if audit_run is None else {"start_time": audit_run["start_time"]},
        "rows": _rows(rows),
    }
    dora_run = _report_run(mlflow_client, params["REPORTS_EXPERIMENT"], params["DORA_RUN"])
    found["dora"] = (
        None
        if dora_run is None
        else {
            "metrics": dora_run["metrics"],
            "figure": png_summary(read_artifact(mlflow_client, dora_run, DASHBOARD_FILE, confine_to)),
        }
    )
    return found


def _rows(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        return None
    return [
        {k: (str(r.get(k)) if r.get(k) is not None else None) for k in AUDIT_KEYS}
        if isinstance(r, dict)
        else {}
        for r in value[:5000]
    ]


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the parameters alone decide (the seeded history's shape, not its answers)."""
    runs = past.history(int(params["SEED"]))["runs"]
    return {
        "model_name": params["MODEL_NAME"],
        "candidate": runs[-1]["version"],
        "seeded_versions": [r["version"] for r in runs],
        "reports_experiment": params.get("REPORTS_EXPERIMENT"),
        "audit_run": params.get("AUDIT_RUN"),
        "dora_run": params.get("DORA_RUN"),
        "audit_experiment": params["AUDIT_EXPERIMENT"],
    }


# --- Judgments ------------------------------------------------------------------------------


def judge_access(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    access = ev.get("access") or {}
    if "error" in access:
        return CheckResult(False, _msg("probe_error", error=access["error"]))
    for role, rules in ACCESS.items():
        answers = access.get(role) or {}
        for action, allowed in rules.items():
            found = answers.get(action)
            if isinstance(found, str) and found.startswith("login"):
                user = (exp.get("users") or {}).get(role, role)
                return CheckResult(
                    False, _msg("login_failed", role=_msg(f"role_{role}"), detail=found, user=user)
                )
            if found != ("allowed" if allowed else "denied"):
                key = "access_could" if found == "allowed" else "access_could_not"
                hint = _msg("access_hint_allowed" if allowed else "access_hint_denied")
                role_words = _msg(f"role_{role}")
                return CheckResult(
                    False,
                    _msg(
                        key,
                        role=role_words[:1].upper() + role_words[1:],
                        action=_msg(f"action_{action}"),
                        found=found,
                        hint=hint,
                    ),
                )
    return CheckResult(True, _msg("access_ok"))


def card_problem(version: str, card: str | None, record: Mapping[str, Any]) -> str | None:
    """Why a card does not describe this version as the registry does (None: it does)."""
    if not card:
        return _msg("no_card", version=version, tag=CARD_TAG)
    fields = card_fields(card)
    approved = sorted(
        a.strip() for a in str(record.get("tags", {}).get("approved_by", "")).split(",") if a.strip()
    )
    wanted = {
        "model version": str(version),
        "data version": record.get("digest"),
        "git commit": record.get("commit"),
        "trained by": record.get("user"),
        "approved by": ", ".join(approved),
    }
    for field, expected in wanted.items():
        if field not in fields:
            return _msg("card_missing_field", version=version, field=field.capitalize())
        found = fields[field]
        if field == "approved by":
            found = ", ".join(sorted(a.strip() for a in found.split(",") if a.strip()))
        if found != expected:
            return _msg(
                "card_field",
                version=version,
                field=field.capitalize(),
                found=fields[field],
                expected=expected,
            )
    for metric, value in sorted((record.get("metrics") or {}).items()):
        try:
            given = float(fields[metric.lower()])
        except (KeyError, ValueError):
            return _msg(
                "card_metric",
                version=version,
                metric=metric,
                found=fields.get(metric.lower(), "nothing"),
                expected=value,
            )
        if not math.isclose(given, value, abs_tol=METRIC_TOL, rel_tol=METRIC_TOL):
            return _msg("card_metric", version=version, metric=metric, found=given, expected=value)
    sections = card_sections(card)
    for section in ("Intended use", "Limitations"):
        if len(sections.get(section.lower(), "")) < 10:
            return _msg("card_section", version=version, section=section)
    return None


def judge_card(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    versions = ev.get("versions") or {}
    seeded = [v for v in exp["seeded_versions"] if v in versions]
    carded = [v for v in seeded if versions[v]["tags"].get(CARD_TAG)]
    for version in sorted({exp["candidate"], *carded}, key=int):
        record = versions.get(version) or {"tags": {}}
        problem = card_problem(version, record["tags"].get(CARD_TAG), record)
        if problem:
            return CheckResult(False, problem)
    return CheckResult(
        True, _msg("card_ok", versions=", ".join(sorted({exp["candidate"], *carded}, key=int)))
    )


def judge_promote(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    probe = ev.get("promote") or {}
    if "error" in probe:
        return CheckResult(False, _msg("no_promote", error=probe["error"]))
    steps = probe["steps"]
    for step in ("stale", "none"):
        if steps[step]["raised"] is None or steps[step]["alias"] is not None:
            return CheckResult(
                False, _msg("promote_accepted", version=steps[step]["version"], what=_msg(f"what_{step}"))
            )
    good = steps["good"]
    if good["raised"] is not None:
        return CheckResult(False, _msg("promote_refused", version=good["version"], error=good["raised"]))
    if good["alias"] != good["version"]:
        return CheckResult(False, _msg("promote_alias", found=good["alias"], expected=good["version"]))
    event = good.get("event")
    if not event:
        return CheckResult(False, _msg("promote_no_event", experiment=exp["audit_experiment"]))
    wanted = {
        "action": "promote",
        "version": good["version"],
        "previous": "",
        "actor": probe["reviewer"],
        "reason": probe["reason"],
    }
    for field, value in wanted.items():
        if (event.get(field) or "") != value:
            return CheckResult(
                False, _msg("promote_event", field=f"audit.{field}", found=event.get(field), expected=value)
            )
    if steps["ds"]["alias"] != good["version"]:
        return CheckResult(False, _msg("ds_moved"))
    granted = steps["ds_granted"]
    if granted["raised"] is not None or granted["alias"] != granted["version"]:
        return CheckResult(
            False, _msg("ds_not_server", error=granted["raised"] or f"@champion -> {granted['alias']}")
        )
    return CheckResult(True, _msg("promote_ok"))


def iso_ms(text: Any) -> int | None:
    """Milliseconds of an ISO 8601 time with a zone (None if it is not one)."""
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return None if when.tzinfo is None else int(when.timestamp() * 1000)


def judge_audit(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    audit = ev.get("audit") or {}
    names = {"run": exp["audit_run"], "experiment": exp["reports_experiment"], "file": AUDIT_FILE}
    if audit.get("run") is None:
        return CheckResult(False, _msg("no_report_run", **names))
    rows = audit.get("rows")
    if rows is None:
        return CheckResult(False, _msg("no_audit_file", **names))
    events = ev.get("events") or []
    seeded = {(e["action"], str(e["version"]), e["time_ms"]) for e in exp.get("seeded_events") or []}
    missing = seeded - {(e["action"], str(e["version"]), e["time_ms"]) for e in events}
    if missing:
        return CheckResult(False, _msg("audit_history", missing=len(missing)))
    until = audit["run"]["start_time"]
    wanted = [e for e in events if e["time_ms"] <= until]
    if len(rows) != len(wanted):
        return CheckResult(False, _msg("audit_rows", found=len(rows), expected=len(wanted), **names))
    versions = ev.get("versions") or {}
    for i, (row, event) in enumerate(zip(rows, wanted, strict=True)):
        expected = {
            "version": str(event["version"]),
            "action": event["action"],
            "trained_by": (versions.get(str(event["version"])) or {}).get("user"),
            "promoted_by": event["actor"],
            "reason": event["reason"],
        }
        for key, value in expected.items():
            if row.get(key) != value:
                return CheckResult(
                    False, _msg("audit_row", i=i, field=key, found=row.get(key), expected=value, **names)
                )
        when = iso_ms(row.get("promoted_at"))
        if when is None or abs(when - event["time_ms"]) > 1000:
            return CheckResult(
                False,
                _msg(
                    "audit_row",
                    i=i,
                    field="promoted_at",
                    found=row.get("promoted_at"),
                    expected=past._iso(event["time_ms"]),
                    **names,
                ),
            )
    return CheckResult(True, _msg("audit_ok", count=len(wanted)))


def judge_dora(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    dora = ev.get("dora")
    if dora is None:
        return CheckResult(
            False, _msg("no_report_run", run=exp["dora_run"], experiment=exp["reports_experiment"])
        )
    metrics = dora["metrics"]
    missing = [m for m in DORA_METRICS if m not in metrics]
    if missing:
        return CheckResult(False, _msg("dora_missing", run=exp["dora_run"], names=", ".join(missing)))
    expected = exp.get("dora")
    if expected:
        for metric in DORA_METRICS:
            if not math.isclose(metrics[metric], expected[metric], rel_tol=METRIC_TOL, abs_tol=METRIC_TOL):
                return CheckResult(
                    False, _msg("dora_wrong", metric=metric, found=metrics[metric], expected=expected[metric])
                )
    figure = dora.get("figure")
    if not figure or not figure.get("decodes") or not is_plot(figure):
        return CheckResult(False, _msg("dora_no_plot", run=exp["dora_run"], file=DASHBOARD_FILE))
    if not expected:
        return CheckResult(True, _msg("dora_no_expected"))
    return CheckResult(
        True, _msg("dora_ok", summary=", ".join(f"{m} {metrics[m]:.3g}" for m in DORA_METRICS))
    )


def judge_workflow(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    from autograder.kit import lab09_flow as flow_kit

    flow = ev.get("flow") or {"error": "no evidence"}
    if "error" in flow:
        return CheckResult(False, _msg("flow_error", error=flow["error"]))
    if "schedule" not in flow["events"] or not flow["cron"]:
        return CheckResult(False, _msg("flow_no_schedule", events=", ".join(flow["events"]) or "nothing"))
    bad = [c for c in flow["cron"] if len(c.split()) != 5]
    if bad:
        return CheckResult(False, _msg("flow_bad_cron", cron=bad[0]))
    if "workflow_dispatch" not in flow["events"]:
        return CheckResult(False, _msg("flow_no_dispatch"))
    users = exp.get("users") or {}
    names = {"ds": users.get("data_scientist"), "reviewer": users.get("reviewer")}
    roles = {"ds": "data_scientist", "reviewer": "reviewer", "none": "none", "other": "other"}

    def login_words(who: Any) -> str:
        return _msg(f"role_{roles[who]}") if who in roles else "?"

    for name, found in flow["scenarios"].items():
        scenario = _msg(f"scenario_{name}")
        wanted = flow_kit.expected_calls(name, found["facts"])
        ran = [str(c.get("command")) for c in found["calls"]]
        if ran != [command for command, _ in wanted]:
            return CheckResult(
                False,
                _msg(
                    "flow_sequence",
                    scenario=scenario,
                    found=", ".join(ran) or _msg("flow_ran_nothing"),
                    expected=", ".join(c for c, _ in wanted),
                ),
            )
        for call, (command, opts) in zip(found["calls"], wanted, strict=True):
            given = flow_kit.options(call.get("args") or [])
            for option, value in opts.items():
                got = given.get(option)
                ok = (
                    bool(got)
                    if value is None
                    else got is not None
                    and (got == value or (option == "--max-rmse" and _same_number(got, value)))
                )
                if not ok:
                    return CheckResult(
                        False,
                        _msg(
                            "flow_option",
                            scenario=scenario,
                            command=command,
                            option=option,
                            found=got,
                            expected=value or _msg("flow_any_text"),
                        ),
                    )
            logins = flow_kit.LOGINS[command]
            if logins is not None and (
                call.get("password") not in logins or call.get("user") != names.get(call.get("password"))
            ):
                role = logins[-1]
                return CheckResult(
                    False,
                    _msg(
                        "flow_login",
                        scenario=scenario,
                        command=command,
                        expected=login_words(role),
                        found=_msg(
                            "flow_login_found", user=call.get("user"), whose=login_words(call.get("password"))
                        ),
                        var="DS_USER" if role == "ds" else "REVIEWER_USER",
                        secret="DS_PASSWORD" if role == "ds" else "REVIEWER_PASSWORD",
                    ),
                )
    return CheckResult(True, _msg("flow_ok", cron=", ".join(flow["cron"])))


def _same_number(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b))
    except (TypeError, ValueError):
        return False


# --- Probing the server: what each role's own client may do --------------------------------


def _outcome(action: Callable[[], Any]) -> str:
    """ "allowed", "denied" (403), "login failed" (401), or the error's first line."""
    from mlflow.exceptions import MlflowException

    try:
        action()
        return "allowed"
    except MlflowException as exc:
        code = str(getattr(exc, "error_code", ""))
        text = str(exc)
        if "PERMISSION_DENIED" in code or "403" in text:
            return "denied"
        if "UNAUTHENTICATED" in code or "401" in text:
            return "login failed"
        return f"error: {text.splitlines()[0][:150]}"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}"


def probe_access(
    url: str, admin: tuple[str, str], users: Mapping[str, tuple[str, str]], params: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """Each role's client tries each action of ``ACCESS`` on the lab's resources; the server's
    answers. ``users``: role -> (name, password); an outsider is created here and removed."""
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    with server.credentials(*admin):
        mlflow_client = MlflowClient(url)
        training = _experiment_id(mlflow_client, params["EXPERIMENT_NAME"])
        audit = _experiment_id(mlflow_client, params["AUDIT_EXPERIMENT"])
        champion = mlflow_client.get_model_version_by_alias(params["MODEL_NAME"], CHAMPION).version
        outsider = (f"outsider-{secrets.token_hex(4)}", secrets.token_urlsafe(16))
        auth = get_app_client("basic-auth", tracking_uri=url)
        auth.create_user(*outsider)

    def log_run(experiment: str | None) -> None:
        mlflow_client = MlflowClient(url)
        made = mlflow_client.create_run(experiment, run_name="access-check")
        mlflow_client.set_terminated(made.info.run_id)

    actions = {
        "read_experiment": lambda: MlflowClient(url).get_experiment(training),
        "log_run": lambda: log_run(training),
        "read_model": lambda: MlflowClient(url).get_registered_model(params["MODEL_NAME"]),
        "move_champion": lambda: MlflowClient(url).set_registered_model_alias(
            params["MODEL_NAME"], CHAMPION, champion
        ),
        "read_audit": lambda: MlflowClient(url).get_experiment(audit),
        "write_audit": lambda: log_run(audit),
    }
    answers: dict[str, dict[str, str]] = {}
    try:
        for role, rules in ACCESS.items():
            name, password = outsider if role == "outsider" else users[role]
            with server.credentials(name, password):
                answers[role] = {action: _outcome(actions[action]) for action in rules}
    finally:
        with server.credentials(*admin), contextlib.suppress(Exception):
            auth.delete_user(outsider[0])
    return answers


def install_ops(folder: Path) -> Path:
    """Copy the given operations (``lab09_ops.py``) into the governance folder as ``ops.py``."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "ops.py"
    shutil.copyfile(Path(__file__).with_name("lab09_ops.py"), target)
    return target


def load_promote(folder: Path) -> Callable[..., Any]:
    """The student's ``promote`` from ``folder/promote.py``, freshly imported."""
    path = folder / PROMOTE_FILE
    spec = importlib.util.spec_from_file_location(f"lab09_promote_{secrets.token_hex(4)}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the TODO 3 cell")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.promote


def canonical_card(name: str, version: str, record: Mapping[str, Any]) -> str:
    """A current card for a probe version: the fields promotion checks, no more."""
    return (
        f"# Model card: {name} version {version}\n\nModel version: {version}\n"
        f"Data version: {record.get('digest')}\nGit commit: {record.get('commit')}\n"
    )


def _grant(auth: Any, user: str, resource_type: str, resource_id: str, level: str) -> None:
    """Grant ``level``, replacing any permission the user had on that resource."""
    with contextlib.suppress(Exception):
        auth.revoke_user_permission(user, resource_type, resource_id)
    auth.grant_user_permission(user, resource_type, resource_id, level)


def probe_promote(
    url: str,
    admin: tuple[str, str],
    users: Mapping[str, tuple[str, str]],
    params: Mapping[str, Any],
    promote: Callable[..., Any],
) -> dict[str, Any]:
    """Call ``promote`` as the reviewer and as the data scientist on versions of a registered
    model of the probe's own (so the lab's @champion does not move): a stale card, no card, a
    current card; then the data scientist (refused by the server), then the data scientist with
    EDIT granted (the server lets it through: promote must not refuse by name)."""
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    name = f"{params['MODEL_NAME']}-probe-{secrets.token_hex(3)}"
    reason = f"probe {secrets.token_hex(6)}"
    reviewer, scientist = users["reviewer"], users["data_scientist"]
    with server.credentials(*admin):
        admin_client = MlflowClient(url)
        auth = get_app_client("basic-auth", tracking_uri=url)
        seeded = version_records(admin_client, params["MODEL_NAME"])
        sources = [seeded[v] for v in sorted(seeded, key=int) if seeded[v].get("digest")][:4]
        admin_client.create_registered_model(name)
        made = {}
        for step, record in zip(("good", "none", "stale", "ds"), sources, strict=False):
            run = admin_client.get_run(record["run_id"])
            mv = admin_client.create_model_version(
                name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
            )
            made[step] = (str(mv.version), record)
        admin_client.set_model_version_tag(
            name, made["good"][0], CARD_TAG, canonical_card(name, *made["good"])
        )
        admin_client.set_model_version_tag(
            name, made["stale"][0], CARD_TAG, canonical_card(name, *made["good"])
        )
        admin_client.set_model_version_tag(name, made["ds"][0], CARD_TAG, canonical_card(name, *made["ds"]))
        audit = admin_client.get_experiment_by_name(params["AUDIT_EXPERIMENT"]).experiment_id
        _grant(auth, reviewer[0], "registered_model", name, "EDIT")
        _grant(auth, scientist[0], "registered_model", name, "READ")
        restore = []
        for user in (reviewer[0], scientist[0]):
            before = auth.get_user_permission(user, "experiment", audit).permission
            if before not in ("EDIT", "MANAGE"):
                _grant(auth, user, "experiment", audit, "EDIT")
                restore.append((user, before))

    def alias() -> str | None:
        with server.credentials(*admin):
            return (MlflowClient(url).get_registered_model(name).aliases or {}).get(CHAMPION)

    def call(step: str, who: tuple[str, str], why: str) -> dict[str, Any]:
        version = made[step][0]
        with server.credentials(*who):
            try:
                promote(MlflowClient(url), name, version, why)
                raised = None
            except Exception as exc:
                raised = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return {"version": version, "raised": raised, "alias": alias()}

    steps = {"stale": call("stale", reviewer, reason), "none": call("none", reviewer, reason)}
    steps["good"] = call("good", reviewer, reason)
    with server.credentials(*admin):
        events = audit_events(MlflowClient(url), params["AUDIT_EXPERIMENT"], name)
    steps["good"]["event"] = next((e for e in events if e["version"] == steps["good"]["version"]), None)
    steps["ds"] = call("ds", scientist, reason)
    with server.credentials(*admin):
        _grant(auth, scientist[0], "registered_model", name, "EDIT")
    steps["ds_granted"] = call("ds", scientist, reason)
    with server.credentials(*admin):
        for user, before in restore:
            with contextlib.suppress(Exception):
                if before in (None, "", "NO_PERMISSIONS"):
                    auth.revoke_user_permission(user, "experiment", audit)
                else:
                    _grant(auth, user, "experiment", audit, before)
    return {"steps": steps, "reviewer": reviewer[0], "reason": reason, "model": name}


@contextlib.contextmanager
def no_run_links() -> Any:
    """MLflow prints a "View run" link for every run ended on a server: not in a check's output."""
    import os

    before = os.environ.get(QUIET_LINKS)
    os.environ[QUIET_LINKS] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(QUIET_LINKS, None)
        else:
            os.environ[QUIET_LINKS] = before


QUIET_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


# --- Self-checks ----------------------------------------------------------------------------


def _users(namespace: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    passwords = namespace.get("PASSWORDS") or {}
    names = {
        "data_scientist": namespace["DS_USER"],
        "reviewer": namespace["REVIEWER_USER"],
        "viewer": namespace["VIEWER_USER"],
    }
    return {role: (user, str(passwords.get(user, ""))) for role, user in names.items()}


def self_check(
    check_id: str, namespace: Mapping[str, Any], *, lab: str, checks: checking.Checks, params: list[str]
) -> None:
    """Run one check from a test cell (``lab``, ``checks``, ``params``: the part's, whose kit
    calls it): print a pass line or raise a clear failure. The access and promotion checks ask
    the lab's running server, the workflow's runs the file against stand-in operations; the
    others read its store."""
    values = checking.notebook_params(namespace, params)
    _, judge = checks[check_id]

    def gather() -> tuple[Evidence, dict[str, Any]]:
        exp = checking.expected_values(lab, values, expected_from_params)
        exp["users"] = {role: user for role, (user, _) in _users(namespace).items()}
        with no_run_links():
            return _kernel_evidence(judge, namespace, values), exp

    checking.run_self_check(checks, check_id, gather)


def _kernel_evidence(judge: Judge, namespace: Mapping[str, Any], params: Mapping[str, Any]) -> Evidence:
    """What one judgment needs, gathered in the notebook's kernel (the grader gathers it in the
    submission's sandbox: ``lab09_probe``)."""
    running = namespace.get("SERVER")
    if judge is judge_workflow:
        import tempfile

        from autograder.kit import lab09_flow

        users = {"ds": namespace["DS_USER"], "reviewer": namespace["REVIEWER_USER"]}
        with tempfile.TemporaryDirectory(prefix="lab09-flow-") as tmp:
            return {"flow": lab09_flow.run(Path(GOVERNANCE_DIR) / lab09_flow.WORKFLOW_FILE, Path(tmp), users)}
    if judge not in (judge_access, judge_promote):
        return evidence(namespace["STORE_URI"], params)
    key = "access" if judge is judge_access else "promote"
    if running is None or not running.running:
        return {key: {"error": _msg("no_server", error="SERVER is not running")}}
    admin = (running.admin, running.admin_password)
    try:
        if judge is judge_access:
            return {key: probe_access(running.url, admin, _users(namespace), params)}
        promote = load_promote(Path(GOVERNANCE_DIR))
        return {key: probe_promote(running.url, admin, _users(namespace), params, promote)}
    except Exception as exc:
        return {key: {"error": f"{type(exc).__name__}: {exc}"}}
