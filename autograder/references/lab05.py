"""Lab 05 references, shared by its parts (``lab05a``, ``lab05b``): the set-up's three models
retrained to score them on the batch, and the grader's own cases: batches with one fault each,
store copies in known states, models with one flaw each. The student's programs run on them
inside the sandbox (``lab05_run``); this process only prepares inputs and reads outcomes as
data. Each part's evidence lists only its own files, so ``run_code`` runs only its programs.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from autograder import store
from autograder.kit import lab05, lab05_run, labkit
from autograder.kit.checking import quiet
from autograder.labspec import RUN_TIMEOUT, SandboxRunner

PROMOTION_REASON = "autograder check"
#: One fault per batch: case -> (column, how the good batch is broken).
FAULTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "fault_missing_values": ("disk_io", lambda d: d.assign(disk_io=d["disk_io"].mask(d.index % 40 == 3))),
    "fault_above_range": ("memory_usage", lambda d: d.assign(memory_usage=d["memory_usage"].mask(d.index == 7, 104.5))),
    "fault_negative": ("network_latency",
                       lambda d: d.assign(network_latency=d["network_latency"].mask(d.index == 11, -3.0))),
    "fault_text": ("cpu_usage", lambda d: d.assign(cpu_usage=d["cpu_usage"].astype(object).mask(d.index == 5, "high"))),
    "fault_no_column": ("concurrent_users", lambda d: d.drop(columns=["concurrent_users"])),
}
#: The flaw each behavioural test must catch.
FLAWS = {"cpu": "test_directional_cpu", "users": "test_directional_users", "columns": "test_invariance_to_extra_columns"}


def cases() -> dict[str, Any]:
    """The grader's cases, as expected values for the judgments."""
    data = {"good": {"what": "", "columns": {}}}
    for key, (column, _) in FAULTS.items():
        data[key] = {"what": lab05._msg("one_fault", fault=lab05._msg(key), column=column),
                     "columns": {column: lab05._msg(key)}}
    return {
        "source": "grader",
        "data_cases": data,
        "gate_cases": {
            "champion": {"role": "poor", "must": "fail", "case": "case_champion", "fix": "fix_champion"},
            "r2": {"role": "candidate", "must": "fail", "case": "case_r2", "fix": "fix_r2"},
            "latency": {"role": "candidate", "must": "fail", "case": "case_latency", "fix": "fix_latency"},
            "pass": {"role": "candidate", "must": "pass"},
        },
        "tests_cases": {"candidate": {"must": "pass"}, **{f: {"must_fail": t, "flaw": f} for f, t in FLAWS.items()}},
        "promote_cases": {
            "untagged": {"role": "poor", "must": "refuse"},
            "false": {"role": "candidate", "must": "refuse", "tag": "false"},
            "validated": {"role": "candidate", "must": "promote"},
        },
    }


GATE_ARGS = {"champion": ("--min-r2", "0"), "r2": ("--min-r2", "0.99"), "latency": ("--max-latency-ms", "0.001"),
             "pass": ()}


# --- References -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _r2(data_path: str, seed: int, test_size: float) -> dict[str, float]:
    """R² on the good batch of the set-up's three models, trained exactly as the set-up does."""
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(data_path)
    X_train, _, y_train, _ = train_test_split(df[labkit.FEATURES], df[labkit.TARGET], test_size=test_size,
                                              random_state=seed)
    batch = pd.read_csv(Path(data_path).parent / "production" / lab05.GOOD_BATCH)
    models = {
        "champion": RandomForestRegressor(n_estimators=20, max_depth=5, random_state=seed),
        "poor": LinearRegression(),
        "candidate": RandomForestRegressor(n_estimators=60, max_depth=12, random_state=seed),
    }
    return {role: float(r2_score(batch[labkit.TARGET], m.fit(X_train, y_train).predict(batch[labkit.FEATURES])))
            for role, m in models.items()}


def expected_r2(data_path: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """The R² of the set-up's models on the good batch (what the quality gate must measure)."""
    return {"r2": _r2(str(data_path), int(params["SEED"]), float(params["TEST_SIZE"]))}


@functools.lru_cache(maxsize=1)
def _flawed_models() -> Path:
    """Three small models with one flaw each, saved once in a private folder.

    Linear models with plausible response times for typical readings (so that the given
    minimum-functionality test passes), except that one falls as the CPU rises, one falls as
    users grow, and one was saved without a signature (it raises on extra columns)."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    root = Path(tempfile.mkdtemp(prefix="lab05-flawed-"))
    rng = np.random.default_rng(0)
    X = pd.DataFrame({
        "cpu_usage": rng.uniform(5, 100, 300), "memory_usage": rng.uniform(15, 95, 300),
        "disk_io": rng.uniform(1, 200, 300), "network_latency": rng.uniform(2, 100, 300),
        "concurrent_users": rng.integers(10, 900, 300),
    })
    sane = {"cpu_usage": 1.5, "memory_usage": 0.5, "disk_io": 0.3, "network_latency": 2.0, "concurrent_users": 0.2}
    variants = {"cpu": ({**sane, "cpu_usage": -1.5}, 200.0, True),
                "users": ({**sane, "concurrent_users": -0.2}, 200.0, True),
                "columns": (sane, 40.0, False)}
    with quiet():
        for flaw, (coef, intercept, signed) in variants.items():
            y = intercept + sum(X[c] * w for c, w in coef.items())
            model = LinearRegression().fit(X, y)
            signature = infer_signature(X, model.predict(X)) if signed else None
            mlflow.sklearn.save_model(model, str(root / flaw), signature=signature, pip_requirements=["scikit-learn"])
    return root


# --- Preparing inputs, reading outcomes ------------------------------------------------------


def _write_batches(data_path: Path, folder: Path) -> dict[str, Path]:
    """The good batch and one batch per fault, under names that do not tell which is which."""
    import pandas as pd

    good = pd.read_csv(data_path.parent / "production" / lab05.GOOD_BATCH)
    batches = {"good": good}
    for key, (_, broken) in FAULTS.items():
        batches[key] = broken(good.head(300).copy())
    paths = {}
    for key, df in batches.items():
        paths[key] = folder / f"batch_{secrets.randbelow(10**8):08d}.csv"
        df.to_csv(paths[key], index=False)
    return paths


def _prepare_store(runner: SandboxRunner, private: Path, folder: Path, ev: Mapping[str, Any], name: str,
                   with_flaws: bool) -> tuple[Path, dict[str, str]]:
    """A copy of the submission's store with the champion on its version and no gate or
    promotion tags on the others (and the flawed models registered): flaw -> version."""
    from mlflow import MlflowClient

    uri = store.private_copy(runner.workdir, private)
    mlflow_client = MlflowClient(tracking_uri=uri)
    versions = {role: ev["versions"][role]["version"] for role in lab05.ROLES}
    mlflow_client.set_registered_model_alias(name, "champion", versions["champion"])
    for role in ("poor", "candidate"):
        tags = ev["versions"][role]["tags"]
        for key in (*lab05.GATE_TAGS, *lab05.PROMOTION_TAGS, "previous_champion"):
            if key in tags:
                mlflow_client.delete_model_version_tag(name, versions[role], key)
    flawed: dict[str, str] = {}
    if with_flaws:
        models = folder / "models"
        shutil.copytree(_flawed_models(), models / "tmp")
        for flaw in sorted(FLAWS, key=lambda _: secrets.token_hex(2)):
            target = models / f"m{secrets.token_hex(4)}"
            os.rename(models / "tmp" / flaw, target)
            flawed[flaw] = str(mlflow_client.create_model_version(name, source=str(target)).version)
        os.rmdir(models / "tmp")
    return Path(labkit.sqlite_path(uri) or ""), flawed


def _copy(base: Path, folder: Path, case: str, tags: Mapping[str, str] | None = None,
          target: tuple[str, str] | None = None) -> str:
    db = folder / case / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(base, db)
    if tags and target:
        with sqlite3.connect(db) as con:
            con.executemany("INSERT INTO model_version_tags (key, value, name, version) VALUES (?, ?, ?, ?)",
                            [(k, v, target[0], int(target[1])) for k, v in tags.items()])
    return labkit.sqlite_uri(db)


def _registry_state(db: Path, private: Path, name: str, version: str) -> tuple[dict[str, str], str | None]:
    """A version's tags and the champion, read as data from a copy the sandbox wrote."""
    try:
        fd = os.open(db, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return {}, None
    local = private / f"state-{secrets.token_hex(4)}.db"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size > store.MAX_STORE_BYTES:
            return {}, None
        with open(local, "wb") as out:
            shutil.copyfileobj(f, out)
    try:
        with sqlite3.connect(f"file:{local}?mode=ro", uri=True) as con:
            tags = dict(con.execute("SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
                                    (name, int(version))).fetchall())
            row = con.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'",
                              (name,)).fetchone()
    except sqlite3.Error:
        return {}, None
    return {str(k): str(v) for k, v in tags.items()}, None if row is None else str(row[0])


def _give(runner: SandboxRunner, folder: Path) -> None:
    if runner.sandbox is not None:
        for path in [folder, *runner.sandbox._walk(folder)]:
            runner.sandbox.give(path)


def batch_answer(stdout: str, nonce: str, count: int, output: str) -> list[dict[str, Any]]:
    """Each case's ``{"code", "output"}`` from the batch's line that starts with the nonce; when
    there is none (the batch was stopped, or a case ended it), every case "did not finish"."""
    lines = [line[len(nonce):] for line in stdout.splitlines() if line.startswith(nonce)]
    try:
        answer = json.loads(lines[-1])
        if isinstance(answer, list) and len(answer) == count and all(
                isinstance(r, dict) and isinstance(r.get("output"), str)
                and (r.get("code") is None or isinstance(r.get("code"), int)) for r in answer):
            return [{"code": r["code"], "output": r["output"]} for r in answer]
    except (IndexError, json.JSONDecodeError):
        pass
    return [{"code": None, "output": output} for _ in range(count)]


def workflow_answer(stdout: str, nonce: str, output: str) -> dict[str, Any]:
    """The schema check and the probe run, from the one line of ``lab05_run workflow`` that
    starts with the nonce (which the workflow's steps never see); else "no answer"."""
    lines = [line[len(nonce):] for line in stdout.splitlines() if line.startswith(nonce)]
    try:
        answer = json.loads(lines[-1])
        return {"schema": answer.get("schema"), "run": answer.get("run")}
    except (IndexError, json.JSONDecodeError, AttributeError):
        return {"schema": None, "run": {"error": "no_answer", "detail": lab05._tail(output)}}


def run_code(ev: dict[str, Any], exp: dict[str, Any], data_path: Path, runner: SandboxRunner) -> None:
    """Run the student's programs on the grader's cases, in the sandbox; the outcomes become
    ``ev["runs"]`` and the cases the expected values."""
    exp.update(cases())
    files, name = ev.get("files", {}), exp["model_name"]
    folder = Path(tempfile.mkdtemp(prefix="grader-", dir=runner.workdir))  # new: nothing planted in it
    private = Path(tempfile.mkdtemp(prefix="lab05-judge-"))
    jobs: list[tuple[str, str, str, dict[str, Any]]] = []  # (check, case, mode, job)
    after: dict[tuple[str, str], tuple[Path, str, str | None, dict[str, str]]] = {}
    try:
        batches = _write_batches(data_path, folder)
        if files.get(lab05.DATA_SCRIPT):
            for case, path in batches.items():
                jobs.append(("data", case, "exec", {"args": [lab05.DATA_SCRIPT, str(path)]}))
        roles = all(role in ev.get("versions", {}) for role in lab05.ROLES)
        wanted = [files.get(f) for f in (lab05.GATE_SCRIPT, lab05.TEST_FILE, lab05.PROMOTE_SCRIPT)]
        if roles and any(wanted):
            base, flawed = _prepare_store(runner, private, folder, ev, name, bool(files.get(lab05.TEST_FILE)))
            version = {role: ev["versions"][role]["version"] for role in lab05.ROLES}
            champion = version["champion"]
            if files.get(lab05.GATE_SCRIPT):
                for case, spec in exp["gate_cases"].items():
                    uri = _copy(base, folder, f"gate-{case}")
                    v = version[spec["role"]]
                    args = [lab05.GATE_SCRIPT, "--model-name", name, "--version", v, "--data", str(batches["good"]),
                            *GATE_ARGS[case]]
                    jobs.append(("gate", case, "exec", {"args": args, "env": {"MLFLOW_TRACKING_URI": uri}}))
                    after[("gate", case)] = (labkit.sqlite_path(uri), v, champion, {})
            if files.get(lab05.TEST_FILE):
                uri = _copy(base, folder, "tests")
                (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
                targets = {"candidate": version["candidate"], **flawed}
                for case, v in targets.items():
                    args = ["-m", "pytest", lab05.TEST_FILE, "-v", "-p", "no:cacheprovider", "-c",
                            str(folder / "pytest.ini"), "--rootdir", str(runner.workdir)]
                    env = {"MLFLOW_TRACKING_URI": uri, "MODEL_URI": f"models:/{name}/{v}"}
                    jobs.append(("tests", case, "exec", {"args": args, "env": env}))
            if files.get(lab05.PROMOTE_SCRIPT):
                validated = {"validation_passed": "true", "r2": "0.83", "p95_latency_ms": "9.9"}
                added = {"untagged": {}, "false": {"validation_passed": "false"}, "validated": validated}
                for case, spec in exp["promote_cases"].items():
                    v = version[spec["role"]]
                    uri = _copy(base, folder, f"promote-{case}", added[case], (name, v))
                    args = [lab05.PROMOTE_SCRIPT, "--model-name", name, "--version", v, "--reason", PROMOTION_REASON]
                    jobs.append(("promote", case, "exec", {"args": args, "env": {"MLFLOW_TRACKING_URI": uri}}))
                    after[("promote", case)] = (labkit.sqlite_path(uri), v, champion, added[case])
        nonce = secrets.token_hex(16)
        if files.get(lab05.WORKFLOW):
            # One sandboxed process: the schema check, then the workflow run by the course's runner
            # with probes, once per scenario (lab05_run.probe_run); its answer carries the nonce.
            exp["workflow_vars"] = wf = lab05.workflow_vars()
            jobs.append(("workflow", "all", "workflow", {"file": lab05.WORKFLOW, "nonce": nonce, "model_name": name,
                                                         "version": wf["version"], "batch": wf["batch"],
                                                         "tracking_uri": wf["tracking_uri"]}))
        _give(runner, folder)
        # One sandboxed process per program: a batch of its cases, each alone in turn (see
        # lab05_run), plus the workflow's; two at a time.
        checks = list(dict.fromkeys(check for check, _, mode, _ in jobs if mode == "exec"))
        calls = [("batch", {"nonce": nonce, "cases": [job for c, _, mode, job in jobs if c == check and mode == "exec"]})
                 for check in checks]
        calls += [(mode, job) for _, _, mode, job in jobs if mode == "workflow"]

        def one(call: tuple[str, dict[str, Any]]) -> Any:
            mode, job = call
            timeout = RUN_TIMEOUT + lab05_run.CASE_TIMEOUT * len(job.get("cases", []))
            return runner.start_kit("autograder.kit.lab05_run", [mode]).finish(json.dumps(job).encode(), timeout)

        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = list(pool.map(one, calls))
        results: list[dict[str, Any]] = []  # the exec jobs' results, check by check
        workflow_outcome = None
        for (mode, job), outcome in zip(calls, outcomes, strict=True):
            both = (outcome.stdout + "\n" + outcome.stderr)[-lab05.OUTPUT_CHARS:]
            if mode == "batch":
                results += batch_answer(outcome.stdout, nonce, len(job["cases"]), both)
            else:
                workflow_outcome = workflow_answer(outcome.stdout, nonce, both)
        found: dict[str, dict[str, Any]] = {"data": {}, "gate": {}, "tests": {}, "promote": {}, "workflow": {}}
        exec_jobs = [(check, case) for check in checks for c, case, mode, _ in jobs if c == check and mode == "exec"]
        result_of = dict(zip(exec_jobs, results, strict=True))
        for check, case, mode, _job in jobs:
            if mode == "workflow":
                found[check] = workflow_outcome or {}
                continue
            result = result_of[(check, case)]
            output = result["output"][-lab05.OUTPUT_CHARS:]
            rec: dict[str, Any] = {"code": result["code"], "output": output}
            if check == "tests":
                rec["results"] = lab05.pytest_results(result["output"])
            if (check, case) in after:
                db, v, before_champion, before_tags = after[(check, case)]
                rec["tags_after"], rec["champion_after"] = _registry_state(db, private, name, v)
                rec.update(tags_before=before_tags, champion_before=before_champion,
                           reason=PROMOTION_REASON if check == "promote" else None)
            found[check][case] = rec
        ev["runs"] = found
    finally:
        shutil.rmtree(private, ignore_errors=True)

