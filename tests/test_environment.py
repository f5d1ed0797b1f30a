"""The three descriptions of the course environment agree with each other and with the venv.

requirements.in names the course's direct dependencies, requirements.txt pins everything (the
lock), and environment.yml (for students who use conda) pins the direct dependencies again. These
tests keep them in step, and catch a venv that drifted from the lock.
"""

import importlib.metadata
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS_IN = ROOT / "requirements.in"
REQUIREMENTS_TXT = ROOT / "requirements.txt"
ENVIRONMENT_YML = ROOT / "environment.yml"

# name[extras]==version, then optionally an environment marker or a trailing comment
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*"
    r"==\s*(?P<version>[^\s;#]+)\s*(?:;[^#]*)?(?:#.*)?$"
)
# the name at the start of any requirement line, pinned or not
NAME = re.compile(r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def normalize(name: str) -> str:
    """PEP 503 name: case-insensitive, and `-`, `_` and `.` are the same."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path) -> list[str]:
    """The lines of a requirements file that are requirements (no comments, blanks or options)."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        lines.append(line)
    return lines


def direct_dependencies() -> list[str]:
    """The names in requirements.in, normalized."""
    names = []
    for line in requirement_lines(REQUIREMENTS_IN):
        match = NAME.match(line)
        assert match, f"requirements.in: cannot read a package name in {line!r}"
        names.append(normalize(match["name"]))
    assert names, "requirements.in names no package"
    return names


def lock_pins() -> dict[str, str]:
    """{normalized name: version} of requirements.txt."""
    pins: dict[str, str] = {}
    for line in requirement_lines(REQUIREMENTS_TXT):
        match = PIN.match(line)
        if match:
            pins[normalize(match["name"])] = match["version"]
    return pins


def environment() -> dict:
    data = yaml.safe_load(ENVIRONMENT_YML.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "environment.yml is not a YAML mapping"
    return data


def pip_entries() -> list[str]:
    """The entries under `pip:` in environment.yml's dependencies."""
    sections = [d["pip"] for d in environment().get("dependencies", []) if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, f"environment.yml must have exactly one `pip:` section, found {len(sections)}"
    assert isinstance(sections[0], list), "environment.yml: `pip:` must be a list"
    return [str(entry).strip() for entry in sections[0]]


def environment_pins() -> dict[str, str]:
    """{normalized name: version} of environment.yml's pip section; fails on an unpinned entry."""
    pins: dict[str, str] = {}
    for entry in pip_entries():
        if entry.startswith("-"):  # pip options such as `-e .`
            continue
        match = PIN.match(entry)
        assert match, f"environment.yml: pip entry {entry!r} is not pinned with =="
        name = normalize(match["name"])
        assert name not in pins, f"environment.yml: {match['name']} is listed twice"
        pins[name] = match["version"]
    return pins


def test_every_lock_line_is_pinned_with_double_equals():
    lines = requirement_lines(REQUIREMENTS_TXT)
    assert lines, "requirements.txt has no requirement"
    unpinned = [line for line in lines if not PIN.match(line)]
    assert not unpinned, f"requirements.txt lines not pinned with ==: {unpinned}"


def test_lock_has_no_duplicate_package():
    names = [
        normalize(PIN.match(line)["name"]) for line in requirement_lines(REQUIREMENTS_TXT) if PIN.match(line)
    ]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"requirements.txt pins these more than once: {duplicates}"


def test_environment_pins_equal_lock_pins():
    lock = lock_pins()
    env = environment_pins()
    assert env, "environment.yml pins no pip package"
    wrong = {
        name: f"environment.yml {version} != requirements.txt {lock.get(name, '(not in the lock)')}"
        for name, version in env.items()
        if lock.get(name) != version
    }
    assert not wrong, f"environment.yml is out of step with requirements.txt: {wrong}"


@pytest.mark.parametrize("where", ["environment.yml", "requirements.txt"])
def test_every_direct_dependency_is_pinned(where):
    pins = environment_pins() if where == "environment.yml" else lock_pins()
    missing = [name for name in direct_dependencies() if name not in pins]
    assert not missing, f"packages of requirements.in not pinned in {where}: {missing}"


def test_environment_file_shape():
    env = environment()
    assert env.get("name") == "mlops-course"
    assert env.get("channels") == ["conda-forge"], "environment.yml must use conda-forge only"
    conda_specs = [d for d in env.get("dependencies", []) if isinstance(d, str)]
    assert "python=3.11" in conda_specs, f"environment.yml must ask for python=3.11, has {conda_specs}"
    assert "pip" in conda_specs, "environment.yml must install pip from conda"
    entries = pip_entries()
    assert entries[-1] == "-e .", f"the last pip entry must be `-e .` (the autograder), not {entries[-1]!r}"


@pytest.mark.pinned_only
@pytest.mark.parametrize("name", direct_dependencies())
def test_installed_version_matches_lock(name):
    """The venv the tests run in is the locked one (run `make setup` after the lock changes)."""
    expected = lock_pins().get(name)
    assert expected, f"{name} is not pinned in requirements.txt"
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed; requirements.txt pins {expected} (run `make setup`)")
    assert installed == expected, (
        f"{name} {installed} is installed but requirements.txt pins {expected}: "
        "the environment drifted from the lock (recreate it: rm -rf .venv && make setup)"
    )
