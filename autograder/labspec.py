"""What a lab declares to the grader, and the one way the grader runs a submission's code
after its notebook: inside the same sandbox, with bounded time and output.

A lab is a ``LabSpec``: its kit module (parameters, evidence, judgments: what ships), how
its expected values are computed on given inputs (trusted, ``autograder.references``), and
what evidence needs the submission's own code to run (``run_code``). The grader calls these
in that order, explicitly: no naming rule, no ``getattr``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from autograder import course
from autograder.kit.i18n import _
from autograder.sandbox import Sandbox, python

#: Seconds a program the grader runs for evidence may take, and the output it may print.
RUN_TIMEOUT = 120.0
MAX_OUTPUT = 4 << 20


@dataclass(frozen=True)
class Completed:
    returncode: int | None  # None: stopped at the time limit
    stdout: str
    stderr: str


class Started:
    """A program started now, to be fed and read later (``finish``): its start-up (imports)
    overlaps with other work. Output goes to files, so a program that prints gigabytes
    costs disk up to its file-size limit, not the grader's memory."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None) -> None:
        import tempfile

        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 (closed in finish or kill)
        self.proc = subprocess.Popen(argv, cwd=cwd, env=None if env is None else dict(env), stdin=subprocess.PIPE,
                                     stdout=self.out, stderr=self.err, start_new_session=True)

    def finish(self, stdin: bytes = b"", timeout: float = RUN_TIMEOUT, max_output: int = MAX_OUTPUT) -> Completed:
        proc, out, err = self.proc, self.out, self.err
        try:
            proc.communicate(stdin, timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        except BrokenPipeError:  # it ended before reading its input
            proc.wait()
            code = proc.returncode
        texts = []
        for stream in (out, err):
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - max_output) if stream is err else 0)
            texts.append(stream.read(max_output).decode("utf-8", "replace"))
            stream.close()
        return Completed(code, *texts)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def run_bounded(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None, stdin: bytes = b"",
                timeout: float = RUN_TIMEOUT, max_output: int = MAX_OUTPUT) -> Completed:
    """Run a program, feeding ``stdin``, keeping at most ``max_output`` bytes of each stream.

    Written here rather than with ``subprocess.run(capture_output=True)``, which keeps all
    the output in memory: a hostile program may print gigabytes."""
    return Started(argv, cwd, env).finish(stdin, timeout, max_output)


@dataclass
class SandboxRunner:
    """Runs kit programs on a submission's folder: in its sandbox, or (trusted notebooks,
    ``--no-sandbox``) as a plain process."""

    workdir: Path
    tracking_uri: str
    sandbox: Sandbox | None

    _spare: Started | None = None

    def run_kit(self, module: str, args: Sequence[str], stdin: bytes = b"") -> Completed:
        return self.start_kit(module, args).finish(stdin)

    def start_kit(self, module: str, args: Sequence[str] = ()) -> Started:
        if self.sandbox is not None:
            # -E -s -P: no PYTHON* variables, no user site, not the folder on sys.path: the
            # submission's files in its folder cannot stand in for the kit's modules.
            code = f"import sys; sys.path.insert(0, '/course'); import runpy; runpy.run_module('{module}', run_name='__main__')"
            argv = self.sandbox.command([python(), "-E", "-s", "-P", "-c", code, *args])
            env = {"PATH": os.environ.get("PATH", "")}
        else:
            argv = [sys.executable, "-m", module, *args]
            env = {**os.environ, "PYTHONPATH": str(course.ROOT), "MLFLOW_TRACKING_URI": self.tracking_uri}
        return Started(argv, self.workdir, env)

    def warm(self) -> None:
        """Start a prediction process now (its imports take seconds); the first ``predict``
        uses it. Call while the notebook runs."""
        self._spare = self.start_kit("autograder.kit.predict")

    def close(self) -> None:
        if self._spare is not None:
            self._spare.kill()
            self._spare = None

    def predict(self, model_uri: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """``{"predictions": [...]}`` of one logged model on ``rows``, or ``{"prediction_error": ...}``.
        Each model gets a process of its own: one model's code cannot answer for another."""
        started, self._spare = self._spare or self.start_kit("autograder.kit.predict"), None
        job = {"tracking_uri": self.tracking_uri, "model_uri": model_uri, "rows": rows}
        done = started.finish(json.dumps(job).encode())
        if done.returncode is None:
            return {"prediction_error": f"predicting took longer than {RUN_TIMEOUT:g} s"}
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        try:
            answer = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            tail = done.stderr.strip().splitlines()[-1:] or ["no answer"]
            return {"prediction_error": tail[0][:300]}
        values = answer.get("predictions")
        if isinstance(values, list) and len(values) == len(rows) and all(
            isinstance(v, int | float) and math.isfinite(v) for v in values
        ):
            return {"predictions": [float(v) for v in values]}
        return {"prediction_error": str(answer.get("prediction_error", "not a list of numbers"))[:300]}


Expected = Callable[[Path, Mapping[str, Any]], dict[str, Any]]
RunCode = Callable[[dict[str, Any], Mapping[str, Any], Path, SandboxRunner], None]


@dataclass(frozen=True)
class LabSpec:
    """One lab, as the grader sees it."""

    lab: ModuleType  # the kit module: PARAMS, CHECKS, evidence(), expected_from_params()
    expected: Expected  # (dataset, params) -> expected values, trusted
    run_code: RunCode | None = None  # evidence that needs the submission's code, in its sandbox
    #: SQL the lab's own set-up adds to the store (tables, triggers), which the grader
    #: accepts there; anything else beyond MLflow's schema is refused unread.
    store_extras: tuple[str, ...] = ()
    #: The lab's ``run_code`` asks for models' predictions: start a prediction process while
    #: the notebook runs, so that its imports are paid then.
    predicts: bool = False


def spec_for(lab_id: str) -> LabSpec | None:
    """The lab's spec, or None where the references are absent (the student bundle, which
    ships without them: there the notebook's own self-checks are the grade)."""
    try:
        from autograder import references
    except ImportError:
        return None
    return references.spec(lab_id) if lab_id in references.MODULES else None


def nonce_answer(returncode: int | None, stdout: str, stderr: str, nonce: str, doing: str) -> dict[str, Any]:
    """A kit driver's answer: the last JSON line of ``stdout`` that carries this job's nonce (a
    line the submission printed into the same output does not), else an ``error`` saying why:
    the time limit while ``doing`` it, or the last line of ``stderr``."""
    for line in reversed([line for line in stdout.splitlines() if line.startswith("{")]):
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(answer, dict) and answer.get("nonce") == nonce:
            return answer
    if returncode is None:
        return {"error": _("{doing} took longer than {seconds} s").format(doing=doing, seconds=f"{RUN_TIMEOUT:g}")}
    tail = stderr.strip().splitlines()[-1:] or [_("no answer")]
    return {"error": tail[0][:300]}
