"""Build the student bundle: what a student needs to do the labs, and nothing more.

In: the generated student notebooks, the data, the set-up files, a README for students, and
of the ``autograder`` package only ``autograder/kit/`` (lab helpers, evidence gathering,
self-check judgments, expected numbers for the default inputs) and the engine files
``make check`` needs to run a notebook and print its self-checks, named one by one in
``ENGINE_FILES``.

Out: ``solutions/``, hidden tests, the course's own tests, CI, benchmarks, and every
reference implementation: ``autograder/references/`` and ``autograder/checks/`` never ship,
nor does any other file of the package that is not on the list (the instructor's modules,
``variants``, ``similarity``, ``late``, ``exports``, ``regrade``, ``roster``, are not on it).

Per-student bundles (``build_student_bundles``) are this bundle with one student's variant:
their data, their ``SEED`` and the self-checks' values for them (``autograder.variants``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from autograder import generate
from autograder.course import LABS, ROOT, SOURCE_LANGUAGE

TOP = "mlops-labs"
SETUP_FILES = ["Makefile", "requirements.txt", "requirements.in", "environment.yml", "pyproject.toml", ".gitignore"]
STUDENT_README = Path(__file__).with_name("student_readme.md")


def student_readme(lang: str) -> Path:
    """The README a student bundle carries, in its language (``student_readme.es.md``)."""
    return STUDENT_README if lang == SOURCE_LANGUAGE else STUDENT_README.with_suffix(f".{lang}.md")


#: The only part of the autograder written for students (and the only part a sandbox sees):
#: every ``.py``, ``.json`` and ``.md`` file under it ships.
KIT_DIR = "kit"
KIT_SUFFIXES = {".py", ".json", ".md", ".po"}
#: The engine files ``make check`` needs, each named here: a new module ships only once it is
#: added to this list. A name that does not exist (yet) is skipped.
ENGINE_FILES = (
    "__init__.py",
    "__main__.py",
    "cli.py",
    "course.py",
    "notebook.py",
    "execute.py",
    "generate.py",
    "translation.py",
    "report.py",
    "store.py",
    "sandbox.py",
    "capped.py",
    "hidden.py",
    "labspec.py",
    "launch.py",
    "processes.py",
    "grade.py",
    "results.py",
)
#: Never shipped, whatever the lists above say: they hold reference implementations.
NEVER_SHIPPED = ("checks", "references")
# Fixed member times make the zip identical for identical content.
_EPOCH = (2026, 1, 1, 0, 0, 0)


def bundle_members(lab_ids: list[str] | None = None, lang: str = SOURCE_LANGUAGE) -> dict[str, bytes]:
    """Archive path -> content for every file of the bundle in ``lang``: that edition's
    notebooks only (``labs/`` in English, ``labs/es/`` in Spanish, where ``make lab`` opens
    them by itself) and its README; the kit with every language's message catalog."""
    labs = [LABS[lab_id] for lab_id in (lab_ids or list(LABS))]
    members: dict[str, bytes] = {}
    for lab in labs:
        # Rendered from the master now, so a stale labs/ file can never be shipped.
        members[lab.student_in(lang).relative_to(ROOT).as_posix()] = generate.render(lab, lang).encode("utf-8")
    for path in sorted((ROOT / "data").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            members[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    members.update(autograder_members())
    for name in SETUP_FILES:
        members[name] = (ROOT / name).read_bytes()
    members["README.md"] = student_readme(lang).read_bytes()
    return members


def autograder_members() -> dict[str, bytes]:
    """Archive path -> content of the autograder files that ship: the kit and the engine files."""
    package = ROOT / "autograder"
    paths = [package / name for name in ENGINE_FILES if (package / name).is_file()]
    kit = package / KIT_DIR
    if kit.is_dir():
        paths += [
            p for p in sorted(kit.rglob("*")) if p.is_file() and p.suffix in KIT_SUFFIXES and "__pycache__" not in p.parts
        ]
    forbidden = [(package / folder).resolve() for folder in NEVER_SHIPPED]
    members = {}
    for path in paths:
        name = path.relative_to(ROOT).as_posix()
        if any(path.resolve().is_relative_to(folder) for folder in forbidden):  # a link into them
            raise ValueError(f"{name}: leads into autograder/checks/ or autograder/references/, which never ship")
        members[name] = path.read_bytes()
    return members


def build_bundle(out: Path, lab_ids: list[str] | None = None, lang: str = SOURCE_LANGUAGE) -> Path:
    """Write the bundle zip in ``lang``, every file under one top folder."""
    return _write_zip(out, bundle_members(lab_ids, lang))


def bundle_name(lang: str) -> str:
    """``student-bundle.zip``, ``student-bundle-es.zip``: one bundle per language."""
    return "student-bundle.zip" if lang == SOURCE_LANGUAGE else f"student-bundle-{lang}.zip"


def build_student_bundles(out_dir: Path, student_ids: list[str], secret: bytes,
                          lab_ids: list[str] | None = None, progress: bool = True,
                          lang: str = SOURCE_LANGUAGE) -> list[Path]:
    """One bundle per student, ``out_dir/<student_id>.zip``: the class bundle with the student's
    own variant (``autograder.variants``). The secret only derives each seed here; no bundle holds
    it, another student's seed, or anything made from either."""
    from tqdm import tqdm

    from autograder import variants

    labs = lab_ids or list(LABS)
    common = bundle_members(labs, lang)
    written = []
    for student_id in tqdm(student_ids, unit="student", desc="bundles", disable=not progress):
        members = variants.student_members(common, student_id, variants.variant_seed(secret, student_id), labs)
        written.append(_write_zip(out_dir / f"{student_id}.zip", members))
    return written


def _write_zip(out: Path, members: dict[str, bytes]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(f"{TOP}/{name}", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[name])
    return out
