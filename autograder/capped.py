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


class CappedClient(PapermillNotebookClient):
    """Counts each cell's output bytes and drops what comes after the cap."""

    cell_bytes = 2 << 20

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


def _size(content: dict[str, Any]) -> int:
    """Roughly how many bytes an output message carries (text, data, traceback)."""
    size = len(content.get("text", "") or "")
    size += sum(len(v) if isinstance(v, str) else len(str(v)) for v in (content.get("data") or {}).values())
    size += sum(len(line) for line in content.get("traceback", []) or [])
    return size


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
        return client_cls(nb_man, **final).execute()


papermill_engines.register(ENGINE, CappedEngine)


def limit_messages(km: Any, message_bytes: int) -> None:
    """Give the kernel manager a ZeroMQ context whose sockets refuse oversized messages."""
    import zmq
    import zmq.asyncio

    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, message_bytes)
    km.context = context
