"""Generate the student notebooks in ``labs/`` from the masters in ``solutions/``.

nbgrader's own preprocessors do the work (the ones ``nbgrader generate_assignment``
runs), without its gradebook database: the student notebook then depends only on the
master, so a test can regenerate it in memory and compare it with the committed one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

from autograder import translation
from autograder.course import LABS, MAIN_DATASET, SOURCE_LANGUAGE, Lab
from autograder.kit import i18n
from autograder.kit.checking import EXPECTED_DIR
from autograder.kit.i18n import _
from autograder.labspec import spec_for
from autograder.notebook import notebook_language, parameters_of

# The same order as nbgrader's GenerateAssignment, minus the database and header steps.
PIPELINE: list[type[Preprocessor]] = [
    LockCells,
    ClearSolutions,
    ClearOutput,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ComputeChecksums,
    CheckCellMetadata,
]


def student_version(master: NotebookNode) -> NotebookNode:
    """The student notebook for a master: solutions and hidden tests removed, no outputs.
    The stub nbgrader leaves in a TODO cell speaks the notebook's language."""
    nb = nbformat.from_dict(master)  # a copy: the preprocessors edit in place
    lang = notebook_language(master)
    with i18n.using(lang):  # nbgrader's ClearSolutions.code_stub, in the notebook's words
        words = _("YOUR CODE HERE")
    stub = {"python": f"# {words}\nraise NotImplementedError()"}
    resources: dict = {}
    for step in PIPELINE:
        nb, resources = (step(code_stub=stub) if step is ClearSolutions else step()).preprocess(nb, resources)
    return nb


def render(lab: Lab, lang: str = SOURCE_LANGUAGE) -> str:
    """The exact text of the student notebook file for a lab, in ``lang``."""
    return nbformat.writes(student_version(master_in(lab, lang))) + "\n"


def master_in(lab: Lab, lang: str) -> NotebookNode:
    """The master in ``lang``: the English master, or the one its translation makes
    (``TranslationError`` when that translation is missing cells or stale)."""
    master = nbformat.read(lab.master, as_version=4)
    return master if lang == SOURCE_LANGUAGE else translation.translated_master(lab, lang, master)


def render_master(lab: Lab, lang: str) -> str:
    """The exact text of a translated edition's solution notebook (``solutions/<lang>/``)."""
    return nbformat.writes(master_in(lab, lang)) + "\n"


def editions(lab: Lab) -> list[str]:
    """The translated languages ``lab`` has a translation file for."""
    return [lang for lang in i18n.LANGUAGES if lang != SOURCE_LANGUAGE and translation.path(lab, lang).is_file()]


def stale_editions() -> list[tuple[Lab, str, list[str]]]:
    """Translated notebooks that differ from what the master and its translation generate:
    (lab, language, the translation's problems, empty when only the files are behind)."""
    stale = []
    for lab in LABS.values():
        for lang in editions(lab):
            issues = translation.problems(lab, lang)
            if issues:
                stale.append((lab, lang, issues))
                continue
            files = ((lab.student_in(lang), render(lab, lang)),
                     (lab.generated_master(lang), render_master(lab, lang)))
            if any(not p.exists() or p.read_text(encoding="utf-8") != text for p, text in files):
                stale.append((lab, lang, []))
    return stale


def write_editions() -> tuple[list[Path], list[str]]:
    """Regenerate every translated notebook whose translation is complete; (files written,
    one line per translation that is not complete)."""
    written, blocked = [], []
    for lab, lang, issues in stale_editions():
        if issues:
            blocked.append(f"{lab.lab_id} ({lang}): {issues[0]}" + (f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""))
            continue
        for p, text in ((lab.generated_master(lang), render_master(lab, lang)),
                        (lab.student_in(lang), render(lab, lang))):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8", newline="\n")
            written.append(p)
    return written, blocked


def expected_path(lab: Lab) -> Path:
    return EXPECTED_DIR / f"{lab.lab_id}.json"


def render_expected(lab: Lab) -> str | None:
    """The expected values the kit ships for a lab: plain numbers, computed by the lab's
    references on the course's own data and the master's parameters. They let a student's
    self-checks judge values; they are worth nothing at grading, where the inputs are hidden."""
    spec = spec_for(lab.lab_id)
    if spec is None:
        return None
    params = parameters_of(nbformat.read(lab.master, as_version=4))
    made_for = {k: params[k] for k in spec.lab.PARAMS if k in params}
    values = _rounded(spec.expected(MAIN_DATASET, params))
    return json.dumps({"params": made_for, "expected": values}, sort_keys=True) + "\n"


def _rounded(value: Any) -> Any:
    """Floats to 9 significant digits: a forest trained on several threads sums its trees in
    any order, and the last bits of its predictions must not make the file look stale."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def stale_labs() -> list[Lab]:
    """Labs whose committed student notebook or shipped expected values differ from what
    the master generates."""
    stale = []
    for lab in LABS.values():
        expected = render_expected(lab)
        if (
            not lab.student.exists()
            or lab.student.read_text(encoding="utf-8") != render(lab)
            or (expected is not None and (not expected_path(lab).exists()
                                          or expected_path(lab).read_text(encoding="utf-8") != expected))
        ):
            stale.append(lab)
    return stale


def write_all() -> list[Lab]:
    """Regenerate every student notebook and expected-values file; return what changed."""
    changed = stale_labs()
    for lab in changed:
        lab.student.parent.mkdir(parents=True, exist_ok=True)
        lab.student.write_text(render(lab), encoding="utf-8", newline="\n")
        expected = render_expected(lab)
        if expected is not None:
            expected_path(lab).write_text(expected, encoding="utf-8", newline="\n")
    return changed
