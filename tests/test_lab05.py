"""The grader on Lab 05 (CI/CD for ML): full marks, zero, partial credit, the typical mistakes
(each costing exactly the points of its task), and hostile submissions; plus, without a
notebook, the workflow run by the course's runner with probes and its judgment, and the
isolation of the sandboxed processes that run the student's programs (batches, workflow).

A grading executes the notebook (its CI steps are real processes) and then runs the
student's programs again in the sandbox on the grader's own cases: about a minute each.
Several mistakes share one notebook where their tasks are independent.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from autograder import course, hidden, sandbox
from autograder.course import LABS
from autograder.kit import lab05, lab05_run
from autograder.notebook import grade_id
from autograder.references import lab05 as references
from tests.conftest import grading, make_submission, partial_todos, points, solution_code

LAB = LABS["05_cicd"]
MAX = {
    "check_todo1_data": 2,
    "check_todo2_gate": 3,
    "check_todo3_tests": 2,
    "check_todo4_promote": 2,
    "check_todo5_workflow": 1,
}
ALL = {1, 2, 3, 4, 5}
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
# A promotion that checks nothing.
PROMOTES_ANYTHING = answer("todo4", "    if missing:\n", "    if False:\n")
# A directional test that cannot fail: it compares the predictions with themselves.
TEST_CANNOT_FAIL = answer(
    "todo3",
    "    assert (predict(model, hotter) >= predict(model, TYPICAL) - TOLERANCE_MS).all()",
    "    assert (predict(model, TYPICAL) >= predict(model, TYPICAL) - TOLERANCE_MS).all()",
)
# Three jobs without `needs`: they run in parallel, the promotion does not wait for the gate.
PARALLEL_JOBS = answer("todo5", "    needs: checks\n", "").replace("    needs: gate\n", "")

# --- Hostile answers ------------------------------------------------------------------------

# TODO 1 decided by the file's name: it rejects batches/batch_bad.csv (naming every column)
# and accepts anything else, so the notebook's own steps look right.
DATA_BY_NAME = answer(
    "todo1",
    "    problems = validate(df)\n",
    "    problems = [f'{c}: rejected' for c in SCHEMA] if 'bad' in args.batch else []\n",
)
_SHIPPED = json.loads((course.ROOT / "autograder" / "kit" / "expected" / "05_cicd.json").read_text())["expected"]
# TODO 2 with the R² tag a constant copied from a run on the course data: every rule is
# applied, but the figure recorded for the audit is not the one measured.
COPIED_R2 = f"{_SHIPPED['r2']['candidate']:.4f}"  # what the course data gives
GATE_CONSTANTS = answer(
    "todo2",
    'tags = {"validation_passed": "true", "r2": f"{r2:.4f}"',
    f'tags = {{"validation_passed": "true", "r2": "{COPIED_R2}"',
)
# TODO 5 whose steps only echo the commands: the names are all there, nothing runs.
ECHO_WORKFLOW = """%%writefile pipeline/model-ci.yml
name: model-ci
on:
  push:
    branches: [main]
jobs:
  pipeline:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "python -m pytest pipeline/test_model_behaviour.py"
      - run: echo "python pipeline/validate_model.py --model-name m --version 1 --data b.csv"
      - run: echo "python pipeline/promote_model.py --model-name m --version 1 --reason r"
"""


@grading
def test_solution_earns_full_marks(grade) -> None:
    result = graded(grade, make_submission(done=ALL, lab=LAB))
    assert points(result) == MAX, [c.message for c in result.checks]
    assert result.errors == []
    assert "one fault each" in message(result, "check_todo1_data")  # the grader ran the script itself
    assert "each catches its flaw" in message(result, "check_todo3_tests")
    assert "each failure stopped what follows" in message(result, "check_todo5_workflow")


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = graded(grade, make_submission(done=set(), lab=LAB))
    assert (result.score, result.max_score) == (0, 10)
    assert [c.passed for c in result.checks] == [False] * 5
    assert "NotImplementedError" in message(result, "check_todo1_data")
    assert "NotImplementedError" in message(result, "check_todo2_gate")
    assert "test_directional_cpu" in message(result, "check_todo3_tests")
    assert "NotImplementedError" in message(result, "check_todo4_promote")
    assert "TODO 5 is not done yet" in message(result, "check_todo5_workflow")


@grading
def test_mistakes_in_tasks_1_to_4_lose_exactly_their_points(grade) -> None:
    """Four typical mistakes in one notebook (the grader judges each task on its own cases, so
    one does not hide another): a validation blind to missing values, a gate that never fails,
    a test that cannot fail, a promotion that checks nothing. The workflow keeps its point. (A
    workflow with parallel jobs is judged without a notebook, below.)"""
    replace = {"todo1": NO_MISSING_CHECK, "todo2": GATE_NEVER_FAILS, "todo3": TEST_CANNOT_FAIL,
               "todo4": PROMOTES_ANYTHING}
    result = graded(grade, make_submission(done=ALL, replace=replace, lab=LAB))
    assert points(result) == {**dict.fromkeys(MAX, 0), "check_todo5_workflow": 1}, [c.message for c in result.checks]
    assert "accepted a batch with missing values in 'disk_io'" in message(result, "check_todo1_data")
    assert "exit code 0" in message(result, "check_todo2_gate")
    assert "test_directional_cpu passed on a model whose predictions fall as the CPU rises" in message(
        result, "check_todo3_tests")
    assert "lacks the tag validation_passed=true" in message(result, "check_todo4_promote")


@grading
def test_a_promotion_without_a_gate_still_earns_its_points(grade) -> None:
    # TODO 2 not done: no version is validated, so the notebook's promotion refuses both; the
    # grader validates a version itself (in a copy of the store) to see the promotion work.
    result = grade(make_submission(done=partial_todos(LAB), lab=LAB))  # the nbgrader test grades it too
    expected = {k: (v if k in ("check_todo1_data", "check_todo4_promote") else 0) for k, v in MAX.items()}
    assert points(result) == expected, [c.message for c in result.checks]


@grading
def test_answers_that_only_look_right_on_the_course_data_earn_nothing(grade) -> None:
    """A validation that goes by the file's name, a gate whose r2 tag is a constant copied from a
    run on the course data, a workflow whose steps echo the commands: each passes the notebook's
    own steps or a check that looks at names, files and tags; none does the work on the hidden
    inputs, and each loses its task's points (and only those)."""
    replace = {"todo1": DATA_BY_NAME, "todo2": GATE_CONSTANTS, "todo5": ECHO_WORKFLOW}
    result = graded(grade, make_submission(done=ALL, replace=replace, lab=LAB))
    assert points(result) == {**MAX, "check_todo1_data": 0, "check_todo2_gate": 0, "check_todo5_workflow": 0}, [
        c.message for c in result.checks]
    assert "accepted a batch with" in message(result, "check_todo1_data")
    assert "but its R² on the batch is" in message(result, "check_todo2_gate")
    assert "the data validation never runs" in message(result, "check_todo5_workflow")


# --- Without a notebook -----------------------------------------------------------------------

HEAD = """name: model-ci
on: {on}
env:
  MLFLOW_TRACKING_URI: ${{{{ secrets.MLFLOW_TRACKING_URI }}}}
  MODEL_NAME: cicd-response-time
  V: ${{{{ vars.CANDIDATE_VERSION }}}}
  BATCH: ${{{{ vars.BATCH }}}}
jobs:
"""
DATA = 'python pipeline/validate_data.py "$BATCH"'
TESTS = 'MODEL_URI="models:/$MODEL_NAME/$V" python -m pytest pipeline/test_model_behaviour.py'
GATE = 'python pipeline/validate_model.py --model-name "$MODEL_NAME" --version "$V" --data "$BATCH"'
PROMOTE = 'python pipeline/promote_model.py --model-name "$MODEL_NAME" --version "$V" --reason ci'


def one_job(*commands: str, on: str = "push", extra: str = "") -> str:
    """A workflow with one job whose steps run ``commands``, one step each."""
    steps = "".join(f"      - run: {json.dumps(c)}\n{extra if 'validate_model' in c else ''}" for c in commands)
    return HEAD.format(on=on) + "  ci:\n    runs-on: ubuntu-latest\n    steps:\n" + steps


def _judge_workflow(tmp_path: Path, text: str):
    """The judgment of TODO 5 on ``text``, run by the workflow runner with probes (as the grader
    does in the sandbox, here in this process)."""
    (tmp_path / "pipeline").mkdir(exist_ok=True)
    path = tmp_path / lab05.WORKFLOW
    path.write_text(text, encoding="utf-8")
    exp = lab05.expected_from_params({k: "x" for k in lab05.PARAMS}) | {"model_name": "cicd-response-time"}
    exp["workflow_vars"] = wf = lab05.workflow_vars()
    run = lab05_run.probe_run(path, exp["model_name"], wf["version"], wf["batch"], wf["tracking_uri"])
    ev = {"files": {lab05.WORKFLOW: True}, "runs": {"workflow": {"schema": {"code": 0, "output": ""}, "run": run}}}
    return lab05.judge_workflow(ev, exp)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (one_job(" && ".join([DATA, TESTS, GATE, PROMOTE])), None),
        (HEAD.format(on="[push, pull_request]") + "".join(
            f"  {job}:\n" + (f"    needs: [{need}]\n" if need else "") + f"    steps:\n      - run: {json.dumps(cmd)}\n"
            for job, need, cmd in [("data", "", DATA), ("tests", "data", TESTS), ("gate", "tests", GATE),
                                   ("promote", "gate", PROMOTE)]), None),
        (one_job("echo ok", "true"), "the data validation never runs"),
        (one_job(*(f"echo {c}" for c in (DATA, TESTS, GATE, PROMOTE))), "the data validation never runs"),
        (one_job(DATA, TESTS, PROMOTE), "the quality gate never runs"),
        (one_job(DATA, TESTS, GATE + " || true", PROMOTE), "where the quality gate fails, the promotion still runs"),
        (one_job(DATA, TESTS, GATE, PROMOTE, extra="        continue-on-error: true\n"),
         "where the quality gate fails, the promotion still runs"),
        (one_job(DATA, TESTS, f"{GATE} && {PROMOTE} || echo not promoted"), "the run still ends green"),
        (one_job(DATA, TESTS, PROMOTE, GATE), "the promotion runs before the quality gate"),
        (one_job(DATA, TESTS, GATE.replace('"$V"', "3"), PROMOTE), "the gate ran as"),
        (one_job(DATA, TESTS, GATE, PROMOTE).replace("MLFLOW_TRACKING_URI: ${{ secrets.MLFLOW_TRACKING_URI }}",
                                                     "DUMMY: x"), "without MLFLOW_TRACKING_URI"),
        (one_job("pip install -r requirements.txt", DATA, TESTS, GATE, PROMOTE), "if: ${{ !env.ACT }}"),
        (one_job(DATA, on="pull_request"), "does not run on push"),
        ("name: model-ci\n# YOUR CODE HERE\nraise NotImplementedError()\n", "TODO 5 is not done yet"),
    ],
    ids=["one-step", "needs-chain", "echo-ok-true", "echo-commands", "no-gate", "or-true", "continue-on-error",
         "green-on-failure", "wrong-order", "fixed-version", "no-secret", "pip-on-github-only", "no-push",
         "untouched"],
)
def test_the_workflow_run_with_probes_and_its_judgment(tmp_path: Path, text: str, expected: str | None) -> None:
    result = _judge_workflow(tmp_path, text)
    if expected is None:
        assert result.passed, result.message
    else:
        assert not result.passed and expected in result.message, result.message


_PROC_PROBE = """      - shell: python
        run: |
          import os
          ppid, found = os.getppid(), []
          for what, mode in (("fd/1", "wb"), ("mem", "rb"), ("environ", "rb")):
              try:
                  with open(f"/proc/{{ppid}}/{{what}}", mode) as f:
                      f.write(b"forged\\n") if "w" in mode else f.read(64)
                  found.append(what + ":open")
              except OSError:
                  found.append(what + ":denied")
          with open({out!r}, "a") as f:
              f.write(" ".join(found) + "\\n")
          print('{{"schema": {{"code": 0}}, "run": {{"events": ["push"], "scenarios": {{}}}}}}')
"""


def _in_sandbox(tmp_path: Path, text: str) -> tuple[dict, str]:
    """``lab05_run workflow`` on ``text`` inside the sandbox, read as the grader reads it."""
    from autograder.labspec import SandboxRunner

    (tmp_path / "pipeline").mkdir(exist_ok=True)
    (tmp_path / ".tmp").mkdir(exist_ok=True)
    (tmp_path / lab05.WORKFLOW).write_text(text, encoding="utf-8")
    box = sandbox.Sandbox(tmp_path)
    box.prepare()
    runner = SandboxRunner(tmp_path, "sqlite:///unused.db", box)
    nonce, wf = "a" * 32, lab05.workflow_vars()
    job = {"file": lab05.WORKFLOW, "nonce": nonce, "model_name": "cicd-response-time", **wf}
    done = runner.run_kit("autograder.kit.lab05_run", ["workflow"], json.dumps(job).encode())
    return references.workflow_answer(done.stdout, nonce, done.stdout + done.stderr), done.stdout


def in_sandbox(test):
    """A test that runs a kit program inside bubblewrap (no notebook, seconds each): in the slow
    lane, skipped with the reason where bubblewrap is missing."""
    needs_bwrap = pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason="needs bubblewrap")
    return pytest.mark.slow(needs_bwrap(test))


@in_sandbox
def test_a_workflow_cannot_write_or_read_the_runners_answer(tmp_path: Path) -> None:
    """Its steps print a forged answer, try the runner's output, memory and environment through
    /proc (the runner is not dumpable: denied), and otherwise do the work. The grader reads
    the runner's real answer; the judgment is on what really ran."""
    out = tmp_path / "found.txt"
    text = HEAD.format(on="push") + "  ci:\n    steps:\n" + _PROC_PROBE.format(out=str(out)) + "".join(
        f"      - run: {json.dumps(c)}\n" for c in (DATA, TESTS, GATE, PROMOTE))
    answer, stdout = _in_sandbox(tmp_path, text)
    attempts = out.read_text().split()
    assert len(attempts) == 4 * 3 and set(attempts) == {"fd/1:denied", "mem:denied", "environ:denied"}, attempts
    assert "forged\n" not in stdout and stdout.count("a" * 32) == 1, stdout[-2000:]
    scenarios = answer["run"]["scenarios"]
    assert set(scenarios) == set(lab05_run.SCENARIOS) and scenarios["pass"]["status"] == "success"
    assert [r["kind"] for r in scenarios["fail_tests"]["ran"]] == ["data", "tests"]


@in_sandbox
def test_a_workflow_that_kills_the_runner_gets_no_answer_and_no_point(tmp_path: Path) -> None:
    text = one_job(DATA, TESTS, GATE, PROMOTE, 'echo "{}"; kill -9 $PPID')
    answer, _ = _in_sandbox(tmp_path, text)
    assert answer["run"]["error"] == "no_answer"
    ev = {"files": {lab05.WORKFLOW: True}, "runs": {"workflow": answer}}
    exp = lab05.expected_from_params({k: "x" for k in lab05.PARAMS}) | {"workflow_vars": lab05.workflow_vars()}
    result = lab05.judge_workflow(ev, exp)
    assert not result.passed and "gave no answer" in result.message, result.message


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


def _batch_in_sandbox(tmp_path: Path, scripts: dict[str, str], cases: list[list[str]]) -> tuple[list[dict], str]:
    from autograder.labspec import SandboxRunner

    for name, source in scripts.items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    (tmp_path / ".tmp").mkdir(exist_ok=True)
    box = sandbox.Sandbox(tmp_path)
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
    kit = (course.ROOT / "autograder" / "kit" / "lab05.py").read_text(encoding="utf-8")
    assert "mask(" not in kit and "LinearRegression" not in kit and "r2_score" not in kit
    made = references.cases()
    assert set(made["data_cases"]) == {"good", *references.FAULTS}
    assert {spec["must_fail"] for case, spec in made["tests_cases"].items() if case != "candidate"} == set(
        lab05.REQUIRED_TESTS)


def test_the_answers_workflow_with_its_jobs_made_parallel_fails_on_needs(tmp_path: Path) -> None:
    """The master's workflow passes; the same with its ``needs:`` removed (three jobs at once,
    a typical mistake) does not, and the message says what orders jobs."""
    def workflow(cell: str) -> str:
        return cell.split("\n", 1)[1]  # the cell less its %%writefile line

    assert _judge_workflow(tmp_path, workflow(answer("todo5", "name: model-ci", "name: model-ci"))).passed
    result = _judge_workflow(tmp_path, workflow(PARALLEL_JOBS))
    assert not result.passed and "needs:" in result.message, result.message
