"""Labs 05a and 05b, CI/CD for ML: the evidence and judgments both parts share (no reference
computation here). Each part's own module (``lab05a``: data validation, quality gate,
behavioural tests; ``lab05b``: promotion and workflow) names its files, TODOs and checks.

The student's work is four programs and a workflow file that the notebooks write into their
folders (``pipeline/``); the evidence is what they did when they ran, as plain data: exit
codes, the end of their output, the registry's tags and alias before and after.

* In the notebook, a self-check reads the job history the notebook's CI runner (``run_step``)
  records in CI_EXPERIMENT, and the registry; Lab 05b's workflow is run by the course's
  workflow runner with probes in place of the four programs (``lab05_run.probe_run``).
* At grading, the trusted grader prepares inputs the notebook never saw (batches with one
  fault each, copies of the store in known states, models with one flaw each) and runs the
  student's programs on them inside the submission's sandbox (``autograder.kit.lab05_run``);
  it reads the outcomes as data and calls the same judgments, with the cases it prepared
  as the expected values.
"""

from __future__ import annotations

import ast
import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from autograder.kit.checking import (
    LABEL,
    CheckResult,
    Evidence,
    Judge,
    client,
    experiment_record,
    judge_safely,
    load_expected,
    local_path,
    message,
    pairs,
    quiet,
    read_artifact,
    read_file,
    report,
    runs,
    session,
)

#: Names read from the notebook's parameters cell (and set by the grader or papermill).
PARAMS = ["EXPERIMENT_NAME", "CI_EXPERIMENT", "MODEL_NAME", "CHAMPION_RUN", "POOR_RUN", "CANDIDATE_RUN", "SEED",
          "TEST_SIZE"]
ROLES = ("champion", "poor", "candidate")

#: The files the notebook writes (relative to its folder), by task.
DATA_SCRIPT = "pipeline/validate_data.py"
GATE_SCRIPT = "pipeline/validate_model.py"
TEST_FILE = "pipeline/test_model_behaviour.py"
PROMOTE_SCRIPT = "pipeline/promote_model.py"
WORKFLOW = "pipeline/model-ci.yml"
#: A file last written more than this before the notebook's session started is an earlier
#: session's (some filesystems keep modification times to the second or two).
STALE_SLACK_MS = 2000

GOOD_BATCH = "batch_no_drift.csv"  # in data/production/
BAD_BATCH = "batch_bad.csv"  # made by the notebook's set-up, in batches/
#: What the set-up broke in the bad batch: column -> the fault (its key in MESSAGES).
BAD_BATCH_FAULTS = {
    "network_latency": "bad_no_column",
    "memory_usage": "fault_missing_values",
    "cpu_usage": "bad_130",
    "concurrent_users": "bad_unknown",
}
#: The gate's defaults (the lab's text and the script's argparse say the same).
MIN_R2, MAX_LATENCY_MS = 0.70, 200.0
GATE_TAGS = ("validation_passed", "r2", "p95_latency_ms")
PROMOTION_TAGS = ("promoted_by", "promoted_at", "promotion_reason")
REQUIRED_TESTS = ("test_invariance_to_extra_columns", "test_directional_users", "test_directional_cpu")
#: Tolerance for the gate's r2 tag against the grader's own R² (rounding to 3 digits passes).
R2_RTOL = 2e-3
#: The workflow's programs, in the order they must run (what the probe run calls them).
WORKFLOW_ORDER = ("data", "tests", "gate", "promote")
#: What the probe run gives the workflow: vars.CANDIDATE_VERSION, vars.BATCH, secrets.MLFLOW_TRACKING_URI
#: (the runner masks the secret as *** wherever it shows).
MASKED = "***"
OUTPUT_CHARS = 6000  # the end of a program's output kept as evidence

# Every student-facing sentence of this lab's checks, in one place (for translation).
MESSAGES = {
    "no_file": "no file {file}. Run the TODO {todo} cell: its first line, %%writefile {file}, writes the file.",
    "stale_file": (
        "{file} was written before this run of the notebook (by an earlier session). Run the TODO {todo} cell: "
        "its first line, %%writefile {file}, writes the file again."
    ),
    "no_setup": (
        "the registry has no version of '{name}' from the run '{run}'. Run the set-up cells above "
        "(from the top of the notebook)."
    ),
    "not_run": (
        "the job history ('{experiment}') has no run of {what} since its file was last written. Run the cell "
        "after TODO {todo}."
    ),
    "crashed": "{what} crashed: {error}. Fix the script (the cell after TODO {todo} shows the whole error).",
    "timed_out": "{what} did not finish within its time limit.",
    "run_on": "{script} on {target}",
    "target_good": "the good batch",
    "target_version": "version {version} ({run})",
    "none": "none",
    "unknown": "unknown",
    # Lab 05a, TODO 1: the data validation
    "good_rejected": (
        "validate_data.py rejected the good batch (exit code {code}); a batch without problems must pass "
        "with exit code 0. Its output ended with: {tail}"
    ),
    "bad_accepted": "validate_data.py accepted {what} (exit code 0). It must exit with 1 when it finds a problem.",
    "bad_unnamed": (
        "validate_data.py rejected {what}, but its report does not name the column{s} {columns} "
        "({faults}). Report each problem on its own line, naming its column."
    ),
    "data_ok": "validate_data.py accepts the good batch and rejects {what}, naming every problem.",
    "the_bad_batch": "batches/batch_bad.csv",
    "fault_batches": "batches with one fault each",
    "one_fault": "a batch with {fault} in '{column}'",
    "fault_missing_values": "missing values",
    "fault_above_range": "a value above its range",
    "fault_negative": "a negative value",
    "fault_text": "text in a number column",
    "fault_no_column": "a missing column",
    "bad_no_column": "the column is missing",
    "bad_130": "values of 130%",
    "bad_unknown": "the text 'unknown'",
    # Lab 05a, TODO 2: the quality gate
    "gate_passed_poor": (
        "the gate passed version {version} ({run}) with exit code 0, although its R² on the batch is "
        "{r2} (minimum {min_r2}; the champion has {champion_r2}). A failing gate must exit with 1."
    ),
    "gate_ignored_rule": "the gate passed {case} (exit code 0). {fix}",
    "gate_changed": (
        "the gate failed {case}, as it should, but changed the registry: {changes}. A failing gate must "
        "change nothing."
    ),
    "gate_failed_candidate": (
        "the gate failed version {version} ({run}), which meets every rule (R² {r2} ≥ {min_r2}, not worse "
        "than the champion's {champion_r2}); exit code {code}. Its output ended with: {tail}"
    ),
    "gate_no_tag": (
        "the gate passed version {version} but did not tag it {tag}{expected} (its tags: {found}). Call "
        "client.set_model_version_tag(args.model_name, args.version, '{tag}', ...)."
    ),
    "gate_wrong_r2": (
        "version {version} has the tag r2={found}, but its R² on the batch is {expected:.4f}. Tag the R² "
        "the gate measured: r2_of(model, X, y)."
    ),
    "gate_bad_latency": (
        "version {version} has the tag p95_latency_ms={found}; expected the measured p95 latency in ms, "
        "a number above 0 and below {budget:g}."
    ),
    "gate_ok": "the gate fails {failed} and passes version {candidate}, tagged {tags}.",
    "gate_ok_unchecked": "the gate fails {failed} and passes version {candidate}, tagged {tags} (the grader checks r2).",
    "case_poor": "version {version} ({run})",
    "case_champion": (
        "version {version} ({run}, R² {r2}) with --min-r2 0, although the champion scores R² {champion_r2} "
        "on the same batch"
    ),
    "fix_champion": "Fail a version whose R² is below the champion's minus --tolerance.",
    "case_r2": "version {version} with --min-r2 0.99, although its R² is {r2}",
    "fix_r2": "Fail a version whose R² is below args.min_r2.",
    "case_latency": "version {version} with --max-latency-ms 0.001, a budget no model can meet",
    "fix_latency": "Measure the p95 latency with p95_latency_ms(model, X) and fail a version above args.max_latency_ms.",
    "champion_moved": "champion -> version {version}",
    "no_output": "(no output)",
    # Lab 05a, TODO 3: the behavioural tests
    "no_tests": "{file} has no test function{s} {missing} (found: {found}). Name the tests exactly as the TODO says.",
    "syntax_error": "{file} is not valid Python: {error}",
    "tests_fail_candidate": "the behavioural tests fail on version {version} ({run}), a good model: {failed}. {detail}",
    "tests_not_collected": "pytest could not run {file} (exit code {code}): {tail}",
    "test_missed_flaw": "{test} passed on a model {flaw}; it must fail on such a model. {fix}",
    "flaw_cpu": "whose predictions fall as the CPU rises (1.5 ms less per CPU point)",
    "fix_cpu": "Predict TYPICAL and TYPICAL with 20 more CPU points, and assert that no prediction drops by more than TOLERANCE_MS.",
    "flaw_users": "whose predictions fall as users grow (0.2 ms less per user)",
    "fix_users": "Predict TYPICAL and TYPICAL with twice the users, and assert that no prediction drops by more than TOLERANCE_MS.",
    "flaw_columns": "that fails on a request with extra columns (timestamp, region)",
    "fix_columns": "Predict TYPICAL with the columns timestamp and region added (and reordered), and compare with the predictions for TYPICAL.",
    "tests_ok": "the behavioural tests {names} pass on version {version}.",
    "tests_flaws_ok": "the behavioural tests pass on version {version} and each catches its flaw (CPU, users, extra columns).",
    "exit_code": "exit code {code}",
    # Lab 05b, TODO 1: the promotion
    "promoted_poor": (
        "promote_model.py promoted version {version} ({run}) with exit code {code}, although it lacks the "
        "tag validation_passed=true (its tags: {tags}). Refuse it: print why and return 1."
    ),
    "promote_refused_false": (
        "promote_model.py promoted version {version} whose tag is validation_passed=false (exit code {code}). "
        "Compare the tag's value too: tags.get('validation_passed') != 'true'."
    ),
    "poor_is_champion": (
        "the alias 'champion' points to version {version} ({run}), a version that never passed the gate. "
        "Refuse to promote a version without validation_passed=true."
    ),
    "poor_tagged": "version {version} ({run}) has promotion tags ({tags}) although it was refused: change nothing when refusing.",
    "promote_failed": (
        "promote_model.py did not promote version {version} (exit code {code}), although it has "
        "validation_passed=true. Its output ended with: {tail}"
    ),
    "alias_not_moved": (
        "promote_model.py exited with 0 for version {version}, but 'champion' points to version {champion}. "
        "Move it: client.set_registered_model_alias(args.model_name, 'champion', args.version)."
    ),
    "promotion_untagged": (
        "version {version} was promoted without the tag{s} {missing} (its tags: {found}). Record who, when "
        "and why: promoted_by, promoted_at, promotion_reason."
    ),
    "bad_promoted_at": "the tag promoted_at='{found}' is not an ISO 8601 time; use datetime.now(timezone.utc).isoformat().",
    "bad_reason": "the tag promotion_reason is '{found}'; expected the --reason given, '{expected}'.",
    "promote_ok": "promote_model.py refused {refused} and promoted version {candidate}, with {tags}.",
    "and": " and ",
    "promote_refusal_only": (
        "promote_model.py refused version {poor}, which has no validation_passed tag. (Version {candidate} "
        "was refused too, correctly: it has no validation_passed=true yet. {redo})"
    ),
    "redo_setup": "Run the set-up cells again, from the top: they record the quality gate's verdict on it.",
    # Lab 05b, TODO 2: the workflow
    "workflow_todo": (
        "TODO {todo} is not done yet: {file} still holds the placeholder `raise NotImplementedError()`. Replace it "
        "(and `# YOUR CODE HERE`) with the workflow's `on:`, `env:` and `jobs:`."
    ),
    "workflow_invalid": "{file} does not follow GitHub's workflow schema (check-jsonschema): {details}",
    "workflow_not_yaml": (
        "{file} is not valid YAML: {error}. Check the indentation (spaces only) and that every line "
        "of the TODO {todo} cell is part of the workflow."
    ),
    "workflow_not_mapping": "{file} cannot be run: {detail}",
    "workflow_no_answer": (
        "the run of {file} gave no answer: it was stopped (a step that hangs, or that ends the runner). "
        "Its output ended with: {detail}"
    ),
    "workflow_no_push": "{file} does not run on push: its `on:` is {found}. Use `on: push` (or `on: {{push: ...}}`).",
    "workflow_missing": (
        "when the workflow runner runs {file} with every program passing, {missing} never runs: no step "
        "calls `{example}` (a step that only echoes the command runs nothing).{stopped}"
    ),
    "workflow_stopped": " The run stopped at the step '{step}' of the job '{job}': {reason}.",
    "workflow_red": (
        "when every program passes, the run of {file} still fails, at the step '{step}' of the job '{job}': "
        "{reason}.{hint}"
    ),
    "hint_act": (
        " Installing packages makes sense on GitHub only: give that step `if: ${{{{ !env.ACT }}}}` "
        "(the local runner sets ACT, as `act` does)."
    ),
    "workflow_order": (
        "in the run of {file}, {later} runs before {earlier}. Put them in one job in that order, or give "
        "the later job `needs: <the earlier job>`."
    ),
    "workflow_no_stop": (
        "in the run of {file} where {failed} fails, {ran} still runs. A failing step must stop what "
        "follows: put them in one job in that order, or give the later job `needs: <the earlier job>` "
        "(and no `continue-on-error`, no `|| true`)."
    ),
    "workflow_green": (
        "in the run of {file} where {failed} fails, the run still ends green: a failing program must fail "
        "the run (no `continue-on-error`, no `|| true`)."
    ),
    "arg_data": (
        "the data validation ran as `validate_data.py {args}`: it must validate the batch named by "
        "`${{{{ vars.BATCH }}}}` (in this run, {batch})."
    ),
    "arg_tests": (
        "the behavioural tests ran with MODEL_URI={found}: expected models:/{name}/ and the version in "
        "`${{{{ vars.CANDIDATE_VERSION }}}}` (in this run, {expected})."
    ),
    "arg_gate": (
        "the gate ran as `validate_model.py {args}`: expected --model-name {name}, --version from "
        "`${{{{ vars.CANDIDATE_VERSION }}}}` and --data from `${{{{ vars.BATCH }}}}` (in this run, --version "
        "{version} --data {batch})."
    ),
    "arg_promote": (
        "the promotion ran as `promote_model.py {args}`: expected --model-name {name}, --version from "
        "`${{{{ vars.CANDIDATE_VERSION }}}}` (in this run, {version}) and a --reason."
    ),
    "no_secret": (
        "{what} ran without MLFLOW_TRACKING_URI set from `${{{{ secrets.MLFLOW_TRACKING_URI }}}}`: without "
        "it the program opens another MLflow store."
    ),
    "workflow_ok": (
        "the workflow runner ran {file} on push: data validation, tests, gate and promotion in that order, "
        "with the version and batch it was given, and each failure stopped what follows."
    ),
    "step_data": "the data validation",
    "step_tests": "the behavioural tests",
    "step_gate": "the quality gate",
    "step_promote": "the promotion",
    # Lab 05b's set-up: where each of Lab 05a's programs came from
    "program_yours": "yours, copied from {source}",
    "program_standin": "a stand-in that passes or fails on cue (Lab 05a's was not found, or its TODO is not done)",
}
EXAMPLES = {"data": 'python pipeline/validate_data.py "$BATCH"',
            "tests": "python -m pytest pipeline/test_model_behaviour.py", "gate": "python pipeline/validate_model.py ...",
            "promote": "python pipeline/promote_model.py ..."}


def _msg(key: str, **values: Any) -> str:
    """Message ``key`` in the current language (``checking.message``: the kit's catalog)."""
    return message(MESSAGES, key, **values)


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else _msg("unknown")


# --- Evidence -----------------------------------------------------------------------------


def evidence(tracking_uri: str, params: Mapping[str, Any], files: Iterable[str], confine_to: Path | None = None
             ) -> Evidence:
    """What the folder and the store hold for one part of the lab (its ``files``), as plain
    data. ``confine_to``: the submission's folder, when the grader reads it (else the kernel's
    current folder).

    In a notebook's session (a self-check), a file written before the session started is
    listed as ``stale``, and ``written_ms`` says when each file was last written: a check
    judges this run of the notebook, not a file an earlier session left on disk."""
    folder = Path(confine_to) if confine_to is not None else Path.cwd()
    mlflow_client = client(tracking_uri)
    present = {rel: local_path(str(folder / rel), confine_to) is not None and (folder / rel).is_file() for rel in files}
    found: Evidence = {"files": present}
    current = session(tracking_uri)
    if current is not None and confine_to is None:
        found["written_ms"] = {rel: (folder / rel).stat().st_mtime_ns // 1_000_000 for rel, ok in present.items() if ok}
        found["stale"] = sorted(rel for rel, ms in found["written_ms"].items()
                                if ms < current.started_ms - STALE_SLACK_MS)
    if TEST_FILE in present:
        found["tests_defined"] = _test_names(read_file(str(folder / TEST_FILE), confine_to, limit=1 << 20))
    found["versions"], found["champion"] = _registry(mlflow_client, params)
    found["history"] = _history(mlflow_client, params, confine_to)
    return found


def _test_names(source: bytes | None) -> dict[str, Any]:
    """The test functions a test file defines, read as text (never imported)."""
    if source is None:
        return {"names": []}
    try:
        tree = ast.parse(source.decode("utf-8", "replace"))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None)
        return {"error": f"line {line}: {getattr(exc, 'msg', exc)}" if line else str(exc)[:200]}
    return {"names": [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]}


def _registry(mlflow_client: Any, params: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """role -> the newest version registered from its run (number and tags); the champion."""
    roles = {params["CHAMPION_RUN"]: "champion", params["POOR_RUN"]: "poor", params["CANDIDATE_RUN"]: "candidate"}
    name = params["MODEL_NAME"]
    names_of: dict[str, str | None] = {}
    found: dict[str, Any] = {}
    try:
        versions = mlflow_client.search_model_versions(f"name = '{name}'")
    except Exception:
        return {}, None
    for mv in versions:
        if mv.run_id and mv.run_id not in names_of:
            try:
                names_of[mv.run_id] = mlflow_client.get_run(mv.run_id).info.run_name
            except Exception:  # a version whose run was deleted has no role
                names_of[mv.run_id] = None
        role = roles.get(names_of.get(mv.run_id) or "")
        if role and (role not in found or int(mv.version) > int(found[role]["version"])):
            found[role] = {"version": str(mv.version), "tags": dict(mv.tags)}
    try:
        champion: str | None = str(mlflow_client.get_model_version_by_alias(name, "champion").version)
    except Exception:
        champion = None
    return found, champion


def _history(mlflow_client: Any, params: Mapping[str, Any], confine_to: Path | None) -> list[dict[str, Any]]:
    """The steps the notebook's CI runner recorded, newest first: arguments, environment,
    exit code and the end of the output."""
    experiment = experiment_record(mlflow_client, params["CI_EXPERIMENT"])
    if experiment is None:
        return []
    steps = []
    for run in runs(mlflow_client):
        tags = run["tags"]
        if run["experiment_id"] != experiment["id"] or "ci.command" not in tags:
            continue
        try:
            args, env, code = shlex.split(tags["ci.command"]), json.loads(tags.get("ci.env") or "{}"), int(
                tags["ci.exit_code"])
        except (ValueError, TypeError):
            continue
        output = read_artifact(mlflow_client, run, "output.txt", confine_to) or b""
        steps.append({"name": run["name"], "args": args, "env": env if isinstance(env, dict) else {}, "code": code,
                      "output": output.decode("utf-8", "replace")[-OUTPUT_CHARS:], "start_ms": run["start_time"]})
    return steps


def _option(args: list[str], name: str) -> str | None:
    return next((args[i + 1] for i, a in enumerate(args[:-1]) if a == name), None)


def _runs_file(args: list[str], name: str) -> bool:
    return any(a.replace("\\", "/").endswith(name) for a in args)


def _ran_since_written(step: Mapping[str, Any], written_ms: Mapping[str, int]) -> bool:
    """Whether a step ran after the file it runs or checks was last written (``run_step`` records
    a step when it ends): a step that ran an older version of the file does not count."""
    for rel, ms in written_ms.items():
        if _runs_file(step["args"], Path(rel).name) and (step.get("start_ms") or 0) < ms:
            return False
    return True


def history_runs(ev: Evidence, params: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's own CI steps, in the shape the grader's runs have (``run_code``)."""
    written = ev.get("written_ms") or {}
    steps = [s for s in ev.get("history", []) if _ran_since_written(s, written)]
    versions = ev.get("versions", {})

    def newest(match: Any) -> dict[str, Any] | None:
        step = next((s for s in steps if match(s)), None)
        return None if step is None else {"code": step["code"], "output": step["output"], "args": step["args"],
                                          "index": steps.index(step)}

    # A run of the whole workflow (Lab 05b's cell after TODO 2) promotes again, with the workflow's reason.
    workflow_run = next((i for i, s in enumerate(steps) if "autograder.kit.workflow" in s["args"]), len(steps))

    def version(role: str) -> str | None:
        return (versions.get(role) or {}).get("version")

    def gate_or_promote(script: str, role: str) -> dict[str, Any] | None:
        rec = newest(lambda s: _runs_file(s["args"], script) and _option(s["args"], "--version") == version(role))
        if rec is not None:
            rec.update(tags_before={} if role == "poor" else None, tags_after=(versions.get(role) or {}).get("tags", {}),
                       champion_before=None, champion_after=ev.get("champion"),
                       reason=_option(rec["args"], "--reason") if workflow_run > rec["index"] else None)
        return rec

    out: dict[str, Any] = {"data": {}, "gate": {}, "tests": {}, "promote": {}, "workflow": {}}
    for case, batch in (("good", GOOD_BATCH), ("bad_batch", BAD_BATCH)):
        out["data"][case] = newest(lambda s, b=batch: _runs_file(s["args"], "validate_data.py") and _runs_file(
            s["args"], b))
    for role in ("poor", "candidate"):
        out["gate"][role] = gate_or_promote("validate_model.py", role)
        out["promote"][role] = gate_or_promote("promote_model.py", role)
    tests = newest(lambda s: "pytest" in s["args"] and str(s["env"].get("MODEL_URI", "")).endswith(
        f"/{version('candidate')}"))
    if tests is not None:
        tests["results"] = pytest_results(tests["output"])
    out["tests"]["candidate"] = tests
    out["workflow"]["schema"] = newest(lambda s: "check_jsonschema" in s["args"] and _runs_file(s["args"],
                                                                                                 "model-ci.yml"))
    return {k: {case: rec for case, rec in v.items() if rec is not None} for k, v in out.items()}


_RESULT = re.compile(r"::(test_\w+)(?:\[[^\]]*\])?\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def pytest_results(output: str) -> dict[str, str]:
    """test name -> 'passed' or 'failed', from pytest's ``-v`` report (a failure wins)."""
    results: dict[str, str] = {}
    for name, outcome in _RESULT.findall(_ANSI.sub("", output)):
        ok = outcome in ("PASSED", "XPASS")
        if results.get(name) != "failed":
            results[name] = "passed" if ok else "failed"
    return results


def workflow_vars() -> dict[str, str]:
    """Values a probe run gives the workflow, new each time, so that a version or a batch
    written into the workflow instead of ``${{ vars.* }}`` shows."""
    import secrets

    token = secrets.token_hex(4)
    return {"version": str(100 + secrets.randbelow(900)), "batch": f"batches/batch_{token}.csv",
            "tracking_uri": f"sqlite:///ci-store-{token}.db"}


def expected_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What the parameters alone decide: the roles' runs, the gate's rules, and the cases the
    notebook's own CI steps must pass (the grader replaces the cases with its own)."""
    return {
        "model_name": params["MODEL_NAME"],
        "ci_experiment": params["CI_EXPERIMENT"],
        "runs": {"champion": params["CHAMPION_RUN"], "poor": params["POOR_RUN"], "candidate": params["CANDIDATE_RUN"]},
        "min_r2": MIN_R2,
        "max_latency_ms": MAX_LATENCY_MS,
        "source": "history",
        "data_cases": {"good": {"what": "", "columns": {}},
                       "bad_batch": {"what": _msg("the_bad_batch"),
                                     "columns": {c: _msg(k) for c, k in BAD_BATCH_FAULTS.items()}}},
        "gate_cases": {"poor": {"role": "poor", "must": "fail"}, "candidate": {"role": "candidate", "must": "pass"}},
        "tests_cases": {"candidate": {"must": "pass"}},
        "promote_cases": {"poor": {"role": "poor", "must": "refuse"},
                          "candidate": {"role": "candidate", "must": "promote_if_validated"}},
    }


# --- Judgments ----------------------------------------------------------------------------

_TRACEBACK = "Traceback (most recent call last)"


def _tail(output: str, lines: int = 2) -> str:
    kept = [line.strip() for line in _ANSI.sub("", output or "").strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-400:] or _msg("no_output")


def _program_problem(rec: Mapping[str, Any], what: str, todo: int | None) -> CheckResult | None:
    """A run that timed out or crashed with a Python traceback."""
    if rec.get("code") is None:
        return CheckResult(False, _msg("timed_out", what=what))
    if _TRACEBACK in (rec.get("output") or ""):
        return CheckResult(False, _msg("crashed", what=what, error=_tail(rec["output"], 1), todo=todo))
    return None


def _todo(exp: Mapping[str, Any], rel: str) -> int | None:
    """The TODO of the part being judged that writes ``rel``."""
    return (exp.get("todos") or {}).get(rel)


def _need(ev: Evidence, exp: Mapping[str, Any], rel: str) -> CheckResult | None:
    if not ev.get("files", {}).get(rel):
        return CheckResult(False, _msg("no_file", file=rel, todo=_todo(exp, rel)))
    if rel in (ev.get("stale") or []):
        return CheckResult(False, _msg("stale_file", file=rel, todo=_todo(exp, rel)))
    return None


def _need_roles(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult | None:
    for role in ROLES:
        if role not in ev.get("versions", {}):
            return CheckResult(False, _msg("no_setup", name=exp["model_name"], run=exp["runs"][role]))
    return None


def _not_run(exp: Mapping[str, Any], script: str, target: str, todo: int | None) -> CheckResult:
    what = _msg("run_on", script=script, target=target)
    return CheckResult(False, _msg("not_run", experiment=exp["ci_experiment"], what=what, todo=todo))


def _target(ev: Evidence, exp: Mapping[str, Any], role: str) -> str:
    return _msg("target_version", version=ev["versions"][role]["version"], run=exp["runs"][role])


def judge_data(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    problem = _need(ev, exp, DATA_SCRIPT)
    if problem:
        return problem
    found = (ev.get("runs") or {}).get("data", {})
    for case, spec in exp["data_cases"].items():
        rec, columns = found.get(case), spec["columns"]
        what = spec["what"] or _msg("target_good")
        if rec is None:
            return _not_run(exp, "validate_data.py", GOOD_BATCH if case == "good" else BAD_BATCH,
                            _todo(exp, DATA_SCRIPT))
        problem = _program_problem(rec, _msg("run_on", script="validate_data.py", target=what), _todo(exp, DATA_SCRIPT))
        if problem:
            return problem
        if not columns:
            if rec["code"] != 0:
                return CheckResult(False, _msg("good_rejected", code=rec["code"], tail=_tail(rec["output"])))
            continue
        if rec["code"] == 0:
            return CheckResult(False, _msg("bad_accepted", what=what))
        unnamed = [c for c in columns if c not in rec["output"]]
        if unnamed:
            return CheckResult(False, _msg("bad_unnamed", what=what, s="s" if len(unnamed) > 1 else "",
                                           columns=", ".join(unnamed),
                                           faults="; ".join(f"{c}: {columns[c]}" for c in unnamed)))
    what = _msg("the_bad_batch") if exp.get("source") == "history" else _msg("fault_batches")
    return CheckResult(True, _msg("data_ok", what=what))


def _gate_tags(tags: Mapping[str, str], version: str, expected_r2: float | None) -> CheckResult | None:
    def no_tag(tag: str, expected: str = "") -> CheckResult:
        return CheckResult(False, _msg("gate_no_tag", version=version, tag=tag, expected=expected,
                                       found=pairs(tags) or _msg("none")))

    if tags.get("validation_passed") != "true":
        return no_tag("validation_passed", "=true")
    for tag in ("r2", "p95_latency_ms"):
        if tag not in tags:
            return no_tag(tag)
    if expected_r2 is not None:
        try:
            r2 = float(tags["r2"])
        except ValueError:
            r2 = math.nan
        if not math.isclose(r2, expected_r2, rel_tol=R2_RTOL, abs_tol=1e-3):
            return CheckResult(False, _msg("gate_wrong_r2", version=version, found=tags["r2"], expected=expected_r2))
    try:
        latency = float(tags["p95_latency_ms"])
    except ValueError:
        latency = math.nan
    if not 0 < latency < MAX_LATENCY_MS:
        return CheckResult(False, _msg("gate_bad_latency", version=version, found=tags["p95_latency_ms"],
                                       budget=MAX_LATENCY_MS))
    return None


def _changes(rec: Mapping[str, Any], keys: tuple[str, ...], version: str) -> list[str]:
    """What a run that had to change nothing changed: tags among ``keys``, the alias."""
    before, after = rec.get("tags_before"), rec.get("tags_after") or {}
    changed = [] if before is None else [f"{k}={after.get(k)}" for k in keys if after.get(k) != before.get(k)]
    if rec.get("champion_before") is not None and rec.get("champion_after") != rec["champion_before"]:
        changed.append(_msg("champion_moved", version=rec.get("champion_after")))
    elif rec.get("champion_before") is None and rec.get("champion_after") == version and before == {}:
        changed.append(_msg("champion_moved", version=version))
    return changed


def judge_gate(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    problem = _need(ev, exp, GATE_SCRIPT) or _need_roles(ev, exp)
    if problem:
        return problem
    found, r2 = (ev.get("runs") or {}).get("gate", {}), exp.get("r2") or {}
    version_of = {role: ev["versions"][role]["version"] for role in ROLES}
    numbers = {"min_r2": exp["min_r2"], "champion_r2": _num(r2.get("champion"))}
    failed, tags = [], {}
    for case, spec in exp["gate_cases"].items():
        role = spec["role"]
        version, rec = version_of[role], found.get(case)
        if rec is None:
            return _not_run(exp, "validate_model.py", _target(ev, exp, role), _todo(exp, GATE_SCRIPT))
        problem = _program_problem(rec, "validate_model.py", _todo(exp, GATE_SCRIPT))
        if problem:
            return problem
        if spec["must"] == "fail":
            what = _msg(spec.get("case", "case_poor"), version=version, run=exp["runs"][role], r2=_num(r2.get(role)),
                        champion_r2=numbers["champion_r2"])
            if rec["code"] == 0:
                if "fix" in spec:
                    return CheckResult(False, _msg("gate_ignored_rule", case=what, fix=_msg(spec["fix"])))
                return CheckResult(False, _msg("gate_passed_poor", version=version, run=exp["runs"][role],
                                               r2=_num(r2.get(role)), **numbers))
            changes = _changes(rec, GATE_TAGS, version)
            if changes:
                return CheckResult(False, _msg("gate_changed", case=what, changes=", ".join(changes)))
            failed.append(what)
            continue
        if rec["code"] != 0:
            return CheckResult(False, _msg("gate_failed_candidate", version=version, run=exp["runs"][role],
                                           r2=_num(r2.get(role)), code=rec["code"], tail=_tail(rec["output"]),
                                           **numbers))
        tags = rec.get("tags_after") or {}
        problem = _gate_tags(tags, version, r2.get(role))
        if problem:
            return problem
    shown = pairs({k: tags.get(k) for k in GATE_TAGS})
    key = "gate_ok" if r2.get("candidate") is not None else "gate_ok_unchecked"
    return CheckResult(True, _msg(key, failed="; ".join(failed), candidate=version_of["candidate"], tags=shown))


def judge_tests(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    problem = _need(ev, exp, TEST_FILE)
    if problem:
        return problem
    defined = ev.get("tests_defined") or {}
    if "error" in defined:
        return CheckResult(False, _msg("syntax_error", file=TEST_FILE, error=defined["error"]))
    absent = [t for t in REQUIRED_TESTS if t not in defined.get("names", [])]
    if absent:
        return CheckResult(False, _msg("no_tests", file=TEST_FILE, s="s" if len(absent) > 1 else "",
                                       missing=", ".join(absent), found=", ".join(defined.get("names", [])) or
                                       _msg("none")))
    problem = _need_roles(ev, exp)
    if problem:
        return problem
    found, candidate = (ev.get("runs") or {}).get("tests", {}), ev["versions"]["candidate"]["version"]
    for case, spec in exp["tests_cases"].items():
        rec = found.get(case)
        if rec is None:
            return _not_run(exp, "pytest", _target(ev, exp, "candidate"), _todo(exp, TEST_FILE))
        results = rec.get("results") or {}
        if rec.get("code") is None:
            return CheckResult(False, _msg("timed_out", what=f"pytest {TEST_FILE}"))
        if spec.get("must") == "pass":
            if not results:
                return CheckResult(False, _msg("tests_not_collected", file=TEST_FILE, code=rec["code"],
                                               tail=_tail(rec["output"], 3)))
            failing = [t for t, outcome in results.items() if outcome != "passed"]
            missing = [t for t in REQUIRED_TESTS if t not in results]
            if rec["code"] != 0 or failing or missing:
                return CheckResult(False, _msg("tests_fail_candidate", version=candidate, run=exp["runs"]["candidate"],
                                               failed=", ".join(failing + missing) or _msg("exit_code", code=rec["code"]),
                                               detail=_tail(rec["output"])))
        elif results.get(spec["must_fail"]) != "failed" or rec["code"] == 0:
            flaw = spec["flaw"]
            return CheckResult(False, _msg("test_missed_flaw", test=spec["must_fail"], flaw=_msg(f"flaw_{flaw}"),
                                           fix=_msg(f"fix_{flaw}")))
    key = "tests_ok" if len(exp["tests_cases"]) == 1 else "tests_flaws_ok"
    return CheckResult(True, _msg(key, names=", ".join(REQUIRED_TESTS), version=candidate))


def _promotion_record(tags: Mapping[str, str], version: str, reason: str | None) -> CheckResult | None:
    absent = [t for t in PROMOTION_TAGS if not tags.get(t)]
    if absent:
        return CheckResult(False, _msg("promotion_untagged", version=version, s="s" if len(absent) > 1 else "",
                                       missing=", ".join(absent), found=pairs(tags) or _msg("none")))
    try:
        datetime.fromisoformat(tags["promoted_at"].replace("Z", "+00:00"))
    except ValueError:
        return CheckResult(False, _msg("bad_promoted_at", found=tags["promoted_at"]))
    if reason is not None and tags["promotion_reason"] != reason:
        return CheckResult(False, _msg("bad_reason", found=tags["promotion_reason"], expected=reason))
    return None


def judge_promote(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    problem = _need(ev, exp, PROMOTE_SCRIPT) or _need_roles(ev, exp)
    if problem:
        return problem
    found = (ev.get("runs") or {}).get("promote", {})
    version_of = {role: ev["versions"][role]["version"] for role in ROLES}
    refused: list[str] = []
    for case, spec in exp["promote_cases"].items():
        role = spec["role"]
        version, rec, run = version_of[role], found.get(case), exp["runs"][role]
        if rec is None:
            return _not_run(exp, "promote_model.py", _target(ev, exp, role), _todo(exp, PROMOTE_SCRIPT))
        problem = _program_problem(rec, "promote_model.py", _todo(exp, PROMOTE_SCRIPT))
        if problem:
            return problem
        after = rec.get("tags_after") or {}
        must = spec["must"]
        if must == "promote_if_validated" and after.get("validation_passed") != "true":
            must = "refuse_quietly"
        if must in ("refuse", "refuse_quietly"):
            shown = pairs(rec.get("tags_before") or after) or _msg("none")
            if rec["code"] == 0:
                key = "promote_refused_false" if spec.get("tag") == "false" else "promoted_poor"
                return CheckResult(False, _msg(key, version=version, run=run, code=0, tags=shown))
            if rec.get("champion_after") == version or _changes(rec, (), version):
                return CheckResult(False, _msg("poor_is_champion", version=version, run=run))
            recorded = [t for t in PROMOTION_TAGS if t in after and t not in (rec.get("tags_before") or {})]
            if recorded:
                return CheckResult(False, _msg("poor_tagged", version=version, run=run, tags=", ".join(recorded)))
            if must == "refuse_quietly":
                return CheckResult(True, _msg("promote_refusal_only", poor=version_of["poor"], candidate=version,
                                                   redo=_msg(exp.get("redo", "redo_setup"))))
            refused.append(_msg("target_version", version=version, run=run))
            continue
        if rec["code"] != 0:
            return CheckResult(False, _msg("promote_failed", version=version, code=rec["code"],
                                           tail=_tail(rec["output"])))
        if rec.get("champion_after") != version:
            return CheckResult(False, _msg("alias_not_moved", version=version, champion=rec.get("champion_after")))
        problem = _promotion_record(after, version, rec.get("reason"))
        if problem:
            return problem
    return CheckResult(True, _msg("promote_ok", refused=_msg("and").join(refused), candidate=version_of["candidate"],
                                  tags=", ".join(PROMOTION_TAGS)))


def _schema_error(output: str) -> str:
    """The most useful line of check-jsonschema's report: its best match, else the first error."""
    lines = [line.strip() for line in _ANSI.sub("", output).splitlines() if line.strip()]
    if "Best Match:" in lines[:-1]:
        return lines[lines.index("Best Match:") + 1][:300]
    errors = [line for line in lines if "::$" in line]
    return (errors[0] if errors else _tail(output))[:300]


def _step_reason(step: Mapping[str, Any]) -> str:
    if step.get("reason"):
        return str(step["reason"])
    return _msg("exit_code", code=step.get("code")) + (f": {step['tail']}" if step.get("tail") else "")


def _first_failure(scenario: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((s for s in scenario.get("steps", []) if s.get("status") == "failure"), None)


def _args_problem(record: Mapping[str, Any], exp: Mapping[str, Any]) -> CheckResult | None:
    """Whether one program got the arguments and environment the run's vars and secret say."""
    args, env, kind = record.get("args") or [], record.get("env") or {}, record["kind"]
    wf = exp["workflow_vars"]
    name, version, batch = exp["model_name"], wf["version"], wf["batch"]
    shown = " ".join(args)

    def has(option: str, value: str) -> bool:
        return _option(args, option) == value

    def names_batch(value: str | None) -> bool:
        return value is not None and value.replace("\\", "/").rstrip("/").endswith(batch)

    if kind == "data" and not any(names_batch(a) for a in args):
        return CheckResult(False, _msg("arg_data", args=shown, batch=batch))
    if kind == "tests" and env.get("MODEL_URI") != f"models:/{name}/{version}":
        return CheckResult(False, _msg("arg_tests", found=env.get("MODEL_URI"), name=name,
                                       expected=f"models:/{name}/{version}"))
    if kind == "gate" and not (has("--model-name", name) and has("--version", version)
                               and names_batch(_option(args, "--data"))):
        return CheckResult(False, _msg("arg_gate", args=shown, name=name, version=version, batch=batch))
    if kind == "promote" and not (has("--model-name", name) and has("--version", version)
                                  and (_option(args, "--reason") or "").strip()):
        return CheckResult(False, _msg("arg_promote", args=shown, name=name, version=version))
    if kind != "data" and env.get("MLFLOW_TRACKING_URI") != MASKED:
        return CheckResult(False, _msg("no_secret", what=_msg(f"step_{kind}").capitalize()))
    return None


def judge_workflow(ev: Evidence, exp: Mapping[str, Any]) -> CheckResult:
    """What the workflow runner ran, with probes for the four programs: everything passing, then
    each program failing in turn (``lab05_run.probe_run``)."""
    problem = _need(ev, exp, WORKFLOW)
    if problem:
        return problem
    found = (ev.get("runs") or {}).get("workflow", {})
    run = found.get("run") or {"error": "no_answer", "detail": _msg("unknown")}
    if run.get("error") == "todo":
        return CheckResult(False, _msg("workflow_todo", file=WORKFLOW, todo=_todo(exp, WORKFLOW)))
    if run.get("error") == "yaml":
        return CheckResult(False, _msg("workflow_not_yaml", file=WORKFLOW, error=run.get("detail"), todo=_todo(exp, WORKFLOW)))
    if run.get("error") == "no_answer":
        return CheckResult(False, _msg("workflow_no_answer", file=WORKFLOW, detail=run.get("detail")))
    schema = found.get("schema")
    if schema is None:
        return _not_run(exp, "check_jsonschema", WORKFLOW, _todo(exp, WORKFLOW))
    if schema.get("code") != 0:
        return CheckResult(False, _msg("workflow_invalid", file=WORKFLOW, details=_schema_error(schema["output"])))
    if run.get("error"):
        return CheckResult(False, _msg("workflow_not_mapping", file=WORKFLOW, detail=run.get("detail")))
    if "push" not in run.get("events", []):
        return CheckResult(False, _msg("workflow_no_push", file=WORKFLOW,
                                       found=", ".join(run.get("events", [])) or _msg("none")))
    scenarios = run.get("scenarios") or {}
    passing = scenarios.get("pass") or {}
    kinds = [r["kind"] for r in passing.get("ran", [])]
    stop = _first_failure(passing)
    hint = _msg("hint_act") if stop is not None and "pip" in f"{stop.get('step')} {stop.get('tail')}" else ""
    for kind in WORKFLOW_ORDER:
        if kind not in kinds:
            stopped = "" if stop is None else _msg("workflow_stopped", step=stop["step"], job=stop["job"],
                                                    reason=_step_reason(stop)) + hint
            return CheckResult(False, _msg("workflow_missing", file=WORKFLOW, missing=_msg(f"step_{kind}"),
                                           example=EXAMPLES[kind], stopped=stopped))
    for earlier, later in zip(WORKFLOW_ORDER, WORKFLOW_ORDER[1:], strict=False):
        if kinds.index(later) < kinds.index(earlier):
            return CheckResult(False, _msg("workflow_order", file=WORKFLOW, earlier=_msg(f"step_{earlier}"),
                                           later=_msg(f"step_{later}")))
    for record in passing["ran"]:
        problem = _args_problem(record, exp)
        if problem:
            return problem
    if stop is not None or passing.get("status") != "success":
        stop = stop or {"step": "?", "job": "?", "reason": _msg("unknown")}
        return CheckResult(False, _msg("workflow_red", file=WORKFLOW, step=stop["step"], job=stop["job"],
                                       reason=_step_reason(stop), hint=hint))
    for failing in WORKFLOW_ORDER[:-1]:
        scenario = scenarios.get(f"fail_{failing}") or {}
        ran = [r["kind"] for r in scenario.get("ran", [])]
        after = ran[ran.index(failing) + 1:] if failing in ran else ran
        later = [k for k in WORKFLOW_ORDER[WORKFLOW_ORDER.index(failing) + 1:] if k in after]
        if later:
            return CheckResult(False, _msg("workflow_no_stop", file=WORKFLOW, failed=_msg(f"step_{failing}"),
                                           ran=_msg(f"step_{later[0]}")))
        if scenario.get("status") != "failure":
            return CheckResult(False, _msg("workflow_green", file=WORKFLOW, failed=_msg(f"step_{failing}")))
    return CheckResult(True, _msg("workflow_ok", file=WORKFLOW))


@dataclass(frozen=True)
class Part:
    """One part of the lab (05a or 05b), as its kit module declares it."""

    lab: str  # the lab id: the notebook's name, and the name of the expected values shipped
    todos: Mapping[str, int]  # file the part writes -> the TODO that writes it
    checks: Mapping[str, tuple[int, Judge]]  # check id -> (TODO number, judgment)

    def evidence(self, tracking_uri: str, params: Mapping[str, Any], run_id: str | None = None,
                 confine_to: Path | None = None) -> Evidence:
        return evidence(tracking_uri, params, self.todos, confine_to)

    def expected_from_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {**expected_from_params(params), "todos": dict(self.todos)}

    def self_check(self, check_id: str, namespace: Mapping[str, Any]) -> None:
        """Run one check from a test cell: print a pass line or raise a clear failure.

        Judges the steps the notebook's CI runner recorded (and, for the workflow, a run of it
        by the workflow runner with probes, here in the kernel) against the values shipped for
        the default inputs. The grader runs the same programs again, on inputs the notebook
        never saw."""
        import mlflow

        from autograder.kit import lab05_run

        todo, judge = self.checks[check_id]
        params = {name: namespace[name] for name in PARAMS if name in namespace}
        with quiet():
            ev = self.evidence(mlflow.get_tracking_uri(), params)
            exp = {**self.expected_from_params(params), **(load_expected(self.lab, params) or {})}
            ev["runs"] = history_runs(ev, params)
            if judge is judge_workflow and ev["files"].get(WORKFLOW) and WORKFLOW not in ev.get("stale", []):
                exp["workflow_vars"] = wf = workflow_vars()
                ev["runs"]["workflow"]["run"] = lab05_run.probe_run(Path(WORKFLOW), exp["model_name"], wf["version"],
                                                                    wf["batch"], wf["tracking_uri"])
            result = judge_safely(judge, ev, exp)
        report(result, LABEL.format(n=todo))
