"""The local workflow runner (``autograder.kit.workflow``): GitHub's semantics on small workflows.

Each test runs real steps (bash, a few milliseconds each) in a temporary workspace and reads
what happened from the files the steps wrote, not only from the runner's own report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.kit import workflow
from autograder.kit.workflow import WorkflowError, evaluate, run


def write(tmp_path: Path, body: str, name: str = "ci.yml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def steps_log(tmp_path: Path) -> list[str]:
    log = tmp_path / "log"
    return log.read_text(encoding="utf-8").split() if log.exists() else []


def quiet_run(tmp_path: Path, body: str, **options):
    return run(write(tmp_path, body), tmp_path, echo=None, **options)


@pytest.mark.parametrize(("body", "ran", "jobs", "ok"), [
    pytest.param("""
on: push
jobs:
  deploy:
    needs: [test, build]
    steps: [{run: echo deploy >> "$GITHUB_WORKSPACE/log"}]
  test:
    needs: build
    steps: [{run: echo test >> "$GITHUB_WORKSPACE/log"}]
  build:
    steps: [{run: echo build >> "$GITHUB_WORKSPACE/log"}]
""", ["build", "test", "deploy"], [("build", "success"), ("test", "success"), ("deploy", "success")], True,
                 id="jobs-run-after-what-they-need-whatever-the-file-order"),
    pytest.param("""
on: push
jobs:
  a:
    steps:
      - run: exit 3
      - if: failure()
        run: echo on-failure >> log
      - if: always()
        run: echo always >> log
      - if: success()
        run: echo on-success >> log
      - if: ${{ env.ACT == 'true' }}
        run: echo plain-if-after-failure >> log
  b:
    needs: a
    if: failure()
    steps: [{run: echo b-after-failure >> log}]
  c:
    needs: a
    if: always()
    steps: [{run: echo c-always >> log}]
  d:
    needs: a
    steps: [{run: echo d >> log}]
""", ["on-failure", "always", "b-after-failure", "c-always"],
                 [("a", "failure"), ("b", "success"), ("c", "success"), ("d", "skipped")], False,
                 id="if-with-status-functions-for-steps-and-jobs"),
    pytest.param("""
on: push
jobs:
  j:
    strategy:
      matrix:
        py: ["3.11", "3.12"]
        os: [linux]
        include: [{py: "3.12", extra: plus}]
        exclude: [{py: "3.11", os: mac}]
    steps: [{run: "echo ${{ matrix.py }}-${{ matrix.extra || 'no' }} >> log"}]
""", ["3.11-no", "3.12-plus"], [("j", "success"), ("j", "success")], True,
                 id="matrix-runs-each-combination"),
])
def test_which_steps_and_jobs_run(
    tmp_path: Path, body: str, ran: list[str], jobs: list[tuple[str, str]], ok: bool
) -> None:
    """What ran (the log the steps wrote, in order) and how each job ended, in the order jobs ran."""
    result = quiet_run(tmp_path, body)
    assert steps_log(tmp_path) == ran
    assert [(j.id, j.status) for j in result.jobs] == jobs
    assert result.ok is ok


def test_a_failing_step_stops_its_job_and_the_jobs_that_need_it(tmp_path: Path) -> None:
    result = quiet_run(tmp_path, """
on: push
jobs:
  gate:
    steps:
      - run: echo gate >> log; exit 1
      - run: echo after-gate >> log
  promote:
    needs: gate
    steps: [{run: echo promote >> log}]
  later:
    needs: promote
    steps: [{run: echo later >> log}]
  unrelated:
    steps: [{run: echo unrelated >> log}]
""")
    assert steps_log(tmp_path) == ["gate", "unrelated"]
    status = {j.id: j.status for j in result.jobs}
    assert status == {"gate": "failure", "promote": "skipped", "later": "skipped", "unrelated": "success"}
    assert result.jobs[0].steps[0].code == 1 and result.jobs[0].steps[1].reason == workflow.TEXT["earlier_failed"]
    assert "needs promote" in result.jobs[2].reason and result.status == "failure"


def test_if_false_skips_with_the_reason_and_act_is_set(tmp_path: Path) -> None:
    result = quiet_run(tmp_path, """
on: push
jobs:
  a:
    steps:
      - name: Install
        if: ${{ !env.ACT }}
        run: echo install >> log
      - if: github.event_name == 'push' && vars.STAGE == 'prod'
        run: echo prod >> log
""", vars={"STAGE": "PROD"})  # GitHub compares strings ignoring case
    assert steps_log(tmp_path) == ["prod"]
    assert result.jobs[0].steps[0].status == "skipped" and "!env.ACT" in result.jobs[0].steps[0].reason


def test_env_at_workflow_job_and_step_level_the_innermost_wins(tmp_path: Path) -> None:
    quiet_run(tmp_path, """
on: push
env: {A: wf, B: wf, C: wf, D: "${{ vars.V }}"}
jobs:
  j:
    env: {B: job, C: job}
    steps:
      - env: {C: step, E: "${{ env.B }}-${{ secrets.S }}"}
        run: echo "$A $B $C $D $E" > out
""", vars={"V": "var"}, secrets={"S": "sec"})
    assert (tmp_path / "out").read_text().split() == ["wf", "job", "step", "var", "job-sec"]


def test_steps_run_in_the_working_directory_given_by_the_step_or_the_defaults(tmp_path: Path) -> None:
    for folder in ("lab", "lab/sub", "other"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    result = quiet_run(tmp_path, """
on: push
defaults: {run: {working-directory: other}}
jobs:
  j:
    defaults: {run: {working-directory: lab}}
    steps:
      - run: pwd > here
      - working-directory: lab/sub
        run: pwd > here
      - working-directory: missing
        run: echo never
""")
    assert (tmp_path / "lab" / "here").read_text().strip() == str((tmp_path / "lab").resolve())
    assert (tmp_path / "lab" / "sub" / "here").read_text().strip() == str((tmp_path / "lab" / "sub").resolve())
    assert not (tmp_path / "other" / "here").exists()
    last = result.jobs[0].steps[-1]
    assert last.status == "failure" and "missing" in last.reason and last.code is None


def test_outputs_and_exported_variables_reach_later_steps_and_jobs(tmp_path: Path) -> None:
    quiet_run(tmp_path, """
on: push
jobs:
  train:
    outputs: {version: "${{ steps.reg.outputs.version }}"}
    steps:
      - id: reg
        run: |
          echo "version=7" >> "$GITHUB_OUTPUT"
          echo "NOTE=from-env" >> "$GITHUB_ENV"
          { echo "multi<<EOF"; echo line1; echo line2; echo EOF; } >> "$GITHUB_OUTPUT"
      - run: echo "$NOTE ${{ steps.reg.outputs.version }} ${{ steps.reg.outcome }}" > out1
      - run: printf '%s' "${{ steps.reg.outputs.multi }}" > out3
  deploy:
    needs: train
    steps:
      - run: echo "v${{ needs.train.outputs.version }} ${{ needs.train.result }}" > out2
""")
    assert (tmp_path / "out1").read_text().split() == ["from-env", "7", "success"]
    assert (tmp_path / "out2").read_text().split() == ["v7", "success"]
    assert (tmp_path / "out3").read_text() == "line1\nline2"


def test_continue_on_error_lets_the_job_go_on_and_pass(tmp_path: Path) -> None:
    result = quiet_run(tmp_path, """
on: push
jobs:
  j:
    steps:
      - id: flaky
        continue-on-error: true
        run: exit 4
      - run: echo "${{ steps.flaky.outcome }} ${{ steps.flaky.conclusion }}" > out
  next:
    needs: j
    steps: [{run: echo next >> log}]
""")
    step = result.jobs[0].steps[0]
    assert (step.outcome, step.status, step.code) == ("failure", "success", 4)
    assert (tmp_path / "out").read_text().split() == ["failure", "success"]
    assert steps_log(tmp_path) == ["next"] and result.ok


def test_uses_steps_are_skipped_with_a_reason_and_do_not_fail(tmp_path: Path) -> None:
    result = quiet_run(tmp_path, """
on: push
jobs:
  j:
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {python-version: "3.11"}
      - uses: actions/cache@v4
      - uses: actions/upload-artifact@v4
      - uses: someone/deploy@v1
      - run: echo ran >> log
""")
    steps = result.jobs[0].steps
    assert [s.status for s in steps] == ["skipped"] * 5 + ["success"] and result.ok
    reasons = [s.reason for s in steps[:5]]
    assert reasons[0] == workflow.TEXT["uses_checkout"] and sys.version.split()[0] in reasons[1]
    assert reasons[4] == workflow.TEXT["uses_other"] and len(set(reasons)) == 5


def test_shells_as_github_linux_runners_have_them(tmp_path: Path) -> None:
    """No ``shell:`` is ``bash -e``: a failing command in a pipe is not seen; ``shell: bash``
    adds pipefail and sees it; ``shell: python`` runs this Python."""
    result = quiet_run(tmp_path, """
on: push
jobs:
  default:
    steps: [{run: "false | cat"}]
  bash:
    steps: [{shell: bash, run: "false | cat"}]
  python:
    steps: [{shell: python, run: "import sys; open('py', 'w').write(sys.executable)"}]
""")
    assert [j.status for j in result.jobs] == ["success", "failure", "success"]
    assert (tmp_path / "py").read_text() == sys.executable


def test_a_step_that_hangs_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    result = quiet_run(tmp_path, """
on: push
jobs:
  j:
    steps:
      - run: sleep 30
      - if: always()
        run: echo after >> log
""", step_timeout=0.5)
    step = result.jobs[0].steps[0]
    assert step.status == "failure" and step.code is None and "timeout" in step.reason and step.seconds < 10
    assert steps_log(tmp_path) == ["after"]


def test_schedule_and_workflow_dispatch_with_inputs(tmp_path: Path) -> None:
    body = """
on:
  schedule: [{cron: "0 3 * * 1"}]
  workflow_dispatch:
    inputs:
      model: {required: true}
      dry: {type: boolean, default: false}
jobs:
  j:
    steps: [{run: "echo ${{ github.event_name }} ${{ inputs.model }} ${{ inputs.dry }} >> log"}]
"""
    quiet_run(tmp_path, body, event="workflow_dispatch", inputs={"model": "m1", "dry": "true"})
    with pytest.raises(WorkflowError, match="--input model="):
        quiet_run(tmp_path, body, event="workflow_dispatch")
    quiet_run(tmp_path, body, event="schedule")  # inputs exist for workflow_dispatch only, as on GitHub
    assert steps_log(tmp_path) == ["workflow_dispatch", "m1", "true", "schedule"]
    with pytest.raises(WorkflowError, match="does not run on push: its `on:` lists schedule, workflow_dispatch"):
        quiet_run(tmp_path, body)


@pytest.mark.parametrize(("body", "message"), [
    ("on: push\njobs:\n  a:\n    steps:\n  - run: x\n   bad", "is not valid YAML"),
    ("just text", "is not a workflow"),
    ("on: push\njobs: {}", "has no jobs"),
    ("on: push\njobs:\n  a: {needs: b, steps: []}\n  b: {needs: a, steps: []}", "need each other in a cycle"),
    ("on: push\njobs:\n  a: {needs: zz, steps: []}", "needs 'zz', which is not a job"),
    ("on: push\njobs:\n  a:\n    steps: [{if: 'a ==', run: x}]", "cannot evaluate"),
], ids=["yaml", "not-mapping", "no-jobs", "cycle", "unknown-need", "bad-expression"])
def test_a_workflow_that_cannot_run_gets_one_line_and_exit_code_2(tmp_path: Path, body: str, message: str) -> None:
    write(tmp_path, body)
    done = subprocess.run([sys.executable, "-m", "autograder.kit.workflow", "ci.yml", "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_the_command_line_exit_code_json_report_and_masked_secrets(tmp_path: Path) -> None:
    write(tmp_path, """
name: demo
on: push
jobs:
  a:
    steps: [{name: Show, run: "echo token=${{ secrets.TOKEN }} var=${{ vars.V }}"}]
  b:
    needs: a
    steps: [{run: exit 5}]
""")
    cmd = [sys.executable, "-m", "autograder.kit.workflow", "ci.yml", "--var", "V=1", "-s", "TOKEN", "--json",
           "report.json"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TOKEN": "hunter2-secret"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "hunter2-secret" not in done.stdout and "token=*** var=1" in done.stdout
    assert "✔ Show" in done.stdout and "✘ demo failed: a passed, b failed" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failure" and [j["status"] for j in report["jobs"]] == ["success", "failure"]
    assert report["jobs"][1]["steps"][0]["code"] == 5 and "hunter2" not in json.dumps(report)


@pytest.mark.parametrize(("expression", "value"), [
    ("1 == 1.0", True), ("'abc' == 'ABC'", True), ("null == 0", True), ("'' || 'x'", "x"),
    ("'a' && 'b'", "b"), ("!0", True), ("contains('hello', 'ELL')", True), ("contains(fromJSON('[1,2]'), 2)", True),
    ("startsWith(github.ref, 'refs/heads/')", True), ("format('{0}-{1}', 'a', 1)", "a-1"),
    ("env.MISSING", None), ("vars.N > 9", True), ("(1 < 2) && !(2 < 1)", True), ("join(fromJSON('[1,2]'), '+')", "1+2"),
])
def test_expressions(expression: str, value: object) -> None:
    contexts = {"github": {"ref": "refs/heads/main"}, "env": {}, "vars": {"N": "10"}}
    assert evaluate(f"${{{{ {expression} }}}}", contexts) == value


def test_dry_run_shows_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    result = quiet_run(tmp_path, """
on: push
jobs:
  a:
    steps:
      - run: echo a >> log
      - if: failure()
        run: echo cleanup >> log
  b:
    needs: a
    steps: [{run: echo b >> log}]
""", dry_run=True)
    assert steps_log(tmp_path) == []
    assert [(s.run, s.status) for j in result.jobs for s in j.steps] == [
        ("echo a >> log", "success"), (None, "skipped"), ("echo b >> log", "success")]

