"""Probes that hold no secret: the process that runs a workflow answers them over a Unix socket.

A check that runs a student's workflow against stand-in programs (Lab 05b's pipeline, Lab 09's
operations) must know which stand-ins the steps really ran. A stand-in cannot say so itself: the
steps can read its file and write what it would write. So each stand-in connects to a socket of
the process running the workflow, and that process identifies the caller from the kernel
(``SO_PEERCRED``: its pid) and ``/proc`` (its executable, command line, folder and environment),
never from what it sends. A step that connects from a script of its own, ``python -c`` or a copy
of a stand-in is recognised as what it is. Linux only (:func:`supported`); elsewhere (a self-check
on macOS or Windows) the labs fall back to the stand-in's own word.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Interpreter options that take a value (``python -W ignore script.py``).
OPTIONS_WITH_VALUE = frozenset({"-W", "-X", "-Q"})


def supported() -> bool:
    """Whether callers can be identified here (Linux: ``SO_PEERCRED`` and ``/proc``)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(socket, "SO_PEERCRED")
        and Path("/proc/self/cmdline").exists()
    )


@dataclass(frozen=True)
class Peer:
    """The process at the other end of a connection, as the kernel and ``/proc`` show it."""

    argv: list[str]
    exe: str
    cwd: str
    environ: dict[str, str]

    def is_python(self) -> bool:
        return Path(self.exe).name.startswith("python")


def script_args(argv: list[str]) -> list[str]:
    """A Python command line without the interpreter and its options: ``[script, args...]``,
    ``["-m", module, ...]`` or ``["-c", code, ...]`` (empty for a bare interpreter)."""
    args = argv[1:]
    while args and args[0].startswith("-") and args[0] not in ("-c", "-m"):
        args = args[2:] if args[0] in OPTIONS_WITH_VALUE else args[1:]
    return args


def is_file(path: str, cwd: str, target: Path) -> bool:
    """Whether ``path``, as a caller in folder ``cwd`` named it, is the file ``target`` (links resolved;
    a pytest node id's ``::test`` ignored)."""
    try:
        real = os.path.realpath(os.path.join(cwd, path.split("::", 1)[0]))
        return Path(real) == Path(os.path.realpath(target))
    except (OSError, ValueError):
        return False


def peer_of(conn: socket.socket) -> Peer | None:
    """Who is at the other end of ``conn`` (None: gone, or unreadable)."""
    try:
        size = struct.calcsize("3i")
        pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size))
        proc = Path(f"/proc/{pid}")
        argv = [a.decode("utf-8", "replace") for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]]
        exe, cwd = os.readlink(proc / "exe"), os.readlink(proc / "cwd")
        items = (proc / "environ").read_bytes().decode("utf-8", "replace").split("\0")
        environ = dict(item.split("=", 1) for item in items if "=" in item)
    except (OSError, struct.error, ValueError):
        return None
    return Peer(argv, exe, cwd, environ)


class Listener:
    """Answers callers on a Unix socket, in a thread, while a workflow runs: each caller sends a
    short request, and gets ``answer(peer)`` back (bytes) before the connection closes."""

    def __init__(self, path: Path, answer: Callable[[Peer | None], bytes]) -> None:
        self.path, self.answer = path, answer
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(Exception):  # one odd caller must not stop the answers
                conn.settimeout(5)
                reply = self.answer(peer_of(conn))
                conn.recv(64)
                conn.sendall(reply)

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.server.close()
