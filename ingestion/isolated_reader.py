"""Files are parsed in a worker process, so a reader that hangs, crashes or blows up its memory inside a C
extension (pyarrow, a pathological regex) costs one file, not the run.

One worker serves a whole ingest run (forked from a ``forkserver`` that has the readers imported, so a
new worker costs milliseconds, not an interpreter start). Each file gets ``validation.limits.read_seconds``
and the worker's address space is capped at ``read_memory_bytes`` (``RLIMIT_AS``). When a file breaks
either bound, or the worker dies (a segfault, a kill), the worker is killed and replaced and the file
comes back as a whole-file error naming the bound; the rest of the group goes on. Tables come back as
Arrow IPC bytes (no pickled pandas), rejects and errors as small Python values.

Like any multiprocessing child, the worker imports the parent's main module: a script that ingests keeps
its work under ``if __name__ == "__main__":``. The worker dies with its forkserver (``PR_SET_PDEATHSIG``),
which exits with the ingest process, so a ``kill -9`` of the run leaves no reader spinning.
"""

from __future__ import annotations

import importlib
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

import pyarrow as pa

from base.config import ChannelConfig, ReaderLimits
from ingestion.readers import RawBatch

DEFAULT_READER = "ingestion.readers:read_channel_file"
"""``module:function`` the worker calls (``(path, cfg, limits) -> RawBatch``); tests name their own."""
START_SECONDS = 120.0
"""How long a new worker may take to import its reader (a busy machine; not a file's fault)."""
READ_AHEAD = 8
"""Files sent to the worker before the first answer is awaited (requests are small; answers wait in the pipe)."""
_READY = "ready"


def _context() -> Any:
    """The forkserver context, its server preloading the readers (pyarrow, numpy, pandas) once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["ingestion.readers"])
    return ctx


def _resolve(spec: str) -> Callable[[Path, ChannelConfig, ReaderLimits], RawBatch]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _to_ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent (the forkserver) exits; elsewhere nothing."""
    import ctypes
    import ctypes.util
    import sys

    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _serve(conn: Connection, spec: str, limits_json: dict[str, Any]) -> None:
    """The worker: cap the address space, then read files until the parent closes the pipe."""
    import resource

    _die_with_parent()
    limits = ReaderLimits.model_validate(limits_json)
    resource.setrlimit(resource.RLIMIT_AS, (limits.read_memory_bytes, limits.read_memory_bytes))
    read = _resolve(spec)
    conn.send(_READY)
    while True:
        try:
            path, cfg_json = conn.recv()
        except (EOFError, OSError):
            return
        try:
            raw = read(Path(path), ChannelConfig.model_validate(cfg_json), limits)
            body = _to_ipc(raw.table)
        except MemoryError:
            conn.send(("memory", [], None))
            return  # a worker that ran out of memory is not reused
        conn.send(("ok", raw.rejects, raw.error))
        conn.send_bytes(body)
        del raw, body


def _signal_name(code: int) -> str:
    try:
        return f"signal {-code} ({signal.Signals(-code).name})"
    except ValueError:
        return f"signal {-code}"


class IsolatedReader:
    """A persistent reader worker: :meth:`read` parses one file in it within the limits (never raises for
    the file's sake). Use as a context manager, or call :meth:`close`."""

    def __init__(self, limits: ReaderLimits, reader: str = DEFAULT_READER) -> None:
        self.limits = limits
        self.reader = reader
        self._proc: Any = None
        self._conn: Connection | None = None
        self._ready_seen = False
        self.replaced = 0
        """Workers killed and replaced (a file broke a bound)."""

    def start(self) -> None:
        """Start the worker now (it imports in the background while the caller does other work)."""
        if self._proc is not None:
            return
        ctx = _context()
        parent, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(target=_serve, args=(child, self.reader, self.limits.model_dump(mode="json")),
                                 name="persona-reader", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def _ready(self) -> Connection:
        self.start()
        conn = self._conn
        assert conn is not None
        if not self._ready_seen:
            if not conn.poll(START_SECONDS):
                self._kill()
                raise RuntimeError(f"the reader worker did not start within {START_SECONDS:g} s (it imports the "
                                   "main module, as multiprocessing does: a script that ingests must keep its work "
                                   "under `if __name__ == '__main__':`)")
            try:
                if conn.recv() != _READY:
                    raise EOFError
            except (EOFError, OSError) as e:
                code = self._kill()
                raise RuntimeError(f"the reader worker failed to start (exit code {code})") from e
            self._ready_seen = True
        return conn

    def _kill(self) -> int | None:
        """Kill the worker (if alive), reap it; its exit code. The next read starts a new one."""
        proc, conn = self._proc, self._conn
        self._proc, self._conn, self._ready_seen = None, None, False
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join()
        if conn is not None:
            conn.close()
        return proc.exitcode

    def _send(self, path: Path, cfg: ChannelConfig) -> None:
        try:
            self._ready().send((str(path), cfg.model_dump(mode="json")))
        except OSError:
            pass  # the worker died on an earlier file: waiting for that one's answer finds out and re-sends

    def _replaced(self) -> int | None:
        self.replaced += 1
        return self._kill()

    def _receive(self, path: Path) -> RawBatch:
        """Wait for the answer about ``path`` (the oldest file sent); a file that breaks the time or memory
        bound, or kills the worker, comes back as a whole-file error naming the file and the bound."""
        conn = self._conn
        limits = self.limits
        try:
            if conn is None:
                raise EOFError
            if not conn.poll(limits.read_seconds):
                self._replaced()
                return RawBatch(path, error=f"{path}: reader took more than {limits.read_seconds:g} s "
                                            f"(validation.limits.read_seconds); the file is quarantined whole")
            status, rejects, error = conn.recv()
            if status == "memory":
                self._replaced()
                return RawBatch(path, error=f"{path}: reader ran out of memory (validation.limits.read_memory_bytes="
                                            f"{limits.read_memory_bytes}); the file is quarantined whole")
            body = conn.recv_bytes()
        except (EOFError, OSError):
            code = self._replaced()
            how = _signal_name(code) if code is not None and code < 0 else f"exit code {code}"
            return RawBatch(path, error=f"{path}: reader crashed with {how}; the file is quarantined whole")
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        return RawBatch(path, table, rejects=[tuple(r) for r in rejects], error=error)

    def read(self, path: Path, cfg: ChannelConfig) -> RawBatch:
        """Read one file in the worker (never raises for the file's sake)."""
        self._send(path, cfg)
        return self._receive(path)

    def read_all(self, files: Iterable[tuple[Path, ChannelConfig]], ahead: int = READ_AHEAD) -> Iterator[RawBatch]:
        """Read files in order, up to ``ahead`` requests in flight: the worker parses the next files while
        the caller works on this one (small files cost no round trip each). When a file costs the worker,
        the files it had not answered yet are sent again to its replacement."""
        todo: deque[tuple[Path, ChannelConfig]] = deque(files)
        sent: deque[tuple[Path, ChannelConfig]] = deque()
        while todo or sent:
            while todo and len(sent) < ahead:
                sent.append(todo.popleft())
                self._send(*sent[-1])
            path, _ = sent.popleft()
            raw = self._receive(path)
            if self._conn is None:  # replaced: the new worker gets what the old one had not answered
                todo.extendleft(reversed(sent))
                sent.clear()
            yield raw

    def close(self) -> None:
        """Stop the worker (closing its pipe ends its loop; killed if it does not exit at once)."""
        proc, conn = self._proc, self._conn
        self._proc, self._conn, self._ready_seen = None, None, False
        if proc is None:
            return
        if conn is not None:
            conn.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
