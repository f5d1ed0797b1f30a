"""Grading a whole class: layouts, the expected grade table, resume, hostile archives and files."""

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
from tests.conftest import LAB01, make_submission

# student -> (notebook or raw bytes, expected score). What each kind of submission earns is
# tested notebook by notebook in test_grading.py; a class needs only one of each kind of row:
# full (twice: same content, two students), partial and late, empty (then re-submitted), an
# edited test cell (its feedback), a corrupt file and a crash (their error column).
CLASS = {
    "s01-full": (lambda: make_submission(done={1, 2, 3, 4, 5}), 10),
    "s02-full": (lambda: make_submission(done={1, 2, 3, 4, 5}), 10),
    "s04-partial": (lambda: make_submission(done={2, 4}), 4),
    "s05-empty": (lambda: make_submission(done=set()), 0),
    "s07-edited-test": (
        lambda: make_submission(done={1, 2, 4, 5}, replace={"check_todo3_metrics": "print('ok')"}), 8,
    ),
    "s08-corrupt": (lambda: b"{ this is not a notebook", 0),
    "s10-kernel-crash": (lambda: make_submission(done={1, 2, 3, 4, 5}, replace={"todo3": "import os\nos._exit(3)"}), 3),
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
    assert (summary.graded_now, summary.kept) == (len(CLASS), 0)

    with open(out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert {s: float(rows[s]["score"]) for s in CLASS} == {s: float(score) for s, (_, score) in CLASS.items()}
    assert list(rows["s01-full"])[:4] == ["student_id", "lab", "score", "max_score"]
    assert "check_todo3_metrics" in rows["s01-full"] and "late" in rows["s01-full"]
    assert [s for s, r in rows.items() if r["late"] == "True"] == ["s04-partial"]
    assert "not a notebook" in rows["s08-corrupt"]["error"]
    assert "kernel died" in rows["s10-kernel-crash"]["error"]
    feedback = (out / "feedback" / "s07-edited-test" / "01_tracking.md").read_text()
    assert "check_todo3_metrics (edited)" in feedback
    report = (out / "class_report.html").read_text()
    assert report.count("data:image/png;base64,") == 3

    # Started again: nothing is graded twice; a re-submitted notebook is graded again.
    finished = {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    again = classroom.grade_class(source, out, jobs=2, progress=False)
    assert (again.graded_now, again.kept) == (0, len(CLASS))
    assert {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")} == finished
    resubmitted = source / "submitted" / "s05-empty" / LAB01.lab_id / f"{LAB01.lab_id}.ipynb"
    nbformat.write(make_submission(done={1}), resubmitted)
    third = classroom.grade_class(source, out, jobs=2, progress=False)
    assert (third.graded_now, third.kept) == (1, len(CLASS) - 1)
    with open(out / "grades.csv", newline="") as f:
        assert {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}["s05-empty"] == 1


@pytest.mark.slow
def test_an_interrupted_batch_keeps_what_finished(tmp_path: Path) -> None:
    students = {s: CLASS[s] for s in ("s01-full", "s05-empty", "s04-partial")}
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


# --- Resume never loses or mixes grades --------------------------------------------------


def _fake_grader(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Grade in this process with a fake ``grade_notebook`` that gives the score written in
    the notebook's metadata; returns the list of paths it graded."""
    from autograder import grade, hidden

    graded: list[str] = []

    def fake_grade_notebook(path: Path, *args: float, **kwargs: float) -> grade.GradeResult:
        graded.append(str(path))
        points = float(json.loads(path.read_text(encoding="utf-8"))["metadata"]["fake_score"])
        check = grade.CheckOutcome("check_todo1_experiment", points, 10.0, points == 10, "fake")
        return grade.GradeResult(str(path), LAB01.lab_id, points, 10.0, [check])

    monkeypatch.setattr(grade, "grade_notebook", fake_grade_notebook)
    monkeypatch.setattr(hidden, "hidden_inputs", lambda seed: None)  # no data variant to make
    monkeypatch.setattr(classroom, "run_jobs", lambda todo, jobs, progress=True: [classroom.grade_one(j) for j in todo])
    return graded


def _write_fake_class(root: Path, scores: dict[str, int]) -> Path:
    for student, score in scores.items():
        folder = root / "submitted" / student / LAB01.lab_id
        folder.mkdir(parents=True)
        nb = {"cells": [], "metadata": {"fake_score": score}, "nbformat": 4, "nbformat_minor": 5}
        (folder / f"{LAB01.lab_id}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    return root


def _grades(out: Path) -> list[tuple[str, float]]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return sorted((r["student_id"], float(r["score"])) for r in csv.DictReader(f))


# Ids that a sanitised file name would merge: accents, spaces, punctuation.
LOOKALIKES = {"josé": 1, "josè": 2, "jose": 3, "a b": 4, "a_b": 5, "a.b": 6, "a-b": 7}


def test_students_whose_ids_differ_only_in_accents_or_punctuation_keep_their_own_grades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graded = _fake_grader(monkeypatch)
    source, out = _write_fake_class(tmp_path / "in", LOOKALIKES), tmp_path / "out"
    first = classroom.grade_class(source, out, jobs=1, progress=False)
    assert (first.graded_now, first.kept) == (len(LOOKALIKES), 0)
    assert len(list((out / "results").glob("*.json"))) == len(LOOKALIKES)
    assert _grades(out) == sorted((s, float(v)) for s, v in LOOKALIKES.items())

    again = classroom.grade_class(source, out, jobs=1, progress=False)
    assert (again.graded_now, again.kept) == (0, len(LOOKALIKES))
    assert len(graded) == len(LOOKALIKES)
    assert _grades(out) == sorted((s, float(v)) for s, v in LOOKALIKES.items())
    for path in (out / "results").glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        assert record["score"] == LOOKALIKES[record["student_id"]]


def test_results_on_other_hidden_inputs_are_graded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graded = _fake_grader(monkeypatch)
    source, out = _write_fake_class(tmp_path / "in", {"alice": 5, "bob": 7}), tmp_path / "out"
    classroom.grade_class(source, out, jobs=1, progress=False, seed=11)
    same = classroom.grade_class(source, out, jobs=1, progress=False)  # the class keeps its seed
    assert (same.graded_now, same.kept) == (0, 2)
    other = classroom.grade_class(source, out, jobs=1, progress=False, seed=12)
    assert (other.graded_now, other.kept) == (2, 0)
    assert len(graded) == 4 and _grades(out) == [("alice", 5.0), ("bob", 7.0)]


def _raise_score(r: dict) -> None:
    r["score"] = r["max_score"] + 5


def _score_without_checks(r: dict) -> None:
    r["score"] = 9.0  # its checks still add up to 5


def _bad_check(r: dict) -> None:
    r["checks"][0]["points"] = 50.0


def _someone_else(r: dict) -> None:
    r["student_id"] = r["key"]["student_id"] = "mallory"


MALFORMED = {
    "not JSON": lambda text: text[: len(text) // 2],
    "score above max_score": _raise_score,
    "score a string": lambda r: r.update(score="5"),
    "score a boolean": lambda r: r.update(score=True),
    "score not a number": lambda r: r.update(score=float("nan")),
    "score not the sum of its checks": _score_without_checks,
    "checks not a list": lambda r: r.update(checks={"check_todo1_experiment": 10}),
    "a check above its max": _bad_check,
    "no student id": lambda r: r.pop("student_id"),
    "another student's record": _someone_else,
    "not an object": lambda r: [r],
}


@pytest.mark.parametrize("damage", list(MALFORMED), ids=list(MALFORMED))
def test_a_malformed_result_file_is_graded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    graded = _fake_grader(monkeypatch)
    source, out = _write_fake_class(tmp_path / "in", {"alice": 5, "bob": 7}), tmp_path / "out"
    classroom.grade_class(source, out, jobs=1, progress=False)
    [alice_file] = [p for p in (out / "results").glob("*.json") if "alice" in p.name]
    text = alice_file.read_text(encoding="utf-8")
    if damage == "not JSON":
        alice_file.write_text(MALFORMED[damage](text), encoding="utf-8")
    else:
        record = json.loads(text)
        changed = MALFORMED[damage](record)
        alice_file.write_text(json.dumps(record if changed is None else changed), encoding="utf-8")

    again = classroom.grade_class(source, out, jobs=1, progress=False)
    assert (again.graded_now, again.kept) == (1, 1)
    assert len(graded) == 3 and graded[-1].endswith(f"alice/{LAB01.lab_id}/{LAB01.lab_id}.ipynb")
    assert _grades(out) == [("alice", 5.0), ("bob", 7.0)]
    assert json.loads(alice_file.read_text(encoding="utf-8"))["score"] == 5


# --- Hostile zips and files --------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_a_zip_bomb_is_refused_before_anything_is_extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classroom, "RATIO_FROM", 64 * 1024)
    archive = _zip(tmp_path / "bomb.zip", {"alice.ipynb": b"{}", "bob.ipynb": bytes(4 * 1024**2)})
    with pytest.raises(ValueError, match=r"bob.ipynb expands \d+:1 .*zip bomb") as info:
        classroom.unpack(archive, tmp_path / "x")
    assert "\n" not in str(info.value)
    assert _files(tmp_path / "x") == []
    # The same archive is fine when the member is too small for its ratio to matter.
    monkeypatch.setattr(classroom, "RATIO_FROM", 8 * 1024**2)
    classroom.unpack(archive, tmp_path / "y")
    assert (tmp_path / "y" / "bob.ipynb").stat().st_size == 4 * 1024**2


def test_a_zip_too_big_once_unzipped_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classroom, "MAX_UNZIPPED", 10_000)
    archive = _zip(tmp_path / "big.zip", {"a.ipynb": os.urandom(6000), "b.ipynb": os.urandom(6000)})
    with pytest.raises(ValueError, match="more than .* once unzipped"):
        classroom.unpack(archive, tmp_path / "x")
    assert _files(tmp_path / "x") == []


def test_extraction_counts_the_bytes_that_come_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even past a central directory check that lets it through, no more than the limit is written."""
    archive = _zip(tmp_path / "big.zip", {"a.ipynb": os.urandom(6000), "b.ipynb": os.urandom(6000)})
    check_directory = classroom._targets

    def lenient(*args: object) -> object:
        monkeypatch.setattr(classroom, "MAX_UNZIPPED", 10**9)
        found = check_directory(*args)
        monkeypatch.setattr(classroom, "MAX_UNZIPPED", 10_000)
        return found

    monkeypatch.setattr(classroom, "_targets", lenient)
    with pytest.raises(ValueError, match="more than .* once unzipped"):
        classroom.unpack(archive, tmp_path / "x")
    assert sum(p.stat().st_size for p in _files(tmp_path / "x")) <= 10_000


def test_a_zip_whose_header_lies_about_sizes_lets_out_no_more(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "liar.zip", {"a.ipynb": bytes(300_000)})
    data = bytearray(archive.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + 22 : local + 26] = (1000).to_bytes(4, "little")  # uncompressed size
    data[central + 24 : central + 28] = (1000).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="a.ipynb") as info:
        classroom.unpack(archive, tmp_path / "x")
    assert "\n" not in str(info.value)
    assert sum(p.stat().st_size for p in _files(tmp_path / "x")) <= 1000


def test_a_zip_with_too_many_members_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classroom, "MAX_MEMBERS", 3)
    archive = _zip(tmp_path / "many.zip", {f"s{i}.ipynb": b"{}" for i in range(4)})
    with pytest.raises(ValueError, match="4 members in the archive"):
        classroom.unpack(archive, tmp_path / "x")
    assert _files(tmp_path / "x") == []
    classroom.unpack(_zip(tmp_path / "few.zip", {f"s{i}.ipynb": b"{}" for i in range(3)}), tmp_path / "y")
    assert len(_files(tmp_path / "y")) == 3


def test_a_zip_with_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    import stat

    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("alice.ipynb", "{}")
        link = zipfile.ZipInfo("bob.ipynb")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ValueError, match="symbolic link in archive: bob.ipynb"):
        classroom.unpack(archive, tmp_path / "x")
    assert _files(tmp_path / "x") == []


def test_a_huge_notebook_file_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autograder import notebook
    from autograder.notebook import GradingError, read_submission

    huge = tmp_path / "huge.ipynb"
    with open(huge, "wb") as f:
        f.truncate(notebook.MAX_NOTEBOOK_BYTES + 1)  # sparse: costs no disk and no time
    with pytest.raises(GradingError, match=r"too large to be a notebook \(the limit is 50 MiB\)$"):
        read_submission(huge)

    small = tmp_path / "small.ipynb"
    nbformat.write(make_submission(done=set()), small)
    assert read_submission(small).cells
    monkeypatch.setattr(notebook, "MAX_NOTEBOOK_BYTES", small.stat().st_size - 1)
    with pytest.raises(GradingError, match="too large to be a notebook"):
        read_submission(small)
