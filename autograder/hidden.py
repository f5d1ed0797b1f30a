"""Hidden inputs: a seed and a data variant the student never saw.

Official grading runs each submission on them, and computes every reference on the same
inputs, so that values copied from an earlier run, a classmate or the solution do not match.
The variant comes from the course's own generator (``data/make_data.py``) with another seed:
the same ground truth (where drift starts, which batch drifts how), other rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograder import course, store

#: Parameters every lab takes from the hidden seed (the others stay as the master has them).
SEEDED_PARAMS = ("SEED",)


@dataclass(frozen=True)
class HiddenInputs:
    """The inputs of one grading: the seed, and the folder holding the data variant."""

    seed: int
    data_dir: Path

    @property
    def dataset(self) -> Path:
        return self.data_dir / course.MAIN_DATASET.name

    def overrides(self, params: dict[str, object]) -> dict[str, object]:
        """The parameters of the lab that the hidden seed replaces (none for the course's own)."""
        if self.seed < 0:
            return {}
        return {name: self.seed % 10_000 for name in SEEDED_PARAMS if name in params}


def new_seed() -> int:
    """A fresh seed for one grading or one class."""
    return secrets.randbelow(2**31 - 10_000) + 10_000


def submission_seed(class_seed: int, *identity: str) -> int:
    """The hidden seed of one submission in a class: derived from the class's secret seed and
    the submission's identity (student, lab, content), so that each submission, and each
    re-submission, gets inputs of its own: the expected values one feedback shows are worth
    nothing to a classmate or to the next attempt. A negative seed (the course data) stays."""
    if class_seed < 0:
        return class_seed
    digest = hashlib.sha256("|".join([str(class_seed), *identity]).encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 10_000) + 10_000


def discard(inputs: HiddenInputs) -> None:
    """Remove a variant that served one submission only (the course data stays)."""
    if inputs.seed >= 0 and inputs.data_dir.parent == store.cache_dir() / "variants":
        shutil.rmtree(inputs.data_dir, ignore_errors=True)


def hidden_inputs(seed: int) -> HiddenInputs:
    """The data variant for ``seed``, generated once and kept in the grader's cache (which no
    sandbox can see). A negative seed means the course's own data."""
    if seed < 0:
        return course_inputs()
    folder = store.cache_dir() / "variants" / str(seed)
    if not (folder / course.MAIN_DATASET.name).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            _generator().write_all(Path(tmp), seed)
            os.chmod(tmp, 0o755)  # the sandbox's user reads it (bound read-only)
            with contextlib.suppress(OSError):  # another worker made it first
                os.replace(tmp, folder)
            Path(tmp).mkdir(exist_ok=True)  # for TemporaryDirectory's clean-up
    return HiddenInputs(seed, folder)


def course_inputs() -> HiddenInputs:
    """The course's own data and the masters' seed: for trusted runs (CI, self-grading)."""
    return HiddenInputs(-1, course.DATA_DIR)


def _generator():  # noqa: ANN202 - a module loaded from a file
    spec = importlib.util.spec_from_file_location("make_data", course.DATA_DIR / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module
