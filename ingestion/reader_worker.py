"""The reader worker process, run as ``python -m ingestion.reader_worker REQUESTS ANSWERS PARENT_PID`` by
:class:`ingestion.isolated_reader.IsolatedReader` (never by hand).

A plain interpreter: it imports this module and the reader, never the parent's main module, so a script
that ingests needs no ``if __name__ == "__main__":`` guard (and, started with ``-m``, its main module has a
spec and a file, which PySpark-connect's import-time check wants). ``REQUESTS`` and ``ANSWERS`` are the pipe
ends it inherited; over them (:class:`multiprocessing.connection.Connection` framing) it receives the setup
``{"reader": "module:function", "limits": ..., "sys_path": [...]}``, imports the reader, caps its address
space at ``read_memory_bytes`` (``RLIMIT_AS``), answers :data:`READY`, then one answer per ``(path, cfg)``
until the parent closes the pipes. It dies with the process that started it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from base.config import ChannelConfig, ReaderLimits
    from ingestion.readers import RawBatch

READY = "ready"
"""The worker's first answer: the reader is imported and the memory cap is set."""


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process when the thread that started it exits (a ``kill -9`` of the run leaves no
    reader spinning); exit now if the parent is already gone. Elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the prctl
        os._exit(1)


def _resolve(spec: str) -> Callable[[Path, ChannelConfig, ReaderLimits], RawBatch]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _to_ipc(table: pa.Table) -> pa.Buffer:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def serve(requests: Connection, answers: Connection) -> None:
    """Set up from the first request, then read files until the parent closes the pipes."""
    import resource

    from base.config import ChannelConfig, ReaderLimits

    try:
        setup: dict[str, Any] = requests.recv()
    except (EOFError, OSError):
        return
    sys.path.extend(p for p in setup["sys_path"] if p not in sys.path)  # the parent's (a reader in its folder)
    read = _resolve(setup["reader"])  # imported before the cap, as pyarrow/numpy reserve address space
    limits = ReaderLimits.model_validate(setup["limits"])
    resource.setrlimit(resource.RLIMIT_AS, (limits.read_memory_bytes, limits.read_memory_bytes))
    try:
        answers.send(READY)
        while True:
            path, cfg_json = requests.recv()
            try:
                raw = read(Path(path), ChannelConfig.model_validate(cfg_json), limits)
                body = _to_ipc(raw.table)
            except MemoryError:
                answers.send(("memory", [], None))
                return  # a worker that ran out of memory is not reused
            answers.send(("ok", raw.rejects, raw.error))
            answers.send_bytes(body)
            del raw, body
    except (EOFError, OSError):
        return  # the parent closed the pipes (the run is over, or it gave up on this worker)


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``REQUESTS ANSWERS PARENT_PID`` (file descriptors inherited from the parent)."""
    requests_fd, answers_fd, parent_pid = (int(a) for a in (argv if argv is not None else sys.argv[1:]))
    _die_with_parent(parent_pid)
    serve(Connection(requests_fd, writable=False), Connection(answers_fd, readable=False))


if __name__ == "__main__":
    main()
