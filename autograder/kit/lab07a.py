"""Lab 07a, data versioning and a reproducible pipeline (DVC, Git): judgments and self-checks.

The evidence is the lab's own Git repository and its DVC remote, read as data by
``lab07_repo`` (no ``git`` or ``dvc`` runs on a submission's repository in the grader's
process). The grader computes, on its hidden data, DVC's md5 of the first data version and of
the pipeline's split, and the pipeline's MAE for both values of ``train.n_estimators``
(``autograder.references.lab07a``). Part b (``lab07b``) records lineage in MLflow.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import checking
from autograder.kit.checking import CheckResult, Evidence, Judge
from autograder.kit.i18n import _
from autograder.kit.lab07_repo import (
    CONVENTIONAL,
    DATA_FILE,
    DVC_FILE,
    METRICS_FILE,
    STAGE_DEPS,
    STAGE_OUTS,
    STAGE_PARAMS,
    STAGES,
    data_md5,
    judge_lock,
    judge_pushed,
    lock_hashes,
    lock_md5,
    lock_param,
    lock_stage,
    locks_for,
    metrics_mae,
    msg,
    newest_of,
    repo_commits,
    short,
    v1_md5,
)
from autograder.kit.lab07_repo import evidence as _evidence

LAB = "07a_pipeline"
#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = [
    "DATA_PATH",
    "PROJECT_DIR",
    "REMOTE_DIR",
    "V1_ROWS",
    "TEST_SIZE",
    "SEED",
    "N_ESTIMATORS",
    "TUNED_N_ESTIMATORS",
    "MAX_DEPTH",
]
#: Files that never belong in Git, with a path that shows each (the .gitignore must match it).
IGNORED = {
    "Python caches": "src/__pycache__/train.cpython-311.pyc",
    "virtual environments": ".venv/bin/python",
    "notebook checkpoints": ".ipynb_checkpoints/lab-checkpoint.ipynb",
    "local MLflow files": "mlruns/0/meta.yaml",
}


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """The project's repository and remote as plain data (this part writes nothing to MLflow)."""
    return _evidence(tracking_uri, params, run_id, confine_to)


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the parameters alone decide."""
    return {"n_estimators": int(params["N_ESTIMATORS"]), "tuned_n_estimators": int(params["TUNED_N_ESTIMATORS"])}


# --- Judgments ----------------------------------------------------------------------------


def _ignored(patterns: str, path: str) -> bool:
    """Whether a .gitignore's lines keep ``path`` out (enough of gitignore's rules for this lab)."""
    parts = path.split("/")
    for raw in patterns.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        anchored = line.startswith("/") or "/" in line.rstrip("/")
        pattern = line.strip("/")
        for i in range(len(parts)):
            if anchored and i > 0:
                break
            for j in range(i + 1, len(parts) + 1):
                if fnmatch.fnmatchcase("/".join(parts[i:j]), pattern) and (j < len(parts) or not line.endswith("/")):
                    return True
    return False


def judge_track(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    commits, failure = repo_commits(ev)
    if failure:
        return failure
    for commit in commits:
        tracked = [p for p in commit["files"] if p.endswith((".csv", ".pkl")) or p == DATA_FILE]
        if tracked:
            return CheckResult(False, msg("data_in_git", sha=short(commit["sha"]), path=tracked[0]))
    with_dvc = [c for c in commits if DVC_FILE in c["content"]]
    if not with_dvc:
        return CheckResult(False, msg("no_dvc_file", file=DVC_FILE, data=DATA_FILE))
    first = with_dvc[0]
    md5 = data_md5(first)
    if md5 is None:
        doc = first["content"][DVC_FILE]
        error = doc.get("_error", _("no outs with an md5")) if isinstance(doc, dict) else _("not a mapping")
        return CheckResult(False, msg("bad_dvc_file", file=DVC_FILE, sha=short(first["sha"]), error=error))
    want = exp.get("md5", {}).get("v1")
    if want is not None and md5 != want:
        return CheckResult(False, msg("wrong_v1", file=DVC_FILE, sha=short(first["sha"]), found=md5, expected=want))
    ignore = next((c["content"][".gitignore"] for c in reversed(commits) if c["content"].get(".gitignore")), None)
    if ignore is None:
        return CheckResult(False, msg("no_gitignore"))
    for what, path in IGNORED.items():
        if not _ignored(ignore, path):
            return CheckResult(False, msg("not_ignored", what=what, path=path))
    for commit in commits:
        if not CONVENTIONAL.match(commit["subject"]):
            return CheckResult(False, msg("not_conventional", subject=commit["subject"][:80], sha=short(commit["sha"])))
    return CheckResult(True, msg("track_ok", file=DVC_FILE, md5=md5, count=len(commits)))


def _names(items: Any) -> list[str]:
    """The paths of a deps/outs/metrics/params list (entries may be strings or one-key maps)."""
    found: list[str] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(str(k) for k in item)
    return found


def _params(items: Any) -> list[str]:
    """Parameter names of a stage (``params.yaml: [a, b]`` entries included)."""
    found: list[str] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                found.extend(str(v) for v in value) if isinstance(value, list) else found.append(str(key))
    return found


def _judge_dvc_yaml(commit: Mapping[str, Any]) -> CheckResult | None:
    sha = short(commit["sha"])
    doc = commit["content"].get("dvc.yaml")
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict):
        error = doc.get("_error", _("no stages")) if isinstance(doc, dict) else _("not a mapping")
        return CheckResult(False, msg("bad_yaml", file="dvc.yaml", sha=sha, error=error))
    for stage in STAGES:
        spec = stages.get(stage)
        if not isinstance(spec, dict) or not spec.get("cmd"):
            return CheckResult(False, msg("missing_stage", sha=sha, stage=stage, found=", ".join(stages) or _("none")))
        deps = [d.rstrip("/") for d in _names(spec.get("deps"))]
        for dep in STAGE_DEPS[stage]:
            if dep not in deps:
                return CheckResult(False, msg("missing_dep", sha=sha, stage=stage, dep=dep, found=", ".join(deps) or _("none")))
        params = _params(spec.get("params"))
        for param in STAGE_PARAMS[stage]:
            if param not in params and param.split(".")[0] not in params:
                return CheckResult(False, msg("missing_param", sha=sha, stage=stage, param=param,
                                               found=", ".join(params) or _("none")))
        outs = _names(spec.get("outs"))
        for out in STAGE_OUTS[stage]:
            if out not in outs:
                return CheckResult(False, msg("missing_out", sha=sha, stage=stage, out=out, found=", ".join(outs) or _("none")))
    metrics = stages["evaluate"].get("metrics")
    uncached = [next(iter(m)) for m in metrics if isinstance(m, dict) and len(m) == 1
                and isinstance(next(iter(m.values())), dict) and next(iter(m.values())).get("cache") is False] \
        if isinstance(metrics, list) else []
    if METRICS_FILE not in uncached:
        return CheckResult(False, msg("missing_metric", sha=sha, file=METRICS_FILE, found=", ".join(_names(metrics)) or _("none")))
    return None


def judge_pipeline(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    commits, failure = repo_commits(ev)
    if failure:
        return failure
    with_yaml = [c for c in commits if "dvc.yaml" in c["content"]]
    if not with_yaml:
        return CheckResult(False, msg("no_pipeline"))
    for commit in with_yaml:
        failure = _judge_dvc_yaml(commit)
        if failure:
            return failure
    v1, n = v1_md5(commits, exp), exp["n_estimators"]
    locks = locks_for(commits, v1, n)
    if not locks:
        return CheckResult(False, msg("no_lock", n=n))
    failure = judge_lock(locks[0], "v1", n, exp)
    if failure:
        return failure
    return CheckResult(True, msg("pipeline_ok", md5=v1, mae=metrics_mae(locks[0])))


def judge_params(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    commits, failure = repo_commits(ev)
    if failure:
        return failure
    v1, n, tuned = v1_md5(commits, exp), exp["n_estimators"], exp["tuned_n_estimators"]
    locks = locks_for(commits, v1, tuned)
    if not locks:
        found = sorted({str(lock_param(c, "train.n_estimators")) for c in commits if "dvc.lock" in c["content"]})
        return CheckResult(False, msg("no_tuned", n=tuned, found=", ".join(found) or _("no dvc.lock")))
    failure = judge_lock(locks[0], "v1", tuned, exp)
    if failure:
        return failure
    before = locks_for(commits, v1, n)
    if before:
        for path in STAGE_OUTS["prepare"]:
            old = lock_md5(lock_stage(before[0], "prepare").get("outs"), path)
            new = lock_md5(lock_stage(locks[0], "prepare").get("outs"), path)
            if old != new:
                return CheckResult(False, msg("prepare_changed", sha=short(locks[0]["sha"]), path=path, found=new,
                                               before=old))
    before_mae = metrics_mae(before[0]) if before else None
    return CheckResult(True, msg("tuned_ok", n=tuned, mae=metrics_mae(locks[0]),
                                  before=before_mae if before_mae is not None else float("nan")))


def judge_remote(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    commits, failure = repo_commits(ev)
    if failure:
        return failure
    v1 = v1_md5(commits, exp)
    newest = newest_of(commits, v1)
    failure = judge_pushed(ev, newest or {"content": {}, "sha": ""})
    if failure:
        return failure
    if newest is None:
        return CheckResult(False, msg("no_dvc_file", file=DVC_FILE, data=DATA_FILE))
    return CheckResult(True, msg("remote_ok", count=len(set(lock_hashes(newest).values()))))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_track": (1, judge_track),
    "check_todo2_pipeline": (2, judge_pipeline),
    "check_todo3_params": (3, judge_params),
    "check_todo4_remote": (4, judge_remote),
}


# --- In the notebook ----------------------------------------------------------------------


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure. Judges this
    run of the notebook against the values shipped for the default inputs (with other inputs,
    only what needs no reference; the grader judges the rest)."""
    params = checking.notebook_params(namespace, PARAMS)
    checking.run_self_check(CHECKS, check_id, lambda: (
        evidence("", params), checking.expected_values(LAB, params, expected_from_params)))
