"""Instructor features on records and hand-made files (fast, no notebook runs): the late policy
with extensions, the Canvas/Moodle/Gradescope exports, regrades and their log, per-student
variants (keyed seeds, per-student bundles that hold no secret), and the CLI's one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder import classreport, classroom, exports, late, regrade, variants
from autograder.notebook import parameters_of
from autograder.roster import Student, read_roster
from tests.conftest import LAB01

DUE = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)


def _record(student: str, score: float, submitted: datetime | None, lab: str = LAB01.lab_id) -> dict[str, Any]:
    checks = [{"id": "check_todo1_experiment", "points": min(score, 4.0), "max_points": 4.0, "passed": score >= 4,
               "message": "ok"},
              {"id": "check_todo3_metrics", "points": max(0.0, score - 4), "max_points": 6.0, "passed": score >= 10,
               "message": "metrics"}]
    return {"student_id": student, "lab": lab, "path": f"{student}/{lab}.ipynb", "score": score, "max_score": 10.0,
            "checks": checks, "errors": [], "restored": [], "seconds": 12.5,
            "submitted_at": submitted.isoformat() if submitted else None}


def _policy(tmp_path: Path, rows: str, extensions: str | None = None) -> late.LatePolicy:
    (tmp_path / "policy.csv").write_text(rows, encoding="utf-8")
    ext = None
    if extensions is not None:
        ext = tmp_path / "ext.csv"
        ext.write_text(extensions, encoding="utf-8")
    return late.read_policy(tmp_path / "policy.csv", ext)


# --- Late policy ------------------------------------------------------------------------------


def test_each_started_day_late_costs_the_penalty_up_to_its_cap(tmp_path: Path) -> None:
    policy = _policy(tmp_path, f"lab,due,penalty_per_day,max_penalty\n{LAB01.lab_id},{DUE.isoformat()},0.1,0.25\n")
    judge = lambda when, score=10.0: policy.judge("alice", LAB01.lab_id, when.isoformat(), score, 10.0)  # noqa: E731
    assert judge(DUE).days_late == 0 and judge(DUE).penalty == 0
    one_minute = judge(DUE + timedelta(minutes=1))
    assert (one_minute.days_late, one_minute.penalty) == (1, 1.0)
    assert judge(DUE + timedelta(days=1, seconds=1)).days_late == 2
    assert judge(DUE + timedelta(days=9)).penalty == 2.5  # capped at 25 %
    assert judge(DUE + timedelta(days=2), score=1.5).penalty == 1.5  # never below zero
    assert policy.judge("alice", "02_tuning", DUE.isoformat(), 5, 10) is None  # no due date for that lab


def test_extensions_move_one_students_due_date_by_date_or_days(tmp_path: Path) -> None:
    later = DUE + timedelta(days=3)
    policy = _policy(tmp_path, f"lab,due,penalty_per_day\n*,{DUE.isoformat()},0.2\n",
                     f"student_id,lab,due,days\nbob,{LAB01.lab_id},{later.isoformat()},\ncarol,*,,2\n")
    when = (DUE + timedelta(days=1, hours=1)).isoformat()
    alice = policy.judge("alice", LAB01.lab_id, when, 10, 10)
    bob = policy.judge("bob", LAB01.lab_id, when, 10, 10)
    carol = policy.judge("carol", "02_tuning", when, 10, 10)
    assert (alice.days_late, alice.penalty, alice.extended) == (2, 4.0, False)
    assert (bob.days_late, bob.penalty, bob.extended) == (0, 0.0, True)
    assert bob.due == later and "extension" in bob.note
    assert (carol.days_late, carol.due) == (0, DUE + timedelta(days=2))


@pytest.mark.parametrize(("rows", "message"), [
    ("lab,due\n01_tracking,2026-12-01\n", "needs the columns"),
    ("lab,due,penalty_per_day\n01_tracking,tomorrow,0.1\n", "line 2: not an ISO 8601"),
    ("lab,due,penalty_per_day\n01_tracking,2026-12-01,10\n", "line 2: penalty_per_day must be a share"),
    ("lab,due,penalty_per_day\n,2026-12-01,0.1\n", "line 2: no lab"),
])
def test_a_bad_policy_file_is_one_clear_line(tmp_path: Path, rows: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _policy(tmp_path, rows)


def test_bad_extensions_are_one_clear_line(tmp_path: Path) -> None:
    rows = f"lab,due,penalty_per_day\n*,{DUE.isoformat()},0.1\n"
    with pytest.raises(ValueError, match="line 2: needs a due or a days"):
        _policy(tmp_path, rows, "student_id,lab,due\nbob,*,\n")
    with pytest.raises(ValueError, match="days must be between"):
        _policy(tmp_path, rows, "student_id,lab,days\nbob,*,-3\n")


def test_late_policy_shows_in_grades_feedback_and_exports(tmp_path: Path) -> None:
    policy = _policy(tmp_path, f"lab,due,penalty_per_day\n{LAB01.lab_id},{DUE.isoformat()},0.1\n")
    records = [_record("alice", 10, DUE - timedelta(hours=1)), _record("bob", 8, DUE + timedelta(hours=30))]
    out = tmp_path / "out"
    out.mkdir()
    classreport.write_outputs(records, out, policy=policy)
    with open(out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert (rows["bob"]["late"], rows["bob"]["days_late"], rows["bob"]["late_penalty"], rows["bob"]["final_score"]) \
        == ("True", "2", "2.0", "6.0")
    assert (rows["alice"]["late"], rows["alice"]["final_score"]) == ("False", "10.0")
    feedback = (out / "feedback" / "bob" / f"{LAB01.lab_id}.md").read_text()
    assert "Final score (after the late policy):** 6 / 10" in feedback and "2 day(s) late" in feedback
    canvas = list(csv.reader(io.StringIO((out / "canvas.csv").read_text())))
    assert canvas[2][-1] == "10.0" and canvas[3][-1] == "6.0"
    result = json.loads((out / "gradescope" / "bob" / LAB01.lab_id / "results.json").read_text())
    assert result["score"] == 6.0 and sum(t["score"] for t in result["tests"]) == 8.0
    assert "late" in result["output"]


# --- Exports ------------------------------------------------------------------------------------


def test_canvas_export_has_its_identity_columns_points_possible_and_the_roster(tmp_path: Path) -> None:
    roster_file = tmp_path / "roster.csv"
    roster_file.write_text("student_id,name,canvas_id,sis_user_id,sis_login_id,section,email\n"
                           "alice,Alice A,101,S1,alice@u,Sec 1,alice@u.edu\n"
                           "zoe,Zoe Z,109,S9,zoe@u,Sec 2,zoe@u.edu\n", encoding="utf-8")
    roster = read_roster(roster_file)
    records = [_record("alice", 7, None), _record("=HYPERLINK(\"http://x\")", 3, None)]
    rows = list(csv.reader(io.StringIO(exports.canvas_csv(records, roster))))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", LAB01.lab_id]
    assert rows[1] == ["Points Possible", "", "", "", "", "10.0"]
    by_name = {r[0]: r for r in rows[2:]}
    assert by_name["Alice A"] == ["Alice A", "101", "S1", "alice@u", "Sec 1", "7.0"]
    assert by_name["Zoe Z"][-1] == ""  # on the roster, nothing handed in: left blank, not a zero
    assert "'=HYPERLINK(\"http://x\")" in by_name  # a formula is defused


def test_moodle_export_has_an_id_column_and_a_grade_and_feedback_per_lab(tmp_path: Path) -> None:
    roster = {"alice": Student("alice", name="Alice A", email="alice@u.edu", idnumber="A-1")}
    text = exports.moodle_csv([_record("alice", 7, None), _record("alice", 9, None, lab="02_tuning")], roster)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [{"ID number": "A-1", "Email address": "alice@u.edu", "Full name": "Alice A",
                     LAB01.lab_id: "7.0", f"{LAB01.lab_id} feedback": "7 / 10",
                     "02_tuning": "9.0", "02_tuning feedback": "9 / 10"}]


def test_gradescope_results_follow_its_format() -> None:
    record = {**_record("alice", 7, None), "errors": ["todo3 raised ValueError: no"]}
    result = exports.gradescope_result(record)
    assert set(result) == {"score", "execution_time", "output", "tests"}
    assert result["tests"][1] == {"name": "check_todo3_metrics", "score": 3.0, "max_score": 6.0,
                                  "status": "failed", "output": "metrics"}
    assert result["score"] == 7.0 and result["execution_time"] == 12.5 and "ValueError" in result["output"]


@pytest.mark.parametrize("bad", ["student_id\n../x\n", "student_id\nalice\nalice\n", "name\nAlice\n", "student_id\n"])
def test_a_bad_roster_is_one_clear_line(tmp_path: Path, bad: str) -> None:
    (tmp_path / "r.csv").write_text(bad, encoding="utf-8")
    with pytest.raises(ValueError, match=r"r\.csv"):
        read_roster(tmp_path / "r.csv")


# --- Regrades -----------------------------------------------------------------------------------


def _fake_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, students: tuple[str, ...] = ("alice", "bob")) \
        -> tuple[Path, Path, dict[str, Any]]:
    """A class graded in-process by a fake grader whose scores ``state`` decides: ``fixed``
    stands for a check corrected by the instructor between two gradings."""
    from autograder import grade, hidden

    state: dict[str, Any] = {"fixed": False, "graded": [], "inputs": []}

    def fake_grade_notebook(path: Path, *args: Any, **kwargs: Any) -> grade.GradeResult:
        state["graded"].append(path.parts[-3])
        state["inputs"].append(kwargs.get("inputs"))
        first = grade.CheckOutcome("check_todo1_experiment", 4.0 if state["fixed"] else 0.0, 4.0, state["fixed"], "1")
        third = grade.CheckOutcome("check_todo3_metrics", 0.0 if state["fixed"] else 6.0, 6.0, not state["fixed"], "3")
        return grade.GradeResult(str(path), LAB01.lab_id, first.points + third.points, 10.0, [first, third])

    monkeypatch.setattr(grade, "grade_notebook", fake_grade_notebook)
    monkeypatch.setattr(hidden, "hidden_inputs", lambda seed: None)
    monkeypatch.setattr(variants, "variant_dir", lambda variant: Path(f"/variants/{variant}"))
    monkeypatch.setattr(classroom, "run_jobs", lambda todo, jobs, progress=True: [classroom.grade_one(j) for j in todo])
    source = tmp_path / "in"
    for student in students:
        folder = source / "submitted" / student / LAB01.lab_id
        folder.mkdir(parents=True)
        (folder / f"{LAB01.lab_id}.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                                  "nbformat_minor": 5, "who": student}))
    return source, tmp_path / "out", state


def _scores(out: Path) -> dict[str, tuple[str, ...]]:
    with open(out / "grades.csv", newline="") as f:
        return {r["student_id"]: (r["score"], r["check_todo1_experiment"], r["check_todo3_metrics"], r["regrades"])
                for r in csv.DictReader(f)}


def test_regrading_one_students_lab_replaces_their_grade_and_logs_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    source, out, state = _fake_class(tmp_path, monkeypatch)
    classroom.grade_class(source, out, jobs=1, progress=False)
    assert _scores(out) == {"alice": ("6.0", "0.0", "6.0", "0"), "bob": ("6.0", "0.0", "6.0", "0")}
    state["fixed"] = True
    entries = regrade.regrade(source, out, LAB01.lab_id, "kernel died under load", student="bob", who="prof",
                              progress=False)
    assert state["graded"] == ["alice", "bob", "bob"]
    assert [(e["student_id"], e["who"], e["why"], e["old_score"], e["new_score"], e["check"]) for e in entries] == \
        [("bob", "prof", "kernel died under load", 6.0, 4.0, None)]
    assert _scores(out) == {"alice": ("6.0", "0.0", "6.0", "0"), "bob": ("4.0", "4.0", "0.0", "1")}
    feedback = (out / "feedback" / "bob" / f"{LAB01.lab_id}.md").read_text()
    assert "## Regrades" in feedback and "| prof | kernel died under load | all checks | 6 | 4 |" in feedback
    assert "Regrades" not in (out / "feedback" / "alice" / f"{LAB01.lab_id}.md").read_text()
    assert regrade.read_log(out) == entries  # the log on disk is what was returned
    again = classroom.grade_class(source, out, jobs=1, progress=False)  # a resume keeps the regrade
    assert again.graded_now == 0 and _scores(out)["bob"] == ("4.0", "4.0", "0.0", "1")


def test_regrading_one_check_for_the_class_moves_only_that_check(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source, out, state = _fake_class(tmp_path, monkeypatch)
    classroom.grade_class(source, out, jobs=1, progress=False)
    state["fixed"] = True  # both checks now come out differently; only the chosen one may move
    entries = regrade.regrade(source, out, LAB01.lab_id, "check 1 fixed", check="check_todo1_experiment",
                              who="prof", progress=False)
    assert sorted((e["student_id"], e["old_score"], e["new_score"], e["check"]) for e in entries) == \
        [("alice", 6.0, 10.0, "check_todo1_experiment"), ("bob", 6.0, 10.0, "check_todo1_experiment")]
    assert _scores(out) == {"alice": ("10.0", "4.0", "6.0", "1"), "bob": ("10.0", "4.0", "6.0", "1")}


def test_a_regrade_needs_a_known_check_a_submission_and_a_reason(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source, out, _ = _fake_class(tmp_path, monkeypatch)
    classroom.grade_class(source, out, jobs=1, progress=False)
    with pytest.raises(ValueError, match="no check check_nope"):
        regrade.regrade(source, out, LAB01.lab_id, "x", check="check_nope", progress=False)
    with pytest.raises(ValueError, match="no submission of mallory"):
        regrade.regrade(source, out, LAB01.lab_id, "x", student="mallory", progress=False)
    with pytest.raises(ValueError, match="needs a reason"):
        regrade.regrade(source, out, LAB01.lab_id, "  ", student="bob", progress=False)
    assert regrade.read_log(out) == []


def test_a_damaged_log_line_is_skipped_not_lost(tmp_path: Path) -> None:
    regrade.append_log(tmp_path, [{"student_id": "a", "lab": "l", "when": "w", "who": "p", "why": "y",
                                   "old_score": 1, "new_score": 2}])
    with open(tmp_path / regrade.LOG, "a") as f:
        f.write("{not json\n")
    regrade.append_log(tmp_path, [{"student_id": "b", "lab": "l", "when": "w", "who": "p", "why": "y",
                                   "old_score": 1, "new_score": 3}])
    assert [e["student_id"] for e in regrade.read_log(tmp_path)] == ["a", "b"]
    assert "{not json" in (tmp_path / regrade.LOG).read_text()


# --- Variants -----------------------------------------------------------------------------------


def test_variants_are_keyed_by_the_secret(tmp_path: Path) -> None:
    variants.create_secret(tmp_path / "s")
    secret = variants.read_secret(tmp_path / "s")
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o600
    with pytest.raises(FileExistsError):
        variants.create_secret(tmp_path / "s")  # never replaced: every variant would change
    alice, bob = variants.variant_seed(secret, "alice"), variants.variant_seed(secret, "bob")
    assert alice != bob and alice == variants.variant_seed(secret, "alice")
    assert variants.variant_seed(os.urandom(32), "alice") != alice  # another secret, another variant
    # What a student knows (their id, their seed, the public derivation) without the key gives
    # no other student's seed: the unkeyed hash and the key-less HMAC are not it.
    import hashlib
    import hmac

    def as_seed(digest: bytes) -> int:
        return int.from_bytes(digest[:8], "big") % (2**31 - 10_000) + 10_000

    guesses = {as_seed(hashlib.sha256(b"bob").digest()), as_seed(hmac.new(b"", b"bob", hashlib.sha256).digest()),
               as_seed(hmac.new(str(alice).encode(), b"bob", hashlib.sha256).digest()), alice}
    assert bob not in guesses


@pytest.mark.parametrize("text", ["", "zz" * 32, "ab" * 8])
def test_a_bad_secret_is_one_clear_line(tmp_path: Path, text: str) -> None:
    (tmp_path / "s").write_text(text)
    with pytest.raises(ValueError, match="not an instructor secret"):
        variants.read_secret(tmp_path / "s")
    with pytest.raises(ValueError, match="no instructor secret"):
        variants.read_secret(tmp_path / "missing")


def test_each_student_bundle_holds_their_own_variant_and_nothing_of_the_secret(tmp_path: Path) -> None:
    from autograder.release import build_student_bundles

    secret = os.urandom(32)
    paths = build_student_bundles(tmp_path, ["alice", "bob"], secret, [LAB01.lab_id], progress=False)
    members = {p.stem: {i.filename.split("/", 1)[1]: zipfile.ZipFile(p).read(i) for i in zipfile.ZipFile(p).infolist()}
               for p in paths}
    alice, bob = members["alice"], members["bob"]
    seeds = {s: variants.variant_seed(secret, s) for s in ("alice", "bob")}
    for name, own in members.items():
        blob = b"\n".join(own.values())
        assert secret not in blob and secret.hex().encode() not in blob
        other = "bob" if name == "alice" else "alice"
        assert str(seeds[other]).encode() not in blob
        assert f"SEED = {variants.notebook_seed(seeds[name])}".encode() in own[f"labs/{LAB01.lab_id}/{LAB01.lab_id}.ipynb"]
        expected = json.loads(own[f"autograder/kit/expected/{LAB01.lab_id}.json"])
        # The self-checks use shipped values only when they were made for the notebook's own
        # parameters (checking.load_expected): every one of them must match the bundle's notebook.
        notebook = nbformat.reads(own[f"labs/{LAB01.lab_id}/{LAB01.lab_id}.ipynb"].decode(), as_version=4)
        params = parameters_of(notebook)
        assert expected["params"] and all(params[k] == v for k, v in expected["params"].items())
        assert expected["params"]["SEED"] == variants.notebook_seed(seeds[name])
        assert not any(n.startswith(("solutions/", "autograder/references/")) for n in own)
    assert alice["data/devops_metrics.csv"] != bob["data/devops_metrics.csv"]
    # Same ground-truth structure: the same files and columns, the same number of rows.
    assert {n for n in alice if n.startswith("data/")} == {n for n in bob if n.startswith("data/")}
    heads = [m["data/devops_metrics.csv"].decode().splitlines() for m in (alice, bob)]
    assert heads[0][0] == heads[1][0] and len(heads[0]) == len(heads[1])
    assert json.loads(alice[f"autograder/kit/expected/{LAB01.lab_id}.json"])["expected"]["metrics"] != \
        json.loads(bob[f"autograder/kit/expected/{LAB01.lab_id}.json"])["expected"]["metrics"]


def test_with_variants_each_submission_runs_on_its_students_data_and_a_hidden_seed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, out, state = _fake_class(tmp_path, monkeypatch)
    secret = os.urandom(32)
    classroom.grade_class(source, out, jobs=1, progress=False, options=classroom.ClassOptions(secret=secret))
    seen = dict(zip(state["graded"], state["inputs"], strict=True))
    for student in ("alice", "bob"):
        assert seen[student].data_dir == Path(f"/variants/{variants.variant_seed(secret, student)}")
    assert seen["alice"].seed != seen["bob"].seed  # the hidden part, per submission
    assert secret.hex() not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match="another instructor secret"):
        classroom.grade_class(source, out, jobs=1, progress=False, options=classroom.ClassOptions(secret=os.urandom(32)))
    with pytest.raises(ValueError, match="with another instructor secret"):
        classroom.grade_class(source, out, jobs=1, progress=False)


# --- Command line -------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autograder", *args], capture_output=True, text=True, timeout=120)


def test_the_cli_says_in_one_line_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "policy.csv").write_text("lab,due\nx,y\n")
    for args, message in [
        (("class", str(tmp_path / "sub"), "--out", str(tmp_path / "o"), "--late-policy", str(tmp_path / "policy.csv"),
          "--no-sandbox"), "needs the columns"),
        (("release", "--roster", str(tmp_path / "policy.csv")), "need both --roster and --variants"),
        (("variants", "--init", str(tmp_path / "policy.csv")), "already there"),
        (("similarity", str(tmp_path / "nope"), "--out", str(tmp_path / "o")), "not a folder or a zip"),
        (("export", str(tmp_path / "sub"), "--out", str(tmp_path / "never-graded")), "no graded class here"),
    ]:
        proc = _cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_output_folders_are_named_safely_whatever_a_record_says(tmp_path: Path) -> None:
    record = {**_record("../../escape", 5, None), "lab": ".."}
    classreport.write_outputs([record], tmp_path / "out")
    written = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.startswith("out/") for p in written), written
    assert (tmp_path / "out" / "gradescope" / ".._.._escape" / "_" / "results.json").is_file()


def test_export_and_regrade_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from autograder import cli

    source, out, state = _fake_class(tmp_path, monkeypatch)
    (tmp_path / "roster.csv").write_text("student_id,name,canvas_id\nalice,Alice A,101\nbob,Bob B,102\n")
    (tmp_path / "late.csv").write_text(f"lab,due,penalty_per_day\n*,{DUE.isoformat()},0.5\n")
    assert cli.main(["class", str(source), "--out", str(out), "--no-sandbox", "--jobs", "1"]) == 0
    assert cli.main(["export", str(source), "--out", str(out), "--roster", str(tmp_path / "roster.csv"),
                     "--late-policy", str(tmp_path / "late.csv")]) == 0
    canvas = list(csv.reader(io.StringIO((out / "canvas.csv").read_text())))
    assert [r[:2] for r in canvas[2:]] == [["Alice A", "101"], ["Bob B", "102"]]
    state["fixed"] = True
    assert cli.main(["regrade", str(source), "--out", str(out), "--lab", LAB01.lab_id, "--student", "bob",
                     "--why", "wrong data mounted", "--by", "ta-2", "--no-sandbox"]) == 0
    assert "bob 01_tracking: 6.0 -> 4.0" in capsys.readouterr().out
    assert [(e["who"], e["why"]) for e in regrade.read_log(out)] == [("ta-2", "wrong data mounted")]
    # The regrade applied the late policy the class was last exported with: it is kept in OUT.
    with open(out / "grades.csv", newline="") as f:
        assert "final_score" in next(csv.DictReader(f))
    assert cli.main(["regrade", str(source), "--out", str(out), "--lab", LAB01.lab_id, "--check", "nope",
                     "--why", "x", "--no-sandbox"]) == 2
    assert "no check nope" in capsys.readouterr().err
