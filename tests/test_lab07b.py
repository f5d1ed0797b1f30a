"""The grader on Lab 07b (lineage in MLflow: which data trained the model).

Fast tests build the repository, remote and runs a correct submission leaves (``lab07_project``)
and break one thing at a time: a forged lineage digest, lineage pointing at the wrong version,
an answer not read from the store, a reproduction that never went back. Each costs its own task.
One test runs the given set-up (``lab07b.start_project``) with real git and DVC.

Slow tests grade notebooks sandboxed on hidden inputs: the solution, the untouched student
notebook, the partial one (shared with the nbgrader test), and one with two typical mistakes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from autograder import hidden
from autograder.course import LABS
from autograder.kit import lab07_repo, lab07b
from autograder.notebook import grade_id
from autograder.references import lab07b as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code
from tests.lab07_project import PARAMS_B as PARAMS
from tests.lab07_project import (
    Project,
    history_b,
    md5,
    needs_git,
    repo_evidence,
    run,
    shipped,
    start_b,
)

LAB = LABS["07b_lineage"]
MAX = {"check_todo1_lineage": 2, "check_todo2_version": 2, "check_todo3_answer": 1, "check_todo4_reproduce": 2}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}
ALL = set(TODO_CHECK)
SEED = 12345
N = PARAMS["N_ESTIMATORS"]


def exp_b() -> dict:
    return {**lab07b.expected_from_params(PARAMS), **shipped(lab07b.LAB)}


def evidence_of(p: Project, runs: dict | None = None, registry: dict | None = None, answer: dict | None = None) -> dict:
    ev = repo_evidence(p)
    exp = exp_b()
    if runs is None:
        runs = {
            "train-v1": run("train-v1", exp["md5"]["v1"], p.commits["start"], exp["mae"][f"v1_{N}"], N),
            "train-v2": run("train-v2", exp["md5"]["v2"], p.commits["v2"], exp["mae"][f"v2_{N}"], N),
            "reproduce-v1": {"name": "reproduce-v1", "params": {}, "metrics": {"mae": exp["mae"][f"v1_{N}"]},
                             "tags": {"git_commit": p.commits["start"]}, "datasets": []},
        }
    ev["runs"], ev["run_names"] = runs, sorted(runs)
    if registry is None and "train-v1" not in runs:
        registry = {"name": PARAMS["MODEL_NAME"], "exists": False}
        answer = answer or {}
    if registry is None:
        lineage = {v: {"digest": (runs[f"train-{v}"]["datasets"] or [{}])[0].get("digest"),
                       "git_commit": runs[f"train-{v}"]["tags"].get("git_commit")} for v in ("v1", "v2")}
        registry = {"name": PARAMS["MODEL_NAME"], "exists": True, "aliases": {"champion": 2},
                    "versions": [{"version": 1, "run": "train-v1", "lineage": lineage["v1"]},
                                 {"version": 2, "run": "train-v2", "lineage": lineage["v2"]}]}
    ev["registry"] = registry
    if answer is None:
        versions = {v["version"]: v["lineage"] for v in registry["versions"]}
        answer = {"champion": {"run_id": "x", **versions[2]}, "first": {"run_id": "y", **versions[1]}}
    ev["answer"] = answer
    return ev


def judged(ev: dict, exp: dict | None = None) -> dict[str, bool]:
    exp = exp or exp_b()
    return {check: judge(ev, exp).passed for check, (_, judge) in lab07b.CHECKS.items()}


def only_failed(ev: dict, *todos: int) -> None:
    want = {check: n not in todos for n, check in TODO_CHECK.items()}
    found = judged(ev)
    assert found == want, {c: j(ev, exp_b()).message for c, (_, j) in lab07b.CHECKS.items() if found[c] != want[c]}


def message(ev: dict, todo: int) -> str:
    return lab07b.CHECKS[TODO_CHECK[todo]][1](ev, exp_b()).message


# --- Fast: references, the given set-up, judgments -----------------------------------------------


def test_the_data_versions_are_cut_from_the_dataset_lines_and_differ_on_hidden_data() -> None:
    v1 = lab07_repo.version_bytes(None, "v1", 3000)
    v2 = lab07_repo.version_bytes(None, "v2", 3000)
    assert v2.startswith(v1) and v1.count(b"\n") == 3001 and v2.count(b"\n") > v1.count(b"\n")
    exp = shipped(lab07b.LAB)
    assert exp["md5"] == {"v1": md5(v1), "v2": md5(v2)}
    variant = hidden.hidden_inputs(SEED)
    other = references.expected(variant.dataset, {**PARAMS, "SEED": SEED % 10_000})
    assert other["md5"]["v2"] != exp["md5"]["v2"] and other["mae"][f"v2_{N}"] != exp["mae"][f"v2_{N}"]
    # the new data moves the metric: copying one version's for the other fails
    assert exp["mae"][f"v1_{N}"] != exp["mae"][f"v2_{N}"]


@needs_git
def test_the_given_set_up_builds_the_project_part_a_ends_with(tmp_path: Path, monkeypatch) -> None:
    """start_project with real git and DVC: two conventional commits, the first version
    tracked, the pipeline's lock and metric the references expect, everything pushed."""
    from dvc.cli import main as dvc_main

    project, remote = tmp_path / PARAMS["PROJECT_DIR"], tmp_path / PARAMS["REMOTE_DIR"]
    project.mkdir()
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(project / ".dvc" / "tmp" / "site"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)

    def sh(command: str) -> str:
        if command.startswith("dvc "):
            with contextlib.chdir(project):
                assert dvc_main(shlex.split(command)[1:]) == 0, command
            return ""
        return subprocess.run(command, shell=True, cwd=project, check=True, capture_output=True, text=True).stdout

    lab07b.start_project(sh, project, remote, None, PARAMS["V1_ROWS"], PARAMS["TEST_SIZE"], PARAMS["SEED"], N,
                         PARAMS["MAX_DEPTH"])
    ev = {"project": PARAMS["PROJECT_DIR"], "remote_dir": PARAMS["REMOTE_DIR"],
          "repo": lab07_repo.read_repository(project, tmp_path), "remote": lab07_repo.read_remote(remote, tmp_path)}
    commits = ev["repo"]["commits"]
    assert [c["subject"].split(":")[0] for c in commits] == ["feat(data)", "feat(pipeline)"]
    exp = exp_b()
    assert lab07_repo.data_md5(commits[-1]) == exp["md5"]["v1"]
    assert lab07_repo.judge_lock(commits[-1], "v1", N, exp) is None
    assert lab07_repo.judge_pushed(ev, commits[-1]) is None
    assert not any(p.endswith((".csv", ".pkl")) for c in commits for p in c["files"])


@needs_git
def test_a_correct_submission_passes_every_check(tmp_path: Path) -> None:
    p = history_b(tmp_path)
    ev = evidence_of(p)
    assert ev["repo"]["refs"]["HEAD"] == p.commits["v2"]
    assert set(ev["remote"]["hashes"]) >= set(shipped(lab07b.LAB)["md5"].values())
    only_failed(ev)


@needs_git
def test_without_references_the_checks_judge_the_work_against_itself(tmp_path: Path) -> None:
    """The self-check on other inputs: no md5 or MAE to compare with, only consistency."""
    ev = evidence_of(history_b(tmp_path))
    bare = lab07b.expected_from_params(PARAMS)
    assert all(judged(ev, bare).values()), {c: j(ev, bare).message for c, (_, j) in lab07b.CHECKS.items()}


@needs_git
def test_an_untouched_notebook_fails_every_check_with_a_message_of_its_own(tmp_path: Path) -> None:
    """What the set-up leaves: the project of part a, no runs, no answer."""
    ev = evidence_of(start_b(tmp_path), runs={})
    ev["answer"] = None
    messages = set()
    for check, (_, judge) in lab07b.CHECKS.items():
        result = judge(ev, exp_b())
        assert not result.passed and len(result.message) > 30, (check, result.message)
        messages.add(result.message)
    assert len(messages) == len(lab07b.CHECKS), messages


@needs_git
def test_made_up_lock_hashes_and_a_copied_metric_cost_task_2_only(tmp_path: Path) -> None:
    p = history_b(tmp_path)
    lock = yaml.safe_load((p.root / "dvc.lock").read_text())
    lock["stages"]["prepare"]["outs"][0]["md5"] = "f" * 32
    p.write("dvc.lock", lock)
    p.write("metrics.json", json.dumps({"mae": shipped(lab07b.LAB)["mae"][f"v1_{N}"]}))  # copied from v1
    p.commit("fake", "fix: lock", ".")
    ev = evidence_of(p)
    assert "f" * 32 in message(ev, 2)
    only_failed(ev, 2)


@needs_git
def test_a_forged_lineage_digest_costs_task_1_only(tmp_path: Path) -> None:
    p = history_b(tmp_path)
    exp = shipped(lab07b.LAB)
    runs = {
        # MLflow's own digest of the frame, not DVC's md5: the run leads to no DVC version
        "train-v1": run("train-v1", "8f2a1c9d", p.commits["start"], exp["mae"][f"v1_{N}"], N),
        "train-v2": run("train-v2", "1b3e5a7c", p.commits["v2"], exp["mae"][f"v2_{N}"], N),
        "reproduce-v1": {"name": "reproduce-v1", "params": {}, "metrics": {"mae": exp["mae"][f"v1_{N}"]},
                         "tags": {"git_commit": p.commits["start"]}, "datasets": []},
    }
    ev = evidence_of(p, runs=runs)
    only_failed(ev, 1)
    assert "8f2a1c9d" in message(ev, 1) and exp["md5"]["v1"] in message(ev, 1)


@needs_git
def test_lineage_pointing_at_the_wrong_version_costs_the_task_that_logged_it(tmp_path: Path) -> None:
    p = history_b(tmp_path)
    exp = shipped(lab07b.LAB)
    ev = evidence_of(p)
    # train-v2 logged before the new version was committed: the digest and commit of v1
    ev["runs"]["train-v2"] = run("train-v2", exp["md5"]["v1"], p.commits["start"], exp["mae"][f"v2_{N}"], N)
    only_failed(ev, 2)
    assert exp["md5"]["v2"] in message(ev, 2)
    # train-v1 named a commit of another version: TODO 1
    ev = evidence_of(p)
    ev["runs"]["train-v1"]["tags"]["git_commit"] = p.commits["v2"]
    assert not judged(ev)["check_todo1_lineage"]
    assert "another data version" in message(ev, 1)
    # a made-up commit
    ev["runs"]["train-v1"]["tags"]["git_commit"] = "a" * 40
    assert "naming a commit" in message(ev, 1)


@needs_git
def test_an_answer_from_the_notebook_instead_of_the_store_costs_task_3_only(tmp_path: Path) -> None:
    p = history_b(tmp_path)
    ev = evidence_of(p)
    ev["answer"]["champion"]["digest"] = shipped(lab07b.LAB)["md5"]["v1"]
    only_failed(ev, 3)
    ev = evidence_of(p)
    ev["answer"] = {"champion": "v2"}
    assert "digest and git_commit" in message(ev, 3)


@needs_git
def test_a_reproduction_that_did_not_go_back_costs_task_4_only(tmp_path: Path) -> None:
    p = history_b(tmp_path)
    ev = evidence_of(p)
    ev["runs"]["reproduce-v1"]["metrics"]["mae"] = shipped(lab07b.LAB)["mae"][f"v2_{N}"]  # still on main
    only_failed(ev, 4)
    ev = evidence_of(p)
    ev["runs"]["reproduce-v1"]["tags"]["git_commit"] = p.commits["v2"]
    only_failed(ev, 4)
    assert "not a commit of the first data version" in message(ev, 4)


@needs_git
def test_a_metric_copied_from_the_training_run_without_going_back_costs_task_4(tmp_path: Path) -> None:
    """The cheap way out: log train-v1's own mae and commit, never check that commit out."""
    p = start_b(tmp_path)
    ev = evidence_of(p, runs={"reproduce-v1": {
        "name": "reproduce-v1", "params": {}, "metrics": {"mae": shipped(lab07b.LAB)["mae"][f"v1_{N}"]},
        "tags": {"git_commit": p.commits["start"]}, "datasets": []}})
    assert ev["repo"]["checkouts"] == []
    assert "never checked out" in message(ev, 4)
    p.git("checkout", "-q", p.commits["start"])
    assert lab07b.judge_reproduce(evidence_of(p, runs=ev["runs"]), exp_b()).passed


def test_the_kit_holds_no_answer_of_a_todo() -> None:
    """The kit ships the data versions and part b's starting project, but no lineage, answer
    or reproduction recipe: those are in the master's solutions and the references."""
    for module in (lab07b, lab07_repo):
        source = Path(module.__file__).read_text(encoding="utf-8")
        for answer in ("log_input", "from_pandas(", "RandomForestRegressor", "dvc repro --force", "rev-parse",
                       "set_registered_model_alias(MODEL", "sample(frac", "git checkout"):
            code = [line for line in source.splitlines()
                    if answer in line and not line.strip().startswith('"') and "SCRIPTS" not in line]
            allowed = module is lab07_repo and answer in ("RandomForestRegressor", "sample(frac")  # given scripts
            assert allowed or not code, (module.__name__, answer, code)


# --- Slow: whole notebooks, graded sandboxed on hidden inputs ------------------------------------


def solved(todo: str, old: str, new: str) -> str:
    master = {grade_id(c): c for c in nbformat.read(LAB.master, as_version=4).cells}
    code = solution_code(master[todo])
    assert old in code, f"{old!r} is not in the answer to {todo}"
    return code.replace(old, new)


def result_message(result, check_id: str) -> str:
    return next(c.message for c in result.checks if c.id == check_id)


@grading
def test_solution_earns_full_marks_on_fresh_hidden_inputs(grade) -> None:
    result = grade(make_submission(done=ALL, lab=LAB))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB), inputs=hidden.hidden_inputs(SEED))
    assert (result.score, result.max_score) == (0, sum(MAX.values()))
    assert len({c.message for c in result.checks}) == len(MAX), [c.message for c in result.checks]
    assert "log_training('train-v1')" in result_message(result, "check_todo1_lineage")
    # todo3 only defines a function (the cell after it raises); todo2 and todo4 stop earlier,
    # on what the tasks before them did not make
    errors = {e.split()[0] for e in result.errors}
    assert "todo1" in {e.split()[0] for e in result.errors if "NotImplementedError" in e}, result.errors
    assert {"todo2", "answer", "todo4"} <= errors, result.errors


@grading
def test_a_partial_notebook_earns_the_points_of_its_done_tasks(grade) -> None:
    # The nbgrader test grades the same notebook (shared, graded once per session).
    done = partial_todos(LAB)
    result = grade(make_submission(done=done, lab=LAB))
    want = {k: (v if int(k[len("check_todo")]) in done else 0) for k, v in MAX.items()}
    assert 0 < sum(want.values()) < sum(MAX.values())
    assert points(result) == want, [c.message for c in result.checks]


@grading
def test_typical_mistakes_each_cost_their_own_task(grade) -> None:
    """MLflow's own digest instead of DVC's (TODO 1), a 'reproduction' that never left main (TODO 4)."""
    replace = {
        "todo1": solved("todo1", "digest=md5,", ""),
        "todo4": solved("todo4", 'sh(f"git checkout {first[\'git_commit\']}")\n', ""),
    }
    result = grade(make_submission(done=ALL, replace=replace, lab=LAB), inputs=hidden.hidden_inputs(SEED))
    assert points(result) == {**MAX, **{TODO_CHECK[n]: 0 for n in (1, 4)}}, [c.message for c in result.checks]
    assert "DVC md5" in result_message(result, "check_todo1_lineage")
    assert "first data version" in result_message(result, "check_todo4_reproduce")
