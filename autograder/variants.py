"""Per-student variants: each student works, and is graded, on data of their own.

A student's variant is a seed derived from their id with a keyed hash, HMAC-SHA256 under an
instructor secret (32 random bytes in a file that stays with the instructor). The seed drives
the course's own generator (``data/make_data.py --seed``): other rows, the same ground truth
(same simulator, same drift structure, same winning model), so every lab works unchanged. The
notebook's ``SEED`` parameter comes from the same seed. Without the secret nobody can compute
another student's variant: the id is public, the seed is a keyed hash of it, and knowing one's
own (id, seed) pair says nothing about the key (HMAC is a pseudo-random function).

**Why one bundle per student** (and not a notebook that finds its variant from the student id):
a notebook could only derive a variant from an id with the secret, and the secret must never
reach a student; a table of every student's seed in one bundle would hand each student
everyone's variant. So ``release --roster`` builds one bundle per student, with the student's
own data in ``data/``, their seed in each notebook's parameters cell, and the self-checks'
expected values computed on their variant: the notebook works on it with no extra step.

**What grading checks.** ``class --variants`` runs each submission on its student's own data
(what they worked on), with a hidden seed per submission for the split and the models (from the
class secret, as without variants) and the hidden tests. A copied *result* (numbers typed in,
a model or store brought in from a classmate's run) was made on another variant and fails;
copied *code* computes on whatever data it is given and earns its points on any variant: that
is what the similarity report is for. The price of grading on data the student has seen: a
check whose value depends on the data alone, not on the seed, could be passed by typing in the
value of one's own run; grading without variants (hidden data) closes that, at the cost of
judging the student on data they never worked on.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from autograder import course, hidden, store
from autograder.kit.i18n import Messages

SECRET_BYTES = 32
_PURPOSE = b"mlops-labs student variant\x00"
_SEED_LINE = re.compile(r"^SEED\s*=\s*\d+", re.MULTILINE)

# Sentences the instructor or the student reads, in one place (for translation).
TEXT = Messages({
    "no_secret": "{path}: no instructor secret there (create one with `python -m autograder variants --init {path}`)",
    "bad_secret": "{path}: not an instructor secret (expected {n} random bytes as hex on one line)",
    "exists": "{path}: a secret is already there; it is kept (deleting it would give every student a new variant)",
    "readme": (
        "# Your data variant\n\n"
        "The data in `data/` and the `SEED` in each notebook's parameters are yours: every student "
        "has a variant of their own, with the same structure and other numbers. Work on it as it is; "
        "your instructor grades your notebook on your variant (with a hidden seed), so numbers copied "
        "from a classmate's run will not match.\n\nStudent: `{student}`\n"
    ),
})


def create_secret(path: Path) -> None:
    """Write a new secret (readable by its owner only). An existing secret is never replaced."""
    if path.exists():
        raise FileExistsError(TEXT["exists"].format(path=path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(SECRET_BYTES) + "\n")


def read_secret(path: Path) -> bytes:
    """The secret's bytes; a one-line ``ValueError`` when the file is missing or malformed."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ValueError(TEXT["no_secret"].format(path=path)) from None
    except (OSError, UnicodeDecodeError):
        raise ValueError(TEXT["bad_secret"].format(path=path, n=SECRET_BYTES)) from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < SECRET_BYTES:
        raise ValueError(TEXT["bad_secret"].format(path=path, n=SECRET_BYTES))
    return secret


def variant_seed(secret: bytes, student_id: str) -> int:
    """The student's variant: HMAC-SHA256(secret, id), as a generator seed (10,000 to 2**31)."""
    digest = hmac.new(secret, _PURPOSE + student_id.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 10_000) + 10_000


def fingerprint(secret: bytes) -> str:
    """Names a secret without revealing it: kept in a class's output folder, so that a resumed
    batch or a regrade with another secret is refused instead of mixing variants."""
    return hmac.new(secret, b"fingerprint", hashlib.sha256).hexdigest()[:16]


def notebook_seed(variant: int) -> int:
    """The ``SEED`` parameter of the student's notebooks (the same rule as hidden inputs)."""
    return variant % 10_000


def variant_dir(variant: int) -> Path:
    """The variant's data, generated once into the grader's cache (which no sandbox can see
    whole: a grading binds only this one folder, read-only)."""
    folder = store.cache_dir() / "student-variants" / str(variant)
    if not (folder / course.MAIN_DATASET.name).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            hidden._generator().write_all(Path(tmp), variant)
            os.chmod(tmp, 0o755)  # the sandbox's user reads it
            with contextlib.suppress(OSError):  # another worker made it first
                os.replace(tmp, folder)
            Path(tmp).mkdir(exist_ok=True)  # for TemporaryDirectory's clean-up
    return folder


def grading_inputs(variant: int, hidden_seed: int) -> hidden.HiddenInputs:
    """What a submission is graded on: its student's data, and a hidden seed (split, models)."""
    return hidden.HiddenInputs(hidden_seed, variant_dir(variant))


def with_seed(notebook_text: str, seed: int) -> str:
    """The notebook with ``SEED = <seed>`` in its parameters cell (the only cell changed)."""
    import nbformat

    nb = nbformat.reads(notebook_text, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = _SEED_LINE.sub(f"SEED = {seed}", cell.source, count=1)
    return nbformat.writes(nb) + "\n"


def expected_for(lab_id: str, data_dir: Path, seed: int) -> str | None:
    """The self-checks' expected values for a lab on this variant, in the kit's format."""
    import nbformat

    from autograder.generate import _rounded
    from autograder.labspec import spec_for
    from autograder.notebook import parameters_of

    spec = spec_for(lab_id)
    if spec is None:
        return None
    params = parameters_of(nbformat.read(course.LABS[lab_id].master, as_version=4))
    if "SEED" in params:
        params["SEED"] = seed
    made_for = {k: params[k] for k in spec.lab.PARAMS if k in params}
    values = _rounded(spec.expected(data_dir / course.MAIN_DATASET.name, params))
    return json.dumps({"params": made_for, "expected": values}, sort_keys=True) + "\n"


def student_members(members: dict[str, bytes], student_id: str, variant: int, lab_ids: list[str]) -> dict[str, bytes]:
    """The bundle of one student: the class bundle with their data variant in ``data/``, their
    seed in each notebook, and the expected values of their variant. Nothing of the secret."""
    own = dict(members)
    data = variant_dir(variant)
    for path in sorted(data.rglob("*")):
        if path.is_file():
            own[f"data/{path.relative_to(data).as_posix()}"] = path.read_bytes()
    seed = notebook_seed(variant)
    for lab_id in lab_ids:
        # The bundle's edition: labs/ in English, labs/<lang>/ in another language.
        name = next(n for n in (f"labs/{lab_id}/{lab_id}.ipynb", *(f"labs/{lang}/{lab_id}/{lab_id}.ipynb"
                                                                  for lang in course.EDITIONS)) if n in own)
        own[name] = with_seed(own[name].decode("utf-8"), seed).encode("utf-8")
        expected = expected_for(lab_id, data, seed)
        target = f"autograder/kit/expected/{lab_id}.json"
        if expected is not None:
            own[target] = expected.encode("utf-8")
        else:
            own.pop(target, None)
    own["VARIANT.md"] = TEXT["readme"].format(student=student_id).encode("utf-8")
    return own


def describe(secret: bytes, students: list[str]) -> list[dict[str, Any]]:
    """Each student's variant, for the instructor's own records (never for a bundle)."""
    return [{"student_id": s, "variant": variant_seed(secret, s), "seed": notebook_seed(variant_seed(secret, s))}
            for s in students]
