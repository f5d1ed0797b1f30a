"""The jail every submission runs in: bubblewrap on Linux, or a refusal that names the ways out.

A submission is hostile code (DESIGN.md, "Threat model"). Its kernel, and every process it
starts, sees a read-only system with only its own working folder writable: the Python
install, the venv, the student half of the autograder (``autograder/kit``) and the grading
data are bound read-only; ``$HOME``, the repository (solutions, references, other
submissions, the output folder) and other gradings' folders are simply absent. It has no
network, its own PID namespace (nothing outlives it), an environment built from an
allowlist, an unprivileged user, and limits on memory, processes and file size.

Why bubblewrap: it is one small setuid-free program in Debian and most distributions, works
as root and as a normal user, and builds the whole view from the command line, so the jail
is one argv the tests can read. Docker or Podman would need a daemon or an image build on
every machine (a container backend is the way out on macOS and Windows; see README).

As root (CI, containers) bwrap runs privileged and ``setpriv`` drops the submission to a
uid of its own (``SANDBOX_UID_BASE`` + slot) with no capabilities, so that the process
limit counts that submission alone and no file outside the folder is its to write. As a
normal user, bwrap's user namespace maps uid 65534 onto the user's own uid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autograder import course

#: The first uid given to a sandboxed submission when grading as root; each parallel
#: worker adds its own slot, so two submissions never share a uid (or a process count).
SANDBOX_UID_BASE = 61000

#: Where the student half of the autograder appears inside the sandbox (on PYTHONPATH).
KIT_MOUNT = "/course"
#: Where the grading data (the hidden variant, or the course data) appears.
DATA_MOUNT = "/course-data"

#: Variables passed through from the grader's environment; everything else is dropped
#: (the instructor's tokens, cloud keys, MLflow settings). OPENBLAS_* keep numpy from
#: crashing on some processors (the machine sets them for that reason).
ENV_ALLOWLIST = ("LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

#: /etc entries a Python kernel needs; the rest of /etc (shadow, ssh host keys, the
#: machine's own configuration) stays out of the sandbox.
_ETC = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "hosts", "nsswitch.conf",
    "passwd", "group", "fonts", "ssl", "mime.types", "alternatives", "matplotlibrc",
)


class SandboxUnavailable(RuntimeError):
    """No sandbox on this machine; the message says what to do instead."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission (rlimits, set on the sandbox's first process and
    inherited by everything it starts)."""

    memory_bytes: int = 4 << 30
    processes: int = 256
    file_bytes: int = 256 << 20
    open_files: int = 1024
    #: Output one cell may send back (text, images), and the whole executed notebook:
    #: a cell printing 200 MB must not take the grader's memory with it.
    #: Memory, processes and disk of the whole submission (kernel and all it starts), where
    #: the machine allows (as root: a cgroup and a size-limited folder); the rlimits above
    #: bound each process alone.
    total_memory_bytes: int = 4 << 30
    disk_bytes: int = 1 << 30
    cell_output_bytes: int = 2 << 20
    message_bytes: int = 32 << 20


UNAVAILABLE = (
    "no sandbox available here ({why}): grading other people's notebooks runs them as "
    "hostile code. Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), grade inside "
    "a Linux container or VM that has bubblewrap, or pass --no-sandbox "
    "for notebooks you trust"
)


def unavailable_reason() -> str | None:
    """Why this machine cannot sandbox, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"{sys.platform} has no bubblewrap"
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    return None


def require() -> None:
    """Raise SandboxUnavailable with a one-line way out when there is no sandbox."""
    why = unavailable_reason()
    if why:
        raise SandboxUnavailable(UNAVAILABLE.format(why=why))


def _python_roots() -> list[Path]:
    """The Python install and the venv: what the kernel needs to import anything."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    # A venv's python is a symlink into the base install; both sides must be visible.
    roots.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return sorted(roots)


@dataclass
class Sandbox:
    """One submission's jail: ``command(argv)`` wraps a program so that it runs inside.

    ``workdir`` is the only writable folder; ``data`` (a folder) appears read-only at
    ``DATA_MOUNT``; ``slot`` picks the uid when grading as root.
    """

    workdir: Path
    data: Path | None = None
    limits: Limits = field(default_factory=Limits)
    slot: int = 0
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def uid(self) -> int:
        return SANDBOX_UID_BASE + self.slot if os.geteuid() == 0 else 65534

    _cgroups: list[Path] = field(default_factory=list)
    _mounted: bool = False

    def confine(self) -> None:
        """Before anything is written in the folder: as root, make it a size-limited tmpfs
        (its pages count against the submission's memory too) and create the submission's
        cgroups (memory and process count for everything it starts). Where the machine does
        not allow either, the per-process rlimits still hold."""
        if os.geteuid() != 0:
            return
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.limits.disk_bytes},mode=0700",
                               "autograder", str(self.workdir)], capture_output=True)
        self._mounted = done.returncode == 0
        self._cgroups = _make_cgroups(f"autograder-{os.getpid()}-{self.slot}-{self.workdir.name}", self.limits)

    def release(self, unmount: bool = True) -> None:
        """Kill whatever is left in the submission's cgroups, remove them, unmount the folder
        (after the grader has read it; ``unmount=False`` keeps it for ``--keep``)."""
        for group in self._cgroups:
            for pid in _read(group / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
        for group in self._cgroups:
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        self._cgroups = []
        if self._mounted and unmount:
            subprocess.run(["umount", "-l", str(self.workdir)], capture_output=True)
            self._mounted = False

    def prepare(self) -> None:
        """Give the working folder to the sandbox's user (as root): it can write there only."""
        if os.geteuid() == 0:
            for path in [self.workdir, *self._walk(self.workdir)]:
                os.lchown(path, self.uid, self.uid)

    def give(self, path: Path) -> None:
        """Hand one file the grader wrote in the folder to the sandbox's user."""
        if os.geteuid() == 0:
            os.lchown(path, self.uid, self.uid)

    @staticmethod
    def _walk(root: Path) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                yield Path(dirpath) / name

    def env(self) -> dict[str, str]:
        """The environment inside: an allowlist of the grader's, plus what a kernel needs."""
        bin_dir = str(Path(sys.prefix) / "bin")
        env = {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ}
        env.update(
            PATH=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            HOME=str(self.workdir),
            USER="sandbox",  # getpass.getuser() reads it: the sandbox's uid has no passwd entry
            LOGNAME="sandbox",
            TMPDIR=str(self.workdir / ".tmp"),
            MPLCONFIGDIR=str(self.workdir / ".tmp" / "matplotlib"),
            PYTHONPATH=KIT_MOUNT,
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONUNBUFFERED="1",
            MPLBACKEND="Agg",
            LANG=env.get("LANG", "C.UTF-8"),
            MLFLOW_DISABLE_TELEMETRY="true",
            MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK="true",
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
            AUTOGRADER_SANDBOX="1",
        )
        env.update(self.extra_env)
        return env

    def binds(self) -> list[str]:
        """The filesystem view, as bwrap arguments."""
        args = ["--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for link in ("bin", "lib", "lib64", "sbin"):
            if Path("/", link).is_symlink():
                args += ["--symlink", os.readlink(Path("/", link)), f"/{link}"]
            elif Path("/", link).is_dir():
                args += ["--ro-bind", f"/{link}", f"/{link}"]
        # bwrap would make /etc mode 0700 (root's), and the sandbox's user could read none of
        # the entries bound below (git, for one, stops when /etc/gitconfig cannot be checked).
        args += ["--perms", "0755", "--dir", "/etc"]
        for name in _ETC:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        made: set[str] = set()

        def parents(dest: str) -> list[str]:
            # bwrap makes missing parent folders mode 0700 (root's): the sandbox's user
            # could not walk through them to what is bound below.
            out = []
            for parent in reversed(Path(dest).parents[:-1]):
                if str(parent) not in made and not str(parent).startswith(("/usr", "/etc", "/proc", "/dev")):
                    made.add(str(parent))
                    out += ["--perms", "0755", "--dir", str(parent)]
            return out

        for root in _python_roots():
            args += [*parents(str(root)), "--ro-bind", str(root), str(root)]
        # Only the student half of the autograder: never references or legacy checks.
        package = course.ROOT / "autograder"
        args += [*parents(f"{KIT_MOUNT}/autograder/kit"), "--perms", "0755", "--dir", f"{KIT_MOUNT}/autograder"]
        args += ["--ro-bind", str(package / "__init__.py"), f"{KIT_MOUNT}/autograder/__init__.py"]
        args += ["--ro-bind", str(package / "kit"), f"{KIT_MOUNT}/autograder/kit"]
        if self.data is not None:
            args += ["--ro-bind", str(self.data), DATA_MOUNT]
        args += [*parents(str(self.workdir)), "--bind", str(self.workdir), str(self.workdir),
                 "--chdir", str(self.workdir)]
        return args

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped: rlimits, then bwrap, then (as root) the drop to our uid."""
        lim = self.limits
        prlimit = [
            "prlimit",
            f"--as={lim.memory_bytes}",
            f"--fsize={lim.file_bytes}",
            f"--nofile={lim.open_files}",
            f"--nproc={lim.processes if os.geteuid() == 0 else _own_processes() + lim.processes}",
            "--core=0",
            "--",
        ]
        bwrap = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
                 "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
                 "--clearenv"]
        for key, value in self.env().items():
            bwrap += ["--setenv", key, value]
        bwrap += self.binds()
        if self._cgroups:
            # Join the cgroups first, then become the sandbox: every process of the
            # submission is born inside them.
            join = " && ".join(f"echo $$ > {group / 'cgroup.procs'}" for group in self._cgroups)
            prlimit = ["sh", "-c", f'{join} && exec "$0" "$@"', *prlimit]
        if os.geteuid() == 0:
            drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
            return [*prlimit, *bwrap, "--", *drop, *argv]
        bwrap += ["--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns",
                  "--cap-drop", "ALL"]
        return [*prlimit, *bwrap, "--", *argv]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _make_cgroups(name: str, limits: Limits) -> list[Path]:
    """The submission's cgroups with their limits: cgroup v2 if the root has the memory and
    pids controllers, else v1's memory and pids hierarchies; none where neither is writable."""
    root = Path("/sys/fs/cgroup")
    made: list[Path] = []
    try:
        if {"memory", "pids"} <= set(_read(root / "cgroup.subtree_control").split()):
            group = root / name
            group.mkdir()
            made.append(group)
            (group / "memory.max").write_text(str(limits.total_memory_bytes))
            (group / "pids.max").write_text(str(limits.processes))
            return made
        for controller, knob, value in (("memory", "memory.limit_in_bytes", limits.total_memory_bytes),
                                        ("pids", "pids.max", limits.processes)):
            group = root / controller / name
            group.mkdir()
            made.append(group)
            (group / knob).write_text(str(value))
        return made
    except OSError:
        for group in made:
            with contextlib.suppress(OSError):
                group.rmdir()
        return []


def _own_processes() -> int:
    """How many processes this user runs now: RLIMIT_NPROC counts them all, so a limit for
    the sandbox alone is this plus the sandbox's share."""
    import psutil

    me = os.getuid()
    count = 0
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info.get("uids")
        if uids is not None and uids.real == me:
            count += 1
    return count


def python() -> str:
    """The interpreter a sandboxed program runs (the venv's, visible inside)."""
    return str(Path(sys.prefix) / "bin" / "python")
