"""Lab 07b, lineage in MLflow (DVC, Git, MLflow): the given project, judgments and self-checks.

The evidence is the lab's own Git repository and DVC remote, read as data by ``lab07_repo``,
the MLflow runs ``train-v1``, ``train-v2`` and ``reproduce-v1`` (dataset inputs, tags, params,
metrics), the registry's versions and aliases, and the answer file. The grader computes, on its
hidden data, DVC's md5 of both data versions and of the pipeline's split, and the pipeline's MAE
on each (``autograder.references.lab07b``).

The part starts from the project as part a (``lab07a``) leaves it: ``start_project`` builds it
(the given scripts, DVC with a folder remote, the first data version tracked, the pipeline run,
committed and pushed), so that this part is graded on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autograder.kit import checking
from autograder.kit.checking import CheckResult, Evidence, Judge
from autograder.kit.i18n import _
from autograder.kit.lab07_repo import (
    COMMIT_TAG,
    DATA_FILE,
    DVC_FILE,
    REPRODUCE_RUN,
    TRAIN_RUNS,
    close,
    data_md5,
    evidence,
    judge_lock,
    judge_pushed,
    lock_param,
    locks_for,
    metrics_mae,
    msg,
    newest_of,
    project_params,
    repo_commits,
    short,
    v1_md5,
    write_project,
)

LAB = "07b_lineage"
#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = [
    "DATA_PATH",
    "EXPERIMENT_NAME",
    "MODEL_NAME",
    "PROJECT_DIR",
    "REMOTE_DIR",
    "ANSWER_FILE",
    "V1_ROWS",
    "TEST_SIZE",
    "SEED",
    "N_ESTIMATORS",
    "MAX_DEPTH",
]
#: The pipeline of part a, made with DVC's command line (part a writes dvc.yaml by hand).
STAGE_COMMANDS = (
    "dvc stage add -q -n prepare -p prepare.test_size,prepare.seed -d src/prepare.py -d data/metrics.csv "
    "-o data/train.csv -o data/test.csv python src/prepare.py",
    "dvc stage add -q -n train -p train.n_estimators,train.max_depth,train.seed -d src/train.py -d data/train.csv "
    "-o model.pkl python src/train.py",
    "dvc stage add -q -n evaluate -d src/evaluate.py -d model.pkl -d data/test.csv -M metrics.json "
    "python src/evaluate.py",
)


def start_project(sh: Callable[[str], str], project: str | Path, remote: str | Path, data_path: str | Path | None,
                  v1_rows: int, test_size: float, seed: int, n_estimators: int, max_depth: int) -> None:
    """Build the project part a ends with, in ``project`` (an empty folder), running each
    command through the notebook's ``sh``: a Git repository with DVC, a remote that is the
    folder ``remote``, the first data version tracked, the pipeline run, committed, pushed."""
    project = Path(project)
    write_project(project, data_path, v1_rows, project_params(test_size, seed, n_estimators, max_depth))
    commands = [
        "git init -q -b main",
        'git config user.name "Lab 07 student"',
        'git config user.email "student@example.com"',
        "dvc init -q",
        "dvc config core.analytics false",
        f"dvc remote add -q --default local {os.path.relpath(remote, project)}",
        "dvc add -q " + DATA_FILE,
        "git add --all",
        'git commit -q -m "feat(data): the first version of the metrics, tracked by DVC"',
        *STAGE_COMMANDS,
        "dvc repro -q",
        "git add --all",
        'git commit -q -m "feat(pipeline): the prepare, train and evaluate stages and their first run"',
        "dvc push -q",
    ]
    for command in commands:
        sh(command)


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the parameters alone decide."""
    return {
        "model_name": params["MODEL_NAME"],
        "answer_file": params["ANSWER_FILE"],
        "n_estimators": int(params["N_ESTIMATORS"]),
    }


# --- Judgments ----------------------------------------------------------------------------


def _run_named(ev: Evidence, name: str) -> tuple[dict[str, Any] | None, CheckResult | None]:
    run = (ev.get("runs") or {}).get(name)
    if run is None:
        return None, CheckResult(False, msg("no_run", run=name, found=", ".join(ev.get("run_names") or []) or _("none")))
    return run, None


def _judge_lineage(ev: Evidence, commits: list[dict[str, Any]], run: Mapping[str, Any], md5: str | None) -> CheckResult | None:
    """A training run's lineage: its dataset digest is the DVC md5 of its data version, its
    commit tracks that version, and its params and metric are that commit's."""
    name = run["name"]
    if not run.get("datasets"):
        return CheckResult(False, msg("no_dataset", run=name))
    digest = run["datasets"][0]["digest"]
    if md5 is not None and digest != md5:
        return CheckResult(False, msg("wrong_digest", run=name, found=digest, expected=md5))
    sha = run["tags"].get(COMMIT_TAG)
    commit = next((c for c in commits if sha and c["sha"] == sha), None)
    if commit is None:
        return CheckResult(False, msg("no_commit_tag", run=name, tag=COMMIT_TAG, found=sha or _("no such tag")))
    if data_md5(commit) != digest:
        return CheckResult(False, msg("commit_mismatch", run=name, sha=short(sha), file=DVC_FILE,
                                       found=data_md5(commit), digest=digest))
    params = commit["content"].get("params.yaml")
    for section in ("train",):
        values = params.get(section) if isinstance(params, dict) else None
        for key, value in (values.items() if isinstance(values, dict) else []):
            logged = run["params"].get(f"{section}.{key}")
            if logged is None or str(logged) != str(value):
                return CheckResult(False, msg("wrong_param", run=name, param=f"{section}.{key}", found=logged,
                                               sha=short(sha), expected=value))
    mae, logged_mae = metrics_mae(commit), run["metrics"].get("mae")
    if mae is None or logged_mae is None or not close(logged_mae, mae):
        return CheckResult(False, msg("wrong_run_mae", run=name, found=logged_mae, sha=short(sha), expected=mae))
    return None


def _version_of(ev: Evidence, run_name: str) -> int | None:
    versions = (ev.get("registry") or {}).get("versions") or []
    return max((v["version"] for v in versions if v["run"] == run_name), default=None)


def judge_lineage(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    commits, failure = repo_commits(ev)
    if failure:
        return failure
    name = TRAIN_RUNS["v1"]
    run, failure = _run_named(ev, name)
    if failure:
        return failure
    failure = _judge_lineage(ev, commits, run, v1_md5(commits, exp))
    if failure:
        return failure
    if _version_of(ev, name) is None:
        return CheckResult(False, msg("no_version", name=exp["model_name"], run=name))
    return CheckResult(True, msg("lineage_ok", run=name, digest=run["datasets"][0]["digest"],
                                  sha=short(run["tags"][COMMIT_TAG]), mae=run["metrics"]["mae"]))


def judge_version(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    commits, failure = repo_commits(ev)
    if failure:
        return failure
    v1 = v1_md5(commits, exp)
    v2 = (exp.get("md5") or {}).get("v2")
    tracked = [m for m in map(data_md5, commits) if m and m != v1]
    if v2 is None and tracked:
        v2 = tracked[-1]
    if v2 is None or v2 not in tracked:
        return CheckResult(False, msg("no_v2", md5=v2) if v2 else msg("no_v2_found", found=", ".join(tracked) or _("none")))
    tuned = exp["n_estimators"]
    locks = locks_for(commits, v2, tuned)
    if not locks:
        return CheckResult(False, msg("no_v2_lock", md5=v2, n=tuned))
    failure = judge_lock(locks[0], "v2", tuned, exp) or judge_pushed(ev, newest_of(commits, v2) or locks[0])
    if failure:
        return failure
    name = TRAIN_RUNS["v2"]
    run, failure = _run_named(ev, name)
    if failure:
        return failure
    failure = _points_at_v2(ev, commits, run, v1, v2)
    if failure:
        return failure
    registry = ev.get("registry") or {}
    champion = (registry.get("aliases") or {}).get("champion")
    if champion is None or champion != _version_of(ev, name):
        return CheckResult(False, msg("no_champion", name=exp["model_name"], run=name,
                                       found=", ".join(f"{k}={v}" for k, v in (registry.get("aliases") or {}).items()) or _("none")))
    return CheckResult(True, msg("version_ok", md5=v2, mae=metrics_mae(locks[0])))


def _points_at_v2(ev: Evidence, commits: list[dict[str, Any]], run: Mapping[str, Any], v1: str | None,
                  v2: str) -> CheckResult | None:
    """The run of the second version leads to it, wherever log_training (TODO 1, judged there)
    records that lineage for the first version: its digest, then its commit."""
    first = (ev.get("runs") or {}).get(TRAIN_RUNS["v1"]) or {}
    first_digest = (first.get("datasets") or [{}])[0].get("digest")
    digest = (run.get("datasets") or [{}])[0].get("digest")
    if first_digest is not None and first_digest == v1 and digest != v2:
        return CheckResult(False, msg("wrong_digest", run=run["name"], found=digest, expected=v2))
    by_sha = {c["sha"]: c for c in commits}
    first_commit = by_sha.get((first.get("tags") or {}).get(COMMIT_TAG) or "")
    sha = run["tags"].get(COMMIT_TAG)
    if first_commit is not None and data_md5(first_commit) == v1 and data_md5(by_sha.get(sha or "", {"content": {}})) != v2:
        found = data_md5(by_sha[sha]) if sha in by_sha else _("no commit of this repository")
        return CheckResult(False, msg("commit_mismatch", run=run["name"], sha=short(sha), file=DVC_FILE, found=found,
                                       digest=v2))
    return None


def judge_answer(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    file = exp["answer_file"]
    answer = ev.get("answer")
    if not isinstance(answer, dict):
        return CheckResult(False, msg("no_answer", file=file))
    registry = ev.get("registry") or {}
    versions = {v["version"]: v for v in registry.get("versions") or []}
    champion = (registry.get("aliases") or {}).get("champion")
    for key, number in (("champion", champion), ("first", _version_of(ev, TRAIN_RUNS["v1"]))):
        given = answer.get(key)
        if not isinstance(given, dict) or not {"digest", "git_commit"} <= set(given):
            return CheckResult(False, msg("bad_answer", file=file, entry=key,
                                           found=", ".join(map(str, given)) if isinstance(given, dict) else type(given).__name__))
        truth = versions.get(number, {}).get("lineage") if number is not None else None
        if not truth:
            why = _("it has no run in the store") if number in versions else _("no such version")
            return CheckResult(False, msg("no_lineage_version", name=exp["model_name"], alias=key, version=number, why=why))
        found = {k: given.get(k) for k in ("digest", "git_commit")}
        if found != truth:
            return CheckResult(False, msg("wrong_answer", file=file, entry=key, found=found, expected=truth, tag=COMMIT_TAG))
    truth = versions[champion]["lineage"]
    return CheckResult(True, msg("answer_ok", digest=truth["digest"], sha=short(truth["git_commit"])))


def judge_reproduce(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    commits, failure = repo_commits(ev)
    if failure:
        return failure
    run = (ev.get("runs") or {}).get(REPRODUCE_RUN)
    if run is None or "mae" not in run["metrics"]:
        return CheckResult(False, msg("no_reproduction", run=REPRODUCE_RUN, found=", ".join(ev.get("run_names") or []) or _("none")))
    v1 = v1_md5(commits, exp)
    sha = run["tags"].get(COMMIT_TAG)
    commit = next((c for c in commits if sha and c["sha"] == sha), None)
    if commit is None or data_md5(commit) != v1:
        return CheckResult(False, msg("reproduce_commit", run=REPRODUCE_RUN, tag=COMMIT_TAG, found=sha, md5=v1))
    if sha not in (ev.get("repo") or {}).get("checkouts", []):
        return CheckResult(False, msg("not_checked_out", run=REPRODUCE_RUN, sha=short(sha)))
    n = lock_param(commit, "train.n_estimators")
    want = (exp.get("mae") or {}).get(f"v1_{n}")
    if want is None and exp.get("mae") is None:
        want = metrics_mae(commit)
    found = run["metrics"]["mae"]
    if want is None or not close(found, want):
        return CheckResult(False, msg("wrong_reproduction", run=REPRODUCE_RUN, found=f"{found:.4f}",
                                       expected=f"{want:.4f}" if want is not None else _("unknown")))
    return CheckResult(True, msg("reproduce_ok", sha=short(sha), mae=found))


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).


#: Check id (the grade_id of the notebook's test cell) -> (TODO number, judgment).
CHECKS: dict[str, tuple[int, Judge]] = {
    "check_todo1_lineage": (1, judge_lineage),
    "check_todo2_version": (2, judge_version),
    "check_todo3_answer": (3, judge_answer),
    "check_todo4_reproduce": (4, judge_reproduce),
}


# --- In the notebook ----------------------------------------------------------------------


def self_check(check_id: str, namespace: Mapping[str, Any], strict: bool = False) -> None:
    """Run one check from a test cell: print a pass line or raise a clear failure. Judges this
    run of the notebook against the values shipped for the default inputs (with other inputs,
    only what needs no reference; the grader judges the rest)."""
    import mlflow

    params = checking.notebook_params(namespace, PARAMS)
    checking.run_self_check(CHECKS, check_id, lambda: (
        evidence(mlflow.get_tracking_uri(), params), checking.expected_values(LAB, params, expected_from_params)))
