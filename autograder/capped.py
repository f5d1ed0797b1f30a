"""papermill's engine, with a cap on what a cell may send back.

A submission that prints 200 MB would otherwise have the grader hold every byte, write it
into the executed notebook and parse it again. nbclient has no such limit, so this engine
keeps at most ``cell_bytes`` of output per cell (then one line saying what was cut), and the
kernel's sockets refuse any single message over ``message_bytes`` (ZeroMQ's MAXMSGSIZE: the
kernel is disconnected and the cell ends at its time limit).
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_output
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines

ENGINE = "capped"
CUT = "[autograder: output cut after {limit} bytes: a cell may send back at most that much]\n"


#: Messages that carry nothing to keep: always processed (an idle status ends a cell).
_CONTROL = {"status", "execute_input", "execute_reply"}


class CappedClient(PapermillNotebookClient):
    """Counts each cell's output bytes and drops what comes after the cap; counts every
    payload the kernel sends (outputs, display updates, widget messages) against one budget
    for the whole notebook, since nbclient keeps widget states and display updates too."""

    cell_bytes = 2 << 20
    notebook_bytes = 32 << 20

    def process_message(self, msg: dict[str, Any], cell: NotebookNode, cell_index: int) -> NotebookNode | None:
        if msg.get("msg_type") not in _CONTROL:
            payload = _size(msg.get("content", {})) + sum(len(b) for b in msg.get("buffers") or [])
            total = getattr(self, "_total", 0) + payload
            self._total = total
            if total > self.notebook_bytes:
                return None
        return super().process_message(msg, cell, cell_index)

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        used = getattr(self, "_used", {})
        self._used = used
        size = _size(msg.get("content", {}))
        before = used.get(cell_index, 0)
        used[cell_index] = before + size
        if before > self.cell_bytes:
            return None
        if before + size > self.cell_bytes:
            if msg.get("msg_type") == "stream":  # keep what fits of a long text
                msg = {**msg, "content": {**msg["content"], "text": msg["content"]["text"][: self.cell_bytes - before]}}
                super().output(outs, msg, display_id, cell_index)
            cut = new_output("stream", name="stderr", text=CUT.format(limit=self.cell_bytes))
            outs.append(cut)
            used[cell_index] = self.cell_bytes + 1
            return cut
        return super().output(outs, msg, display_id, cell_index)


def _size(content: Any) -> int:
    """Roughly how many bytes a message's content carries, walked without copying it."""
    if isinstance(content, str | bytes):
        return len(content)
    if isinstance(content, dict):
        return sum(len(str(k)) + _size(v) for k, v in content.items())
    if isinstance(content, list | tuple):
        return sum(_size(v) for v in content)
    return 8


class CappedEngine(NBClientEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
        cell_bytes = kwargs.pop("cell_output_bytes", CappedClient.cell_bytes)
        client_cls = type("Capped", (CappedClient,), {"cell_bytes": cell_bytes})
        # The same keyword handling as NBClientEngine, with our client class.
        from papermill.engines import logger, merge_kwargs, remove_args

        kwargs = remove_args(["input_path"], **kwargs)
        safe = remove_args(["timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(
            safe,
            timeout=kwargs.get("execution_timeout") or kwargs.get("timeout"),
            startup_timeout=kwargs.get("start_timeout", 60),
            kernel_name=kernel_name,
            log=logger,
        )
        final = {k: v for k, v in final.items() if k not in ("execution_timeout", "start_timeout")}
        final["store_widget_state"] = False  # widget states are not graded, and could be huge
        return client_cls(nb_man, **final).execute()


papermill_engines.register(ENGINE, CappedEngine)


def limit_messages(km: Any, message_bytes: int) -> None:
    """Give the kernel manager a ZeroMQ context whose sockets refuse oversized messages."""
    import zmq
    import zmq.asyncio

    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, message_bytes)
    km.context = context
