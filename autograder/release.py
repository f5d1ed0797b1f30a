"""Build the student bundle: what a student needs to do the labs, and nothing more.

In: the generated student notebooks, the data, the set-up files, the ``autograder``
package (the notebooks' self-checks and ``make check`` use it) and a README for students.
Out: ``solutions/``, hidden tests, the course's own tests, CI and benchmarks.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from autograder import generate
from autograder.course import LABS, ROOT

TOP = "mlops-labs"
SETUP_FILES = ["Makefile", "requirements.txt", "requirements.in", "environment.yml", "pyproject.toml", ".gitignore"]
STUDENT_README = Path(__file__).with_name("student_readme.md")
# Fixed member times make the zip identical for identical content.
_EPOCH = (2026, 1, 1, 0, 0, 0)


def bundle_members(lab_ids: list[str] | None = None) -> dict[str, bytes]:
    """Archive path -> content for every file of the bundle."""
    labs = [LABS[lab_id] for lab_id in (lab_ids or list(LABS))]
    members: dict[str, bytes] = {}
    for lab in labs:
        # Rendered from the master now, so a stale labs/ file can never be shipped.
        members[f"labs/{lab.lab_id}/{lab.lab_id}.ipynb"] = generate.render(lab).encode("utf-8")
    for path in sorted((ROOT / "data").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            members[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    for path in sorted((ROOT / "autograder").rglob("*")):
        if path.is_file() and path.suffix in {".py", ".md"} and "__pycache__" not in path.parts:
            members[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    for name in SETUP_FILES:
        members[name] = (ROOT / name).read_bytes()
    members["README.md"] = STUDENT_README.read_bytes()
    return members


def build_bundle(out: Path, lab_ids: list[str] | None = None) -> Path:
    """Write the bundle zip, every file under one top folder."""
    members = bundle_members(lab_ids)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(f"{TOP}/{name}", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[name])
    return out
