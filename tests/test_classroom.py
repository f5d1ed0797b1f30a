"""Grading a whole class: layouts, the expected grade table, resume, the student bundle."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from autograder import classroom
from autograder.release import build_bundle
from tests.conftest import LAB01, make_submission

STUBBORN = "import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except KeyboardInterrupt:\n        pass"
NEUTER = (
    "get_ipython().input_transformers_post.append("
    "lambda lines: ['pass\\n'] if any('self_check' in l for l in lines) else lines)"
)
WRONG_METRICS = (
    "metrics = {'rmse': 1.0, 'mae': 1.0, 'r2': 1.0}\nmlflow.log_metrics(metrics)"
)

# student -> (notebook or raw bytes, expected score)
CLASS = {
    "s01-full": (lambda: make_submission(done={1, 2, 3, 4, 5}), 10),
    "s02-full": (lambda: make_submission(done={1, 2, 3, 4, 5}), 10),
    "s03-partial": (lambda: make_submission(done={1, 3, 5}), 6),
    "s04-partial": (lambda: make_submission(done={2, 4}), 4),
    "s05-empty": (lambda: make_submission(done=set()), 0),
    "s06-tampered": (lambda: make_submission(done=set(), add_after={"setup": NEUTER}), 0),
    "s07-edited-test": (
        lambda: make_submission(done={1, 2, 4, 5}, replace={"check_todo3_metrics": "print('ok')"}), 8,
    ),
    "s08-corrupt": (lambda: b"{ this is not a notebook", 0),
    "s09-timeout": (lambda: make_submission(done={1, 2, 3, 4, 5}, replace={"todo4": STUBBORN}), 5),
    "s10-kernel-crash": (lambda: make_submission(done={1, 2, 3, 4, 5}, replace={"todo3": "import os\nos._exit(3)"}), 3),
    "s11-fake-metrics": (lambda: make_submission(done={1, 2, 4, 5}, replace={"todo3": WRONG_METRICS}), 8),
    "s12-deleted-cells": (lambda: make_submission(done={1, 2, 3, 4, 5}, delete={"check_todo1_experiment"}), 10),
}


def write_class(root: Path, students: dict = CLASS) -> Path:
    """nbgrader's layout: submitted/<student>/<lab>/<notebook>.ipynb (+ timestamp.txt)."""
    for student, (make, _) in students.items():
        folder = root / "submitted" / student / LAB01.lab_id
        folder.mkdir(parents=True)
        content = make()
        target = folder / f"{LAB01.lab_id}.ipynb"
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            nbformat.write(content, target)
        day = 2 if student == "s04-partial" else 1  # one late submission
        (folder / "timestamp.txt").write_text(f"2026-12-0{day} 10:00:00.000000 UTC")
    return root


@pytest.mark.slow
def test_a_class_grades_to_the_expected_table_and_resumes(tmp_path: Path) -> None:
    source, out = write_class(tmp_path / "in"), tmp_path / "out"
    due = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)
    summary = classroom.grade_class(source, out, jobs=2, due=due, cell_timeout=60, total_timeout=60, progress=False)
    assert (summary.graded_now, summary.kept) == (12, 0)

    with open(out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert {s: float(rows[s]["score"]) for s in CLASS} == {s: float(score) for s, (_, score) in CLASS.items()}
    assert list(rows["s01-full"])[:4] == ["student_id", "lab", "score", "max_score"]
    assert "check_todo3_metrics" in rows["s01-full"] and "late" in rows["s01-full"]
    assert [s for s, r in rows.items() if r["late"] == "True"] == ["s04-partial"]
    assert "not a notebook" in rows["s08-corrupt"]["error"]
    assert "limit" in rows["s09-timeout"]["error"]
    assert "kernel died" in rows["s10-kernel-crash"]["error"]
    feedback = (out / "feedback" / "s07-edited-test" / "01_tracking.md").read_text()
    assert "check_todo3_metrics (edited)" in feedback
    report = (out / "class_report.html").read_text()
    assert report.count("data:image/png;base64,") == 3

    # Started again: nothing is graded twice; a re-submitted notebook is graded again.
    finished = {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    again = classroom.grade_class(source, out, jobs=2, progress=False)
    assert (again.graded_now, again.kept) == (0, 12)
    assert {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")} == finished
    resubmitted = source / "submitted" / "s05-empty" / LAB01.lab_id / f"{LAB01.lab_id}.ipynb"
    nbformat.write(make_submission(done={1}), resubmitted)
    third = classroom.grade_class(source, out, jobs=2, progress=False)
    assert (third.graded_now, third.kept) == (1, 11)
    with open(out / "grades.csv", newline="") as f:
        assert {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}["s05-empty"] == 1


@pytest.mark.slow
def test_an_interrupted_batch_keeps_what_finished(tmp_path: Path) -> None:
    students = {s: CLASS[s] for s in ("s01-full", "s03-partial", "s05-empty", "s02-full")}
    source, out = write_class(tmp_path / "in", students), tmp_path / "out"
    cmd = [sys.executable, "-m", "autograder", "class", str(source), "--out", str(out), "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((out / "results").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl+C reaches the whole process group
    proc.communicate(timeout=120)
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    assert 1 <= len(finished) < len(students)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"graded {len(students) - len(finished)}, kept {len(finished)}" in rerun.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    assert {k: after[k] for k in finished} == finished and len(after) == len(students)


def test_flat_folders_and_zips_name_students_by_file(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("alice_01_tracking.ipynb", "01_tracking-bob.ipynb", "carol.ipynb"):
        nbformat.write(make_submission(done=set()), flat / name)
    (flat / ".ipynb_checkpoints").mkdir()
    nbformat.write(make_submission(done=set()), flat / ".ipynb_checkpoints" / "alice-checkpoint.ipynb")
    found = classroom.collect(flat)
    assert sorted(s.student_id for s in found) == ["alice", "bob", "carol"]
    assert {s.key for s in found} == {"alice__01_tracking", "bob__01_tracking", "carol__carol"}

    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in flat.glob("*.ipynb"):
            zf.write(path, f"export/{path.name}")
    unpacked = classroom.unpack(archive, tmp_path / "unzipped")
    assert sorted(s.student_id for s in classroom.collect(unpacked)) == ["alice", "bob", "carol"]


def test_a_zip_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escaped.ipynb", "{}")
    with pytest.raises(ValueError, match="unsafe path"):
        classroom.unpack(archive, tmp_path / "x")
    assert not (tmp_path.parent / "escaped.ipynb").exists()


def test_class_cli_explains_a_missing_folder(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "class", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "not a folder or a zip" in proc.stderr and "Traceback" not in proc.stderr


def _solution_lines(master: Path) -> set[str]:
    """The substantial lines found only inside a master's solution regions and hidden-test
    blocks (a line the master also gives as code, like a loop header, is no secret; and a
    later lab may show an earlier lab's answer: only a lab's own answers are its secrets)."""
    inside_lines, outside_lines = set(), set()
    for cell in json.loads(master.read_text(encoding="utf-8"))["cells"]:
        inside = False
        for line in "".join(cell["source"]).splitlines():
            stripped = line.strip()
            if stripped.startswith("### BEGIN"):
                inside = True
            elif stripped.startswith("### END"):
                inside = False
            elif len(stripped) >= 25 and not stripped.startswith("#"):
                (inside_lines if inside else outside_lines).add(stripped)
    return inside_lines - outside_lines


def test_the_student_bundle_has_no_solutions_or_hidden_tests(tmp_path: Path) -> None:
    from autograder.course import LABS

    bundle = build_bundle(tmp_path / "student-bundle.zip")
    secrets = {f"mlops-labs/labs/{lab_id}/{lab_id}.ipynb": _solution_lines(lab.master) for lab_id, lab in LABS.items()}
    assert all(secrets.values()), "every master should have solution regions to look for"
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        assert not [n for n in names if "/solutions/" in n or "/tests/" in n]
        assert any(n.endswith("labs/01_tracking/01_tracking.ipynb") for n in names)
        for name in names:
            text = zf.read(name).decode("utf-8", errors="ignore")
            for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
                assert marker not in text or name.endswith(".py"), f"{marker} in {name}"
            if name.endswith(".ipynb"):
                code = "\n".join(
                    line
                    for cell in json.loads(text)["cells"]
                    if cell["cell_type"] == "code"
                    for line in "".join(cell["source"]).splitlines()
                    if not line.strip().startswith("#")  # hints may name an argument
                )
                assert not [line for line in secrets[name] if line in code], name


@pytest.mark.slow
def test_the_student_bundle_grades_a_notebook_on_its_own(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_bundle(tmp_path / "b.zip", ["01_tracking"])) as zf:
        zf.extractall(tmp_path)
    root = tmp_path / "mlops-labs"
    env = {**os.environ, "COURSE_ROOT": str(root), "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "labs/01_tracking/01_tracking.ipynb", "--json", "r.json"],
        capture_output=True, text=True, timeout=300, cwd=root, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads((root / "r.json").read_text())
    assert (result["score"], result["max_score"]) == (0, 10)
    assert not (root / "solutions").exists()
