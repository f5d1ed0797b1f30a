"""Lab 07 (data versioning and lineage with DVC, Git and MLflow), shared by its two parts:
the project's given files, the data versions, the readers of the evidence, the message
catalog and the judgments both parts make of a commit (its data, dvc.lock, metrics, remote).

The evidence is what the work left in the lab's working folder and in the MLflow store:

* the lab's own Git repository (``PROJECT_DIR``), read as data: loose objects are
  zlib-inflated and parsed here, so neither ``git`` nor ``dvc`` runs on a submission's
  repository in the grader's process (a hostile repository can carry hooks and config that
  execute code). Every read goes through ``checking.read_file`` (confined to the folder, no
  symlink out, size caps); YAML is read with ``safe_load`` and copied within a node budget;
* the DVC remote (``REMOTE_DIR``): content-addressed files ``files/md5/ab/cdef...``, each
  hashed here, so only files whose content matches their name count;
* part b only: the MLflow runs ``train-v1``, ``train-v2``, ``reproduce-v1`` (their dataset
  inputs, tags, params and metrics), the registry's versions and aliases, and the answer file.

The grader computes, on its hidden data, the bytes of each data version, DVC's md5 of them
and of the pipeline's split, and the pipeline's MAE for each version and parameter set
(``autograder.references.lab07a`` and ``lab07b``). The notebooks' self-checks judge the same
evidence against the values shipped for the default inputs.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autograder.kit import checking, labkit
from autograder.kit.checking import (
    CheckResult,
    Evidence,
    client,
    read_file,
    run_record,
    version_run_name,
)
from autograder.kit.i18n import _

DATA_FILE = "data/metrics.csv"
DVC_FILE = DATA_FILE + ".dvc"
TRAIN_RUNS = {"v1": "train-v1", "v2": "train-v2"}
REPRODUCE_RUN = "reproduce-v1"
STAGES = ("prepare", "train", "evaluate")
#: What each stage reads (deps), which parameters it uses, and what it writes.
STAGE_DEPS = {
    "prepare": ("src/prepare.py", DATA_FILE),
    "train": ("src/train.py", "data/train.csv"),
    "evaluate": ("src/evaluate.py", "model.pkl", "data/test.csv"),
}
STAGE_PARAMS = {
    "prepare": ("prepare.test_size", "prepare.seed"),
    "train": ("train.n_estimators", "train.max_depth", "train.seed"),
    "evaluate": (),
}
STAGE_OUTS = {"prepare": ("data/train.csv", "data/test.csv"), "train": ("model.pkl",), "evaluate": ()}
METRICS_FILE = "metrics.json"
#: Files that never belong in Git, with a path that shows each (the .gitignore must match it).
IGNORED = {
    "Python caches": "src/__pycache__/train.cpython-311.pyc",
    "virtual environments": ".venv/bin/python",
    "notebook checkpoints": ".ipynb_checkpoints/lab-checkpoint.ipynb",
    "local MLflow files": "mlruns/0/meta.yaml",
}
#: A conventional commit subject: type(scope)!: description.
CONVENTIONAL = re.compile(r"^[a-z]+(\([\w./ -]+\))?!?: \S")
MD5 = re.compile(r"^[0-9a-f]{32}$")
MAE_RTOL = 1e-6

#: Reading caps: a submission's repository and remote are data, read within bounds.
MAX_COMMITS = 60
MAX_TREE_ENTRIES = 2000
MAX_OBJECT_BYTES = 8 << 20
MAX_TEXT_BYTES = 256 << 10
MAX_REMOTE_FILES = 300
MAX_REMOTE_FILE_BYTES = 64 << 20
MAX_YAML_NODES = 20_000
#: The files of each commit whose content the checks read.
READ_IN_COMMITS = (DVC_FILE, "dvc.yaml", "dvc.lock", "params.yaml", METRICS_FILE, ".gitignore")

MESSAGES = {
    "no_project": (
        "there is no Git repository in '{project}' (found: {found}). Run the set-up cell, which makes the "
        "folder and runs git init, then this task's cell."
    ),
    "no_dvc_file": (
        "no commit holds '{file}'. Track the data with sh('dvc add {data}'), then git add the .dvc file "
        "(and the .gitignore files) and commit."
    ),
    "bad_dvc_file": "'{file}' in commit {sha} is not a DVC file with one output and its md5 ({error}).",
    "wrong_v1": (
        "the first commit of '{file}' ({sha}) records md5 {found}, but the first data version (V1_ROWS rows) "
        "has md5 {expected}. Track data/metrics.csv as the set-up cell wrote it, before any change."
    ),
    "data_in_git": (
        "commit {sha} puts '{path}' itself in Git. Data and models go to DVC (dvc add, pipeline outs) and "
        "Git keeps only the small .dvc and dvc.lock files that point at them: git rm --cached the file."
    ),
    "no_gitignore": "no commit holds a .gitignore at the root of the project. Write one and commit it.",
    "not_ignored": (
        "the committed .gitignore does not keep out {what} (e.g. '{path}'). Add a pattern for them."
    ),
    "not_conventional": (
        "the commit message '{subject}' ({sha}) is not a conventional commit. Use 'type(scope): what', e.g. "
        "'feat(data): track the metrics with DVC' or 'chore: ...'."
    ),
    "track_ok": (
        "{file} is in Git (md5 {md5}), the data itself is not, the .gitignore keeps out caches, environments "
        "and MLflow files, and every commit ({count} so far) is conventional."
    ),
    "no_pipeline": "no commit holds dvc.yaml. Write the pipeline, run sh('dvc repro') and commit dvc.yaml and dvc.lock.",
    "bad_yaml": "'{file}' in commit {sha} is not readable YAML with a 'stages' mapping ({error}).",
    "missing_stage": "dvc.yaml (commit {sha}) has no stage '{stage}' with a cmd (stages: {found}).",
    "missing_dep": (
        "stage '{stage}' of dvc.yaml (commit {sha}) does not list '{dep}' in its deps (deps: {found}). "
        "A stage must depend on every file it reads, or dvc repro will not rerun it when that file changes."
    ),
    "missing_param": (
        "stage '{stage}' of dvc.yaml (commit {sha}) does not list the parameter '{param}' (params: {found}). "
        "A stage must depend on every parameter its script reads from params.yaml."
    ),
    "missing_out": "stage '{stage}' of dvc.yaml (commit {sha}) does not list '{out}' in its outs (outs: {found}).",
    "missing_metric": (
        "stage 'evaluate' of dvc.yaml (commit {sha}) does not declare '{file}' under metrics with cache: false "
        "(metrics: {found}): DVC then neither shows it with dvc metrics show nor leaves it to Git."
    ),
    "no_lock": (
        "no commit holds a dvc.lock for the first data version with the default parameters "
        "(train.n_estimators={n}). Run sh('dvc repro') and commit dvc.lock with dvc.yaml."
    ),
    "wrong_lock_data": (
        "the dvc.lock of commit {sha} records md5 {found} for {file}, but the data committed there has md5 "
        "{expected}. Run dvc repro after dvc add, then commit both."
    ),
    "wrong_split": (
        "the dvc.lock of commit {sha} records md5 {found} for '{path}', but prepare.py on this data writes "
        "a file with md5 {expected}. Commit the dvc.lock that dvc repro wrote."
    ),
    "no_metrics": "commit {sha} has no readable {file} with a number 'mae'. Commit {file} with dvc.lock.",
    "wrong_mae": (
        "commit {sha} has mae={found} in {file}, but the pipeline on this data and these parameters gives "
        "{expected}. Commit what dvc repro wrote, not a copy."
    ),
    "pipeline_ok": (
        "dvc.yaml has the stages prepare, train and evaluate with their deps, params and outs; the committed "
        "dvc.lock matches the data (md5 {md5}) and metrics.json has mae={mae:.2f}."
    ),
    "no_tuned": (
        "no commit has a dvc.lock whose stage train ran with train.n_estimators={n} on the first data version "
        "(found: {found}). Change the value in params.yaml, run sh('dvc repro'), commit. If dvc repro did "
        "nothing, the train stage does not depend on that parameter."
    ),
    "tuned_ok": (
        "the change of train.n_estimators to {n} re-ran train and evaluate: mae={mae:.2f} (was {before:.2f}), "
        "and prepare's outputs kept their md5."
    ),
    "prepare_changed": (
        "in commit {sha}, the outputs of prepare changed ({path}: {found}, before {before}), though only a "
        "parameter of train changed: keep the prepare stage as it was."
    ),
    "no_remote": (
        "the DVC remote '{remote}' holds no file (found: {found}). Configure it with sh('dvc remote add -d "
        "...') and run sh('dvc push')."
    ),
    "missing_in_remote": (
        "the remote '{remote}' lacks {what} (md5 {md5}), which commit {sha} points to. Run sh('dvc push') "
        "after each dvc add and dvc repro that you commit."
    ),
    "remote_ok": "the remote holds, verified by content, the {count} files the last commit of the first data version points to.",
    "no_run": (
        "no run named '{run}' in the experiment (runs: {found}). Call log_training('{run}') after the commit "
        "of that data version."
    ),
    "no_dataset": (
        "run '{run}' logged no dataset input. Build it with mlflow.data.from_pandas(..., digest=<DVC md5>) "
        "and log it with mlflow.log_input(dataset, context='training')."
    ),
    "wrong_digest": (
        "the dataset input of run '{run}' has digest {found}, but the data it was trained on has DVC md5 "
        "{expected}. Pass the md5 from data/metrics.csv.dvc as digest= to mlflow.data.from_pandas."
    ),
    "no_commit_tag": (
        "run '{run}' has no tag '{tag}' naming a commit of the repository (found: {found}). Set it to the "
        "output of git rev-parse HEAD."
    ),
    "commit_mismatch": (
        "run '{run}' names commit {sha}, but that commit's {file} records md5 {found}, not the digest {digest} "
        "of the run's data: the lineage points at another data version."
    ),
    "wrong_param": (
        "run '{run}' has the param {param}={found}, but params.yaml in commit {sha} says {expected}. Log the "
        "parameters of params.yaml, flattened ('train.n_estimators')."
    ),
    "wrong_run_mae": (
        "run '{run}' has mae={found}, but metrics.json in commit {sha} says {expected}. Log the metric the "
        "pipeline wrote."
    ),
    "no_version": (
        "no version of the registered model '{name}' comes from the run '{run}'. Log the pipeline's model with "
        "mlflow.sklearn.log_model(..., registered_model_name=MODEL_NAME) inside the run."
    ),
    "lineage_ok": (
        "run '{run}' leads back to its data: dataset digest {digest} (the DVC md5), commit {sha}, "
        "the parameters of params.yaml and mae={mae:.2f}, and a registered version."
    ),
    "no_v2": (
        "no commit tracks the second data version (md5 {md5}). Write it with the given function, dvc add it, "
        "run dvc repro and commit."
    ),
    "no_v2_found": "no commit tracks a second data version (md5s found: {found}).",
    "no_v2_lock": (
        "no commit has a dvc.lock for the second data version (md5 {md5}) with train.n_estimators={n}. Run "
        "sh('dvc repro') after dvc add and commit dvc.lock and metrics.json."
    ),
    "no_champion": (
        "the alias 'champion' of '{name}' is not on the version from the run '{run}' (aliases: {found}). Set it "
        "with client.set_registered_model_alias(MODEL_NAME, 'champion', version)."
    ),
    "version_ok": "the second data version (md5 {md5}) is committed, reproduced (mae={mae:.2f}), pushed and in service as @champion.",
    "no_answer": (
        "there is no readable answer file '{file}' (a JSON object). Run the cell after the TODO that defines training_data, which writes "
        "what training_data() returns."
    ),
    "bad_answer": "'{file}' has no entry '{entry}' with the keys digest and git_commit (found: {found}).",
    "no_lineage_version": "no registered version of '{name}' with the alias '{alias}' or number {version}: {why}",
    "wrong_answer": (
        "'{file}' says {entry} was trained on {found}, but the store says: {expected}. Read it from the store: the "
        "version's run, its dataset input's digest and its tag '{tag}'."
    ),
    "answer_ok": "the answer matches the store: @champion was trained on data md5 {digest} at commit {sha}.",
    "no_reproduction": (
        "no run named '{run}' with the metric 'mae' (runs: {found}). Go back to the commit of the first data "
        "version, reproduce it and log the metric in a run of that name."
    ),
    "wrong_reproduction": (
        "run '{run}' has mae={found}, but the first data version with the parameters it was trained with "
        "gives {expected}. Check out that commit, run sh('dvc checkout') or sh('dvc pull'), then sh('dvc repro')."
    ),
    "reproduce_commit": (
        "run '{run}' has the tag '{tag}'={found}, which is not a commit of the first data version "
        "(md5 {md5}): log the commit you reproduced (git rev-parse HEAD while it is checked out)."
    ),
    "not_checked_out": (
        "run '{run}' names commit {sha}, but the repository was never checked out at it (git's reflog "
        "has no such checkout). Reproduce by going back: sh('git checkout <commit>'), then DVC."
    ),
    "reproduce_ok": "the first data version was reproduced at commit {sha}: mae={mae:.2f}, as when it was trained.",
    "could_not_read": "the repository could not be read: {error}",
}

COMMIT_TAG = "git_commit"


msg = functools.partial(checking.message, MESSAGES)


def short(sha: str | None) -> str:
    return (sha or _("none"))[:8]



# --- The project's given scripts (the same in both parts; the references follow their recipe) ---

SCRIPTS = {
    "src/prepare.py": """\
import pandas as pd
import yaml

params = yaml.safe_load(open("params.yaml"))["prepare"]
data = pd.read_csv("data/metrics.csv")
test = data.sample(frac=params["test_size"], random_state=params["seed"])
data.drop(test.index).to_csv("data/train.csv", index=False)
test.to_csv("data/test.csv", index=False)
""",
    "src/train.py": """\
import pickle

import pandas as pd
import yaml
from sklearn.ensemble import RandomForestRegressor

FEATURES = ["cpu_usage", "memory_usage", "disk_io", "network_latency", "concurrent_users"]
params = yaml.safe_load(open("params.yaml"))["train"]
train = pd.read_csv("data/train.csv")
model = RandomForestRegressor(n_estimators=params["n_estimators"], max_depth=params["max_depth"],
                              random_state=params["seed"], n_jobs=1)
model.fit(train[FEATURES], train["response_time_ms"])
with open("model.pkl", "wb") as f:
    pickle.dump(model, f)
""",
    "src/evaluate.py": """\
import json
import pickle

import pandas as pd

FEATURES = ["cpu_usage", "memory_usage", "disk_io", "network_latency", "concurrent_users"]
test = pd.read_csv("data/test.csv")
with open("model.pkl", "rb") as f:
    model = pickle.load(f)
mae = (test["response_time_ms"] - model.predict(test[FEATURES])).abs().mean()
with open("metrics.json", "w") as f:
    json.dump({"mae": float(mae), "test_rows": len(test)}, f, indent=2)
""",
}


def project_params(test_size: float, seed: int, n_estimators: int, max_depth: int) -> dict[str, Any]:
    """params.yaml of the project: every parameter of the pipeline, one section per stage."""
    return {
        "prepare": {"test_size": test_size, "seed": seed},
        "train": {"n_estimators": n_estimators, "max_depth": max_depth, "seed": seed},
    }


def write_project(project: str | Path, data_path: str | Path | None, v1_rows: int, params: Mapping[str, Any]) -> None:
    """Write the given files of the project: the scripts, params.yaml and the first data version."""
    import yaml

    project = Path(project)
    for name, text in SCRIPTS.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (project / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=False))
    write_version(data_path, "v1", v1_rows, project / DATA_FILE)

# --- Data versions (given to the notebook; the grader makes the same bytes) ----------------


def version_bytes(data_path: str | Path | None, version: str, v1_rows: int) -> bytes:
    """The bytes of a data version, cut from the dataset's own lines: ``v1`` is the header and
    the first ``v1_rows`` rows; ``v2`` adds the later batch (every row). No parsing, so the
    bytes (and DVC's md5) are the same wherever they are made."""
    lines = labkit.data_path(data_path).read_bytes().splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    if version == "v1":
        return b"".join(lines[: 1 + v1_rows])
    if version == "v2":
        return b"".join(lines)
    raise ValueError(f"unknown data version {version!r}: 'v1' or 'v2'")


def write_version(data_path: str | Path | None, version: str, v1_rows: int, dest: str | Path) -> Path:
    """Write a data version to ``dest`` (replacing what is there)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(version_bytes(data_path, version, v1_rows))
    return dest


# --- Evidence: a Git repository read as data ---------------------------------------------


class _Budget(Exception):
    pass


def _bounded(value: Any, budget: list[int]) -> Any:
    """A copy of parsed YAML/JSON with at most MAX_YAML_NODES nodes (aliases do not multiply)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _Budget("too many nodes")
    if isinstance(value, dict):
        return {str(k): _bounded(v, budget) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v, budget) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def parse_yaml(text: bytes | str | None) -> tuple[Any, str | None]:
    """(data, None) or (None, why)."""
    import yaml

    if text is None:
        return None, "unreadable"
    try:
        return _bounded(yaml.safe_load(text), [MAX_YAML_NODES]), None
    except (yaml.YAMLError, _Budget, RecursionError, ValueError) as exc:
        return None, f"{type(exc).__name__}"


class GitReader:
    """A Git repository's loose objects and refs, read as files within ``confine_to``."""

    def __init__(self, project: Path, confine_to: Path | None) -> None:
        self.git = project / ".git"
        self.confine_to = confine_to

    def _read(self, relative: str, limit: int = MAX_TEXT_BYTES) -> bytes | None:
        return read_file(str(self.git / relative), self.confine_to, limit)

    def object(self, sha: str) -> tuple[str, bytes] | None:
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            return None
        raw = self._read(f"objects/{sha[:2]}/{sha[2:]}", MAX_OBJECT_BYTES)
        if raw is None:
            return None
        try:
            inflater = zlib.decompressobj()
            data = inflater.decompress(raw, MAX_OBJECT_BYTES + 64)
        except zlib.error:
            return None
        header, _, body = data.partition(b"\0")
        kind = header.split(b" ")[0].decode("ascii", "replace")
        return kind, body

    def refs(self) -> dict[str, str]:
        """ref name -> commit sha (tags peeled), from loose refs and packed-refs."""
        found: dict[str, str] = {}
        packed = self._read("packed-refs") or b""
        for line in packed.decode("utf-8", "replace").splitlines():
            parts = line.split(" ")
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{40}", parts[0]):
                found[parts[1]] = parts[0]
        for kind in ("heads", "tags"):
            folder = self.git / "refs" / kind
            real = os.path.realpath(folder)
            if self.confine_to is not None and not Path(real).is_relative_to(os.path.realpath(self.confine_to)):
                continue
            if not folder.is_dir() or folder.is_symlink():
                continue
            for entry in _entries(folder, 100):
                text = self._read(f"refs/{kind}/{entry.name}", 100)
                if text and re.fullmatch(rb"[0-9a-f]{40}\s*", text):
                    found[f"refs/{kind}/{entry.name}"] = text.decode().strip()
        head = (self._read("HEAD", 200) or b"").decode("utf-8", "replace").strip()
        if re.fullmatch(r"[0-9a-f]{40}", head):
            found["HEAD"] = head
        elif head.startswith("ref: ") and head[5:] in found:
            found["HEAD"] = found[head[5:]]
        for name, sha in list(found.items()):  # annotated tags point at a tag object
            obj = self.object(sha)
            if obj and obj[0] == "tag":
                target = re.match(rb"object ([0-9a-f]{40})", obj[1])
                found[name] = target.group(1).decode() if target else sha
        return found

    def commit(self, sha: str) -> dict[str, Any] | None:
        obj = self.object(sha)
        if obj is None or obj[0] != "commit":
            return None
        head, _, message = obj[1].partition(b"\n\n")
        tree, parents, time = None, [], 0
        for line in head.decode("utf-8", "replace").splitlines():
            if line.startswith("tree "):
                tree = line[5:].strip()
            elif line.startswith("parent "):
                parents.append(line[7:].strip())
            elif line.startswith("committer "):
                stamp = re.search(r"> (\d+) [+-]\d{4}$", line)
                time = int(stamp.group(1)) if stamp else 0
        subject = message.decode("utf-8", "replace").strip().splitlines()
        return {"sha": sha, "tree": tree, "parents": parents, "time": time,
                "subject": subject[0][:200] if subject else ""}

    def files(self, tree: str | None) -> dict[str, str]:
        """path -> blob sha of every file in a tree (subtrees walked, within the caps)."""
        found: dict[str, str] = {}
        todo = [("", tree)]
        while todo and len(found) < MAX_TREE_ENTRIES:
            prefix, sha = todo.pop()
            obj = self.object(sha or "")
            if obj is None or obj[0] != "tree" or prefix.count("/") > 20:
                continue
            body, i = obj[1], 0
            while i < len(body) and len(found) < MAX_TREE_ENTRIES:
                space, nul = body.find(b" ", i), body.find(b"\0", i)
                if space < 0 or nul < 0 or nul + 21 > len(body):
                    break
                mode, name = body[i:space], body[space + 1 : nul].decode("utf-8", "replace")
                child = body[nul + 1 : nul + 21].hex()
                i = nul + 21
                path = f"{prefix}{name}"
                if mode == b"40000":
                    todo.append((path + "/", child))
                elif mode != b"160000":
                    found[path] = child
        return found

    def blob(self, sha: str) -> bytes | None:
        obj = self.object(sha)
        return obj[1][:MAX_TEXT_BYTES] if obj and obj[0] == "blob" else None


def read_repository(project: Path, confine_to: Path | None = None) -> dict[str, Any]:
    """The repository as data: its commits (parents before children, each with its files and
    the parsed content of the files the checks read) and its refs."""
    if confine_to is not None and not Path(os.path.realpath(project)).is_relative_to(os.path.realpath(confine_to)):
        return {"exists": False, "found": _("a folder outside the working folder")}
    git = project / ".git"
    if not git.is_dir() or git.is_symlink():
        found = sorted(p.name for p in project.iterdir())[:10] if project.is_dir() and not project.is_symlink() else []
        return {"exists": False, "found": ", ".join(found) or "nothing"}
    reader = GitReader(project, confine_to)
    refs = reader.refs()
    commits: dict[str, dict[str, Any]] = {}
    todo = list(dict.fromkeys(refs.values()))
    while todo and len(commits) < MAX_COMMITS:
        sha = todo.pop()
        if sha in commits:
            continue
        record = reader.commit(sha)
        if record is None:
            continue
        commits[sha] = record
        todo.extend(p for p in record["parents"] if p not in commits)
    for record in commits.values():
        files = reader.files(record.pop("tree"))
        record["files"] = sorted(files)
        content: dict[str, Any] = {}
        for path in READ_IN_COMMITS:
            if path in files:
                blob = reader.blob(files[path])
                if path == ".gitignore":
                    content[path] = None if blob is None else blob.decode("utf-8", "replace")
                else:
                    data, error = parse_yaml(blob)  # JSON is YAML too
                    content[path] = data if error is None else {"_error": error}
        record["content"] = content
    return {"exists": True, "refs": refs, "commits": _ordered(commits), "checkouts": _checkouts(reader)}


def _checkouts(reader: GitReader) -> list[str]:
    """The commits HEAD was moved to by ``git checkout`` (or switch), from the reflog."""
    found = []
    for line in (reader._read("logs/HEAD", MAX_TEXT_BYTES) or b"").decode("utf-8", "replace").splitlines():
        fields, _, message = line.partition("\t")
        parts = fields.split(" ")
        if len(parts) > 2 and message.startswith(("checkout:", "switch:")) and re.fullmatch(r"[0-9a-f]{40}", parts[1]):
            found.append(parts[1])
    return found


def _ordered(commits: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Parents before children; among the ready ones, the older first."""
    done: set[str] = set()
    out: list[dict[str, Any]] = []
    pending = dict(commits)
    while pending:
        ready = [c for c in pending.values() if all(p in done or p not in commits for p in c["parents"])]
        if not ready:  # a cycle cannot happen in Git; made-up objects could try
            ready = list(pending.values())
        first = min(ready, key=lambda c: (c["time"], c["sha"]))
        out.append(first)
        done.add(first["sha"])
        del pending[first["sha"]]
    return out


def _entries(folder: Path, limit: int) -> list[Path]:
    """At most ``limit`` entries of a folder, without listing a huge one whole."""
    with os.scandir(folder) as found:
        return sorted(Path(e.path) for e in itertools.islice(found, limit))


def read_remote(remote: Path, confine_to: Path | None = None) -> dict[str, Any]:
    """The md5s the remote holds: files ``files/md5/ab/cdef...`` whose content has that md5."""
    root = remote / "files" / "md5"
    if confine_to is not None and not Path(os.path.realpath(root)).is_relative_to(os.path.realpath(confine_to)):
        return {"exists": False, "hashes": [], "files": 0}
    if not root.is_dir() or root.is_symlink():
        return {"exists": remote.is_dir(), "hashes": [], "files": 0}
    hashes, seen = [], 0
    for folder in _entries(root, 256):
        if not re.fullmatch(r"[0-9a-f]{2}", folder.name) or folder.is_symlink() or not folder.is_dir():
            continue
        for entry in _entries(folder, MAX_REMOTE_FILES):
            seen += 1
            if seen > MAX_REMOTE_FILES:
                break
            name = folder.name + entry.name
            if not MD5.fullmatch(name):
                continue
            data = read_file(str(entry), confine_to, MAX_REMOTE_FILE_BYTES)
            if data is not None and hashlib.md5(data).hexdigest() == name:  # noqa: S324 (DVC's hash)
                hashes.append(name)
    return {"exists": True, "hashes": hashes, "files": seen}


def evidence(
    tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None, confine_to: Path | None = None
) -> Evidence:
    """What the work produced, as plain data. The lab's folders are relative to the working
    folder (``confine_to`` when the grader reads a submission; else the notebook's folder)."""
    base = confine_to if confine_to is not None else Path.cwd()
    project, remote = base / params["PROJECT_DIR"], base / params["REMOTE_DIR"]
    ev: Evidence = {"project": params["PROJECT_DIR"], "remote_dir": params["REMOTE_DIR"]}
    try:
        ev["repo"] = read_repository(project, confine_to)
    except (OSError, ValueError) as exc:
        ev["repo"] = {"exists": False, "found": f"unreadable ({type(exc).__name__})"}
    try:
        ev["remote"] = read_remote(remote, confine_to)
    except OSError:
        ev["remote"] = {"exists": False, "hashes": [], "files": 0}
    if "ANSWER_FILE" in params:  # part b: the answer file and the MLflow store
        answer_text = read_file(str(base / params["ANSWER_FILE"]), confine_to, MAX_TEXT_BYTES)
        ev["answer"], _ = parse_yaml(answer_text) if answer_text is not None else (None, None)
        ev.update(_store(tracking_uri, params))
    return ev


def _store(tracking_uri: str, params: Mapping[str, Any]) -> dict[str, Any]:
    mlflow_client = client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name(params["EXPERIMENT_NAME"])
    found: dict[str, Any] = {"runs": {}, "run_names": [], "registry": {"name": params["MODEL_NAME"], "exists": False}}
    if experiment is None:
        return found
    every = mlflow_client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"],
                                      max_results=200)
    found["run_names"] = sorted({r.info.run_name for r in every})
    by_id = {}
    for run in every:
        record = _run_with_inputs(run)
        by_id[record["id"]] = record
        if record["name"] in (*TRAIN_RUNS.values(), REPRODUCE_RUN) and record["name"] not in found["runs"]:
            found["runs"][record["name"]] = record
    name = params["MODEL_NAME"]
    models = mlflow_client.search_registered_models(filter_string=f"name = '{name}'")
    if not models:
        return found
    versions = []
    for mv in mlflow_client.search_model_versions(f"name = '{name}'"):
        run = by_id.get(mv.run_id)
        if run is None and mv.run_id:
            try:
                run = _run_with_inputs(mlflow_client.get_run(mv.run_id))
            except Exception:
                run = None
        versions.append({"version": int(mv.version), "run": run["name"] if run else version_run_name(mlflow_client, mv),
                         "lineage": _lineage(run)})
    found["registry"] = {
        "name": name,
        "exists": True,
        "aliases": {alias: int(v) for alias, v in (models[0].aliases or {}).items()},
        "versions": sorted(versions, key=lambda v: v["version"]),
    }
    return found


def _run_with_inputs(run: Any) -> dict[str, Any]:
    record = run_record(run)
    inputs = run.inputs.dataset_inputs if run.inputs else []
    record["datasets"] = [{"name": i.dataset.name, "digest": i.dataset.digest, "source": str(i.dataset.source)[:300]}
                          for i in inputs]
    return record


def _lineage(run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the store says a run was trained on: its dataset's digest and its commit."""
    if run is None:
        return None
    digest = run["datasets"][0]["digest"] if run.get("datasets") else None
    return {"digest": digest, "git_commit": run["tags"].get(COMMIT_TAG)}



# --- Judgments both parts make --------------------------------------------------------------


def repo_commits(ev: Evidence) -> tuple[list[dict[str, Any]], CheckResult | None]:
    repo = ev.get("repo") or {}
    if not repo.get("exists"):
        return [], CheckResult(False, msg("no_project", project=ev.get("project"), found=repo.get("found", _("nothing"))))
    return repo.get("commits") or [], None


def data_md5(commit: Mapping[str, Any]) -> str | None:
    """The md5 the commit's data/metrics.csv.dvc records, or None."""
    doc = commit["content"].get(DVC_FILE)
    outs = doc.get("outs") if isinstance(doc, dict) else None
    if isinstance(outs, list) and len(outs) == 1 and isinstance(outs[0], dict):
        md5 = str(outs[0].get("md5", ""))
        return md5 if MD5.fullmatch(md5) else None
    return None



def lock_stage(commit: Mapping[str, Any], stage: str) -> dict[str, Any]:
    lock = commit["content"].get("dvc.lock")
    stages = lock.get("stages") if isinstance(lock, dict) else None
    found = stages.get(stage) if isinstance(stages, dict) else None
    return found if isinstance(found, dict) else {}


def lock_md5(entries: Any, path: str) -> str | None:
    for item in entries if isinstance(entries, list) else []:
        if isinstance(item, dict) and item.get("path") == path:
            return str(item.get("md5"))
    return None


def lock_param(commit: Mapping[str, Any], name: str) -> Any:
    section, _, key = name.partition(".")
    files = lock_stage(commit, section).get("params")
    values = files.get("params.yaml") if isinstance(files, dict) else None
    if not isinstance(values, dict):
        return None
    if name in values:
        return values[name]
    whole = values.get(section)
    return whole.get(key) if isinstance(whole, dict) else None


def metrics_mae(commit: Mapping[str, Any]) -> float | None:
    doc = commit["content"].get(METRICS_FILE)
    value = doc.get("mae") if isinstance(doc, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def close(a: float, b: float) -> bool:
    return abs(a - b) <= MAE_RTOL * max(abs(b), 1.0)


def locks_for(commits: list[dict[str, Any]], md5: str | None, n: int) -> list[dict[str, Any]]:
    """Commits whose dvc.lock ran prepare on data ``md5`` (any, when None) and train with n trees."""
    return [c for c in commits if "dvc.lock" in c["content"]
            and (md5 is None or lock_md5(lock_stage(c, "prepare").get("deps"), DATA_FILE) == md5)
            and lock_param(c, "train.n_estimators") == n]


def judge_lock(commit: Mapping[str, Any], version: str, n: int, exp: Mapping[str, Any]) -> CheckResult | None:
    """The commit's dvc.lock and metrics.json against the data committed with them and the
    grader's own run of the pipeline on that version."""
    sha = short(commit["sha"])
    data = data_md5(commit)
    locked = lock_md5(lock_stage(commit, "prepare").get("deps"), DATA_FILE)
    if data is not None and locked != data:
        return CheckResult(False, msg("wrong_lock_data", sha=sha, file=DATA_FILE, found=locked, expected=data))
    split = (exp.get("split") or {}).get(version)
    for path, want in (split or {}).items():
        found = lock_md5(lock_stage(commit, "prepare").get("outs"), path)
        if found != want:
            return CheckResult(False, msg("wrong_split", sha=sha, path=path, found=found, expected=want))
    mae = metrics_mae(commit)
    if mae is None:
        return CheckResult(False, msg("no_metrics", sha=sha, file=METRICS_FILE))
    want_mae = (exp.get("mae") or {}).get(f"{version}_{n}")
    if want_mae is not None and not close(mae, want_mae):
        return CheckResult(False, msg("wrong_mae", sha=sha, file=METRICS_FILE, found=f"{mae:.4f}", expected=f"{want_mae:.4f}"))
    return None


def v1_md5(commits: list[dict[str, Any]], exp: Mapping[str, Any]) -> str | None:
    want = (exp.get("md5") or {}).get("v1")
    if want is not None:
        return want
    tracked = [m for m in map(data_md5, commits) if m]
    return tracked[0] if tracked else None


def lock_hashes(commit: Mapping[str, Any]) -> dict[str, str]:
    """What a commit points to in DVC's cache: the data and every out of dvc.lock."""
    found = {DATA_FILE: data_md5(commit)} if data_md5(commit) else {}
    for stage in STAGES:
        for item in lock_stage(commit, stage).get("outs") or []:
            if isinstance(item, dict) and item.get("path") != METRICS_FILE and MD5.fullmatch(str(item.get("md5", ""))):
                found[str(item["path"])] = str(item["md5"])
    return found


def judge_pushed(ev: Evidence, commit: Mapping[str, Any]) -> CheckResult | None:
    """Whether the remote holds, verified by content, every file ``commit`` points to."""
    remote = ev.get("remote") or {}
    held = set(remote.get("hashes") or [])
    if not held:
        return CheckResult(False, msg("no_remote", remote=ev.get("remote_dir"),
                                       found=_("{n} files").format(n=remote.get("files", 0)) if remote.get("exists") else _("no folder")))
    for what, md5 in lock_hashes(commit).items():
        if md5 not in held:
            return CheckResult(False, msg("missing_in_remote", remote=ev.get("remote_dir"), what=what, md5=md5,
                                           sha=short(commit["sha"])))
    return None


def newest_of(commits: list[dict[str, Any]], md5: str | None) -> dict[str, Any] | None:
    """The newest commit of a data version, preferring one with a dvc.lock of that data: what
    the last dvc push of that version had to send."""
    of_version = [c for c in commits if md5 is not None and data_md5(c) == md5]
    locked = [c for c in of_version if lock_md5(lock_stage(c, "prepare").get("deps"), DATA_FILE) == md5]
    return (locked or of_version or [None])[-1]
