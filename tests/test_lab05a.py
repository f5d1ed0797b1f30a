"""The grader on Lab 05a (testing an ML model): full marks, zero, partial credit, the typical
mistakes (each costing exactly the points of its task) and answers that only look right; the
self-checks judge this run of the notebook, not a file an earlier session left; and, without a
notebook, the isolation of the sandboxed batch that runs the student's programs.

A grading executes the notebook (its CI steps are real processes) and then runs the student's
programs again in the sandbox on the grader's own cases: about a minute each. Several mistakes
share one notebook where their tasks are independent.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

from autograder import course, hidden, sandbox
from autograder.course import LABS
from autograder.kit import checking, lab05, lab05a, labkit
from autograder.notebook import grade_id
from autograder.references import lab05 as references
from tests.conftest import grading, make_submission, partial_todos, points, sandbox_slot, solution_code

LAB = LABS["05a_testing"]
MAX = {"check_todo1_data": 2, "check_todo2_gate": 3, "check_todo3_tests": 2}
ALL = {1, 2, 3}
SEED = 12345  # one hidden variant for every grading here: made once, then cached


def answer(todo: str, old: str, new: str) -> str:
    """The master's answer to ``todo`` with ``old`` replaced by ``new`` (a student's variant)."""
    master = {grade_id(c): c for c in nbformat.read(LAB.master, as_version=4).cells}
    source = solution_code(master[todo])
    assert old in source, f"{old!r} not in the answer to {todo}"
    return source.replace(old, new)


def message(result, check_id: str) -> str:
    return next(c.message for c in result.checks if c.id == check_id)


def graded(grade, nb):
    return grade(nb, inputs=hidden.hidden_inputs(SEED))


# A validation blind to missing values: the range check alone does not see NaN.
NO_MISSING_CHECK = answer(
    "todo1",
    '        missing = int(values.isna().sum())\n        if missing:\n            problems.append(f"{column}: {missing} missing value(s)")\n',
    "",
)
# A gate that prints FAILED but exits with 0: the pipeline would go on.
GATE_NEVER_FAILS = answer(
    "todo2",
    '            print(f"FAILED: {reason}")\n        return 1',
    '            print(f"FAILED: {reason}")\n        return 0',
)
# A directional test that cannot fail: it compares the predictions with themselves.
TEST_CANNOT_FAIL = answer(
    "todo3",
    "    assert (predict(model, hotter) >= predict(model, TYPICAL) - TOLERANCE_MS).all()",
    "    assert (predict(model, TYPICAL) >= predict(model, TYPICAL) - TOLERANCE_MS).all()",
)

# --- Hostile answers ------------------------------------------------------------------------

# TODO 1 decided by the file's name: it rejects batches/batch_bad.csv (naming every column)
# and accepts anything else, so the notebook's own steps look right.
DATA_BY_NAME = answer(
    "todo1",
    "    problems = validate(df)\n",
    "    problems = [f'{c}: rejected' for c in SCHEMA] if 'bad' in args.batch else []\n",
)
_SHIPPED = json.loads((course.ROOT / "autograder" / "kit" / "expected" / "05a_testing.json").read_text())["expected"]
# TODO 2 with the R² tag a constant copied from a run on the course data: every rule is
# applied, but the figure recorded for the audit is not the one measured.
COPIED_R2 = f"{_SHIPPED['r2']['candidate']:.4f}"  # what the course data gives
GATE_CONSTANTS = answer(
    "todo2",
    'tags = {"validation_passed": "true", "r2": f"{r2:.4f}"',
    f'tags = {{"validation_passed": "true", "r2": "{COPIED_R2}"',
)


@grading
def test_solution_earns_full_marks(grade) -> None:
    result = graded(grade, make_submission(done=ALL, lab=LAB))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []
    assert "one fault each" in message(result, "check_todo1_data")  # the grader ran the script itself
    assert "each catches its flaw" in message(result, "check_todo3_tests")


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = graded(grade, make_submission(done=set(), lab=LAB))
    assert (result.score, result.max_score) == (0, 7)
    assert [c.passed for c in result.checks] == [False] * 3
    assert "NotImplementedError" in message(result, "check_todo1_data")
    assert "NotImplementedError" in message(result, "check_todo2_gate")
    assert "test_directional_cpu" in message(result, "check_todo3_tests")


@grading
def test_a_partial_notebook_earns_the_points_of_its_done_tasks(grade) -> None:
    # The nbgrader test grades the same notebook (shared, graded once per session).
    done = partial_todos(LAB)
    result = grade(make_submission(done=done, lab=LAB))
    expected = {k: (v if int(k[len("check_todo")]) in done else 0) for k, v in MAX.items()}
    assert 0 < sum(expected.values()) < sum(MAX.values())
    assert points(result) == expected, [c.message for c in result.checks]


@grading
def test_mistakes_lose_exactly_their_points(grade) -> None:
    """Typical mistakes in one notebook (the grader judges each task on its own cases, so one
    does not hide another): a validation blind to missing values, a gate that never fails, a
    test that cannot fail."""
    replace = {"todo1": NO_MISSING_CHECK, "todo2": GATE_NEVER_FAILS, "todo3": TEST_CANNOT_FAIL}
    result = graded(grade, make_submission(done=ALL, replace=replace, lab=LAB))
    assert points(result) == dict.fromkeys(MAX, 0), [c.message for c in result.checks]
    assert "accepted a batch with missing values in 'disk_io'" in message(result, "check_todo1_data")
    assert "exit code 0" in message(result, "check_todo2_gate")
    assert "test_directional_cpu passed on a model whose predictions fall as the CPU rises" in message(
        result, "check_todo3_tests")


@grading
def test_answers_that_only_look_right_on_the_course_data_earn_nothing(grade) -> None:
    """A validation that goes by the file's name and a gate whose r2 tag is a constant copied from
    a run on the course data: each passes the notebook's own steps or a check that looks at names
    and tags; neither does the work on the hidden inputs, and each loses its task's points (and
    only those)."""
    replace = {"todo1": DATA_BY_NAME, "todo2": GATE_CONSTANTS}
    result = graded(grade, make_submission(done=ALL, replace=replace, lab=LAB))
    assert points(result) == {**MAX, "check_todo1_data": 0, "check_todo2_gate": 0}, [
        c.message for c in result.checks]
    assert "accepted a batch with" in message(result, "check_todo1_data")
    assert "but its R² on the batch is" in message(result, "check_todo2_gate")


# --- This run of the notebook ---------------------------------------------------------------

PARAMS = {"EXPERIMENT_NAME": "lab05-cicd", "CI_EXPERIMENT": "lab05-ci-log", "MODEL_NAME": "cicd-response-time",
          "CHAMPION_RUN": "rf-champion", "POOR_RUN": "linear-quickfix", "CANDIDATE_RUN": "rf-retrained"}


def _record_steps(uri: str) -> None:
    """The two steps the cell after TODO 1 records: the good batch accepted, the bad one rejected
    with every broken column named (what ``run_step`` logs)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(PARAMS["CI_EXPERIMENT"])
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(PARAMS["CI_EXPERIMENT"])
    steps = [("batch_no_drift.csv", 0, "ACCEPTED"),
             ("batches/batch_bad.csv", 1, "\n".join(f"  - {c}: wrong" for c in lab05.BAD_BATCH_FAULTS))]
    for batch, code, output in steps:
        tags = {"ci.command": f"{lab05.DATA_SCRIPT} {batch}", "ci.env": "{}", "ci.exit_code": str(code)}
        run_id = client.create_run(experiment_id, tags=tags, run_name="validate").info.run_id
        client.log_text(run_id, output, "output.txt")
        client.set_terminated(run_id, "FINISHED" if code == 0 else "FAILED")


def _self_check_data(uri: str):
    ev = lab05a.evidence(uri, PARAMS)
    ev["runs"] = lab05.history_runs(ev, PARAMS)
    return lab05.judge_data(ev, lab05a.expected_from_params(PARAMS))


def test_a_self_check_judges_this_session_not_a_file_an_earlier_one_left(tmp_path: Path, monkeypatch) -> None:
    """A student reopens the lab and runs the cell after TODO 1 without its TODO cell: the file
    on disk is an earlier session's, and the check says so. Written in this session and run
    after that, it passes; written again after its steps ran, those steps no longer count."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipeline").mkdir()
    script = tmp_path / lab05.DATA_SCRIPT
    script.write_text("# an earlier session's answer\n", encoding="utf-8")
    yesterday = time.time() - 86_400
    os.utime(script, (yesterday, yesterday))
    uri = labkit.sqlite_uri(tmp_path / "mlflow.db")
    checking.end_session()
    checking.start_session(uri)
    try:
        _record_steps(uri)  # the cell after TODO 1, run on yesterday's file
        result = _self_check_data(uri)
        assert not result.passed and "written before this run of the notebook" in result.message, result.message
        assert "TODO 1 cell" in result.message

        time.sleep(0.02)
        script.write_text("# this session's answer\n", encoding="utf-8")  # the TODO 1 cell
        time.sleep(0.02)
        _record_steps(uri)  # the cell after it
        assert _self_check_data(uri).passed

        time.sleep(0.02)
        script.write_text("# edited, its steps not run again\n", encoding="utf-8")
        result = _self_check_data(uri)
        assert not result.passed and "since its file was last written" in result.message, result.message
    finally:
        checking.end_session()


# --- Without a notebook -----------------------------------------------------------------------

# A case that leaves a daemon behind, which writes into every output it can open and reads every
# memory it can, for as long as the next case runs.
_DAEMON = """import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in (0, 1, 2):
            os.close(fd)
        end = time.time() + 20
        while time.time() < end:
            for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
                for what, mode in (("fd/1", "w"), ("mem", "rb")):
                    try:
                        with open(f"/proc/{pid}/{what}", mode) as f:
                            f.write("FORGED\\n") if mode == "w" else f.read(1)
                        with open("leak.txt", "a") as f:
                            f.write(f"{pid}:{what}\\n")
                    except OSError:
                        pass
            with open("alive.txt", "a") as f:
                f.write("alive\\n")
            time.sleep(0.05)
        os._exit(0)
    os._exit(0)
print("left a daemon")
"""
_PROBE_PARENT = """import os
found = []
for what, mode in (("fd/1", "w"), ("mem", "rb"), ("environ", "rb")):
    try:
        open(f"/proc/{os.getppid()}/{what}", mode).close()
        found.append(what + ":open")
    except OSError:
        found.append(what + ":denied")
print(" ".join(found))
"""


def in_sandbox(test):
    """A test that runs a kit program inside bubblewrap (no notebook, seconds each): in the slow
    lane, skipped with the reason where bubblewrap is missing."""
    needs_bwrap = pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason="needs bubblewrap")
    return pytest.mark.slow(needs_bwrap(test))


def _batch_in_sandbox(tmp_path: Path, scripts: dict[str, str], cases: list[list[str]]) -> tuple[list[dict], str]:
    from autograder.labspec import SandboxRunner

    for name, source in scripts.items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    (tmp_path / ".tmp").mkdir(exist_ok=True)
    box = sandbox.Sandbox(tmp_path, slot=sandbox_slot())
    box.prepare()
    nonce = "b" * 32
    job = {"nonce": nonce, "cases": [{"args": args} for args in cases]}
    done = SandboxRunner(tmp_path, "sqlite:///unused.db", box).start_kit("autograder.kit.lab05_run", ["batch"]).finish(
        json.dumps(job).encode(), 300)
    return references.batch_answer(done.stdout, nonce, len(cases), done.stderr), done.stdout


@in_sandbox
def test_cases_of_a_batch_cannot_reach_each_others_results(tmp_path: Path) -> None:
    """Cases share one sandboxed process that imported MLflow once, so that Lab 05's ~20 programs
    cost 4 sandboxes, not 20: a daemon left by one case is killed before the next starts (it
    would otherwise write into the next case's output); no case can open the batch process's
    output or memory; each exit code is the case's own."""
    slow = ("import os, time\n"
            "def alive():\n    return open('alive.txt').read().count('alive') if os.path.exists('alive.txt') else 0\n"
            "before = alive()\ntime.sleep(2)\nprint('daemon wrote', alive() - before)\n")
    results, stdout = _batch_in_sandbox(tmp_path, {"daemon.py": _DAEMON, "slow.py": slow, "parent.py": _PROBE_PARENT,
                                                   "exit3.py": "raise SystemExit(3)\n"},
                                        [["daemon.py"], ["slow.py"], ["parent.py"], ["exit3.py"]])
    assert [r["code"] for r in results] == [0, 0, 0, 3], results
    assert results[1]["output"] == "daemon wrote 0\n", results[1]  # it was gone
    assert results[2]["output"].split() == ["fd/1:denied", "mem:denied", "environ:denied"], results[2]
    assert "FORGED" not in stdout and not (tmp_path / "leak.txt").exists()


@in_sandbox
def test_a_case_that_kills_the_batch_leaves_every_case_unfinished(tmp_path: Path) -> None:
    kill = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
    results, _ = _batch_in_sandbox(tmp_path, {"ok.py": "print('fine')\n", "kill.py": kill},
                                   [["ok.py"], ["kill.py"], ["ok.py"]])
    assert [r["code"] for r in results] == [None, None, None]
    rec = {"code": results[0]["code"], "output": results[0]["output"]}
    problem = lab05._program_problem(rec, "validate_data.py", 1)
    assert problem is not None and "did not finish" in problem.message


def test_pytest_results_are_read_from_the_verbose_report() -> None:
    output = ("pipeline/t.py::test_a PASSED [ 50%]\npipeline/t.py::test_b FAILED [100%]\n"
              "pipeline/t.py::test_b PASSED\n")
    assert lab05.pytest_results(output) == {"test_a": "passed", "test_b": "failed"}


def test_the_kit_holds_no_grader_case_and_the_references_make_them() -> None:
    for module in ("lab05.py", "lab05a.py", "lab05b.py"):
        kit = (course.ROOT / "autograder" / "kit" / module).read_text(encoding="utf-8")
        assert "mask(" not in kit and "LinearRegression" not in kit and "r2_score" not in kit, module
    made = references.cases()
    assert set(made["data_cases"]) == {"good", *references.FAULTS}
    assert {spec["must_fail"] for case, spec in made["tests_cases"].items() if case != "candidate"} == set(
        lab05.REQUIRED_TESTS)
