"""Run one notebook with papermill, in its own directory, kernel and MLflow store.

The kernel is started before the notebook is ready (``Kernel.start``), and told to import
the heavy libraries at once, so that its start-up overlaps with the grader's own work
(reading, restoring, copying the store): stack-facts.md measured kernel start and imports
at about half of a Lab 01 run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from autograder import capped
from autograder.kit.i18n import _
from autograder.processes import kill_all
from autograder.sandbox import Limits, Sandbox
from autograder.sandbox import python as sandbox_python

#: Sent to the kernel as soon as it is up. Importing changes no behaviour, only when the
#: cost is paid; matplotlib's non-interactive backend also keeps figures off any display.
WARMUP = (
    "import matplotlib\nmatplotlib.use('Agg')\n"
    "import mlflow, pandas, sklearn.ensemble, matplotlib.pyplot\n"
)

#: Environment variables a submission's kernel must not inherit from the grader's shell.
_DROP_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "_MLFLOW_SERVER_ARTIFACT_ROOT", "JPY_PARENT_PID")


@dataclass
class ExecutionResult:
    """The executed notebook, and why execution stopped early (None if it did not)."""

    notebook: NotebookNode
    stopped: str | None


def kernel_env(tracking_uri: str) -> dict[str, str]:
    """The kernel's environment: the grader's, minus its MLflow settings, plus the
    submission's store (also passed as the TRACKING_URI parameter: this is the safety net
    should the notebook lose it) and offline, headless settings."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK="true",
        MPLBACKEND="Agg",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PYTHONUNBUFFERED="1",
    )
    # The kernel must import the same autograder package as the grader.
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [root, env.get("PYTHONPATH", "")] if p)
    return env


class Kernel:
    """A kernel started ahead of the notebook, in the submission's directory, inside the
    submission's sandbox when one is given (``sandbox=None`` only for trusted notebooks)."""

    def __init__(self, workdir: Path, tracking_uri: str, sandbox: Sandbox | None = None) -> None:
        self.workdir = workdir
        self.tracking_uri = tracking_uri
        self.sandbox = sandbox
        self.km = _sandboxed_manager(workdir, sandbox) if sandbox else _plain_manager()
        self.limits = sandbox.limits if sandbox else Limits()

    def start(self) -> None:
        """Start the kernel, and warm it up in a thread; returns without waiting for either."""
        from jupyter_core.utils import run_sync

        if self.sandbox is not None:
            # Nothing the submission prints outside its cells reaches the grader's terminal.
            extra = {"env": {"PATH": os.environ.get("PATH", "")}, "stdout": subprocess.DEVNULL,
                     "stderr": subprocess.DEVNULL}
        else:
            extra = {"env": kernel_env(self.tracking_uri)}
        run_sync(self.km.start_kernel)(cwd=str(self.workdir), **extra)
        self._warmup = threading.Thread(target=self._warm, daemon=True)
        self._warmup.start()

    def _warm(self) -> None:
        """Run the warm-up imports on a client of our own; the notebook's cells queue behind."""
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient()
        client.load_connection_info(self.km.get_connection_info())
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            msg_id = client.execute(WARMUP, silent=True, store_history=False)
            while client.get_shell_msg(timeout=120)["parent_header"].get("msg_id") != msg_id:
                pass
        except Exception:  # a kernel that dies or stalls here is reported by the execution
            pass
        finally:
            client.stop_channels()

    def _process(self) -> Any:
        return getattr(self.km.provisioner, "process", None) if self.km.provisioner else None

    def descendants(self) -> list[Any]:
        """Processes the notebook started (a model server, a pool), still running now."""
        import psutil

        process = self._process()
        try:
            return psutil.Process(process.pid).children(recursive=True) if process else []
        except psutil.Error:
            return []

    def kill(self) -> None:
        """Kill the kernel and what it started, at once (the total timeout, or clean-up).
        In a sandbox, killing bubblewrap ends its PID namespace: every process in it dies,
        double-forked or not."""
        children = self.descendants()
        process = self._process()
        if process is not None and process.poll() is None:
            process.kill()
        kill_all(children)

    def shutdown(self) -> None:
        """Stop the kernel, then anything it left running: a server a student started and
        never stopped must not outlive the grading (it would hold a port and a core)."""
        from jupyter_core.utils import run_sync

        children = self.descendants()
        try:
            if self.sandbox is not None:
                self.kill()  # nothing in a submission's sandbox deserves a polite shutdown
            elif run_sync(self.km.is_alive)():
                run_sync(self.km.shutdown_kernel)(now=True)
        except Exception:  # a kernel that is already gone needs no shutdown
            self.kill()
        finally:
            kill_all(children)
            run_sync(self.km.cleanup_resources)()


def _plain_manager() -> Any:
    from jupyter_client.manager import AsyncKernelManager

    return AsyncKernelManager(kernel_name="python3")


def _sandboxed_manager(workdir: Path, sandbox: Sandbox) -> Any:
    """A kernel manager whose kernel runs inside ``sandbox``.

    The kernel has no network, so it talks to us over IPC sockets in its own folder (the
    only place both sides can see). Signals would reach bubblewrap, not the kernel, so
    interrupts go as messages (stack-facts.md)."""
    from jupyter_client.manager import AsyncKernelManager

    class SandboxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            cmd = super().format_kernel_cmd(extra_arguments)
            cmd[0] = sandbox_python()
            return sandbox.command(cmd)

        def client(self, **kwargs: Any) -> Any:
            # Our context carries the message-size limit (capped.limit_messages).
            return super().client(context=self.context, **kwargs)

        def write_connection_file(self, **kwargs: Any) -> Any:
            result = super().write_connection_file(**kwargs)
            sandbox.give(Path(self.connection_file))  # the kernel runs as the sandbox's user
            return result

    km = SandboxedKernelManager(
        kernel_name="python3",
        transport="ipc",
        ip=str(workdir / ".kernel"),
        connection_file=str(workdir / ".kernel.json"),
    )
    km.kernel_spec.interrupt_mode = "message"
    capped.limit_messages(km, sandbox.limits.message_bytes)
    return km


def execute(
    nb: NotebookNode,
    workdir: Path,
    parameters: dict[str, Any],
    kernel: Kernel,
    cell_timeout: float,
    total_timeout: float,
    out_dir: Path | None = None,
) -> ExecutionResult:
    """Execute every cell, errors or not, and return what ran.

    ``allow_errors`` keeps going after a failing cell: one broken TODO must not zero the
    rest. papermill still raises at the end when a cell failed, and raises on a dead
    kernel: both are expected here, and the notebook it wrote up to then is read back.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    # Written by this (trusted) process: never inside a sandboxed submission's folder, where
    # a planted symlink would turn the write into one of the grader's own files.
    output = (out_dir or workdir) / "executed.ipynb"
    timed_out = threading.Event()

    def on_total_timeout() -> None:
        timed_out.set()
        kernel.kill()

    timer = threading.Timer(total_timeout, on_total_timeout)
    timer.daemon = True
    stopped: str | None = None
    timer.start()
    try:
        papermill.execute_notebook(
            nb,
            str(output),
            parameters=parameters,
            cwd=str(workdir),
            km=kernel.km,
            kernel_name="python3",
            engine_name=capped.ENGINE,
            cell_output_bytes=kernel.limits.cell_output_bytes,
            allow_errors=True,
            execution_timeout=cell_timeout,
            interrupt_on_timeout=True,
            progress_bar=sys.stderr.isatty(),
            log_output=False,
            stdout_file=None,
            stderr_file=None,
        )
    except PapermillExecutionError:
        pass  # a cell raised: recorded in the notebook, scored per cell
    except Exception as exc:  # dead kernel, IOPub timeout, kernel that never started
        stopped = describe_stop(exc, timed_out.is_set(), total_timeout)
    finally:
        timer.cancel()
    if stopped is None and timed_out.is_set():
        stopped = describe_stop(None, True, total_timeout)
    executed = nbformat.read(output, as_version=4) if output.exists() else nb
    return ExecutionResult(executed, stopped)


def describe_stop(exc: BaseException | None, timed_out: bool, total_timeout: float) -> str:
    """One line on why the notebook stopped before its end."""
    if timed_out:
        return _("the notebook ran longer than the {limit} s limit and was stopped").format(limit=f"{total_timeout:g}")
    name = type(exc).__name__
    if name == "DeadKernelError":
        return _("the kernel died (a cell crashed it or exited the process)")
    if name in {"CellTimeoutError", "TimeoutError"} or "timeout" in str(exc).lower():
        return _("a cell did not finish within its time limit and could not be interrupted")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return _("execution stopped: {error}").format(error=f"{name}{': ' + first_line if first_line else ''}")


if sys.platform == "win32":  # pragma: no cover - papermill needs this loop policy on Windows
    import asyncio

    asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())
