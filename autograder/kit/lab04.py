"""Lab 04, the model registry and serving: evidence and judgments (no reference computation here).

The registry is the evidence: registered versions, where the aliases point, version tags, and
every move of an alias. A version's role (the model in service or the winner) is the name of
the run that logged its model, so that re-running cells, which registers more versions, does
not confuse the checks. MLflow keeps no history of aliases, so the set-up cell asks the store
to record each move (``record_alias_moves``: a table filled by SQLite triggers); promotion and
rollback are judged on those moves, not on tags that merely claim them.

Serving is judged on a server the grader starts itself: inside the submission's sandbox,
``autograder.kit.lab04_serve`` runs the command the notebook recorded on a free port, sends
it the grader's own rows and hands back the answers; a file that only claims a server
answered earns nothing. Expected values (each model's test RMSE, its predictions on the
grader's rows) come from the trusted references, on the grader's hidden inputs.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import checking, labkit
from autograder.kit.checking import (
    CheckResult,
    Evidence,
    Judge,
    artifact_names,
    client,
    names,
    predictions,
    read_artifact,
    runs,
    version_run_name,
)
from autograder.kit.i18n import _

LAB = "04_registry"
#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = ["EXPERIMENT_NAME", "MODEL_NAME", "IN_SERVICE_RUN", "WINNER_RUN", "EVAL_RUN", "SERVE_RUN", "SEED",
          "TEST_SIZE", "CV_FOLDS"]
CHAMPION, CHALLENGER = "champion", "challenger"
STATUS, PREVIOUS = "validation_status", "previous_champion"
PASSED, PENDING, ROLLED_BACK = "passed", "pending", "rolled_back"
SERVING_FILE = "serving.json"
#: The metric of the run EVAL_RUN: the chosen model's (the challenger's) RMSE on the test split.
TEST_METRIC = "test_rmse"
HOST = "127.0.0.1"
#: Relative tolerance for the logged RMSE: another formula for the same RMSE passes, the RMSE
#: of the other model (20% apart) or of the training split does not.
METRIC_RTOL = 1e-4
#: Served predictions against the expected ones (the same forest, through JSON).
PRED_RTOL = 1e-6
#: Rows of a recorded request that are read (the notebook sends 5).
MAX_REQUEST_ROWS = 1000
#: The table the store's triggers fill with every move of an alias.
MOVES_TABLE = "course_alias_moves"
REQUEST_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")

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
    "no_moves": (
        "the store has no record of the alias moves (the set-up cell's lab04.record_alias_moves starts "
        "it): run the notebook from the top."
    ),
    "no_eval_run": (
        "no run named '{run}' with metric '{metric}' (found: {found}). Load the challenger by alias, predict "
        "X_test, and log its RMSE on the test split as metric '{metric}' in a run named EVAL_RUN."
    ),
    "no_challenger": "no alias 'challenger' on '{name}' yet: set the aliases first (TODO 2).",
    "eval_wrong": (
        "run '{run}' has {metric}={found:.4g}, but the challenger (version {version}, from '{role}') scores "
        "{metric}={expected:.4g} on the test split{other}. Load it with "
        "mlflow.pyfunc.load_model(f'models:/{{MODEL_NAME}}@challenger') and compare its predictions for "
        "X_test with y_test."
    ),
    "eval_other": (
        "; {found:.4g} is the test RMSE of the model of '{role}', which was not chosen: the test split gives "
        "its word on the chosen model only"
    ),
    "eval_unknown": (
        "the challenger (version {version}) comes from run '{role}', not from one of the two trained models: "
        "point challenger to the version of the winner (TODO 2)."
    ),
    "eval_ok": "run '{run}' has {metric}={value:.4g}, the test RMSE of the challenger (version {version}).",
    "eval_logged": (
        "run '{run}' has {metric}={value:.4g} for the challenger (version {version}); the grader checks the "
        "value on its own data."
    ),
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
        "promotion, a version of '{expected}' ({candidates}).{way_out}"
    ),
    "bad_previous_way_out": (
        " If a second run of the promotion recorded the wrong one, put the tag right and run this self-check "
        "again: client.set_model_version_tag(MODEL_NAME, '{version}', '{tag}', '{candidate}')."
    ),
    "not_validated": (
        "version {version} has {tag}='{found}'; promote a challenger only once it passed validation: set "
        "its {tag} to 'passed'."
    ),
    "alias_not_moved": (
        "the alias 'champion' never moved from version {previous} to the promoted version {version} (its "
        "moves: {moves}). Tags record a promotion, they do not make it: "
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
    "never_promoted": (
        "champion is on version {previous}, but it never moved to the promoted version {version} and back "
        "(its moves: {moves}): a rollback undoes a promotion that happened. Promote first (TODO 4)."
    ),
    "rollback_status": (
        "version {version} has {tag}='{found}'; set it to 'rolled_back' when you roll it back, so that the "
        "registry shows why it is no longer champion."
    ),
    "restored_rolled_back": (
        "version {previous}, champion again, has {tag}='rolled_back': the version rolled back is {version}, "
        "not the one restored. If a second run of the rollback tagged it, make the cell ask the registry "
        "first (is champion still on version {version}?), put the tag right and run this self-check again: "
        "client.set_model_version_tag(MODEL_NAME, '{previous}', '{tag}', 'passed')."
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
    "no_champion_predictions": "models:/{name}@champion could not predict the rows you sent: {error}",
    "served_differs": (
        "the recorded answer is {served}, but models:/{name}@champion predicts {expected} for the same rows "
        "(largest difference {diff:.3g} ms)."
    ),
    "still_running": (
        "a model server still answers on port {port}. Stop it when you are done: the "
        "`with model_server(...)` block does it, even when a line inside fails."
    ),
    "serve_failed": (
        "the grader started your command ({command}) on a free port and sent it its own rows, but no "
        "server answered: {error}"
    ),
    "serve_wrong": (
        "the grader started your command on a free port and sent it {rows} of its own rows: the server "
        "answered {served}, but the champion (from '{role}') predicts {expected} (largest difference "
        "{diff:.3g} ms)."
    ),
    "serve_ok": (
        "the grader started your command, sent {rows} of its own rows, and the server answered like the "
        "champion (from '{role}'); the recorded answer matches too."
    ),
    "serve_recorded": (
        "the server on port {port} answered {rows} rows like models:/{name}@champion loaded here, and it is "
        "stopped. (The grader also starts your command itself and sends it its own rows.)"
    ),
}


_msg = functools.partial(checking.message, MESSAGES)


# --- Recording alias moves ----------------------------------------------------------------

#: The table and triggers ``record_alias_moves`` adds to a store (the grader accepts them).
STORE_EXTRAS = (
    f"CREATE TABLE IF NOT EXISTS {MOVES_TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, "
    "alias TEXT, version INTEGER)",
    f"CREATE TRIGGER IF NOT EXISTS {MOVES_TABLE}_insert AFTER INSERT ON registered_model_aliases BEGIN "
    f"INSERT INTO {MOVES_TABLE} (name, alias, version) VALUES (NEW.name, NEW.alias, NEW.version); END",
    f"CREATE TRIGGER IF NOT EXISTS {MOVES_TABLE}_update AFTER UPDATE ON registered_model_aliases BEGIN "
    f"INSERT INTO {MOVES_TABLE} (name, alias, version) VALUES (NEW.name, NEW.alias, NEW.version); END",
    f"CREATE TRIGGER IF NOT EXISTS {MOVES_TABLE}_delete AFTER DELETE ON registered_model_aliases BEGIN "
    f"INSERT INTO {MOVES_TABLE} (name, alias, version) VALUES (OLD.name, OLD.alias, NULL); END",
)


def record_alias_moves(tracking_uri: str) -> bool:
    """Make the store keep a record of every move of an alias (MLflow keeps only where each
    alias points now). True when the store records them (a SQLite store); a remote store
    cannot, and its self-checks then judge the aliases as they are."""
    db = labkit.sqlite_path(tracking_uri)
    if db is None:
        return False
    client(tracking_uri).search_registered_models(max_results=1)  # the store's tables exist
    with sqlite3.connect(db) as con:
        for statement in STORE_EXTRAS:
            con.execute(statement)
    return True


def alias_moves(tracking_uri: str, name: str) -> list[list[Any]] | None:
    """``[[alias, version], ...]`` for every move of an alias of ``name``, oldest first
    (version None: the alias was deleted), or None when the store keeps no such record."""
    db = labkit.sqlite_path(tracking_uri)
    if db is None or not db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute(f"SELECT alias, version FROM {MOVES_TABLE} WHERE name = ? ORDER BY seq",
                               (name,)).fetchall()
    except sqlite3.Error:
        return None
    return [[str(alias), None if version is None else int(version)] for alias, version in rows]


# --- Evidence -----------------------------------------------------------------------------


def registry_record(mlflow_client: Any, tracking_uri: str, name: str) -> dict[str, Any]:
    """One registered model as plain data: its versions (role, tags, stage), aliases and alias moves."""
    found = mlflow_client.search_registered_models(filter_string=f"name = '{name}'")
    if not found:
        others = [m.name for m in mlflow_client.search_registered_models(max_results=20)]
        return {"name": name, "exists": False, "others": others}
    versions = [
        {"version": int(mv.version), "role": version_run_name(mlflow_client, mv), "tags": dict(mv.tags or {}),
         "stage": mv.current_stage}
        for mv in mlflow_client.search_model_versions(f"name = '{name}'")
    ]
    return {
        "name": name,
        "exists": True,
        "versions": sorted(versions, key=lambda v: v["version"]),
        "aliases": {alias: int(v) for alias, v in (found[0].aliases or {}).items()},
        # In a notebook the versions are this run's only (checking.SessionClient): so are the moves.
        "moves": None if (moves := alias_moves(tracking_uri, name)) is None else [
            m for m in moves if m[1] is None or m[1] in {v["version"] for v in versions}],
    }


def _newest_named(every: list[dict[str, Any]], run_name: str, experiment_id: str | None) -> dict[str, Any] | None:
    """The newest run named ``run_name``, in the lab's experiment if it has one, else anywhere."""
    named = [r for r in every if r["name"] == run_name]
    own = [r for r in named if r["experiment_id"] == experiment_id]
    return (own or named or [None])[0]


def request_rows(request: Any) -> list[dict[str, Any]] | None:
    """The rows of a scoring request in one of MLflow's documented JSON formats, as records,
    or None."""
    if not isinstance(request, dict) or len(request) != 1:
        return None
    (kind, body), = request.items()
    rows: Any = None
    if kind == "dataframe_split" and isinstance(body, dict):
        columns, data = body.get("columns"), body.get("data")
        if isinstance(columns, list) and isinstance(data, list) and all(isinstance(r, list) for r in data):
            rows = [dict(zip(columns, r, strict=False)) for r in data]
    elif kind in REQUEST_FORMATS[1:] and isinstance(body, list):
        rows = body if all(isinstance(r, dict) for r in body) else None
    elif kind in REQUEST_FORMATS[2:] and isinstance(body, dict) and all(isinstance(v, list) for v in body.values()):
        lengths = {len(v) for v in body.values()}
        rows = [{k: v[i] for k, v in body.items()} for i in range(lengths.pop())] if len(lengths) == 1 else None
    if not rows or len(rows) > MAX_REQUEST_ROWS:
        return None
    if not all(isinstance(r.get(f), int | float) and not isinstance(r.get(f), bool) for r in rows
               for f in labkit.FEATURES):
        return None
    return [{f: r[f] for f in labkit.FEATURES} for r in rows]


def serving_record(data: bytes | None) -> dict[str, Any]:
    """What the notebook recorded about its server, read as JSON data."""
    try:
        recorded = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError):
        recorded = None
    if not isinstance(recorded, dict):
        return {"file": True, "missing": ["command", "port", "request", "response"]}
    found: dict[str, Any] = {"file": True, "missing": [k for k in ("command", "port", "request", "response")
                                                        if k not in recorded]}
    command = recorded.get("command")
    found["command"] = [str(p) for p in command][:100] if isinstance(command, list) else None
    try:
        found["port"] = int(recorded.get("port"))
    except (TypeError, ValueError):
        found["port"] = None
    request = recorded.get("request")
    found["request_keys"] = sorted(request)[:10] if isinstance(request, dict) else [type(request).__name__]
    found["request_rows"] = request_rows(request)
    response = recorded.get("response")
    values = response.get("predictions") if isinstance(response, dict) else None
    numeric = isinstance(values, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    found["response"] = [float(v) for v in values] if numeric else None
    found["response_text"] = str(response)[:200]
    return found


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the store holds for this lab, as plain data. ``confine_to``: the submission's
    folder, when the grader reads it (artifact files outside it are not read)."""
    mlflow_client = client(tracking_uri)
    found: Evidence = {"registry": registry_record(mlflow_client, tracking_uri, params["MODEL_NAME"])}
    experiment = mlflow_client.get_experiment_by_name(params["EXPERIMENT_NAME"])
    experiment_id = experiment.experiment_id if experiment else None
    every = runs(mlflow_client)
    found["eval_run"] = _newest_named(every, params["EVAL_RUN"], experiment_id)
    serve_run = _newest_named(every, params["SERVE_RUN"], experiment_id)
    serving: dict[str, Any] = {"run": serve_run["name"] if serve_run else None, "file": False}
    if serve_run is not None and SERVING_FILE in artifact_names(mlflow_client, serve_run, confine_to):
        serving = {"run": serve_run["name"],
                   **serving_record(read_artifact(mlflow_client, serve_run, SERVING_FILE, confine_to))}
    found["serving"] = serving
    return found


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the TODOs ask for that the parameters alone decide (no reference needed)."""
    return {
        "model_name": params["MODEL_NAME"],
        "in_service": params["IN_SERVICE_RUN"],
        "winner": params["WINNER_RUN"],
        "eval_run": params["EVAL_RUN"],
        "serve_run": params["SERVE_RUN"],
        "seed": params["SEED"],
        "test_size": params["TEST_SIZE"],
        "moves_required": True,
    }


# --- Reading the registry evidence --------------------------------------------------------


class _Registry:
    """Questions about one registry record (a view of the evidence, not more evidence)."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.name = record["name"]
        self.versions = {int(v["version"]): v for v in record.get("versions", [])}
        self.aliases = {k: int(v) for k, v in record.get("aliases", {}).items()}
        self.moves = record.get("moves")

    def role(self, version: int | None) -> str | None:
        return self.versions[version]["role"] if version in self.versions else None

    def with_role(self, run_name: str) -> list[int]:
        return sorted(v for v, rec in self.versions.items() if rec["role"] == run_name)

    def tag(self, version: int | None, key: str) -> str | None:
        return self.versions[version]["tags"].get(key) if version in self.versions else None

    def describe(self) -> str:
        return ", ".join(f"{v} ('{self.role(v)}')" for v in sorted(self.versions)) or _("none")

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
        tagged = [v for v, rec in self.versions.items() if PREVIOUS in rec["tags"]]
        return self.current_promotion() or (max(tagged) if tagged else None)

    def original_champion(self) -> int | None:
        """The version that was champion before the promotion: the one the promoted version
        names in its previous_champion tag, else the champion itself."""
        previous = _as_version(self.tag(self.current_promotion(), PREVIOUS))
        return previous if previous in self.versions else self.aliases.get(CHAMPION)

    def champion_path(self) -> list[int | None]:
        """Where champion pointed, move after move (None: deleted)."""
        return [v for alias, v in (self.moves or []) if alias == CHAMPION]


def _as_version(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _visits(path: list[Any], stops: list[Any]) -> bool:
    """Whether ``path`` passes through ``stops`` in this order (other moves in between allowed)."""
    position = 0
    for step in path:
        if position < len(stops) and step == stops[position]:
            position += 1
    return position == len(stops)


def _moves_missing(reg: _Registry, exp: Mapping[str, Any]) -> bool:
    return reg.moves is None and exp.get("moves_required", True)


def _close(got: list[float], want: list[float], rtol: float = PRED_RTOL) -> bool:
    return len(got) == len(want) and all(math.isclose(a, b, rel_tol=rtol, abs_tol=rtol) for a, b in
                                         zip(got, want, strict=True))


def _max_diff(got: list[float], want: list[float]) -> float:
    return max((abs(a - b) for a, b in zip(got, want, strict=False)), default=0.0)


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 1) for v in values]


# --- Judgments ----------------------------------------------------------------------------


def judge_register(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    record = ev["registry"]
    if not record["exists"]:
        return CheckResult(False, _msg("no_model", name=record["name"], found=", ".join(record["others"]) or _("none")))
    reg = _Registry(record)
    in_service, winner = exp["in_service"], exp["winner"]
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
    return CheckResult(True, _msg("register_ok", name=reg.name, count=len(reg.versions), old=older[-1], new=new,
                                  in_service=in_service, winner=winner))


def _missing_alias(reg: _Registry, alias: str) -> CheckResult:
    staged = [(v, rec["stage"]) for v, rec in sorted(reg.versions.items()) if rec["stage"] and rec["stage"] != "None"]
    if staged:
        version, stage = staged[-1]
        return CheckResult(False, _msg("stage_used", alias=alias, name=reg.name, version=version, stage=stage))
    return CheckResult(False, _msg("no_alias", alias=alias, name=reg.name, found=names(reg.aliases)))


def _status(reg: _Registry, version: int, allowed: tuple[str, ...]) -> CheckResult | None:
    """None if the version's validation_status is one of ``allowed``, else the failure."""
    found = reg.tag(version, STATUS)
    if found is None:
        tags = names(reg.versions[version]["tags"])
        return CheckResult(False, _msg("missing_tag", version=version, tag=STATUS, found=tags, value=allowed[0]))
    if found not in allowed:
        expected = _("' or '").join(allowed)
        return CheckResult(False, _msg("wrong_tag", version=version, tag=STATUS, found=found, expected=expected))
    return None


def judge_aliases(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    in_service, winner = exp["in_service"], exp["winner"]
    record = ev["registry"]
    if not record["exists"]:
        return CheckResult(False, _msg("register_first", name=record["name"]))
    reg = _Registry(record)
    for alias in (CHAMPION, CHALLENGER):
        if alias not in reg.aliases:
            return _missing_alias(reg, alias)
    challenger = reg.aliases[CHALLENGER]
    if reg.role(challenger) != winner:
        return CheckResult(False, _msg("wrong_alias", alias=CHALLENGER, version=challenger,
                                       found=reg.role(challenger), expected=winner))
    first = reg.original_champion()
    if reg.role(first) != in_service:
        return CheckResult(False, _msg("wrong_first_champion", version=first, found=reg.role(first),
                                       expected=in_service))
    failure = _status(reg, first, (PASSED,)) or _status(reg, challenger, (PENDING, PASSED, ROLLED_BACK))
    if failure:
        return failure
    return CheckResult(True, _msg("aliases_ok", champion=first, in_service=in_service, challenger=challenger,
                                  winner=winner, tag=STATUS, champion_status=reg.tag(first, STATUS),
                                  challenger_status=reg.tag(challenger, STATUS)))


def judge_load(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """The run EVAL_RUN holds the challenger's RMSE on the test split: the chosen model's, the
    one number the test split gives (the in-service model's would be a second look at it)."""
    run_name, run = exp["eval_run"], ev.get("eval_run")
    reg = _Registry(ev["registry"]) if ev["registry"]["exists"] else None
    if reg is None or CHALLENGER not in reg.aliases:  # the cause first: there is nothing to load
        return CheckResult(False, _msg("no_challenger", name=ev["registry"]["name"]))
    if run is None or TEST_METRIC not in run["metrics"]:
        found = names(run["metrics"]) if run else _("no such run")
        return CheckResult(False, _msg("no_eval_run", run=run_name, found=found, metric=TEST_METRIC))
    version = reg.aliases[CHALLENGER]  # promotion and rollback leave it in place
    role, logged = reg.role(version), float(run["metrics"][TEST_METRIC])
    reference = exp.get("rmse")
    if reference is None:
        return CheckResult(True, _msg("eval_logged", run=run_name, value=logged, version=version, metric=TEST_METRIC))
    if role not in reference:
        return CheckResult(False, _msg("eval_unknown", version=version, role=role))
    if math.isclose(logged, reference[role], rel_tol=METRIC_RTOL):
        return CheckResult(True, _msg("eval_ok", run=run_name, value=logged, version=version, metric=TEST_METRIC))
    other = "".join(_msg("eval_other", found=value, role=r) for r, value in reference.items()
                    if r != role and math.isclose(logged, value, rel_tol=METRIC_RTOL))
    return CheckResult(False, _msg("eval_wrong", run=run_name, found=logged, version=version, role=role,
                                   expected=reference[role], other=other, metric=TEST_METRIC))


def judge_promote(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    in_service, winner = exp["in_service"], exp["winner"]
    record = ev["registry"]
    if not record["exists"]:
        return CheckResult(False, _msg("register_first", name=record["name"]))
    reg = _Registry(record)
    champion = reg.aliases.get(CHAMPION)
    if champion is None:
        return CheckResult(False, _msg("no_champion", name=reg.name))
    version = reg.promoted()
    if version is None:
        if reg.role(champion) == winner:
            return CheckResult(False, _msg("untagged_promotion", version=champion, tag=PREVIOUS))
        return CheckResult(False, _msg("no_promotion", name=reg.name, tag=PREVIOUS, champion=champion))
    if reg.role(version) != winner:
        return CheckResult(False, _msg("promoted_wrong_model", version=version, found=reg.role(version),
                                       tag=PREVIOUS, expected=winner))
    previous_tag = reg.tag(version, PREVIOUS)
    previous = _as_version(previous_tag)
    if previous not in reg.versions or reg.role(previous) != in_service:
        candidates = ", ".join(f"version {v}" for v in reg.with_role(in_service)) or "none registered"
        older = [v for v in reg.with_role(in_service) if v < version]
        way_out = _msg("bad_previous_way_out", version=version, tag=PREVIOUS, candidate=older[-1]) if older else ""
        return CheckResult(False, _msg("bad_previous", version=version, tag=PREVIOUS, found=previous_tag,
                                       expected=in_service, candidates=candidates, way_out=way_out))
    if _status(reg, version, (PASSED, ROLLED_BACK)):
        return CheckResult(False, _msg("not_validated", version=version, tag=STATUS, found=reg.tag(version, STATUS)))
    if _moves_missing(reg, exp):
        return CheckResult(False, _msg("no_moves"))
    # The alias must have moved from the previous champion to the promoted version (a
    # rollback may have moved it back since: TODO 5's business).
    moved = _visits(reg.champion_path(), [previous, version]) if reg.moves is not None else (
        champion == version or reg.tag(version, STATUS) == ROLLED_BACK or champion > version)
    if not moved:
        path = " → ".join(str(v) for v in reg.champion_path()) or _("none")
        return CheckResult(False, _msg("alias_not_moved", previous=previous, version=version, moves=path))
    return CheckResult(True, _msg("promote_ok", version=version, winner=winner, previous=previous, tag=PREVIOUS))


def judge_rollback(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    record = ev["registry"]
    if not record["exists"]:
        return CheckResult(False, _msg("register_first", name=record["name"]))
    reg = _Registry(record)
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
    if _moves_missing(reg, exp):
        return CheckResult(False, _msg("no_moves"))
    if reg.moves is not None and not _visits(reg.champion_path(), [previous, version, previous]):
        path = " → ".join(str(v) for v in reg.champion_path()) or _("none")
        return CheckResult(False, _msg("never_promoted", previous=previous, version=version, moves=path))
    if reg.tag(previous, STATUS) == ROLLED_BACK:  # a second, unguarded run tags what it restored
        return CheckResult(False, _msg("restored_rolled_back", previous=previous, version=version, tag=STATUS))
    found = reg.tag(version, STATUS)
    if found != ROLLED_BACK:
        return CheckResult(False, _msg("rollback_status", version=version, tag=STATUS, found=found))
    return CheckResult(True, _msg("rollback_ok", previous=previous, version=version, tag=STATUS))


def judge_serve(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    name, serving = exp["model_name"], ev.get("serving") or {}
    if not serving.get("file"):
        return CheckResult(False, _msg("no_serve_run", run=exp["serve_run"], file=SERVING_FILE))
    if serving["missing"]:
        return CheckResult(False, _msg("bad_evidence", file=SERVING_FILE, missing=", ".join(serving["missing"])))
    command = serving.get("command") or []
    if f"models:/{name}@{CHAMPION}" not in command:
        return CheckResult(False, _msg("not_by_alias", command=" ".join(command[1:]) or _("no command"), name=name))
    if serving.get("still_listening"):
        return CheckResult(False, _msg("still_running", port=serving["port"]))
    rows = serving.get("request_rows")
    if rows is None:
        return CheckResult(False, _msg("bad_request", found=", ".join(serving["request_keys"]),
                                       columns=", ".join(labkit.FEATURES)))
    response = serving.get("response")
    if response is None or len(response) != len(rows):
        return CheckResult(False, _msg("bad_response", rows=len(rows), response=serving["response_text"]))
    recorded_expected = serving.get("recorded_expected")
    if not isinstance(recorded_expected, list):
        return CheckResult(False, _msg("no_champion_predictions", name=name,
                                       error=serving.get("recorded_error", _("no champion"))))
    if not _close(response, recorded_expected):
        return CheckResult(False, _msg("served_differs", served=_rounded(response), name=name,
                                       expected=_rounded(recorded_expected),
                                       diff=_max_diff(response, recorded_expected)))
    served = serving.get("served") or {}
    if served.get("skipped"):  # in the notebook: the grader starts the server itself
        return CheckResult(True, _msg("serve_recorded", port=serving["port"], rows=len(rows), name=name))
    if "predictions" not in served:
        return CheckResult(False, _msg("serve_failed", command=" ".join(command[1:]),
                                       error=served.get("serve_error", _("the grader could not start it"))))
    reg = _Registry(ev["registry"]) if ev["registry"]["exists"] else None
    role = reg.role(reg.aliases.get(CHAMPION)) if reg else None
    want = (exp.get("serve_predictions") or {}).get(role)
    if want is None:
        return CheckResult(False, _msg("no_champion", name=name))
    got = served["predictions"]
    if not _close(got, want):
        return CheckResult(False, _msg("serve_wrong", rows=len(want), served=_rounded(got[:5]), role=role,
                                       expected=_rounded(want[:5]), diff=_max_diff(got, want)))
    return CheckResult(True, _msg("serve_ok", rows=len(want), role=role))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_register": (1, judge_register),
    "check_todo2_aliases": (2, judge_aliases),
    "check_todo3_load": (3, judge_load),
    "check_todo4_promote": (4, judge_promote),
    "check_todo5_rollback": (5, judge_rollback),
    "check_todo6_serve": (6, judge_serve),
}


# --- In the notebook ----------------------------------------------------------------------


def _listening(port: int | None) -> bool:
    """Whether something still answers on ``port`` on this machine."""
    import socket

    if not port:
        return False
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure.

    Judges this notebook's store against the values shipped for the default inputs. For
    TODO 6 it also asks the champion, loaded here, about the rows the notebook sent; the
    grader, instead, starts the recorded command itself and sends it rows of its own."""
    import mlflow

    params = checking.notebook_params(namespace, PARAMS)

    def gather() -> tuple[Evidence, dict[str, Any]]:
        uri = mlflow.get_tracking_uri()
        ev = evidence(uri, params)
        exp = checking.expected_values(LAB, params, expected_from_params)
        if labkit.sqlite_path(uri) is None:  # a remote store records no alias moves
            exp["moves_required"] = False
        serving = ev["serving"]
        if check_id == "check_todo6_serve" and serving.get("request_rows"):
            serving["still_listening"] = _listening(serving.get("port"))
            serving["served"] = {"skipped": True}
            try:
                serving["recorded_expected"] = predictions(uri, f"models:/{params['MODEL_NAME']}@{CHAMPION}",
                                                           serving["request_rows"])
            except Exception as exc:
                serving["recorded_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return ev, exp

    checking.run_self_check(CHECKS, check_id, gather)
