"""The student bundle: what ships (the kit, the engine files on the list, the student
notebooks, data and set-up), and that no answer or hidden test ships with it, in any file."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from autograder import release
from autograder.course import LABS, ROOT
from autograder.release import ENGINE_FILES, KIT_SUFFIXES, SETUP_FILES, TOP, build_bundle, bundle_members
from tests.conftest import grading

REGION = re.compile(r"^\s*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$")
NEVER = {"solutions", "tests", ".ci", ".github", "benchmarks", "checks", "references"}


#: Lines that look like an answer but state a fact every lab's notebook gives in words (the
#: kit needs them to judge): each one reviewed, with its reason. No file is exempt.
PUBLIC_FACTS = {
    # Lab 02 logs it as a tag; Lab 01's kit expects the same parameter value (Lab 01 and 02 name it).
    '"model_type": "RandomForestRegressor",',
}


def _cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]


def _student_notebooks_text() -> str:
    """Every cell of every generated student notebook: what the course hands out anyway (a later
    lab gives an earlier lab's answer as set-up code)."""
    return "\n".join(s for lab_id in LABS for s in _cells(ROOT / "labs" / lab_id / f"{lab_id}.ipynb"))


def secret_lines(lab_id: str, public: str | None = None) -> set[str]:
    """The substantive code lines inside a master's solution regions and hidden-test blocks
    (stripped; no blank lines, comments or lines under 25 characters) that no generated
    student notebook shows anyway."""
    public = _student_notebooks_text() if public is None else public
    master = ROOT / "solutions" / lab_id / f"{lab_id}.ipynb"
    secrets: set[str] = set()
    for source in _cells(master):
        inside = False
        for line in source.splitlines():
            if match := REGION.match(line):
                inside = match.group(1) == "BEGIN"
                continue
            stripped = line.strip()
            if inside and len(stripped) >= 25 and not stripped.startswith("#") and stripped not in public:
                secrets.add(stripped)
    return secrets - PUBLIC_FACTS


def all_secrets() -> dict[str, set[str]]:
    public = _student_notebooks_text()
    return {lab_id: secret_lines(lab_id, public) for lab_id in LABS}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def readable(name: str, content: bytes) -> str:
    """A member's text as a reader sees it: for JSON (notebooks included) the raw text and
    every string in it unescaped, so a line with quotes in a cell is found too."""
    text = content.decode("utf-8", errors="ignore")
    if name.endswith((".ipynb", ".json")):
        with contextlib.suppress(ValueError):  # not JSON after all: its raw text is enough
            text += "\n" + "\n".join(_strings(json.loads(text)))
    return text


def leaks(members: Mapping[str, bytes], secrets: Mapping[str, set[str]]) -> list[tuple[str, str, str]]:
    """(member, lab, line) for every secret line some member contains."""
    found = []
    for name, content in sorted(members.items()):
        text = readable(name, content)
        found += [(name, lab, line) for lab, lines in secrets.items() for line in sorted(lines) if line in text]
    return found


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The real bundle, built into a zip and read back: archive path (without the top folder) -> content."""
    path = build_bundle(tmp_path_factory.mktemp("release") / "student-bundle.zip")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert all(n.startswith(f"{TOP}/") for n in names)
        return {n.removeprefix(f"{TOP}/"): zf.read(n) for n in names if not n.endswith("/")}


def test_the_bundle_has_no_solutions_tests_ci_benchmarks_checks_or_references(bundle: dict[str, bytes]) -> None:
    assert not [name for name in bundle if NEVER & set(name.split("/")[:-1])]
    assert not [name for name in bundle if name.startswith(("autograder/checks", "autograder/references"))]
    assert {f"labs/{lab_id}/{lab_id}.ipynb" for lab_id in LABS} <= set(bundle)


def test_no_member_of_the_bundle_holds_an_answer_or_a_hidden_test(bundle: dict[str, bytes]) -> None:
    secrets = all_secrets()
    assert all(secrets.values()), "every master should have solution regions to look for"
    assert leaks(bundle, secrets) == []
    for name, content in bundle.items():
        if name.endswith((".ipynb", ".json")):
            text = readable(name, content)
            assert not [m for m in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS") if m in text], name


def test_each_bundled_notebook_keeps_none_of_its_own_answers(bundle: dict[str, bytes]) -> None:
    """Independent of labs/: a line found only inside its master's regions (not given as code
    elsewhere in the master) is not code in the bundled notebook (hints are comments)."""
    for lab_id in LABS:
        inside, outside = set(), set()
        for source in _cells(ROOT / "solutions" / lab_id / f"{lab_id}.ipynb"):
            within = False
            for line in source.splitlines():
                if match := REGION.match(line):
                    within = match.group(1) == "BEGIN"
                elif len(stripped := line.strip()) >= 25 and not stripped.startswith("#"):
                    (inside if within else outside).add(stripped)
        cells = json.loads(bundle[f"labs/{lab_id}/{lab_id}.ipynb"])["cells"]
        code = {
            line.strip()
            for cell in cells
            if cell["cell_type"] == "code"
            for line in "".join(cell["source"]).splitlines()
            if not line.strip().startswith("#")
        }
        assert inside - outside, lab_id
        assert (inside - outside) & code == set(), lab_id


def test_the_leak_test_finds_a_planted_answer() -> None:
    """The check above can fail: an answer line put in a kit module, or in a notebook cell
    (where JSON escapes its quotes), is found."""
    secrets = all_secrets()
    lab_id, lines = max(secrets.items(), key=lambda item: len(item[1]))
    line = sorted(lines, key=lambda s: ('"' not in s, s))[0]
    members = {"autograder/kit/planted.py": f"def helper():\n    {line}\n".encode()}
    assert leaks(members, secrets) == [("autograder/kit/planted.py", lab_id, line)]
    notebook = {"cells": [{"cell_type": "code", "source": ["x = 1\n", f"    {line}\n"], "metadata": {}}]}
    members = {f"labs/{lab_id}/{lab_id}.ipynb": json.dumps(notebook).encode()}
    assert [found[1:] for found in leaks(members, secrets)] == [(lab_id, line)]


def test_every_member_is_on_the_list_or_a_lab_notebook_data_or_set_up_file(bundle: dict[str, bytes]) -> None:
    assert all("/" not in name and name.endswith(".py") for name in ENGINE_FILES)
    labs = {f"labs/{lab_id}/{lab_id}.ipynb" for lab_id in LABS}
    engine = {f"autograder/{name}" for name in ENGINE_FILES}

    def allowed(name: str) -> bool:
        if name.startswith("autograder/kit/"):
            return Path(name).suffix in KIT_SUFFIXES and "__pycache__" not in name
        return name in engine or name in labs or name.startswith("data/") or name in {*SETUP_FILES, "README.md"}

    assert [name for name in bundle if not allowed(name)] == []
    # And everything on the list that exists ships.
    package = ROOT / "autograder"
    assert {f"autograder/{n}" for n in ENGINE_FILES if (package / n).is_file()} <= set(bundle)
    kit = package / release.KIT_DIR
    shipped_kit = {
        p.relative_to(ROOT).as_posix()
        for p in (kit.rglob("*") if kit.is_dir() else [])
        if p.is_file() and p.suffix in KIT_SUFFIXES and "__pycache__" not in p.parts
    }
    assert shipped_kit <= set(bundle)
    assert bundle["README.md"] == release.STUDENT_README.read_bytes()


def test_a_link_from_the_kit_into_the_references_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "course"
    (fake / "autograder" / "references").mkdir(parents=True)
    (fake / "autograder" / "references" / "lab01.py").write_text("ANSWER = 42\n")
    (fake / "autograder" / "kit").mkdir()
    (fake / "autograder" / "kit" / "helpers.py").write_text("x = 1\n")
    (fake / "autograder" / "cli.py").write_text("")
    monkeypatch.setattr(release, "ROOT", fake)
    assert set(release.autograder_members()) == {"autograder/cli.py", "autograder/kit/helpers.py"}
    (fake / "autograder" / "kit" / "lab01.py").symlink_to(fake / "autograder" / "references" / "lab01.py")
    with pytest.raises(ValueError, match="never ship"):
        release.autograder_members()


def test_the_bundle_is_the_same_for_the_same_content(tmp_path: Path) -> None:
    first = build_bundle(tmp_path / "a.zip", ["01_tracking"]).read_bytes()
    assert first == build_bundle(tmp_path / "b.zip", ["01_tracking"]).read_bytes()
    assert set(bundle_members(["01_tracking"])) >= {"labs/01_tracking/01_tracking.ipynb", "README.md"}


def test_a_students_own_bundle_is_the_class_bundle_with_only_their_variant_changed(tmp_path: Path) -> None:
    """Per-student bundles (issue #15) hold the same files as the class bundle, plus VARIANT.md;
    what differs is the data, the notebook's SEED and the self-checks' values: no answer leaks."""
    lab = "01_tracking"
    [path] = release.build_student_bundles(tmp_path, ["alice"], os.urandom(32), [lab], progress=False)
    with zipfile.ZipFile(path) as zf:
        own = {n.removeprefix(f"{TOP}/"): zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    common = bundle_members([lab])
    assert set(own) == set(common) | {"VARIANT.md"}
    changed = {n for n in common if own[n] != common[n]}
    assert {f"labs/{lab}/{lab}.ipynb", f"autograder/kit/expected/{lab}.json", "data/devops_metrics.csv"} <= changed
    assert all(n.startswith(("data/", "labs/", "autograder/kit/expected/")) for n in changed), changed
    assert leaks(own, {lab: secret_lines(lab)}) == []


def _isolated_env(tmp_path: Path, root: Path) -> dict[str, str]:
    """An environment in which Python sees the unpacked bundle only, not the course's checkout."""
    hooks = tmp_path / "no-editable"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(
        "import sys\nsys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]\n"
    )
    return {**os.environ, "COURSE_ROOT": str(root), "PYTHONPATH": os.pathsep.join([str(hooks), str(root)])}


@grading
def test_a_students_own_bundle_runs_on_their_variant_and_its_self_checks_agree(tmp_path: Path) -> None:
    """The solution, run in alice's bundle as it is (her data, her SEED, no extra step), passes
    every self-check. (That the values shipped for the self-checks were made for her notebook's
    own parameters, so the self-checks use them, is tested fast in test_instructor.py.)"""
    import nbformat

    from autograder import variants
    from autograder.notebook import grade_id
    from tests.conftest import solution_code

    lab = LABS["01_tracking"]
    [bundle] = release.build_student_bundles(tmp_path / "students", ["alice"], os.urandom(32), [lab.lab_id],
                                             progress=False)
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(tmp_path)
    root = tmp_path / TOP
    notebook = root / "labs" / lab.lab_id / f"{lab.lab_id}.ipynb"
    answers = {grade_id(c): solution_code(c) for c in nbformat.read(lab.master, as_version=4).cells}
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if (grade_id(cell) or "").startswith("todo"):
            cell.source = answers[grade_id(cell)]
    nbformat.write(nb, notebook)
    assert "SEED = 42" not in notebook.read_text() and (root / "VARIANT.md").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", f"labs/{lab.lab_id}/{lab.lab_id}.ipynb", "--json", "r.json"],
        capture_output=True, text=True, timeout=300, cwd=root, env=_isolated_env(tmp_path, root),
    )
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads((root / "r.json").read_text())
    assert result["score"] == result["max_score"] > 0, result
    assert variants.TEXT["readme"].splitlines()[0] in (root / "VARIANT.md").read_text()


def unpacked_bundle(tmp_path: Path, lang: str) -> tuple[Path, dict[str, str]]:
    """Lab 01's bundle in ``lang``, unzipped, and the environment that runs it on its own.

    The course's editable install would quietly supply any module the bundle lacks (its finder
    resolves autograder.<name> from the repository): it is taken out of every Python started
    with this environment."""
    with zipfile.ZipFile(build_bundle(tmp_path / "b.zip", ["01_tracking"], lang=lang)) as zf:
        zf.extractall(tmp_path)
    root = tmp_path / TOP
    hooks = tmp_path / "no-editable"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import sys\nsys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]\n"
    )
    env = {**os.environ, "COURSE_ROOT": str(root), "PYTHONPATH": os.pathsep.join([str(hooks), str(root)])}
    env.pop("COURSE_LANG", None)
    return root, env


@pytest.mark.slow
def test_the_student_bundle_checks_a_notebook_on_its_own(tmp_path: Path) -> None:
    root, env = unpacked_bundle(tmp_path, "en")
    probe = subprocess.run(
        [sys.executable, "-c", "import autograder.course, importlib.util as u; print(u.find_spec('autograder.references'))"],
        capture_output=True, text=True, timeout=60, cwd=root, env=env,
    )
    assert probe.stdout.strip() == "None", probe.stdout + probe.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "labs/01_tracking/01_tracking.ipynb", "--json", "r.json"],
        capture_output=True, text=True, timeout=300, cwd=root, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    [result] = json.loads((root / "r.json").read_text())
    assert result["score"] == 0 and result["max_score"] > 0
    assert not (root / "solutions").exists() and not (root / "autograder" / "checks").exists()


@pytest.fixture(scope="module")
def spanish_bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    path = build_bundle(tmp_path_factory.mktemp("release-es") / release.bundle_name("es"), lang="es")
    with zipfile.ZipFile(path) as zf:
        return {n.removeprefix(f"{TOP}/"): zf.read(n) for n in zf.namelist() if not n.endswith("/")}


def test_the_spanish_bundle_holds_the_spanish_notebooks_only_its_readme_and_no_answer(
    spanish_bundle: dict[str, bytes], bundle: dict[str, bytes]
) -> None:
    notebooks = {n for n in spanish_bundle if n.endswith(".ipynb")}
    assert notebooks == {f"labs/es/{lab_id}/{lab_id}.ipynb" for lab_id in LABS}
    for name in notebooks:
        assert json.loads(spanish_bundle[name])["metadata"]["course"]["language"] == "es"
    assert spanish_bundle["README.md"] == release.student_readme("es").read_bytes() != bundle["README.md"]
    # Everything else is the English bundle's: the same kit, with every language's catalog.
    assert set(spanish_bundle) - notebooks == {n for n in bundle if not n.endswith(".ipynb")}
    assert any(n.startswith("autograder/kit/locale/es/") and n.endswith(".po") for n in spanish_bundle)
    assert leaks(spanish_bundle, all_secrets()) == []


@grading
def test_the_spanish_bundle_opens_and_checks_in_spanish_on_its_own(tmp_path: Path) -> None:
    root, env = unpacked_bundle(tmp_path, "es")
    probe = subprocess.run(
        [sys.executable, "-c", "from autograder import course, launch; print(course.default_language(), "
                               "launch.notebook_dir(course.default_language()))"],
        capture_output=True, text=True, timeout=60, cwd=root, env=env,
    )
    assert probe.stdout.split() == ["es", str(root / "labs" / "es")], probe.stdout + probe.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", "--own", "labs/es/01_tracking/01_tracking.ipynb", "--json", "r.json"],
        capture_output=True, text=True, timeout=300, cwd=root, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads((root / "r.json").read_text())
    assert result["language"] == "es" and result["score"] == 0 and result["max_score"] > 0
    feedback = next((root / "feedback").glob("*.feedback.md")).read_text(encoding="utf-8")
    from autograder.translation import english_sentences

    assert english_sentences(feedback) == [], feedback
