"""The grader on Lab 07a (data versioning and a reproducible pipeline with DVC and Git).

Fast tests build the repository and remote a correct submission leaves (``lab07_project``)
and break one thing at a time: data committed to Git, a missing dependency, made-up dvc.lock
hashes, a copied metric, a remote file whose content is not its name. Each costs its own task.

Slow tests grade notebooks sandboxed on hidden inputs: the solution, the untouched student
notebook, the partial one (shared with the nbgrader test), and one with two typical mistakes.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from autograder import hidden
from autograder.course import LABS
from autograder.kit import lab07_repo, lab07a
from autograder.notebook import grade_id
from autograder.references import lab07a as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code
from tests.lab07_project import (
    GITIGNORE,
    PARAMS,
    PIPELINE,
    Project,
    history_a,
    md5,
    needs_git,
    repo_evidence,
    shipped,
)

LAB = LABS["07a_pipeline"]
MAX = {"check_todo1_track": 2, "check_todo2_pipeline": 2, "check_todo3_params": 1, "check_todo4_remote": 1}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}
ALL = set(TODO_CHECK)
SEED = 12345


def expected() -> dict:
    return {**lab07a.expected_from_params(PARAMS), **shipped(lab07a.LAB)}


def judged(ev: dict, exp: dict | None = None) -> dict[str, bool]:
    exp = exp or expected()
    return {check: judge(ev, exp).passed for check, (_, judge) in lab07a.CHECKS.items()}


def only_failed(ev: dict, *todos: int) -> None:
    want = {check: n not in todos for n, check in TODO_CHECK.items()}
    found = judged(ev)
    assert found == want, {c: j(ev, expected()).message for c, (_, j) in lab07a.CHECKS.items() if found[c] != want[c]}


def message(ev: dict, todo: int) -> str:
    return lab07a.CHECKS[TODO_CHECK[todo]][1](ev, expected()).message


# --- Fast: references, readers, judgments ---------------------------------------------------


def test_the_references_follow_the_data_and_the_parameter() -> None:
    v1 = lab07_repo.version_bytes(None, "v1", 3000)
    assert v1.count(b"\n") == 3001
    exp = shipped(lab07a.LAB)
    assert exp["md5"] == {"v1": md5(v1)}
    assert exp["mae"]["v1_30"] != exp["mae"]["v1_60"]  # the change of parameter moves the metric
    variant = hidden.hidden_inputs(SEED)
    other = references.expected(variant.dataset, {**PARAMS, "SEED": SEED % 10_000})
    assert other["md5"]["v1"] != exp["md5"]["v1"] and other["mae"]["v1_30"] != exp["mae"]["v1_30"]


@needs_git
def test_a_correct_submission_passes_every_check_and_the_reader_sees_its_commits(tmp_path: Path) -> None:
    p = history_a(tmp_path)
    ev = repo_evidence(p)
    assert [c["subject"].split(":")[0] for c in ev["repo"]["commits"]] == ["feat(data)", "feat(pipeline)", "perf(train)"]
    assert ev["repo"]["refs"]["HEAD"] == p.commits["tuned"]
    assert shipped(lab07a.LAB)["md5"]["v1"] in ev["remote"]["hashes"]
    only_failed(ev)


@needs_git
def test_without_references_the_checks_judge_the_work_against_itself(tmp_path: Path) -> None:
    """The self-check on other inputs: no md5 or MAE to compare with, only consistency."""
    ev = repo_evidence(history_a(tmp_path))
    bare = lab07a.expected_from_params(PARAMS)
    assert all(judge(ev, bare).passed for _, judge in lab07a.CHECKS.values())


@needs_git
def test_an_untouched_notebook_fails_every_check_with_a_message_of_its_own(tmp_path: Path) -> None:
    """What the set-up leaves: a repository without commits, no remote."""
    ev = repo_evidence(Project(tmp_path))
    messages = set()
    for check, (_, judge) in lab07a.CHECKS.items():
        result = judge(ev, expected())
        assert not result.passed and len(result.message) > 30, (check, result.message)
        messages.add(result.message)
    assert len(messages) == len(lab07a.CHECKS), messages
    assert not lab07_repo.read_repository(tmp_path / "elsewhere", tmp_path)["exists"]


@needs_git
def test_data_committed_to_git_costs_task_1_only(tmp_path: Path) -> None:
    p = history_a(tmp_path)
    shutil.copy(p.root / "data" / "metrics.csv.dvc", p.root / "data" / "copy.csv")
    p.commit("copy", "chore: keep a copy", "-f", "data/copy.csv")
    ev = repo_evidence(p)
    only_failed(ev, 1)
    assert "data/copy.csv" in message(ev, 1) and "DVC" in message(ev, 1)


@needs_git
def test_a_gitignore_without_caches_and_a_free_form_message_cost_task_1(tmp_path: Path) -> None:
    p = history_a(tmp_path)
    p.write(".gitignore", "/model.pkl\n")
    p.commit("ignore", "chore: smaller gitignore", ".gitignore")
    assert "Python caches" in message(repo_evidence(p), 1)
    p.write(".gitignore", GITIGNORE)
    p.commit("fix", "fixed stuff", ".gitignore")
    ev = repo_evidence(p)
    only_failed(ev, 1)
    assert "fixed stuff" in message(ev, 1)


def test_the_gitignore_matcher_follows_git_for_the_usual_patterns() -> None:
    assert lab07a._ignored("__pycache__/", "src/__pycache__/a.pyc")
    assert lab07a._ignored("*.pyc", "src/__pycache__/a.pyc")
    assert lab07a._ignored(".venv", ".venv/bin/python")
    assert not lab07a._ignored("/__pycache__/", "src/__pycache__/a.pyc")  # anchored at the root
    assert not lab07a._ignored("# mlruns/\n!mlruns/", "mlruns/0/meta.yaml")
    assert not lab07a._ignored("mlruns/", "src/mlruns")  # a folder pattern does not match a file


@needs_git
def test_a_missing_dependency_costs_task_2_only(tmp_path: Path) -> None:
    p = history_a(tmp_path)
    pipeline = copy.deepcopy(PIPELINE)
    pipeline["stages"]["evaluate"]["deps"].remove("src/evaluate.py")
    p.write("dvc.yaml", pipeline)
    p.commit("dep", "refactor: shorter pipeline", "dvc.yaml")
    ev = repo_evidence(p)
    only_failed(ev, 2)
    assert "src/evaluate.py" in message(ev, 2) and "will not rerun" in message(ev, 2)


@needs_git
def test_a_stage_without_its_parameters_fails_task_2_and_then_task_3_sees_no_rerun(tmp_path: Path) -> None:
    """The realistic consequence: train does not depend on train.n_estimators, so after the
    change dvc repro did nothing and dvc.lock still says the old value."""
    p = Project(tmp_path)
    pipeline = copy.deepcopy(PIPELINE)
    pipeline["stages"]["train"]["params"] = ["train.max_depth", "train.seed"]
    p.write(".gitignore", GITIGNORE)
    p.track("v1")
    p.push(lab07_repo.version_bytes(None, "v1", PARAMS["V1_ROWS"]))
    p.write("dvc.yaml", pipeline)
    p.lock("v1", PARAMS["N_ESTIMATORS"])
    p.commit("pipeline", "feat: pipeline", ".")
    ev = repo_evidence(p)
    results = judged(ev)
    assert not results["check_todo2_pipeline"] and not results["check_todo3_params"]
    assert "train.n_estimators" in message(ev, 2)
    assert "does not depend on that parameter" in message(ev, 3)
    assert results["check_todo1_track"] and results["check_todo4_remote"]


@needs_git
def test_a_lock_with_hashes_of_nothing_and_a_made_up_mae_fail_tasks_2_and_4(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.write(".gitignore", GITIGNORE)
    p.track("v1")
    p.write("dvc.yaml", PIPELINE)
    p.lock("v1", PARAMS["N_ESTIMATORS"], push=False)
    p.write("metrics.json", json.dumps({"mae": 1.0}))
    p.commit("all", "feat: everything", ".")
    ev = repo_evidence(p)
    assert "mae=1.0000" in message(ev, 2)
    assert "holds no file" in message(ev, 4)


@needs_git
def test_the_remote_counts_only_files_whose_content_has_their_name(tmp_path: Path) -> None:
    p = history_a(tmp_path)
    v1 = shipped(lab07a.LAB)["md5"]["v1"]
    (p.remote / "files" / "md5" / v1[:2] / v1[2:]).write_bytes(b"not the data")
    ev = repo_evidence(p)
    only_failed(ev, 4)
    assert v1 in message(ev, 4)


@needs_git
def test_a_dvc_file_with_a_made_up_hash_or_a_lock_edited_by_hand_fails(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.write(".gitignore", GITIGNORE)
    p.write("data/metrics.csv.dvc", {"outs": [{"md5": "0123456789abcdef0123456789abcdef", "path": "metrics.csv"}]})
    p.commit("track", "feat(data): track", ".")
    assert "0123456789abcdef" in message(repo_evidence(p), 1)
    # the tuned value written into params.yaml and dvc.lock by hand: metrics.json is the old one
    p = history_a(tmp_path / "again")
    tuned = PARAMS["TUNED_N_ESTIMATORS"]
    p.commits.pop("tuned")
    p.git("reset", "-q", "--hard", "HEAD~1")
    mae_before = json.loads((p.root / "metrics.json").read_text())["mae"]
    lock = yaml.safe_load((p.root / "dvc.lock").read_text())
    lock["stages"]["train"]["params"]["params.yaml"]["train.n_estimators"] = tuned
    p.write("dvc.lock", lock)
    p.write("params.yaml", p.params(tuned))
    p.commit("tuned", "perf(train): more trees", ".")
    ev = repo_evidence(p)
    assert f"{mae_before:.4f}" in message(ev, 3) and not judged(ev)["check_todo3_params"]
    assert judged(ev)["check_todo2_pipeline"]


@needs_git
def test_the_reader_never_leaves_the_working_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    p = history_a(tmp_path / "work")
    shutil.copytree(p.root / ".git", outside / ".git")
    # a .git that is a symlink to another repository is not read
    shutil.rmtree(p.root / ".git")
    os.symlink(outside / ".git", p.root / ".git")
    assert not lab07_repo.read_repository(p.root, confine_to=p.work)["exists"]
    # an object file that links outside is not read: its commit is missing
    os.unlink(p.root / ".git")
    shutil.copytree(outside / ".git", p.root / ".git")
    head = (p.root / ".git" / "refs" / "heads" / "main").read_text().strip()
    obj = p.root / ".git" / "objects" / head[:2] / head[2:]
    obj.unlink()
    os.symlink(outside / ".git" / "objects" / head[:2] / head[2:], obj)
    commits = lab07_repo.read_repository(p.root, confine_to=p.work)["commits"]
    assert head not in [c["sha"] for c in commits]
    # a remote folder that links outside holds nothing
    shutil.rmtree(p.remote)
    os.symlink(outside, p.remote)
    assert lab07_repo.read_remote(p.remote, p.work)["hashes"] == []


def test_yaml_with_aliases_or_garbage_is_refused_not_expanded() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    data, error = lab07_repo.parse_yaml(bomb)
    assert data is None and error == "_Budget"
    assert lab07_repo.parse_yaml(b"stages: [\n")[1] is not None
    assert lab07_repo.parse_yaml(b"!!python/object:os.system {}")[1] is not None


def test_the_kit_of_part_a_holds_no_answer_of_its_todos() -> None:
    """The kit ships the given scripts and the data versions, but not the .gitignore, the
    remote's set-up, the parameter change or the deletion of part a's answers. (Part b's
    set-up, ``lab07b.start_project``, builds part a's end state: it ships, as a given.)"""
    for module in (lab07a, lab07_repo):
        source = Path(module.__file__).read_text(encoding="utf-8")
        for answer in ("dvc remote add", "TUNED_N_ESTIMATORS]", "dvc pull", "rmtree", "cache: false"):
            code = [line for line in source.splitlines() if answer in line and not line.strip().startswith('"')]
            assert not code, (module.__name__, answer, code)


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
    assert "dvc add" in result_message(result, "check_todo1_track")
    unimplemented = {e.split()[0] for e in result.errors if "NotImplementedError" in e}
    assert unimplemented == {"todo1", "todo2", "todo3", "todo4"}, result.errors


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
    """Data committed to Git (TODO 1) and a stage without one of its deps (TODO 2)."""
    replace = {
        "todo1": solved("todo1", 'sh("git add .gitignore', 'shutil.copy(PROJECT / "data" / "metrics.csv", '
                        'PROJECT / "data" / "backup.csv")\nsh("git add -f data/backup.csv")\nsh("git add .gitignore'),
        "todo2": solved("todo2", "      - src/evaluate.py\n", ""),
    }
    result = grade(make_submission(done=ALL, replace=replace, lab=LAB), inputs=hidden.hidden_inputs(SEED))
    assert points(result) == {**MAX, **{TODO_CHECK[n]: 0 for n in (1, 2)}}, [c.message for c in result.checks]
    assert "backup.csv" in result_message(result, "check_todo1_track")
    assert "src/evaluate.py" in result_message(result, "check_todo2_pipeline")


def test_the_given_prepare_script_splits_as_the_references_do(tmp_path: Path) -> None:
    """prepare.py's split is what the references compute (the md5s dvc.lock records)."""
    root = tmp_path
    lab07_repo.write_project(root, None, PARAMS["V1_ROWS"], lab07_repo.project_params(
        PARAMS["TEST_SIZE"], PARAMS["SEED"], PARAMS["N_ESTIMATORS"], PARAMS["MAX_DEPTH"]))
    subprocess.run([sys.executable, "src/prepare.py"], cwd=root, check=True)
    split = shipped(lab07a.LAB)["split"]["v1"]
    assert {k: md5((root / k).read_bytes()) for k in split} == split
