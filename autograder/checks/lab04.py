"""Checks for Lab 04, the model registry and serving.

The registry is the evidence: registered versions, where the aliases point, version tags.
A version's role (the model in service or the winner) is the name of the run that logged
its model, so that re-running cells, which registers more versions, does not confuse the
checks. Alias moves leave no trace in MLflow, so promotion and rollback are recorded as
version tags (``previous_champion``, ``validation_status``); the checks read those and
accept both the state right after a task and the state at the end of the notebook.
Predictions are re-computed: the grader loads the champion itself and compares.
"""

from __future__ import annotations

import json
import math
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder import labkit
from autograder.checks.base import (
    Check,
    CheckResult,
    LabContext,
    client,
    names,
    newest_run_named,
    self_check_for,
)

#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = [
    "EXPERIMENT_NAME",
    "MODEL_NAME",
    "IN_SERVICE_RUN",
    "WINNER_RUN",
    "EVAL_RUN",
    "SERVE_RUN",
    "SEED",
    "TEST_SIZE",
]
CHAMPION, CHALLENGER = "champion", "challenger"
STATUS, PREVIOUS = "validation_status", "previous_champion"
PASSED, PENDING, ROLLED_BACK = "passed", "pending", "rolled_back"
SERVING_FILE = "serving.json"
HOST = "127.0.0.1"
#: Relative tolerance for the logged RMSE: another formula for the same RMSE passes, the RMSE
#: of the other model (20% apart) or of the training split does not.
METRIC_RTOL = 1e-4

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "no_model": (
        "no registered model named '{name}' (registered models: {found}). Register the model in "
        "service with mlflow.register_model(model_infos[IN_SERVICE_RUN].model_uri, MODEL_NAME)."
    ),
    "missing_role": (
        "no version of '{name}' comes from run '{run}' (versions: {found}). Register its model: "
        "mlflow.register_model(model_infos['{run}'].model_uri, MODEL_NAME)."
    ),
    "wrong_order": (
        "version {new} (the winner, '{winner}') was registered before version {old} ('{in_service}'). "
        "Register the model in service first and the winner second, so that the newer version is the "
        "newer model."
    ),
    "register_ok": "'{name}' has {count} versions: version {old} from '{in_service}', version {new} from '{winner}'.",
    "register_first": "no registered model named '{name}' yet: register the two models first (TODO 1).",
    "stage_used": (
        "no alias '{alias}' on '{name}', but version {version} is in the deprecated stage '{stage}'. "
        "Stages are deprecated since MLflow 2.9: call "
        "client.set_registered_model_alias(MODEL_NAME, '{alias}', version) instead."
    ),
    "no_alias": (
        "no alias '{alias}' on '{name}' (aliases: {found}). Call "
        "client.set_registered_model_alias(MODEL_NAME, '{alias}', version)."
    ),
    "wrong_alias": (
        "alias '{alias}' points to version {version}, from run '{found}'; point it to the version of "
        "'{expected}'."
    ),
    "wrong_first_champion": (
        "the first champion was version {version}, from run '{found}'; champion must start on the model "
        "in service, the version of '{expected}'."
    ),
    "missing_tag": (
        "version {version} has no tag '{tag}' (tags: {found}). Call "
        "client.set_model_version_tag(MODEL_NAME, version, '{tag}', '{value}')."
    ),
    "wrong_tag": "version {version} has {tag}='{found}'; expected '{expected}'.",
    "aliases_ok": (
        "champion started on version {champion} ('{in_service}', {tag}={champion_status}) and challenger "
        "points to version {challenger} ('{winner}', {tag}={challenger_status})."
    ),
    "no_champion": "no alias 'champion' on '{name}' yet: set the aliases first (TODO 2).",
    "no_eval_run": (
        "no run named '{run}' with metric 'rmse' (found: {found}). Load the champion by alias, predict "
        "X_test, and log its test RMSE as metric 'rmse' in a run named EVAL_RUN."
    ),
    "eval_wrong": (
        "run '{run}' has rmse={found:.4g}, but the champion (version {version}) scores rmse={expected:.4g} "
        "on the test split{other}. Load it with mlflow.pyfunc.load_model(f'models:/{{MODEL_NAME}}@champion') "
        "and compare its predictions for X_test with y_test."
    ),
    "eval_other": "; {found:.4g} is the test RMSE of version {version}, from '{run}'",
    "eval_ok": "run '{run}' has rmse={value:.4g}, the test RMSE of the champion (version {version}).",
    "no_promotion": (
        "no version of '{name}' has a tag '{tag}', and champion points to version {champion}. Promote the "
        "challenger: tag it with the version it replaces ('{tag}'), then move the alias 'champion' to it."
    ),
    "untagged_promotion": (
        "champion points to version {version}, but that version has no tag '{tag}'. Record the version it "
        "replaced: client.set_model_version_tag(MODEL_NAME, version, '{tag}', previous_version)."
    ),
    "promoted_wrong_model": (
        "version {version} (from '{found}') carries the promotion tag '{tag}'; promote the challenger, the "
        "version of '{expected}'."
    ),
    "bad_previous": (
        "version {version} has {tag}='{found}'; expected the version that was champion before the "
        "promotion, a version of '{expected}' ({candidates})."
    ),
    "not_validated": (
        "version {version} has {tag}='{found}'; promote a challenger only once it passed validation: set "
        "its {tag} to 'passed'."
    ),
    "alias_not_moved": (
        "champion points to version {champion}, not to the promoted version {version}. Move it: "
        "client.set_registered_model_alias(MODEL_NAME, 'champion', version)."
    ),
    "promote_ok": "version {version} ('{winner}') was promoted over version {previous} ({tag}={previous}).",
    "nothing_to_roll_back": (
        "no promotion is recorded (no version has a tag '{tag}'): promote the challenger first (TODO 4), "
        "then roll back."
    ),
    "not_rolled_back": (
        "champion still points to the promoted version {version}. Roll back: move 'champion' to the version "
        "in its tag '{tag}' ({previous})."
    ),
    "new_version": (
        "champion points to version {champion}, registered after the promotion of version {version}. A "
        "rollback moves the alias back to version {previous} (its tag '{tag}'); it does not register the "
        "model again."
    ),
    "wrong_rollback": (
        "champion points to version {champion}; after the rollback it must point to version {previous}, the "
        "previous champion recorded on version {version}."
    ),
    "rollback_status": (
        "version {version} has {tag}='{found}'; set it to 'rolled_back' when you roll it back, so that the "
        "registry shows why it is no longer champion."
    ),
    "rollback_ok": "champion is back on version {previous}; version {version} is tagged {tag}='rolled_back'.",
    "no_serve_run": (
        "no run named '{run}' with an artifact '{file}'. Serve the champion, send it a request, and run the "
        "cell to its end: its last lines log the evidence."
    ),
    "bad_evidence": "'{file}' lacks {missing}; run the whole TODO 6 cell, including its given last lines.",
    "not_by_alias": (
        "the server was started with {command}; serve the champion by its alias: "
        "-m models:/{name}@champion."
    ),
    "bad_request": (
        "the request has the field(s) {found}; send a documented format: "
        "{{'dataframe_split': sample.to_dict(orient='split')}} or {{'inputs': ...}} with the columns {columns}."
    ),
    "bad_response": "the response has no list 'predictions' with one value per row sent ({rows}): {response}.",
    "served_differs": (
        "the server answered {served}, but models:/{name}@champion predicts {expected} for the same rows "
        "(largest difference {diff:.3g} ms)."
    ),
    "still_running": (
        "a model server still answers on port {port}{pids}. Stop it when you are done: the "
        "`with model_server(...)` block does it, even when a line inside fails."
    ),
    "serve_ok": (
        "the server on port {port} answered {rows} rows like models:/{name}@champion loaded here, and it is "
        "stopped."
    ),
}


def _msg(key: str, **values: Any) -> str:
    return MESSAGES[key].format(**values)


@dataclass
class Registry:
    """One look at the registered model: its versions, aliases and the run behind each version."""

    name: str
    exists: bool
    versions: dict[int, Any] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    roles: dict[int, str | None] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)

    def with_role(self, run_name: str) -> list[int]:
        return sorted(v for v, role in self.roles.items() if role == run_name)

    def tag(self, version: int | None, key: str) -> str | None:
        return self.versions[version].tags.get(key) if version in self.versions else None

    def describe(self) -> str:
        return ", ".join(f"{v} ('{self.roles[v]}')" for v in sorted(self.versions)) or "none"

    def current_promotion(self) -> int | None:
        """The promoted version of the current round: the champion or the challenger, if it
        carries a previous_champion tag (an older round's tags, from an earlier run of the
        notebook, do not count)."""
        for alias in (CHAMPION, CHALLENGER):
            version = self.aliases.get(alias)
            if self.tag(version, PREVIOUS) is not None:
                return version
        return None

    def promoted(self) -> int | None:
        """The version that was promoted: the current round's, else the newest version with a
        previous_champion tag."""
        tagged = [v for v, mv in self.versions.items() if PREVIOUS in mv.tags]
        return self.current_promotion() or (max(tagged) if tagged else None)

    def original_champion(self) -> int | None:
        """The version that was champion before the promotion: the one the promoted version
        names in its previous_champion tag, else the champion itself."""
        previous = _as_version(self.tag(self.current_promotion(), PREVIOUS))
        return previous if previous in self.versions else self.aliases.get(CHAMPION)


def _as_version(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _run_name(mlflow_client: Any, mv: Any) -> str | None:
    """The name of the run that logged a version's model."""
    run_id = mv.run_id
    try:
        if not run_id and str(mv.source).startswith("models:/"):
            run_id = mlflow_client.get_logged_model(str(mv.source).split("/")[1]).source_run_id
        return mlflow_client.get_run(run_id).info.run_name if run_id else None
    except Exception:  # a deleted run or model: the version has no known role
        return None


def registry(ctx: LabContext) -> Registry:
    mlflow_client = client(ctx)
    name = ctx.params["MODEL_NAME"]
    found = mlflow_client.search_registered_models(filter_string=f"name = '{name}'")
    if not found:
        others = [m.name for m in mlflow_client.search_registered_models(max_results=20)]
        return Registry(name, False, others=others)
    versions = {int(v.version): v for v in mlflow_client.search_model_versions(f"name = '{name}'")}
    aliases = {alias: int(v) for alias, v in (found[0].aliases or {}).items()}
    roles = {v: _run_name(mlflow_client, mv) for v, mv in versions.items()}
    return Registry(name, True, versions, aliases, roles)


def _split(data_path: str, seed: int, test_size: float) -> tuple[Any, Any]:
    """The notebook's test split."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    _, X_test, _, y_test = train_test_split(
        df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size, random_state=seed
    )
    return X_test, y_test


def test_split(ctx: LabContext) -> tuple[Any, Any]:
    return _split(str(ctx.data_path), int(ctx.params["SEED"]), float(ctx.params["TEST_SIZE"]))


def _load(ctx: LabContext, model_uri: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(ctx.tracking_uri)
    return mlflow.pyfunc.load_model(model_uri)


def _rmse(ctx: LabContext, model_uri: str) -> float:
    import numpy as np

    X_test, y_test = test_split(ctx)
    predicted = np.asarray(_load(ctx, model_uri).predict(X_test), dtype=float).ravel()
    return float(np.sqrt(np.mean((predicted - np.asarray(y_test, dtype=float)) ** 2)))


def prepare(ctx: LabContext) -> None:
    """Load what the checks need ahead of time (the grader calls this in a thread while the
    notebook runs): MLflow's model loading, a client on the store, the test split."""
    import mlflow.pyfunc
    import mlflow.sklearn  # noqa: F401  (the flavour the registered models are loaded with)

    client(ctx).search_experiments()
    test_split(ctx)


# TODO 1 ---------------------------------------------------------------------------------


def check_register(ctx: LabContext, strict: bool = False) -> CheckResult:
    p = ctx.params
    reg = registry(ctx)
    if not reg.exists:
        return CheckResult(False, _msg("no_model", name=reg.name, found=", ".join(reg.others) or "none"))
    in_service, winner = p["IN_SERVICE_RUN"], p["WINNER_RUN"]
    for run in (in_service, winner):
        if not reg.with_role(run):
            return CheckResult(False, _msg("missing_role", name=reg.name, run=run, found=reg.describe()))
    # The model in service must have been registered before the winner at least once (later
    # registrations, by a re-run or by a mistaken rollback, are other tasks' business).
    new = reg.with_role(winner)[-1]
    older = [v for v in reg.with_role(in_service) if v < new]
    if not older:
        old = reg.with_role(in_service)[0]
        return CheckResult(False, _msg("wrong_order", new=new, old=old, winner=winner, in_service=in_service))
    old = older[-1]
    return CheckResult(
        True,
        _msg("register_ok", name=reg.name, count=len(reg.versions), old=old, new=new,
             in_service=in_service, winner=winner),
    )


# TODO 2 ---------------------------------------------------------------------------------


def _missing_alias(reg: Registry, alias: str) -> CheckResult:
    staged = [(v, mv.current_stage) for v, mv in sorted(reg.versions.items())
              if mv.current_stage and mv.current_stage != "None"]
    if staged:
        version, stage = staged[-1]
        return CheckResult(False, _msg("stage_used", alias=alias, name=reg.name, version=version, stage=stage))
    return CheckResult(False, _msg("no_alias", alias=alias, name=reg.name, found=names(reg.aliases)))


def _status(reg: Registry, version: int, allowed: tuple[str, ...]) -> CheckResult | None:
    """None if the version's validation_status is one of ``allowed``, else the failure."""
    found = reg.tag(version, STATUS)
    if found is None:
        tags = names(reg.versions[version].tags)
        return CheckResult(False, _msg("missing_tag", version=version, tag=STATUS, found=tags, value=allowed[0]))
    if found not in allowed:
        expected = "' or '".join(allowed)
        return CheckResult(False, _msg("wrong_tag", version=version, tag=STATUS, found=found, expected=expected))
    return None


def check_aliases(ctx: LabContext, strict: bool = False) -> CheckResult:
    p = ctx.params
    in_service, winner = p["IN_SERVICE_RUN"], p["WINNER_RUN"]
    reg = registry(ctx)
    if not reg.exists:
        return CheckResult(False, _msg("register_first", name=reg.name))
    for alias in (CHAMPION, CHALLENGER):
        if alias not in reg.aliases:
            return _missing_alias(reg, alias)
    challenger = reg.aliases[CHALLENGER]
    if reg.roles.get(challenger) != winner:
        return CheckResult(False, _msg("wrong_alias", alias=CHALLENGER, version=challenger,
                                       found=reg.roles.get(challenger), expected=winner))
    first = reg.original_champion()
    if reg.roles.get(first) != in_service:
        return CheckResult(False, _msg("wrong_first_champion", version=first, found=reg.roles.get(first),
                                       expected=in_service))
    failure = _status(reg, first, (PASSED,)) or _status(reg, challenger, (PENDING, PASSED, ROLLED_BACK))
    if failure:
        return failure
    return CheckResult(
        True,
        _msg("aliases_ok", champion=first, in_service=in_service, challenger=challenger, winner=winner,
             tag=STATUS, champion_status=reg.tag(first, STATUS), challenger_status=reg.tag(challenger, STATUS)),
    )


# TODO 3 ---------------------------------------------------------------------------------


def check_load(ctx: LabContext, strict: bool = False) -> CheckResult:
    run_name = ctx.params["EVAL_RUN"]
    run = newest_run_named(ctx, run_name)
    if run is None or "rmse" not in run.data.metrics:
        found = names(run.data.metrics) if run else "no such run"
        return CheckResult(False, _msg("no_eval_run", run=run_name, found=found))
    reg = registry(ctx)
    if CHAMPION not in reg.aliases:
        return CheckResult(False, _msg("no_champion", name=reg.name))
    # The champion when TODO 3 ran: the one before any promotion (after a rollback, it is
    # the champion again, and the grader loads it by its alias, as the student did).
    version = reg.original_champion()
    champion_now = reg.aliases[CHAMPION] == version
    uri = f"models:/{reg.name}@{CHAMPION}" if champion_now else f"models:/{reg.name}/{version}"
    expected, logged = _rmse(ctx, uri), run.data.metrics["rmse"]
    if math.isclose(logged, expected, rel_tol=METRIC_RTOL):
        return CheckResult(True, _msg("eval_ok", run=run_name, value=logged, version=version))
    other = ""
    for v in sorted(reg.versions, reverse=True):
        if reg.roles[v] != reg.roles[version]:
            rmse = _rmse(ctx, f"models:/{reg.name}/{v}")
            if math.isclose(logged, rmse, rel_tol=METRIC_RTOL):
                other = _msg("eval_other", found=rmse, version=v, run=reg.roles[v])
            break
    return CheckResult(False, _msg("eval_wrong", run=run_name, found=logged, version=version,
                                   expected=expected, other=other))


# TODO 4 ---------------------------------------------------------------------------------


def check_promote(ctx: LabContext, strict: bool = False) -> CheckResult:
    p = ctx.params
    in_service, winner = p["IN_SERVICE_RUN"], p["WINNER_RUN"]
    reg = registry(ctx)
    if not reg.exists:
        return CheckResult(False, _msg("register_first", name=reg.name))
    champion = reg.aliases.get(CHAMPION)
    if champion is None:
        return CheckResult(False, _msg("no_champion", name=reg.name))
    version = reg.promoted()
    if version is None:
        if reg.roles.get(champion) == winner:
            return CheckResult(False, _msg("untagged_promotion", version=champion, tag=PREVIOUS))
        return CheckResult(False, _msg("no_promotion", name=reg.name, tag=PREVIOUS, champion=champion))
    if reg.roles.get(version) != winner:
        return CheckResult(False, _msg("promoted_wrong_model", version=version, found=reg.roles.get(version),
                                       tag=PREVIOUS, expected=winner))
    previous_tag = reg.tag(version, PREVIOUS)
    previous = _as_version(previous_tag)
    if previous not in reg.versions or reg.roles.get(previous) != in_service:
        candidates = ", ".join(f"version {v}" for v in reg.with_role(in_service)) or "none registered"
        return CheckResult(False, _msg("bad_previous", version=version, tag=PREVIOUS, found=previous_tag,
                                       expected=in_service, candidates=candidates))
    failure = _status(reg, version, (PASSED, ROLLED_BACK))
    if failure:
        found = reg.tag(version, STATUS)
        return CheckResult(False, _msg("not_validated", version=version, tag=STATUS, found=found))
    # Right after the promotion the champion is the promoted version. Later, a rollback moves
    # it back and tags the promoted version 'rolled_back' (or, done wrong, points it to a
    # version registered after the promotion: TODO 5's mistake, not this one's).
    moved = champion == version or reg.tag(version, STATUS) == ROLLED_BACK or champion > version
    if not moved:
        return CheckResult(False, _msg("alias_not_moved", champion=champion, version=version))
    return CheckResult(True, _msg("promote_ok", version=version, winner=winner, previous=previous, tag=PREVIOUS))


# TODO 5 ---------------------------------------------------------------------------------


def check_rollback(ctx: LabContext, strict: bool = False) -> CheckResult:
    reg = registry(ctx)
    if not reg.exists:
        return CheckResult(False, _msg("register_first", name=reg.name))
    champion = reg.aliases.get(CHAMPION)
    if champion is None:
        return CheckResult(False, _msg("no_champion", name=reg.name))
    version = reg.promoted()
    if version is None:
        return CheckResult(False, _msg("nothing_to_roll_back", tag=PREVIOUS))
    previous = _as_version(reg.tag(version, PREVIOUS))
    if champion != previous:
        if champion == version:
            return CheckResult(False, _msg("not_rolled_back", version=version, tag=PREVIOUS, previous=previous))
        if champion > version:
            return CheckResult(False, _msg("new_version", champion=champion, version=version,
                                           previous=previous, tag=PREVIOUS))
        return CheckResult(False, _msg("wrong_rollback", champion=champion, previous=previous, version=version))
    found = reg.tag(version, STATUS)
    if found != ROLLED_BACK:
        return CheckResult(False, _msg("rollback_status", version=version, tag=STATUS, found=found))
    return CheckResult(True, _msg("rollback_ok", previous=previous, version=version, tag=STATUS))


# TODO 6 ---------------------------------------------------------------------------------


def _request_frame(request: Any) -> Any:
    """The rows of a scoring request in one of MLflow's documented JSON formats, or None."""
    import pandas as pd

    if not isinstance(request, dict) or len(request) != 1:
        return None
    (kind, body), = request.items()
    try:
        if kind == "dataframe_split":
            return pd.DataFrame(body["data"], columns=body["columns"])
        if kind in ("dataframe_records", "inputs", "instances") and isinstance(body, list) and body:
            return pd.DataFrame(body) if isinstance(body[0], dict) else None
        if kind in ("inputs", "instances") and isinstance(body, dict):
            return pd.DataFrame(body)
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _listening(port: int) -> list[str]:
    """What still serves on ``port``: pids of model-server processes, or the bare port."""
    found: list[str] = []
    try:
        import psutil

        for proc in psutil.process_iter(["cmdline", "status"]):
            cmd = proc.info["cmdline"] or []
            if proc.info["status"] == psutil.STATUS_ZOMBIE or str(port) not in cmd:
                continue
            if any("uvicorn" in part or part == "serve" for part in cmd):
                found.append(str(proc.pid))
    except ImportError:  # psutil comes with Jupyter; without it, the socket test below decides
        pass
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex((HOST, port)) == 0 and not found:
            found.append("")
    return found


def check_serve(ctx: LabContext, strict: bool = False) -> CheckResult:
    import numpy as np

    p = ctx.params
    name, run_name = p["MODEL_NAME"], p["SERVE_RUN"]
    run = newest_run_named(ctx, run_name)
    mlflow_client = client(ctx)
    if run is None or SERVING_FILE not in [a.path for a in mlflow_client.list_artifacts(run.info.run_id)]:
        return CheckResult(False, _msg("no_serve_run", run=run_name, file=SERVING_FILE))
    with tempfile.TemporaryDirectory() as tmp:
        evidence = json.loads(Path(mlflow_client.download_artifacts(run.info.run_id, SERVING_FILE, tmp)).read_text())
    missing = [k for k in ("command", "port", "request", "response") if k not in evidence]
    if missing:
        return CheckResult(False, _msg("bad_evidence", file=SERVING_FILE, missing=", ".join(missing)))
    command, port = [str(part) for part in evidence["command"]], int(evidence["port"])
    if f"models:/{name}@{CHAMPION}" not in command:
        return CheckResult(False, _msg("not_by_alias", command=" ".join(command[1:]), name=name))
    pids = _listening(port)
    if pids:
        shown = f" (process {', '.join(p for p in pids if p)})" if any(pids) else ""
        return CheckResult(False, _msg("still_running", port=port, pids=shown))
    frame = _request_frame(evidence["request"])
    if frame is None or not set(labkit.FEATURES) <= set(frame.columns):
        found = names(evidence["request"]) if isinstance(evidence["request"], dict) else type(evidence["request"])
        return CheckResult(False, _msg("bad_request", found=found, columns=", ".join(labkit.FEATURES)))
    response = evidence["response"]
    served = response.get("predictions") if isinstance(response, dict) else None
    if not isinstance(served, list) or len(served) != len(frame):
        return CheckResult(False, _msg("bad_response", rows=len(frame), response=str(response)[:200]))
    X_test, _ = test_split(ctx)
    frame = frame[labkit.FEATURES].astype(X_test.dtypes.to_dict())
    expected = np.asarray(_load(ctx, f"models:/{name}@{CHAMPION}").predict(frame), dtype=float).ravel()
    served_values = np.asarray(served, dtype=float).ravel()
    if not np.allclose(served_values, expected, rtol=1e-6, atol=1e-6):
        return CheckResult(False, _msg("served_differs", served=np.round(served_values, 1).tolist(), name=name,
                                       expected=np.round(expected, 1).tolist(),
                                       diff=float(np.max(np.abs(served_values - expected)))))
    return CheckResult(True, _msg("serve_ok", port=port, rows=len(frame), name=name))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, check).
CHECKS: dict[str, tuple[int, Check]] = {
    "check_todo1_register": (1, check_register),
    "check_todo2_aliases": (2, check_aliases),
    "check_todo3_load": (3, check_load),
    "check_todo4_promote": (4, check_promote),
    "check_todo5_rollback": (5, check_rollback),
    "check_todo6_serve": (6, check_serve),
}


self_check = self_check_for(CHECKS, PARAMS)
