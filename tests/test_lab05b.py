"""The grader on Lab 05b (the CI/CD pipeline): full marks, zero, partial credit, the typical
mistakes; Lab 05a's programs or their stand-ins; and, without a notebook, the workflow run by the
course's runner with probes and its judgment, and the isolation of the sandboxed process that
runs it.

A grading executes the notebook (its CI steps and workflow are real processes) and then runs the
promotion again in the sandbox on the grader's own cases, and the workflow with probes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import hidden, sandbox
from autograder.course import LABS
from autograder.kit import lab05, lab05_run, lab05b
from autograder.notebook import grade_id
from autograder.references import lab05 as references
from tests.conftest import grading, make_submission, partial_todos, points, sandbox_slot, solution_code

LAB = LABS["05b_pipeline"]
MAX = {"check_todo1_promote": 2, "check_todo2_workflow": 1}
ALL = {1, 2}
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


# A promotion that checks nothing.
PROMOTES_ANYTHING = answer("todo1", "    if missing:\n", "    if False:\n")
# Two jobs without `needs`: they run in parallel, the promotion does not wait for the gate.
PARALLEL_JOBS = answer("todo2", "    needs: checks\n", "")
# TODO 2 whose steps only echo the commands: the names are all there, nothing runs.
ECHO_WORKFLOW = answer("todo2", "jobs:", "jobs:").split("jobs:")[0] + """jobs:
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
    assert "refused version" in message(result, "check_todo1_promote")
    assert "each failure stopped what follows" in message(result, "check_todo2_workflow")


@grading
def test_untouched_student_notebook_earns_zero_with_a_message_per_todo(grade) -> None:
    result = graded(grade, make_submission(done=set(), lab=LAB))
    assert (result.score, result.max_score) == (0, 3)
    assert "NotImplementedError" in message(result, "check_todo1_promote")
    assert "TODO 2 is not done yet" in message(result, "check_todo2_workflow")


@grading
def test_a_workflow_without_a_promotion_still_earns_its_point(grade) -> None:
    """TODO 1 not done: the workflow's promotion step fails in the notebook, but the workflow is
    judged on what its steps ran (with probes), so it keeps its point. The nbgrader test grades
    the same notebook (shared, graded once per session)."""
    done = partial_todos(LAB)
    assert done == {2}
    result = grade(make_submission(done=done, lab=LAB))
    assert points(result) == {"check_todo1_promote": 0, "check_todo2_workflow": 1}, [c.message for c in result.checks]


@grading
def test_mistakes_lose_exactly_their_points(grade) -> None:
    """A promotion that checks nothing, and a workflow whose steps echo the commands (the names are
    all there; nothing runs): each loses its task's points, with a message that says why."""
    replace = {"todo1": PROMOTES_ANYTHING, "todo2": ECHO_WORKFLOW}
    result = graded(grade, make_submission(done=ALL, replace=replace, lab=LAB))
    assert points(result) == dict.fromkeys(MAX, 0), [c.message for c in result.checks]
    assert "lacks the tag validation_passed=true" in message(result, "check_todo1_promote")
    assert "the data validation never runs" in message(result, "check_todo2_workflow")


# --- Lab 05a's programs -------------------------------------------------------------------------


def test_lab05a_programs_are_the_students_when_done_else_stand_ins_that_pass_or_fail_on_cue(
        tmp_path: Path, monkeypatch) -> None:
    """The set-up copies a finished Lab 05a program and replaces an unfinished one (nbgrader's stub)
    or a missing one with a stand-in; the stand-ins reject the listed batch and pass only the
    listed version."""
    lab05a = tmp_path / "05a_testing"
    (lab05a / "pipeline").mkdir(parents=True)
    (lab05a / lab05.DATA_SCRIPT).write_text("print('mine')\n", encoding="utf-8")
    (lab05a / lab05.GATE_SCRIPT).write_text("# YOUR CODE HERE\nraise NotImplementedError()\n", encoding="utf-8")
    here = tmp_path / "05b_pipeline"
    here.mkdir()
    monkeypatch.chdir(here)
    found = lab05b.pipeline_programs(Path("..") / "05a_testing", ["7"], ["batches/batch_bad.csv"])
    assert found[lab05.DATA_SCRIPT].startswith("yours, copied from ../05a_testing/pipeline/validate_data.py")
    assert "stand-in" in found[lab05.GATE_SCRIPT] and "stand-in" in found[lab05.TEST_FILE]
    assert (here / lab05.DATA_SCRIPT).read_text() == "print('mine')\n"

    def run(*args: str) -> int:
        return subprocess.run([sys.executable, lab05.GATE_SCRIPT, *args], capture_output=True).returncode

    assert run("--model-name", "m", "--version", "7", "--data", "b.csv") == 0
    assert run("--model-name", "m", "--version", "3", "--data", "b.csv") == 1
    lab05b.pipeline_programs(tmp_path / "nowhere", [], ["batches/batch_bad.csv"])
    data = [sys.executable, lab05.DATA_SCRIPT]
    assert subprocess.run([*data, "batches/batch_bad.csv"], capture_output=True).returncode == 1
    assert subprocess.run([*data, "/data/production/batch_no_drift.csv"], capture_output=True).returncode == 0


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
    """The judgment of TODO 2 on ``text``, run by the workflow runner with probes (as the grader
    does in the sandbox, here in this process)."""
    (tmp_path / "pipeline").mkdir(exist_ok=True)
    path = tmp_path / lab05.WORKFLOW
    path.write_text(text, encoding="utf-8")
    exp = lab05b.expected_from_params({k: "x" for k in lab05.PARAMS}) | {"model_name": "cicd-response-time"}
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
        ("name: model-ci\n# YOUR CODE HERE\nraise NotImplementedError()\n", "TODO 2 is not done yet"),
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


# A step that claims the four programs ran without running them: it asks the runner as each probe
# would, from a script of its own; it runs a copy of each probe; and it prints the records that
# the probes of an earlier design printed, with the token and the verdict read from the probe files
# (which passed that design's judgment).
_FORGERIES = """      - shell: python
        run: |
          import glob, json, os, shutil, socket, subprocess, sys
          if "LAB05_PROBE_SOCKET" in os.environ:
              for kind in ("data", "tests", "gate", "promote"):
                  with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                      s.connect(os.environ["LAB05_PROBE_SOCKET"])
                      s.sendall(b"?")
                      s.recv(8)
              for path in glob.glob("pipeline/*.py"):
                  shutil.copy(path, "copy.py")
                  subprocess.run([sys.executable, "copy.py", "--version", os.environ["V"]])
          B, V, M = os.environ["BATCH"], os.environ["V"], "cicd-response-time"
          files = {"data": "validate_data.py", "tests": "test_model_behaviour.py", "gate": "validate_model.py",
                   "promote": "promote_model.py"}
          args = {"data": [B], "tests": [], "gate": ["--model-name", M, "--version", V, "--data", B],
                  "promote": ["--model-name", M, "--version", V, "--reason", "ci"]}
          for kind in files:
              text = open("pipeline/" + files[kind]).read()
              token = text.split('"token": ', 1)[-1][1:17]
              env = {"MODEL_URI": f"models:/{M}/{V}", "MLFLOW_TRACKING_URI": "***"}
              print("::lab05-probe::" + json.dumps({"kind": kind, "token": token, "args": args[kind], "env": env}))
              if "exit(1)" in text or "assert False" in text:
                  sys.exit(1)
"""


@pytest.mark.skipif(not lab05_run.asks_the_runner(), reason="probes ask the runner on Linux only")
def test_a_workflow_cannot_claim_a_program_ran_without_running_it(tmp_path: Path) -> None:
    """The probes hold no secret: the runner identifies each caller from the kernel and /proc. A
    step that asks from its own script, runs a copy of a probe, or prints records, is no run."""
    text = HEAD.format(on="push") + "  ci:\n    steps:\n" + _FORGERIES
    result = _judge_workflow(tmp_path, text)
    assert not result.passed and "the data validation never runs" in result.message, result.message
    root = tmp_path / "ws"
    (root / "pipeline").mkdir(parents=True)
    probe = {kind: str(root / rel) for kind, rel in lab05_run.PROBES.items()}
    for path in probe.values():
        Path(path).write_text("", encoding="utf-8")
    found = {
        "python pipeline/validate_data.py b.csv": ("data", ["b.csv"]),
        "python -W ignore pipeline/validate_model.py --version 3": ("gate", ["--version", "3"]),
        "python -m pytest -q pipeline/test_model_behaviour.py": ("tests", ["-q", "pipeline/test_model_behaviour.py"]),
        f"/venv/bin/python /venv/bin/pytest {probe['tests']}": ("tests", [probe["tests"]]),  # the script, as /proc shows it
        "python -c pass pipeline/validate_data.py": None,
        "python copy.py pipeline/validate_data.py": None,
        "python -m pipeline.validate_data": None,
        "python pipeline/test_model_behaviour.py": None,
    }
    for command, expected in found.items():
        assert lab05_run.program_of(command.split(), str(root), root) == expected, command


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
    box = sandbox.Sandbox(tmp_path, slot=sandbox_slot())
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
    exp = lab05b.expected_from_params({k: "x" for k in lab05.PARAMS}) | {"workflow_vars": lab05.workflow_vars()}
    result = lab05.judge_workflow(ev, exp)
    assert not result.passed and "gave no answer" in result.message, result.message


def test_the_answers_workflow_with_its_jobs_made_parallel_fails_on_needs(tmp_path: Path) -> None:
    """The master's workflow passes; the same with its ``needs:`` removed (three jobs at once,
    a typical mistake) does not, and the message says what orders jobs."""
    def workflow(cell: str) -> str:
        return cell.split("\n", 1)[1]  # the cell less its %%writefile line

    assert _judge_workflow(tmp_path, workflow(answer("todo2", "jobs:", "jobs:"))).passed
    result = _judge_workflow(tmp_path, workflow(PARALLEL_JOBS))
    assert not result.passed and "needs:" in result.message, result.message
