"""The GitHub Actions workflows are valid, and run what the README tells students to run.

Validation is offline: check-jsonschema's `--builtin-schema vendor.github-workflows` uses the copy
of GitHub's workflow schema vendored inside the check-jsonschema package, never the network.
"""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
NEWEST = WORKFLOWS / "newest-stack.yml"
README = ROOT / "README.md"
TEST_COMMAND = "make test"


def load(path: Path) -> dict:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.relative_to(ROOT)} is not a YAML mapping"
    return data


def triggers(workflow: dict) -> dict:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), f"workflow has no `on:` triggers: {on!r}"
    return on


def run_lines(step: dict) -> list[str]:
    return [line.strip() for line in str(step.get("run", "")).splitlines() if line.strip()]


def linux_steps(workflow: dict) -> list[dict]:
    """Steps that run on Linux: of jobs on ubuntu (directly or in their matrix), not kept to another OS."""
    steps = []
    for job in workflow.get("jobs", {}).values():
        runs_on = job.get("runs-on", "")
        oses = (
            job.get("strategy", {}).get("matrix", {}).get("os", [])
            if "matrix." in str(runs_on)
            else [runs_on]
        )
        if not any("ubuntu" in str(os_name) for os_name in oses):
            continue
        for step in job.get("steps", []):
            condition = str(step.get("if", ""))
            if condition and "Linux" not in condition and "ubuntu" not in condition:
                continue
            steps.append(step)
    return steps


@pytest.mark.parametrize("path", [CI, NEWEST], ids=lambda p: p.name)
def test_workflow_matches_githubs_schema(path):
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"{path.relative_to(ROOT)} does not match GitHub's workflow schema "
        f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )


def test_ci_linux_job_runs_the_readme_test_command():
    assert README.is_file(), (
        f"README.md is missing: it must show students the test command `{TEST_COMMAND}`, "
        "which ci.yml runs on Linux"
    )
    readme = README.read_text(encoding="utf-8")
    assert TEST_COMMAND in readme, f"README.md does not show the test command `{TEST_COMMAND}`"
    commands = [line for step in linux_steps(load(CI)) for line in run_lines(step)]
    assert TEST_COMMAND in commands, (
        f"ci.yml's Linux job does not run `{TEST_COMMAND}` (the README's command); it runs {commands}"
    )
    assert "make setup" in commands, f"ci.yml's Linux job does not run `make setup`; it runs {commands}"


def test_ci_covers_linux_and_windows_on_push_and_pull_request():
    ci = load(CI)
    assert {"push", "pull_request"} <= set(triggers(ci)), f"ci.yml triggers: {list(triggers(ci))}"
    test_job = ci["jobs"]["test"]
    matrix = test_job["strategy"]["matrix"]
    assert {os_.split("-")[0] for os_ in matrix["os"]} == {"ubuntu", "windows"}
    # Every Python the matrix tests is one the package accepts (pyproject's requires-python).
    assert all(supported(str(v)) for v in matrix["python-version"]), matrix["python-version"]


def test_ci_windows_installs_the_lock_and_puts_the_venv_on_path():
    steps = [s for s in load(CI)["jobs"]["test"]["steps"] if "Windows" in str(s.get("if", ""))]
    commands = " \n".join(line for step in steps for line in run_lines(step))
    assert re.search(r"-m pip install -r requirements\.txt -e \.", commands), commands
    assert "GITHUB_PATH" in commands, (
        "the Windows job must put .venv/Scripts on PATH (nbgrader calls alembic)"
    )
    assert re.search(r"\.venv[/\\]Scripts[/\\]python(\.exe)? -m pytest", commands), commands


def test_ci_lint_installs_the_pinned_ruff():
    steps = load(CI)["jobs"]["lint"]["steps"]
    commands = [line for step in steps for line in run_lines(step)]
    assert "ruff check ." in commands, commands
    install = " ".join(c for c in commands if "pip install" in c)
    assert "requirements.txt" in install or re.search(r"ruff==\d", install), (
        f"the lint job must install the ruff version pinned in requirements.txt: {install!r}"
    )


def test_newest_stack_installs_requirements_in_weekly_and_fails_loudly():
    newest = load(NEWEST)
    on = triggers(newest)
    assert "workflow_dispatch" in on
    assert on.get("schedule") and on["schedule"][0].get("cron"), "newest-stack.yml needs a cron schedule"
    job = newest["jobs"]["newest"]
    assert "continue-on-error" not in job, "a failing newest-stack run must fail the job"
    steps = job["steps"]
    assert not [s for s in steps if "continue-on-error" in s], "no step may hide a failure"
    commands = " \n".join(line for step in steps for line in run_lines(step))
    assert re.search(r"pip install --upgrade -r requirements\.in -e \.", commands), commands
    assert "requirements.txt" not in commands, "the newest-stack job must not install the lock"
    assert "pip freeze" in commands
    assert re.search(r"-m pytest -m \"not pinned_only\"", commands), commands
    for step in steps:
        if any("|" in line for line in run_lines(step)):
            # only an explicit `shell: bash` runs with -o pipefail; the default shell would let
            # `pytest | tee` pass with tee's exit code
            assert step.get("shell") == "bash", f"step {step.get('name')!r} pipes without pipefail"
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@v4")]
    assert uploads and "failure()" in str(uploads[0].get("if", "")), "upload the pytest output on failure"
    python = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@")]
    # The newest stack: a newer Python than the pinned CI's, still one the package accepts.
    newest_python = str(python[0]["with"]["python-version"]) if python else ""
    pinned = [str(v) for v in load(CI)["jobs"]["test"]["strategy"]["matrix"]["python-version"]]
    assert supported(newest_python) and all(_version(newest_python) > _version(v) for v in pinned), newest_python


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def supported(python: str) -> bool:
    """Whether pyproject.toml's requires-python (a lower bound, ``>=3.X``) admits ``python``."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    match = re.fullmatch(r">=\s*([0-9.]+)", spec.strip())
    assert match, f"requires-python is {spec!r}: teach supported() to read it"
    return bool(python) and _version(python) >= _version(match[1])


def test_the_local_runner_plans_the_courses_own_workflows():
    """The course's workflow runner (``autograder.kit.workflow``, which Lab 05 teaches with) reads
    the course's own workflows: on push, CI's Linux steps would run ``make setup`` then ``make
    test`` and its Windows-only steps are skipped by their ``if:``; the weekly workflow runs on
    ``schedule`` (the trigger Lab 09's scheduled retraining uses), its upload only on failure."""
    from autograder.kit import workflow

    ci = workflow.run(CI, ROOT, echo=None, dry_run=True)
    steps = [(job.name, step) for job in ci.jobs for step in job.steps]
    linux = [s.run for name, s in steps if "ubuntu" in name and s.status == "success" and s.run]
    assert linux.index("make setup") < linux.index("make test"), linux
    windows_only = [s for _, s in steps if "Windows" in s.name]
    assert windows_only and {s.status for s in windows_only} == {"skipped"}
    assert ci.ok and {j.id for j in ci.jobs} == {"test", "lint"}
    weekly = workflow.run(NEWEST, ROOT, event="schedule", echo=None, dry_run=True)
    upload = [s for j in weekly.jobs for s in j.steps if s.uses and "upload-artifact" in s.uses]
    assert upload and upload[0].reason.startswith("if: failure()"), upload
    with pytest.raises(workflow.WorkflowError, match="does not run on push"):
        workflow.run(NEWEST, ROOT, echo=None, dry_run=True)
