"""Hostile submissions: a notebook that does no TODO earns 0 whatever it logs, loads,
imports, reads or leaves running, and changes nothing outside its own folder.

One notebook carries every attack (each notebook execution costs 20-30 s); each assertion
names the attack it defeats. Needs bubblewrap (``.ci/run`` installs it).
"""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograder import course, hidden, sandbox
from tests.conftest import make_submission

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason="needs bubblewrap (.ci/run installs it)"),
]

SECRET = "s3cr3t-instructor-token"

# A pyfunc model whose unpickling runs code: it tries to rewrite the grader's kit, leave a
# marker where the grader lives, and answer with the "right" numbers it cannot know.
PICKLE_ATTACK = '''
import mlflow, mlflow.pyfunc, os, pathlib
class Evil(mlflow.pyfunc.PythonModel):
    def __reduce__(self):
        return (exec, ("""
import pathlib
for target in {targets!r}:
    try:
        pathlib.Path(target).write_text('pwned')
    except Exception:
        pass
""",))
    def predict(self, context, model_input, params=None):
        return [0.0] * len(model_input)
mlflow.set_experiment(EXPERIMENT_NAME)
with mlflow.start_run(run_name=RUN_NAME):
    mlflow.log_params({{"model_type": "RandomForestRegressor", "n_estimators": 100, "max_depth": 12,
                        "random_state": 42, "test_size": 0.25}})
    mlflow.log_metrics({{"rmse": 34.41, "mae": 14.61, "r2": 0.8446}})
    pathlib.Path("pred_vs_actual.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(64))  # a header, no image
    mlflow.log_artifact("pred_vs_actual.png")
    mlflow.pyfunc.log_model(name="model", python_model=Evil(), input_example=X_test.head(5),
                            pip_requirements=["mlflow"])
'''

# Everything a kernel with the grader's power could reach.
SNOOP = '''
import os, pathlib, subprocess, sys
found = {{}}
for label, path in {paths!r}.items():
    try:
        found[label] = pathlib.Path(path).read_text()[:200]
    except Exception as exc:
        found[label] = "denied"
found["env"] = os.environ.get("SECRET_TOKEN", "absent")
for label, path in {writes!r}.items():
    try:
        with open(path, "a") as f:
            f.write("# tampered\\n")
        found[label] = "WROTE"
    except Exception:
        found[label] = "read-only"
try:
    import urllib.request
    urllib.request.urlopen("http://127.0.0.1:1", timeout=2)
except Exception as exc:
    found["net"] = type(exc).__name__
try:
    hog = bytearray(6 << 30)
    found["memory"] = "6 GiB allocated"
except MemoryError:
    found["memory"] = "MemoryError"
# A double fork: a process meant to outlive grading and write the grades afterwards.
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        import ctypes, time
        ctypes.CDLL(None).prctl(15, b"hostile-late", 0, 0, 0)  # PR_SET_NAME: findable in /proc
        time.sleep(6)
        for target in {late!r}:
            try:
                pathlib.Path(target).write_text("late write")
            except Exception:
                pass
        os._exit(0)
    os._exit(0)
raise RuntimeError("SNOOPED " + repr(found))
'''


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_hostile_notebook_earns_zero_and_changes_nothing_outside_its_folder(
    grade, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", SECRET)
    secret_file = tmp_path / "instructor-secret.txt"
    secret_file.write_text(SECRET)
    grades_csv = tmp_path / "grades.csv"
    grades_csv.write_text("student_id,score\nalice,3\n")
    kit_file = course.ROOT / "autograder" / "kit" / "lab01.py"
    reference = course.ROOT / "autograder" / "references" / "lab01.py"
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    protected = [kit_file, reference, grades_csv, course.MAIN_DATASET]
    before = {p: _digest(p) for p in protected}
    pth_before = sorted(site.glob("*.pth"))

    paths = {
        "solution": str(course.ROOT / "solutions" / "01_tracking" / "01_tracking.ipynb"),
        "reference": str(reference),
        "secret": str(secret_file),
        "home": str(Path.home() / ".bashrc"),
    }
    writes = {"kit": str(kit_file), "pth": str(site / "zz_evil.pth"), "grades": str(grades_csv)}
    late = [str(grades_csv), str(tmp_path / "late.txt")]
    nb = make_submission(
        done=set(),
        add_after={
            "load_data": textwrap.dedent(SNOOP.format(paths=paths, writes=writes, late=late)),
            "train": textwrap.dedent(PICKLE_ATTACK.format(targets=[str(kit_file), str(tmp_path / "pwned")])),
        },
    )
    result = grade(nb, inputs=hidden.hidden_inputs(4242))

    # Pickled pyfunc model, copied metrics, a figure that is no plot: nothing earns a point.
    assert result.score == 0, [(c.id, c.points, c.message) for c in result.checks]
    snooped = next(e for e in result.errors if "SNOOPED" in e)
    # Secrets, solutions, references, $HOME and the instructor's environment are invisible.
    assert SECRET not in snooped
    assert "BEGIN SOLUTION" not in snooped and "def expected" not in snooped
    for label in ("solution", "reference", "secret", "home"):
        assert f"'{label}': 'denied'" in snooped, snooped
    assert "'env': 'absent'" in snooped
    # The repository, the venv and the grades are read-only or absent to it.
    for label in ("kit", "pth", "grades"):
        assert f"'{label}': 'read-only'" in snooped, snooped
    # No network, and a memory limit.
    assert "'net': 'URLError'" in snooped
    assert "'memory': 'MemoryError'" in snooped

    # Nothing outlives the grading: the double-forked process is gone and never writes.
    assert [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_snoop(p)] == []
    time.sleep(8)
    assert not (tmp_path / "late.txt").exists()
    assert not (tmp_path / "pwned").exists()
    assert {p: _digest(p) for p in protected} == before
    assert sorted(site.glob("*.pth")) == pth_before


def _is_snoop(proc: Path) -> bool:
    try:
        return (proc / "comm").read_text().strip() == "hostile-late"
    except OSError:
        return False


def test_values_copied_from_a_run_on_the_course_data_do_not_match_hidden_inputs(grade) -> None:
    """TODO 3 answered with the solution's numbers, written as constants."""
    with open(course.ROOT / "autograder" / "kit" / "expected" / "01_tracking.json", encoding="utf-8") as f:
        shipped = json.load(f)["expected"]["metrics"]
    copied = f"metrics = {shipped!r}\nmlflow.log_metrics(metrics)\n"
    result = grade(make_submission(done={1, 2, 4, 5}, replace={"todo3": copied}), inputs=hidden.hidden_inputs(777))
    by_id = {c.id: c for c in result.checks}
    assert by_id["check_todo3_metrics"].points == 0
    assert "test split gives" in by_id["check_todo3_metrics"].message
    assert result.score == 8  # every other TODO keeps its points on the hidden inputs
