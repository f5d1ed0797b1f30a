"""Where the course's files live, and which labs exist.

Everything else asks this module for paths, so that a notebook run from
``labs/01_tracking/``, a grader run from a temporary directory and a test run
from the repository root all agree on one course-level layout.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

#: The repository root: ``autograder/`` sits at its top level (editable install).
#: ``COURSE_ROOT`` overrides it, for an installed copy graded against another checkout.
ROOT = Path(os.environ.get("COURSE_ROOT") or Path(__file__).resolve().parents[1])
LABS_DIR = ROOT / "labs"
SOLUTIONS_DIR = ROOT / "solutions"
DATA_DIR = ROOT / "data"
MAIN_DATASET = DATA_DIR / "devops_metrics.csv"

#: The one course-level MLflow store that JupyterLab, the MLflow UI and every lab share.
STORE_DIR = ROOT / "mlflow-store"

#: The language the masters are written in; other editions are generated (``translation``).
SOURCE_LANGUAGE = "en"
#: The other editions' languages (a Spanish student bundle has only ``labs/es/``).
EDITIONS = ("es",)


def default_language() -> str:
    """The edition this copy of the course holds when it holds one only (a student bundle of
    one language), else English: what ``make lab`` opens when no language is asked for."""
    if any(LABS_DIR.glob("[0-9][0-9]*_*/*.ipynb")):
        return SOURCE_LANGUAGE
    held = [lang for lang in EDITIONS if any((LABS_DIR / lang).glob("[0-9][0-9]*_*/*.ipynb"))]
    return held[0] if len(held) == 1 else SOURCE_LANGUAGE


#: A lab's id: two digits, an optional part letter, then the topic (``01_tracking``, ``05a_testing``).
LAB_ID = re.compile(r"[0-9]{2}[a-z]?_[a-z0-9_]+")


@dataclass(frozen=True)
class Lab:
    """One lab: its id (the folder and notebook name) and the module holding its checks."""

    lab_id: str

    @property
    def number(self) -> str:
        """The lab's number as the course writes it: ``01`` for ``01_tracking``, ``05a`` for
        ``05a_testing``. A lab that would take a student past an hour is split into parts that
        keep its number and add a letter, so the other labs keep theirs."""
        return self.lab_id.split("_", 1)[0]

    @property
    def kit_module(self) -> str:
        """The lab's kit module (evidence, judgments, self-checks), which ships to students."""
        return f"autograder.kit.lab{self.number}"

    @property
    def master(self) -> Path:
        """The hand-written master notebook: solutions plus nbgrader markup.

        A student bundle ships without ``solutions/``: there the student notebook stands in,
        so self-grading still restores every test cell and runs every check (only the hidden
        tests' cell output is missing; the grader's own checks are the same)."""
        master = SOLUTIONS_DIR / self.lab_id / f"{self.lab_id}.ipynb"
        return master if master.exists() or not self.student.exists() else self.student

    @property
    def student(self) -> Path:
        """The student notebook generated from the master."""
        return LABS_DIR / self.lab_id / f"{self.lab_id}.ipynb"

    def student_in(self, lang: str) -> Path:
        """The student notebook in ``lang``: English in ``labs/``, another edition in
        ``labs/<lang>/`` (generated from the master and its translation)."""
        return self.student if lang == SOURCE_LANGUAGE else LABS_DIR / lang / self.lab_id / f"{self.lab_id}.ipynb"

    def generated_master(self, lang: str) -> Path:
        """Where ``make labs`` writes the master of another edition: ``solutions/<lang>/``."""
        return SOLUTIONS_DIR / lang / self.lab_id / f"{self.lab_id}.ipynb"

    def master_in(self, lang: str) -> Path:
        """The master in ``lang``: the hand-written one in English, otherwise the generated
        ``solutions/<lang>/`` copy (in a student bundle, that edition's student notebook)."""
        if lang == SOURCE_LANGUAGE:
            return self.master
        master = self.generated_master(lang)
        # Only a bundle (no English master either) grades on the student notebook: where the
        # masters are, a missing edition is an error (the hidden tests would be missing).
        return self.student_in(lang) if not self.master.exists() and self.student_in(lang).exists() else master


def discover_labs() -> dict[str, Lab]:
    """Every lab with a master ``solutions/NN_topic/NN_topic.ipynb`` (or, in a student
    bundle, a ``labs/NN_topic/NN_topic.ipynb``). A lab's checks are its kit module
    (``autograder/kit/labNN.py``) and its entry in ``autograder.references.SPECS``."""
    editions = [LABS_DIR / lang for lang in EDITIONS]
    found = sorted(
        {
            p.stem
            for d in (SOLUTIONS_DIR, LABS_DIR, *editions)
            for p in d.glob("[0-9][0-9]*_*/*.ipynb")
            if p.parent.name == p.stem and LAB_ID.fullmatch(p.stem)
        }
    )
    return {stem: Lab(stem) for stem in found}


LABS: dict[str, Lab] = discover_labs()


def lab_for_notebook(name: str) -> Lab | None:
    """The lab a notebook file name names (``01_tracking.ipynb``, ``alice_01_tracking.ipynb``)."""
    stem = Path(name).stem
    return next((lab for lab_id, lab in LABS.items() if lab_id in stem), None)
