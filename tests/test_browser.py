"""A student's first half hour, in a real browser: ``make lab``, Lab 01 in JupyterLab, a
self-check, and the path Lab 01 describes through the MLflow UI to the run.

Playwright drives Debian's ``chromium`` (``.ci/run`` installs it; Playwright's own browser
download is never used: these machines have no internet). The launcher runs exactly as
``make lab`` runs it, on free ports, in a course folder of its own (``COURSE_ROOT``: a copy of
Lab 01, the course data, a fresh store), so the repository's notebooks and store are untouched.
Every screen is checked for what the lab does not describe: MLflow's GenAI views, its telemetry
banner, its Assistant, a modal; nbgrader's instructor tools in JupyterLab.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from autograder import store
from autograder.course import LABS, ROOT
from autograder.processes import kill_all, tree
from tests.conftest import solution_code

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
LAB01 = LABS["01_tracking"]
TOKEN = "browser-test-token"
#: What a student types into the first three TODO cells: the master's answers.
TODOS = ("todo1", "todo2", "todo3")
#: Seconds one cell may run (a loaded 2-core machine imports MLflow in up to 10 s).
CELL_TIMEOUT = 60_000


def free_port() -> int:
    """A port nothing listens on now, so that the test never meets a student's make lab."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """``make lab`` running in the background: its ports, its output, its process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ui_port, self.jupyter_port = free_port(), free_port()
        self.output = root / "launcher.out"
        self.seen: dict[int, Any] = {}
        env = {**os.environ, "COURSE_ROOT": str(root), "JUPYTER_TOKEN": TOKEN}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "autograder.launch", "lab", "--port", str(self.ui_port),
                 "--jupyter-port", str(self.jupyter_port), "--no-browser"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl+C of our own, not the test runner's
            )

    def snapshot(self) -> None:
        """Remember every process of make lab now (a kernel too), to check each one ends."""
        self.seen.update({p.pid: p for p in tree(self.process.pid)})

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 60) -> float:
        start = time.monotonic()
        while "==> Ready" not in self.text():
            assert self.process.poll() is None, f"make lab ended early:\n{self.text()}"
            assert time.monotonic() - start < timeout, f"make lab not ready after {timeout} s:\n{self.text()}"
            time.sleep(0.2)
        self.snapshot()
        return time.monotonic() - start

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def notebook_url(self) -> str:
        return f"http://127.0.0.1:{self.jupyter_port}/lab/tree/01_tracking/01_tracking.ipynb?token={TOKEN}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """The course in ``tmp_path`` (Lab 01 as handed out, the data, an empty store), and
    ``make lab`` on it; afterwards every process it started is gone, whatever happened."""
    (tmp_path / "labs" / "01_tracking").mkdir(parents=True)
    shutil.copy(LAB01.student, tmp_path / "labs" / "01_tracking")
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    (tmp_path / "mlflow-store").mkdir()
    shutil.copy(store.template(), tmp_path / "mlflow-store" / "mlflow.db")
    running = Lab(tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.snapshot()
            os.kill(running.process.pid, signal.SIGINT)  # what Ctrl+C sends
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=30)
        alive = [p for p in running.seen.values() if _alive(p)]
        kill_all(alive)
        assert not alive, f"left running after Ctrl+C: {[p.pid for p in alive]}"


def _alive(process: Any) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def assert_nothing_undescribed(page: Any) -> None:
    """No screen the labs do not describe: GenAI views, banners, the Assistant, a modal."""
    assert "workflowType=genai" not in page.url, page.url
    assert "/overview/usage" not in page.url, page.url
    for text in ("Information about UI telemetry", "Detect Issues", "No data available"):
        assert page.get_by_text(text).count() == 0, f"{text!r} on {page.url}"
    assert page.locator('[data-assistant-ui="true"]:visible').count() == 0, f"the Assistant on {page.url}"
    assert page.locator('[role="dialog"]:visible').count() == 0, f"a dialog on {page.url}"


def run_cell(page: Any, code: str | None = None) -> None:
    """Shift+Enter on the active cell, as a student does (typing ``code`` into it first)."""
    if code is not None:
        page.keyboard.press("Enter")  # edit mode
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(code)  # pasted: no auto-closed brackets or auto-indent
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "() => ![...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'))",
        timeout=CELL_TIMEOUT,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
def test_a_student_follows_lab01_in_jupyterlab_and_the_mlflow_ui(lab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright

    ready = lab.wait_ready()
    printed = lab.text()
    # A quiet start: the store, both addresses (on the ports asked for), the ready line.
    assert f"MLflow UI:  {lab.ui}" in printed
    assert f"JupyterLab: http://127.0.0.1:{lab.jupyter_port}/lab?token={TOKEN}" in printed
    assert len([line for line in printed.splitlines() if line.strip()]) <= 6, printed
    assert ready < 60

    master = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nbformat.read(LAB01.master, as_version=4).cells}
    cells = nbformat.read(LAB01.student, as_version=4).cells
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in cells]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(lab.notebook_url())
            notebook = page.locator(".jp-NotebookPanel:visible")
            expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=CELL_TIMEOUT)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=CELL_TIMEOUT)

            # No instructor tools: nbgrader's menu, its panels and its Validate button.
            menus = page.locator(".lm-MenuBar-itemLabel").all_text_contents()
            assert "File" in menus and not [m for m in menus if "grader" in m.lower()], menus
            for text in ("Create Assignment", "Validate", "Formgrader", "Assignment List"):
                assert page.get_by_text(text, exact=True).count() == 0, text
            # Opened, not touched: not marked modified once loaded and its kernel started (before
            # the launcher served it with the kernel's language_info, the kernel's start did that).
            dirty = page.locator(".lm-DockPanel-tabBar .jp-mod-current.jp-mod-dirty")
            for _ in range(3):
                page.wait_for_timeout(1000)
                assert dirty.count() == 0, "the notebook is marked modified right after it opened"

            # Top to bottom, as the lab says: the given cells run, TODOs 1-3 typed, each self-check.
            notebook.locator(".jp-Cell").first.click()
            page.keyboard.press("Escape")
            last = ids.index("check_todo3_metrics")
            for index in range(last + 1):
                cell = cells[index]
                if cell.cell_type != "code":
                    page.keyboard.press("Shift+Enter")  # renders a markdown cell, moves on
                    continue
                run_cell(page, solution_code(master[ids[index]]) if ids[index] in TODOS else None)
            outputs = notebook.locator(".jp-Cell")
            for check in ("check_todo1_experiment", "check_todo2_params", "check_todo3_metrics"):
                output = outputs.nth(ids.index(check)).locator(".jp-OutputArea")
                expect(output).to_contain_text("✔", timeout=CELL_TIMEOUT)
            # No toast over the lab (JupyterLab's "get notified about official Jupyter news?").
            assert page.locator(".Toastify__toast:visible").count() == 0, page.locator(".Toastify__toast").all_inner_texts()
            # Creating the experiment (TODO 1) is no error: nothing red under any cell.
            red = notebook.locator("[data-mime-type='application/vnd.jupyter.stderr']")
            assert red.count() == 0, red.all_inner_texts()

            # The MLflow UI, in a fresh tab, along the path of Lab 01's "In the UI" notes, where the
            # lab gives it (after TODO 3: the run is still open).
            ui = browser.new_page(viewport={"width": 1400, "height": 900})
            ui.goto(lab.ui)
            expect(ui.get_by_text("lab01-tracking").first).to_be_visible(timeout=CELL_TIMEOUT)
            assert_nothing_undescribed(ui)
            ui.get_by_text("lab01-tracking").first.click()
            expect(ui.get_by_role("heading", name="Runs")).to_be_visible(timeout=CELL_TIMEOUT)
            expect(ui.get_by_text("rf-baseline").first).to_be_visible(timeout=CELL_TIMEOUT)
            assert "workflowType=machine_learning" in ui.url, ui.url
            assert_nothing_undescribed(ui)
            screens = [ui.inner_text("body")]
            ui.get_by_text("rf-baseline").first.click()
            expect(ui.get_by_role("tab", name="Overview")).to_be_visible(timeout=CELL_TIMEOUT)
            for logged in ("n_estimators", "max_depth", "rmse", "r2"):
                expect(ui.get_by_text(logged, exact=True).first).to_be_visible()
            screens.append(ui.inner_text("body"))
            # The words the lab uses for this path are the ones on the screens ("*Runs*", "*Overview*").
            note = cells[ids.index("ui3")].source
            words = re.findall(r"(?<!\*)\*([^*`]+)\*(?!\*)", note)
            assert words, note
            for word in words:
                assert any(word in screen for screen in screens), f"Lab 01 says *{word}*; the UI does not show it"
            run_page = ui.url.split("#")[1]
            for tab in ("Model metrics", "Artifacts"):
                expect(ui.get_by_role("tab", name=tab)).to_be_visible()
            assert_nothing_undescribed(ui)

            # The last cell ends the run and prints its link: on the port make lab was given.
            page.bring_to_front()
            outputs.nth(ids.index("end_run")).click()
            page.keyboard.press("Escape")
            run_cell(page)
            end_output = outputs.nth(ids.index("end_run")).locator(".jp-OutputArea")
            expect(end_output).to_contain_text("http://", timeout=CELL_TIMEOUT)
            printed_link = end_output.inner_text()
            link = re.search(r"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/\w+", printed_link)
            assert link and link.group(0).startswith(lab.ui + "/"), printed_link
            assert link.group(0).split("#")[1] == run_page.split("?")[0], (link.group(0), run_page)

            # The printed link opens the same run; the registry (Labs 04-07) opens without a modal.
            ui.goto(link.group(0))
            expect(ui.get_by_role("heading", name="rf-baseline")).to_be_visible(timeout=CELL_TIMEOUT)
            ui.get_by_text("Model registry", exact=True).first.click()
            expect(ui.get_by_text("Registered Models").first).to_be_visible(timeout=CELL_TIMEOUT)
            ui.wait_for_timeout(1000)  # the modal, if any, opens after the page
            assert_nothing_undescribed(ui)
        finally:
            browser.close()

    # Ctrl+C stops both (the kernel too: the fixture checks each process), and says so.
    lab.snapshot()
    assert len(lab.seen) >= 4, lab.seen  # the launcher, the UI, JupyterLab, the kernel
    os.kill(lab.process.pid, signal.SIGINT)
    assert lab.process.wait(timeout=30) == 0
    assert "Stopped JupyterLab and the MLflow UI." in lab.text(), lab.text()
