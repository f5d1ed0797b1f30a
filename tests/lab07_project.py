"""A Lab 07 project as a submission leaves it, for the fast tests of both parts (07a, 07b).

A real Git repository made with ``git`` in a temporary folder (read back by the kit's own
reader), a DVC remote of content-addressed files, and the MLflow runs as plain data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder.course import LABS
from autograder.kit import lab07_repo
from autograder.kit.checking import EXPECTED_DIR
from autograder.notebook import parameters_of
from autograder.references import lab07a as references

#: The parameters of part a (both parts share the project's, part b starts at the tuned value).
PARAMS = parameters_of(nbformat.read(LABS["07a_pipeline"].master, as_version=4))
PARAMS_B = parameters_of(nbformat.read(LABS["07b_lineage"].master, as_version=4))
GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="needs git")

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


def shipped(lab_id: str) -> dict:
    return json.loads((EXPECTED_DIR / f"{lab_id}.json").read_text(encoding="utf-8"))["expected"]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324


#: The pipeline's MAE for each (version, trees) either part's tests use, on the course data.
MAE = {**shipped("07a_pipeline")["mae"], **shipped("07b_lineage")["mae"]}


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
        return lab07_repo.project_params(PARAMS["TEST_SIZE"], PARAMS["SEED"], n, PARAMS["MAX_DEPTH"])

    def track(self, version: str) -> None:
        data = lab07_repo.version_bytes(None, version, PARAMS["V1_ROWS"])
        self.write("data/metrics.csv.dvc", {"outs": [{"md5": md5(data), "size": len(data), "hash": "md5",
                                                       "path": "metrics.csv"}]})
        self.write("data/.gitignore", "/metrics.csv\n/train.csv\n/test.csv\n")

    def lock(self, version: str, n: int, push: bool = True) -> None:
        data = lab07_repo.version_bytes(None, version, PARAMS["V1_ROWS"])
        train, test = references.split(str(lab07_repo.labkit.MAIN_DATASET), version, PARAMS["V1_ROWS"],
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
        self.write("metrics.json", json.dumps({"mae": MAE[f"{version}_{n}"], "test_rows": 750}))
        self.write("params.yaml", self.params(n))


def history_a(work: Path) -> Project:
    """The commits and remote part a's solution leaves, on the course data."""
    p = Project(work)
    n, tuned = PARAMS["N_ESTIMATORS"], PARAMS["TUNED_N_ESTIMATORS"]
    p.write(".gitignore", GITIGNORE)
    p.write("params.yaml", p.params(n))
    p.write("src/prepare.py", "")
    p.track("v1")
    p.push(lab07_repo.version_bytes(None, "v1", PARAMS["V1_ROWS"]))
    p.commit("track", "feat(data): track the first version", ".gitignore", "params.yaml", "src", "data")
    p.write("dvc.yaml", PIPELINE)
    p.lock("v1", n, push=False)
    p.commit("pipeline", "feat(pipeline): three stages", ".")
    p.lock("v1", tuned)
    p.commit("tuned", f"perf(train): {tuned} trees", ".")
    return p


def start_b(work: Path) -> Project:
    """What part b's set-up builds (lab07b.start_project): the first version, the pipeline run
    with part b's N_ESTIMATORS, committed, pushed."""
    p = Project(work)
    n = PARAMS_B["N_ESTIMATORS"]
    p.write(".gitignore", GITIGNORE)
    p.write("params.yaml", p.params(n))
    p.write("src/prepare.py", "")
    p.track("v1")
    p.commit("track", "feat(data): track the first version", ".gitignore", "params.yaml", "src", "data")
    p.write("dvc.yaml", PIPELINE)
    p.lock("v1", n)
    p.commit("start", "feat(pipeline): three stages", ".")
    return p


def history_b(work: Path) -> Project:
    """The commits and remote part b's solution leaves, on the course data."""
    p = start_b(work)
    p.track("v2")
    p.lock("v2", PARAMS_B["N_ESTIMATORS"])
    p.commit("v2", "feat(data): append the second batch", ".")
    p.git("checkout", "-q", p.commits["start"])  # TODO 4 goes back, then returns
    p.git("checkout", "-q", "main")
    return p


def run(name: str, digest: str | None, commit: str | None, mae: float, n: int) -> dict:
    params = {"prepare.test_size": str(PARAMS["TEST_SIZE"]), "prepare.seed": str(PARAMS["SEED"]),
              "train.n_estimators": str(n), "train.max_depth": str(PARAMS["MAX_DEPTH"]),
              "train.seed": str(PARAMS["SEED"])}
    return {"id": f"id-{name}", "name": name, "params": params, "metrics": {"mae": mae},
            "tags": {"git_commit": commit} if commit else {},
            "datasets": [{"name": "metrics.csv", "digest": digest, "source": "x"}] if digest else []}


def repo_evidence(p: Project) -> dict:
    """What part a's evidence holds: the repository and the remote."""
    return {"project": PARAMS["PROJECT_DIR"], "remote_dir": PARAMS["REMOTE_DIR"],
            "repo": lab07_repo.read_repository(p.root, confine_to=p.work),
            "remote": lab07_repo.read_remote(p.remote, p.work)}
