"""Grade one submission: validate, restore, execute in isolation, score from evidence.

A check earns its points only when both hold: its self-check cell ran without error in
the notebook (what nbgrader would score), and the same check, run again here in the
grader's own process on the submission's MLflow store, passes. The second condition is
the one a student cell cannot subvert from inside the kernel.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from autograder import course, hidden, store
from autograder import sandbox as sandbox_mod
from autograder.execute import Kernel, execute
from autograder.hidden import HiddenInputs
from autograder.kit import i18n
from autograder.kit.checking import CheckResult, judge_safely, quiet
from autograder.kit.i18n import _
from autograder.labspec import LabSpec, SandboxRunner, spec_for
from autograder.notebook import (
    edition_master,
    grade_id,
    graded_cells,
    identify_lab,
    notebook_language,
    parameters_of,
    read_submission,
    restore,
)
from autograder.results import CheckOutcome, GradeResult
from autograder.sandbox import DATA_MOUNT, Sandbox

DEFAULT_CELL_TIMEOUT = 120.0
DEFAULT_TOTAL_TIMEOUT = 600.0


def cell_status(executed: NotebookNode) -> dict[str, tuple[bool, str | None]]:
    """grade_id -> (ran, error line) for every code cell of an executed notebook."""
    status: dict[str, tuple[bool, str | None]] = {}
    for cell in executed.cells:
        gid = grade_id(cell)
        if cell.cell_type != "code" or gid is None:
            continue
        error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        line = f"{error.get('ename')}: {error.get('evalue')}".strip(": ") if error else None
        status[gid] = (cell.get("execution_count") is not None or bool(cell.get("outputs")), line)
    return status


#: Longest message or error line kept from what a submission controls (a run name, an
#: exception text): a 100 MB run name must not become a 100 MB feedback file.
MAX_TEXT = 300
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str, limit: int = MAX_TEXT) -> str:
    """One line for a report: control characters (terminal escapes) out, at most ``limit``."""
    text = _CONTROL_CHARS.sub("", str(text)).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def student_errors(executed: NotebookNode, known_ids: set[str] | None = None) -> list[str]:
    """The errors raised by the student's own cells, one line each. A cell is named by its
    grade_id only when the master has that cell (an added cell's id is the student's text)."""
    lines = []
    for cell in executed.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade"):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                gid = grade_id(cell)
                where = gid if gid and (known_ids is None or gid in known_ids) else _("an added cell")
                detail = f": {out.get('evalue')}" if out.get("evalue") else ""
                lines.append(clean(_("{cell} raised {error}").format(cell=where, error=f"{out.get('ename')}{detail}")))
    return lines


def grade_notebook(
    path: Path,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
    keep_workdir: bool = False,
    sandboxed: bool = True,
    inputs: HiddenInputs | None = None,
    slot: int = 0,
) -> GradeResult:
    """Grade one notebook file. Raises GradingError only when it cannot be graded.

    ``sandboxed``: run the notebook, and any of its code the checks need, in a bubblewrap
    jail (False only for notebooks you trust). ``inputs``: the hidden seed and data (default:
    a fresh hidden seed; ``hidden.course_inputs()`` for the course's own data)."""
    started = time.perf_counter()
    if sandboxed:
        sandbox_mod.require()
    submission = read_submission(path)
    lab = identify_lab(path, submission)
    # The notebook's own language: its master (Spanish comments in the restored cells) and
    # the language of every message. Both editions grade alike: same cells, same code.
    lang = notebook_language(submission)
    master = nbformat.read(edition_master(path, lab, lang), as_version=4)
    params = parameters_of(master)
    spec = spec_for(lab.lab_id)
    if spec is None:  # a student bundle: no references, so the self-checks on the course data
        spec, inputs = self_check_spec(lab.lab_id), hidden.course_inputs()
    inputs = inputs or hidden.hidden_inputs(hidden.new_seed())
    workdir = Path(tempfile.mkdtemp(prefix=f"grade-{lab.lab_id}-"))
    private = Path(tempfile.mkdtemp(prefix=f"judge-{lab.lab_id}-"))  # never visible to the sandbox
    tracking_uri = store.store_uri(workdir)
    box = Sandbox(workdir, data=inputs.data_dir, slot=slot, extra_env={"MLFLOW_TRACKING_URI": tracking_uri, i18n.ENV: lang}) \
        if sandboxed else None
    data_seen = Path(DATA_MOUNT) / inputs.dataset.name if box else inputs.dataset
    kernel = Kernel(workdir, tracking_uri, box)
    runner = SandboxRunner(workdir, tracking_uri, box)
    try:
        with i18n.using(lang):
            if box is not None:
                box.confine()  # before anything is written in the folder (it may become a tmpfs)
            store.fresh_store(workdir, store.template())
            (workdir / ".tmp").mkdir()
            if box is not None:
                box.prepare()
            kernel.start()
            if spec.predicts:
                runner.warm()
            rebuilt = restore(submission, master, nbformat.read(lab.student_in(lang), as_version=4))
            overrides = {"TRACKING_URI": tracking_uri, "DATA_PATH": str(data_seen), **inputs.overrides(params)}
            full = {**params, **overrides}
            reference: dict[str, Any] = {}
            ref_thread = threading.Thread(target=_prepare, args=(spec, inputs.dataset, full, reference), daemon=True)
            ref_thread.start()
            result = execute(rebuilt.notebook, workdir, overrides, kernel, cell_timeout, total_timeout, private)
            kernel.shutdown()  # the sandbox and everything in it end here
            ref_thread.join()
            ev = gather(spec, workdir, private, full)
            if spec.run_code is not None and "error" not in ev:
                spec.run_code(ev, reference, inputs.dataset, runner)
            outcomes = judge(master, spec, ev, reference, cell_status(result.notebook), result.stopped)
            known = {gid for gid in map(grade_id, master.cells) if gid}
            errors = ([result.stopped] if result.stopped else []) + student_errors(result.notebook, known)
            if "error" in ev:
                errors.append(ev["error"])
            return GradeResult(
                path=str(path),
                lab=lab.lab_id,
                score=sum(o.points for o in outcomes),
                max_score=sum(o.max_points for o in outcomes),
                checks=outcomes,
                errors=errors,
                restored=rebuilt.restored,
                seconds=round(time.perf_counter() - started, 2),
                language=lang,
            )
    finally:
        kernel.shutdown()
        runner.close()
        if box is not None:
            box.release(unmount=not keep_workdir)
        shutil.rmtree(private, ignore_errors=True)
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _prepare(spec: LabSpec, dataset: Path, params: dict[str, Any], into: dict[str, Any]) -> None:
    """While the notebook runs: compute the references, and import what reading the store
    will need (MLflow's client takes seconds to import, after the notebook otherwise)."""
    into.update(spec.expected(dataset, params))
    with contextlib.suppress(Exception):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        from mlflow import MlflowClient  # noqa: F401


def self_check_spec(lab_id: str) -> LabSpec:
    """Where the references are absent (the student bundle): judge by the notebook's own
    self-checks, which compare the student's run with the expected values the kit ships."""
    lab = importlib.import_module(course.LABS[lab_id].kit_module)
    passed = CheckResult(True, _("the self-check passed on your run (your instructor grades on hidden inputs)"))
    checks = {check_id: (todo, lambda ev, exp: passed) for check_id, (todo, _) in lab.CHECKS.items()}
    shim = types.SimpleNamespace(PARAMS=lab.PARAMS, CHECKS=checks, evidence=lambda *a, **k: {})
    return LabSpec(lab=shim, expected=lambda data, params: {})  # type: ignore[arg-type]


def gather(spec: LabSpec, workdir: Path, private: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The lab's evidence, read from a private copy of the submission's store, as data.

    The copy is the grader's own (the submission's file could be a symlink, or still be
    written to); artifact files are read only inside the submission's folder."""
    try:
        uri = store.private_copy(workdir, private, spec.store_extras)
    except ValueError as exc:
        return {"error": str(exc)}
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = (private / "artifacts").as_uri()
    with quiet():
        try:
            return spec.lab.evidence(uri, params, None, confine_to=workdir)
        except Exception as exc:
            return {"error": _("the MLflow store could not be read: {error}").format(error=f"{type(exc).__name__}: {str(exc)[:200]}")}


def judge(
    master: NotebookNode,
    spec: LabSpec,
    ev: dict[str, Any],
    expected: dict[str, Any],
    status: dict[str, tuple[bool, str | None]],
    stopped: str | None,
) -> list[CheckOutcome]:
    """Score every graded cell of the master: its self-check cell ran without error in the
    notebook, and the trusted judgment of the evidence against the expected values passes."""
    outcomes = []
    for check_id, max_points in graded_cells(master).items():
        _, judgment = spec.lab.CHECKS[check_id]
        own = judge_safely(judgment, ev, expected) if "error" not in ev else CheckResult(False, ev["error"])
        outcomes.append(_outcome(check_id, max_points, own, status, stopped))
    return outcomes


def _outcome(check_id: str, max_points: float, own: CheckResult, status: dict[str, tuple[bool, str | None]],
             stopped: str | None) -> CheckOutcome:
    ran, error = status.get(check_id, (False, None))
    own = CheckResult(own.passed, clean(own.message, 2 * MAX_TEXT))
    error = clean(error) if error else error
    if not own.passed:
        passed, message = False, own.message
    elif not ran:
        passed, message = False, _("not reached: {why}").format(why=stopped or _("the cell did not run"))
    elif error:
        passed, message = False, _("the self-check failed when the notebook ran: {error}").format(error=error)
    else:
        passed, message = True, own.message
    return CheckOutcome(check_id, max_points if passed else 0.0, max_points, passed, message)
