"""The grader on Lab 07 (data versioning and lineage with DVC, Git and MLflow).

Fast tests build the evidence a correct submission leaves (a real Git repository made with
``git`` in a temporary folder, read back by the kit's own reader; a DVC remote of
content-addressed files; the MLflow runs as plain data) and break one thing at a time: data
committed to Git, a missing dependency, made-up dvc.lock hashes, a forged lineage digest,
lineage pointing at the wrong version, a copied metric. Each costs its own task only.

Slow tests grade three notebooks sandboxed on hidden inputs: the solution, the untouched
student notebook, and one notebook with a typical mistake in four different tasks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder import hidden
from autograder.course import LABS
from autograder.kit import lab07
from autograder.kit.checking import EXPECTED_DIR
from autograder.notebook import grade_id, parameters_of
from autograder.references import lab07 as references
from tests.conftest import grading, make_submission, points, solution_code

LAB07 = LABS["07_versioning"]
MAX = {
    "check_todo1_track": 2,
    "check_todo2_pipeline": 2,
    "check_todo3_params": 1,
    "check_todo4_lineage": 2,
    "check_todo5_remote": 1,
    "check_todo6_version": 2,
    "check_todo7_answer": 1,
    "check_todo8_reproduce": 2,
}
TODO_CHECK = {int(k[len("check_todo")]): k for k in MAX}
ALL = set(TODO_CHECK)
SEED = 12345
PARAMS = parameters_of(nbformat.read(LAB07.master, as_version=4))
GIT = shutil.which("git")


def shipped() -> dict:
    return json.loads((EXPECTED_DIR / f"{lab07.LAB}.json").read_text(encoding="utf-8"))["expected"]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324


PIPELINE = {
    "stages": {
        "prepare": {"cmd": "python src/prepare.py", "deps": ["src/prepare.py", "data/metrics.csv"],
                    "params": ["prepare.test_size", "prepare.seed"], "outs": ["data/train.csv", "data/test.csv"]},
        "train": {"cmd": "python src/train.py", "deps": ["src/train.py", "data/train.csv"],
                  "params": ["train.n_estimators", "train.max_depth", "train.seed"], "outs": ["model.pkl"]},
        "evaluate": {"cmd": "python src/evaluate.py", "deps": ["src/evaluate.py", "model.pkl", "data/test.csv"],
                     "metrics": [{"metrics.json": {"cache": False}}]},
    }
}
GITIGNORE = "__pycache__/\n.venv/\n.ipynb_checkpoints/\nmlruns/\nmlflow.db\n/model.pkl\n"


class Project:
    """A lab project as a correct submission leaves it: commits made with git, a remote of
    content-addressed files. ``work`` is the submission's working folder."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.root = work / PARAMS["PROJECT_DIR"]
        self.remote = work / PARAMS["REMOTE_DIR"]
        (self.root / "data").mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "t")
        self.git("config", "user.email", "t@example.com")
        self.exp = shipped()
        self.commits: dict[str, str] = {}

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        return subprocess.run([GIT, *args], cwd=self.root, check=True, capture_output=True, text=True,
                              env=env).stdout.strip()

    def write(self, path: str, content: str | dict) -> None:
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        (self.root / path).write_text(text)

    def push(self, data: bytes) -> str:
        digest = md5(data)
        path = self.remote / "files" / "md5" / digest[:2] / digest[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    def commit(self, name: str, message: str, *paths: str) -> str:
        self.git("add", *paths)
        self.git("commit", "-q", "-m", message)
        self.commits[name] = self.git("rev-parse", "HEAD")
        return self.commits[name]

    def params(self, n: int) -> dict:
        return {"prepare": {"test_size": PARAMS["TEST_SIZE"], "seed": PARAMS["SEED"]},
                "train": {"n_estimators": n, "max_depth": PARAMS["MAX_DEPTH"], "seed": PARAMS["SEED"]}}

    def track(self, version: str) -> None:
        data = lab07.version_bytes(None, version, PARAMS["V1_ROWS"])
        self.write("data/metrics.csv.dvc", {"outs": [{"md5": md5(data), "size": len(data), "hash": "md5",
                                                       "path": "metrics.csv"}]})
        self.write("data/.gitignore", "/metrics.csv\n/train.csv\n/test.csv\n")

    def lock(self, version: str, n: int, push: bool = True) -> None:
        data = lab07.version_bytes(None, version, PARAMS["V1_ROWS"])
        train, test = references.split(str(lab07.labkit.MAIN_DATASET), version, PARAMS["V1_ROWS"],
                                       PARAMS["TEST_SIZE"], PARAMS["SEED"])
        model = f"model {version} {n}".encode()
        if push:
            for blob in (data, train, test, model):
                self.push(blob)
        entry = lambda path, blob: {"path": path, "md5": md5(blob), "size": len(blob)}  # noqa: E731
        self.write("dvc.lock", {"schema": "2.0", "stages": {
            "prepare": {"cmd": "python src/prepare.py", "deps": [entry("data/metrics.csv", data)],
                        "params": {"params.yaml": {"prepare.test_size": PARAMS["TEST_SIZE"],
                                                   "prepare.seed": PARAMS["SEED"]}},
                        "outs": [entry("data/train.csv", train), entry("data/test.csv", test)]},
            "train": {"cmd": "python src/train.py", "deps": [entry("data/train.csv", train)],
                      "params": {"params.yaml": {"train.n_estimators": n, "train.max_depth": PARAMS["MAX_DEPTH"],
                                                 "train.seed": PARAMS["SEED"]}},
                      "outs": [entry("model.pkl", model)]},
            "evaluate": {"cmd": "python src/evaluate.py", "deps": [entry("model.pkl", model)],
                         "outs": [{"path": "metrics.json", "hash": "md5", "md5": "0" * 32}]},
        }})
        self.write("metrics.json", json.dumps({"mae": self.exp["mae"][f"{version}_{n}"], "test_rows": 750}))
        self.write("params.yaml", self.params(n))


def solution_history(work: Path) -> Project:
    """The commits and remote the solution leaves, on the course data."""
    p = Project(work)
    n, tuned = PARAMS["N_ESTIMATORS"], PARAMS["TUNED_N_ESTIMATORS"]
    p.write(".gitignore", GITIGNORE)
    p.write("params.yaml", p.params(n))
    p.write("src/prepare.py", "")
    p.track("v1")
    p.push(lab07.version_bytes(None, "v1", PARAMS["V1_ROWS"]))
    p.commit("track", "feat(data): track the first version", ".gitignore", "params.yaml", "src", "data")
    p.write("dvc.yaml", PIPELINE)
    p.lock("v1", n, push=False)
    p.commit("pipeline", "feat(pipeline): three stages", ".")
    p.lock("v1", tuned)
    p.commit("tuned", f"perf(train): {tuned} trees", ".")
    p.track("v2")
    p.lock("v2", tuned)
    p.commit("v2", "feat(data): append the second batch", ".")
    p.git("checkout", "-q", p.commits["tuned"])  # Task 8 goes back, then returns
    p.git("checkout", "-q", "main")
    return p


def run(name: str, digest: str | None, commit: str | None, mae: float, n: int) -> dict:
    params = {"prepare.test_size": str(PARAMS["TEST_SIZE"]), "prepare.seed": str(PARAMS["SEED"]),
              "train.n_estimators": str(n), "train.max_depth": str(PARAMS["MAX_DEPTH"]),
              "train.seed": str(PARAMS["SEED"])}
    return {"id": f"id-{name}", "name": name, "params": params, "metrics": {"mae": mae},
            "tags": {"git_commit": commit} if commit else {},
            "datasets": [{"name": "metrics.csv", "digest": digest, "source": "x"}] if digest else []}


def evidence_of(p: Project, runs: dict | None = None, registry: dict | None = None, answer: dict | None = None) -> dict:
    ev = {"project": PARAMS["PROJECT_DIR"], "remote_dir": PARAMS["REMOTE_DIR"],
          "repo": lab07.read_repository(p.root, confine_to=p.work), "remote": lab07.read_remote(p.remote, p.work)}
    exp, tuned = p.exp, PARAMS["TUNED_N_ESTIMATORS"]
    if runs is None:
        runs = {
            "train-v1": run("train-v1", exp["md5"]["v1"], p.commits["tuned"], exp["mae"][f"v1_{tuned}"], tuned),
            "train-v2": run("train-v2", exp["md5"]["v2"], p.commits["v2"], exp["mae"][f"v2_{tuned}"], tuned),
            "reproduce-v1": {"name": "reproduce-v1", "params": {}, "metrics": {"mae": exp["mae"][f"v1_{tuned}"]},
                             "tags": {"git_commit": p.commits["tuned"]}, "datasets": []},
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


def expected() -> dict:
    return {**lab07.expected_from_params(PARAMS), **shipped()}


def judged(ev: dict, exp: dict | None = None) -> dict[str, bool]:
    exp = exp or expected()
    return {check: judge(ev, exp).passed for check, (_, judge) in lab07.CHECKS.items()}


def only_failed(ev: dict, *todos: int, exp: dict | None = None) -> None:
    want = {check: n not in todos for n, check in TODO_CHECK.items()}
    exp = exp or expected()
    found = judged(ev, exp)
    assert found == want, {c: j(ev, exp).message for c, (_, j) in lab07.CHECKS.items() if found[c] != want[c]}


def message(ev: dict, todo: int) -> str:
    return lab07.CHECKS[TODO_CHECK[todo]][1](ev, expected()).message


needs_git = pytest.mark.skipif(GIT is None, reason="needs git")


# --- Fast: references, readers, judgments ---------------------------------------------------


def test_the_data_versions_are_cut_from_the_dataset_lines_and_differ_on_hidden_data() -> None:
    v1 = lab07.version_bytes(None, "v1", 3000)
    v2 = lab07.version_bytes(None, "v2", 3000)
    assert v2.startswith(v1) and v1.count(b"\n") == 3001 and v2.count(b"\n") > v1.count(b"\n")
    exp = shipped()
    assert exp["md5"] == {"v1": md5(v1), "v2": md5(v2)}
    variant = hidden.hidden_inputs(SEED)
    other = references.expected(variant.dataset, {**PARAMS, "SEED": SEED % 10_000})
    assert other["md5"]["v1"] != exp["md5"]["v1"] and other["mae"]["v1_30"] != exp["mae"]["v1_30"]
    # the parameter change and the new data move the metric: copying one for another fails
    assert len({round(v, 6) for v in exp["mae"].values()}) == 3


@needs_git
def test_a_correct_submission_passes_every_check_and_the_reader_sees_its_commits(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    ev = evidence_of(p)
    assert [c["subject"].split(":")[0] for c in ev["repo"]["commits"]] == [
        "feat(data)", "feat(pipeline)", "perf(train)", "feat(data)"]
    assert ev["repo"]["refs"]["HEAD"] == p.commits["v2"]
    assert set(ev["remote"]["hashes"]) >= set(shipped()["md5"].values())
    only_failed(ev)


@needs_git
def test_without_references_the_checks_judge_the_work_against_itself(tmp_path: Path) -> None:
    """The self-check on other inputs: no md5 or MAE to compare with, only consistency."""
    ev = evidence_of(solution_history(tmp_path))
    bare = lab07.expected_from_params(PARAMS)
    assert all(judged(ev, bare).values()), {c: j(ev, bare).message for c, (_, j) in lab07.CHECKS.items()}


@needs_git
def test_an_untouched_notebook_fails_every_check_with_a_message_of_its_own(tmp_path: Path) -> None:
    """What the set-up leaves: a repository without commits, no remote, no runs."""
    Project(tmp_path)
    ev = {"project": PARAMS["PROJECT_DIR"], "remote_dir": PARAMS["REMOTE_DIR"],
          "repo": lab07.read_repository(tmp_path / PARAMS["PROJECT_DIR"], tmp_path),
          "remote": lab07.read_remote(tmp_path / PARAMS["REMOTE_DIR"], tmp_path), "answer": None,
          "runs": {}, "run_names": [], "registry": {"name": PARAMS["MODEL_NAME"], "exists": False}}
    messages = set()
    for check, (_, judge) in lab07.CHECKS.items():
        result = judge(ev, expected())
        assert not result.passed and len(result.message) > 30, (check, result.message)
        messages.add(result.message)
    assert len(messages) == len(lab07.CHECKS), messages
    assert not lab07.read_repository(tmp_path / "elsewhere", tmp_path)["exists"]


@needs_git
def test_data_committed_to_git_costs_task_1_only(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    shutil.copy(tmp_path / "lab07-project" / "data" / "metrics.csv.dvc", p.root / "data" / "copy.csv")
    p.commit("copy", "chore: keep a copy", "-f", "data/copy.csv")
    ev = evidence_of(p)
    only_failed(ev, 1)
    assert "data/copy.csv" in message(ev, 1) and "DVC" in message(ev, 1)


@needs_git
def test_a_gitignore_without_caches_and_a_free_form_message_cost_task_1(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    p.write(".gitignore", "/model.pkl\n")
    p.commit("ignore", "chore: smaller gitignore", ".gitignore")
    assert "Python caches" in message(evidence_of(p), 1)
    p.write(".gitignore", GITIGNORE)
    p.commit("fix", "fixed stuff", ".gitignore")
    ev = evidence_of(p)
    only_failed(ev, 1)
    assert "fixed stuff" in message(ev, 1)


def test_the_gitignore_matcher_follows_git_for_the_usual_patterns() -> None:
    assert lab07._ignored("__pycache__/", "src/__pycache__/a.pyc")
    assert lab07._ignored("*.pyc", "src/__pycache__/a.pyc")
    assert lab07._ignored(".venv", ".venv/bin/python")
    assert not lab07._ignored("/__pycache__/", "src/__pycache__/a.pyc")  # anchored at the root
    assert not lab07._ignored("# mlruns/\n!mlruns/", "mlruns/0/meta.yaml")
    assert not lab07._ignored("mlruns/", "src/mlruns")  # a folder pattern does not match a file


@needs_git
def test_a_missing_dependency_costs_task_2_only(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    pipeline = copy.deepcopy(PIPELINE)
    pipeline["stages"]["evaluate"]["deps"].remove("src/evaluate.py")
    p.write("dvc.yaml", pipeline)
    p.commit("dep", "refactor: shorter pipeline", "dvc.yaml")
    ev = evidence_of(p)
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
    p.push(lab07.version_bytes(None, "v1", PARAMS["V1_ROWS"]))
    p.write("dvc.yaml", pipeline)
    p.lock("v1", PARAMS["N_ESTIMATORS"])
    p.commit("pipeline", "feat: pipeline", ".")
    ev = evidence_of(p, runs={})
    results = judged(ev)
    assert not results["check_todo2_pipeline"] and not results["check_todo3_params"]
    assert "train.n_estimators" in message(ev, 2)
    assert "does not depend on that parameter" in message(ev, 3)
    assert results["check_todo1_track"] and results["check_todo5_remote"]


@needs_git
def test_made_up_lock_hashes_and_a_copied_metric_fail(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    lock = yaml.safe_load((p.root / "dvc.lock").read_text())
    lock["stages"]["prepare"]["outs"][0]["md5"] = "f" * 32
    p.write("dvc.lock", lock)
    p.write("metrics.json", json.dumps({"mae": shipped()["mae"]["v1_60"]}))  # copied from v1
    p.commit("fake", "fix: lock", ".")
    ev = evidence_of(p)
    assert "f" * 32 in message(ev, 6) or "mae" in message(ev, 6)
    assert not judged(ev)["check_todo6_version"]
    # the first version's commits are untouched: their tasks keep their points
    assert judged(ev)["check_todo2_pipeline"] and judged(ev)["check_todo3_params"]


@needs_git
def test_a_lock_with_hashes_of_nothing_and_a_made_up_mae_fail_task_2(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.write(".gitignore", GITIGNORE)
    p.track("v1")
    p.write("dvc.yaml", PIPELINE)
    p.lock("v1", PARAMS["N_ESTIMATORS"], push=False)
    p.write("metrics.json", json.dumps({"mae": 1.0}))
    p.commit("all", "feat: everything", ".")
    ev = evidence_of(p, runs={})
    assert "mae=1.0000" in message(ev, 2)
    assert "holds no file" in message(ev, 5)


@needs_git
def test_the_remote_counts_only_files_whose_content_has_their_name(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    v1 = shipped()["md5"]["v1"]
    (p.remote / "files" / "md5" / v1[:2] / v1[2:]).write_bytes(b"not the data")
    ev = evidence_of(p)
    only_failed(ev, 5)  # the second version's commit does not point at the first version's data
    assert v1 in message(ev, 5)


@needs_git
def test_a_forged_lineage_digest_costs_task_4_only(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    exp, tuned = shipped(), PARAMS["TUNED_N_ESTIMATORS"]
    runs = {
        # MLflow's own digest of the frame, not DVC's md5: the run leads to no DVC version
        "train-v1": run("train-v1", "8f2a1c9d", p.commits["tuned"], exp["mae"][f"v1_{tuned}"], tuned),
        "train-v2": run("train-v2", "1b3e5a7c", p.commits["v2"], exp["mae"][f"v2_{tuned}"], tuned),
        "reproduce-v1": {"name": "reproduce-v1", "params": {}, "metrics": {"mae": exp["mae"][f"v1_{tuned}"]},
                         "tags": {"git_commit": p.commits["tuned"]}, "datasets": []},
    }
    ev = evidence_of(p, runs=runs)
    only_failed(ev, 4)
    assert "8f2a1c9d" in message(ev, 4) and exp["md5"]["v1"] in message(ev, 4)


@needs_git
def test_lineage_pointing_at_the_wrong_version_costs_the_task_that_logged_it(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    exp, tuned = shipped(), PARAMS["TUNED_N_ESTIMATORS"]
    ev = evidence_of(p)
    # train-v2 logged before the new version was committed: the digest and commit of v1
    ev["runs"]["train-v2"] = run("train-v2", exp["md5"]["v1"], p.commits["tuned"], exp["mae"][f"v2_{tuned}"], tuned)
    only_failed(ev, 6)
    assert exp["md5"]["v2"] in message(ev, 6)
    # train-v1 named a commit of another version: TODO 4
    ev = evidence_of(p)
    ev["runs"]["train-v1"]["tags"]["git_commit"] = p.commits["v2"]
    assert not judged(ev)["check_todo4_lineage"]
    assert "another data version" in message(ev, 4)
    # a made-up commit
    ev["runs"]["train-v1"]["tags"]["git_commit"] = "a" * 40
    assert "naming a commit" in message(ev, 4)


@needs_git
def test_an_answer_from_the_notebook_instead_of_the_store_costs_task_7_only(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    exp = shipped()
    ev = evidence_of(p)
    ev["answer"]["champion"]["digest"] = exp["md5"]["v1"]
    only_failed(ev, 7)
    ev = evidence_of(p)
    ev["answer"] = {"champion": "v2"}
    assert "digest and git_commit" in message(ev, 7)


@needs_git
def test_a_reproduction_that_did_not_go_back_costs_task_8_only(tmp_path: Path) -> None:
    p = solution_history(tmp_path)
    tuned = PARAMS["TUNED_N_ESTIMATORS"]
    ev = evidence_of(p)
    ev["runs"]["reproduce-v1"]["metrics"]["mae"] = shipped()["mae"][f"v2_{tuned}"]  # still on main
    only_failed(ev, 8)
    ev = evidence_of(p)
    ev["runs"]["reproduce-v1"]["tags"]["git_commit"] = p.commits["v2"]
    only_failed(ev, 8)
    assert "not a commit of the first data version" in message(ev, 8)


@needs_git
def test_a_metric_copied_from_the_training_run_without_going_back_costs_task_8(tmp_path: Path) -> None:
    """The cheap way out: log train-v1's own mae and commit, never check that commit out."""
    p = Project(tmp_path)
    p.write(".gitignore", GITIGNORE)
    p.track("v1")
    p.write("dvc.yaml", PIPELINE)
    p.lock("v1", PARAMS["TUNED_N_ESTIMATORS"])
    p.commit("tuned", "feat: pipeline", ".")
    ev = evidence_of(p, runs={"reproduce-v1": {
        "name": "reproduce-v1", "params": {}, "metrics": {"mae": shipped()["mae"]["v1_60"]},
        "tags": {"git_commit": p.commits["tuned"]}, "datasets": []}})
    assert ev["repo"]["checkouts"] == []
    assert "never checked out" in message(ev, 8)
    p.git("checkout", "-q", p.commits["tuned"])
    assert lab07.judge_reproduce(evidence_of(p, runs=ev["runs"]), expected()).passed


@needs_git
def test_a_dvc_file_with_a_made_up_hash_or_a_lock_edited_by_hand_fails(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.write(".gitignore", GITIGNORE)
    p.write("data/metrics.csv.dvc", {"outs": [{"md5": "0123456789abcdef0123456789abcdef", "path": "metrics.csv"}]})
    p.commit("track", "feat(data): track", ".")
    assert "0123456789abcdef" in message(evidence_of(p, runs={}), 1)
    # the tuned value written into params.yaml and dvc.lock by hand: metrics.json is the old one
    p = solution_history(tmp_path / "again")
    tuned = PARAMS["TUNED_N_ESTIMATORS"]
    for c in ("tuned", "v2"):
        p.commits.pop(c)
    p.git("reset", "-q", "--hard", "HEAD~2")
    mae_before = json.loads((p.root / "metrics.json").read_text())["mae"]
    lock = yaml.safe_load((p.root / "dvc.lock").read_text())
    lock["stages"]["train"]["params"]["params.yaml"]["train.n_estimators"] = tuned
    p.write("dvc.lock", lock)
    p.write("params.yaml", p.params(tuned))
    p.commit("tuned", "perf(train): more trees", ".")
    ev = evidence_of(p, runs={})
    assert f"{mae_before:.4f}" in message(ev, 3) and not judged(ev)["check_todo3_params"]
    assert judged(ev)["check_todo2_pipeline"]


@needs_git
def test_the_reader_never_leaves_the_working_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    p = solution_history(tmp_path / "work")
    shutil.copytree(p.root / ".git", outside / ".git")
    # a .git that is a symlink to another repository is not read
    shutil.rmtree(p.root / ".git")
    os.symlink(outside / ".git", p.root / ".git")
    assert not lab07.read_repository(p.root, confine_to=p.work)["exists"]
    # an object file that links outside is not read: its commit is missing
    os.unlink(p.root / ".git")
    shutil.copytree(outside / ".git", p.root / ".git")
    head = (p.root / ".git" / "refs" / "heads" / "main").read_text().strip()
    obj = p.root / ".git" / "objects" / head[:2] / head[2:]
    obj.unlink()
    os.symlink(outside / ".git" / "objects" / head[:2] / head[2:], obj)
    commits = lab07.read_repository(p.root, confine_to=p.work)["commits"]
    assert head not in [c["sha"] for c in commits]
    # a remote folder that links outside holds nothing
    shutil.rmtree(p.remote)
    os.symlink(outside, p.remote)
    assert lab07.read_remote(p.remote, p.work)["hashes"] == []


def test_yaml_with_aliases_or_garbage_is_refused_not_expanded() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    data, error = lab07.parse_yaml(bomb)
    assert data is None and error == "_Budget"
    assert lab07.parse_yaml(b"stages: [\n")[1] is not None
    assert lab07.parse_yaml(b"!!python/object:os.system {}")[1] is not None


def test_the_kit_holds_no_answer_of_a_todo() -> None:
    """The kit ships the data versions (given to every student) but no pipeline, lineage or
    reproduction recipe: those are in the master's solutions and the references."""
    source = (Path(lab07.__file__)).read_text(encoding="utf-8")
    for answer in ("log_input", "from_pandas(", "RandomForestRegressor", "dvc repro --force", "rev-parse",
                   "set_registered_model_alias(MODEL", "sample(frac"):
        code = [line for line in source.splitlines() if answer in line and not line.strip().startswith('"')]
        assert not code, (answer, code)


# --- Slow: whole notebooks, graded sandboxed on hidden inputs ------------------------------------


def solved(todo: str, old: str, new: str) -> str:
    master = {grade_id(c): c for c in nbformat.read(LAB07.master, as_version=4).cells}
    code = solution_code(master[todo])
    assert old in code, f"{old!r} is not in the answer to {todo}"
    return code.replace(old, new)


def result_message(result, check_id: str) -> str:
    return next(c.message for c in result.checks if c.id == check_id)


@grading
def test_solution_earns_full_marks_on_fresh_hidden_inputs(grade) -> None:
    result = grade(make_submission(done=ALL, lab=LAB07))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = grade(make_submission(done=set(), lab=LAB07), inputs=hidden.hidden_inputs(SEED))
    assert (result.score, result.max_score) == (0, sum(MAX.values()))
    assert len({c.message for c in result.checks}) == len(MAX), [c.message for c in result.checks]
    assert "dvc add" in result_message(result, "check_todo1_track")
    assert "log_training('train-v1')" in result_message(result, "check_todo4_lineage")
    # todo7 only defines a function (the cell after it raises); todo4 and todo8 stop earlier,
    # on what the tasks before them did not make
    unimplemented = {e.split()[0] for e in result.errors if "NotImplementedError" in e}
    assert {"todo1", "todo2", "todo3", "todo5", "todo6"} <= unimplemented, result.errors
    assert {"todo4", "todo8", "answer"} <= {e.split()[0] for e in result.errors}, result.errors


@grading
def test_typical_mistakes_each_cost_their_own_task(grade) -> None:
    """Data committed to Git (TODO 1), a stage without one of its deps (TODO 2), MLflow's own
    digest instead of DVC's (TODO 4), a 'reproduction' that never left main (TODO 8)."""
    replace = {
        "todo1": solved("todo1", 'sh("git add .gitignore', 'shutil.copy(PROJECT / "data" / "metrics.csv", '
                        'PROJECT / "data" / "backup.csv")\nsh("git add -f data/backup.csv")\nsh("git add .gitignore'),
        "todo2": solved("todo2", "      - src/evaluate.py\n", ""),
        "todo4": solved("todo4", "digest=md5,", ""),
        "todo8": solved("todo8", 'sh(f"git checkout {first[\'git_commit\']}")\n', ""),
    }
    result = grade(make_submission(done=ALL, replace=replace, lab=LAB07), inputs=hidden.hidden_inputs(SEED))
    assert points(result) == {**MAX, **{TODO_CHECK[n]: 0 for n in (1, 2, 4, 8)}}, [c.message for c in result.checks]
    assert "backup.csv" in result_message(result, "check_todo1_track")
    assert "src/evaluate.py" in result_message(result, "check_todo2_pipeline")
    assert "DVC md5" in result_message(result, "check_todo4_lineage")
    assert "first data version" in result_message(result, "check_todo8_reproduce")
