"""Files are parsed in a worker process, so a reader that hangs, crashes or blows up its memory inside a C
extension (pyarrow, a pathological regex) costs one file, not the run.

One worker serves a whole ingest run: a plain ``python -m ingestion.reader_worker`` subprocess (not
``multiprocessing``: it never imports the caller's main module), started early so its imports (pyarrow,
pandas) overlap the caller's work, and started again only after a kill. Each file gets
``validation.limits.read_seconds`` and the worker's address space is capped at ``read_memory_bytes``
(``RLIMIT_AS``). When a file breaks either bound, or the worker dies (a segfault, a kill), the worker is
killed and replaced and the file comes back as a whole-file error naming the bound; the rest of the group
goes on. Requests and answers go over two pipes with :class:`multiprocessing.connection.Connection`
framing; tables come back as Arrow IPC bytes (no pickled pandas), rejects and errors as small Python values.
A thread of the caller receives each answer as soon as it is sent, so the worker parses the next files
while the caller validates and writes (up to ``READ_AHEAD`` files in flight) instead of waiting on a full
pipe.

The worker dies with the thread that started it (``PR_SET_PDEATHSIG``; :func:`ingestion.ingest.ingest`
starts and stops it in its own call), so a ``kill -9`` of the run leaves no reader spinning.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

import pyarrow as pa

from base.config import ChannelConfig, ReaderLimits
from ingestion import reader_worker
from ingestion.readers import RawBatch

DEFAULT_READER = "ingestion.readers:read_channel_file"
"""``module:function`` the worker calls (``(path, cfg, limits) -> RawBatch``); tests name their own."""
START_SECONDS = 120.0
"""How long a new worker may take to import its reader (a busy machine; not a file's fault)."""
READ_AHEAD = 8
"""Files sent to the worker before the first answer is awaited (requests are small; answers wait in the pipe)."""
PACKAGES_ROOT = Path(__file__).resolve().parent.parent
"""The folder holding the project's packages (``base``, ``ingestion``, ...): on the worker's ``PYTHONPATH``."""


def _worker_env() -> dict[str, str]:
    """The caller's environment, with the project's packages importable whatever the worker's folder (an
    installed project is already on the path: site-packages is not put before the standard library)."""
    import site

    env = dict(os.environ)
    root = str(PACKAGES_ROOT)
    if root not in {*site.getsitepackages(), site.getusersitepackages()}:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


Answer = tuple[Any, bytes | None]
"""A message from the worker and, for a file read, the Arrow IPC bytes sent after it."""
PIPE_BYTES = 1 << 20
"""Capacity asked for the answer pipe (Linux ``F_SETPIPE_SZ``; the system may cap it): fewer wake-ups per table."""


def _widen_pipe(fd: int) -> None:
    """Ask for a larger pipe buffer (a no-op where the system does not allow it)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, ImportError):
        pass


def _pump(answers: Connection, inbox: "queue.SimpleQueue[Answer | None]") -> None:
    """Receive the worker's answers as soon as it sends them, into ``inbox`` (a thread per worker): a parsed
    file waits in memory instead of in the pipe, so the worker goes on to the next file while the caller
    works. ``None`` marks the worker's end (it exited, crashed or was killed); the pipe is closed here."""
    try:
        while True:
            head = answers.recv()
            body = answers.recv_bytes() if isinstance(head, tuple) and head[0] == "ok" else None
            inbox.put((head, body))
    except (EOFError, OSError):
        inbox.put(None)
    finally:
        answers.close()


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
        self._proc: subprocess.Popen[bytes] | None = None
        self._requests: Connection | None = None
        self._inbox: queue.SimpleQueue[Answer | None] | None = None
        self._ready_seen = False
        self.replaced = 0
        """Workers killed and replaced (a file broke a bound)."""

    def start(self) -> None:
        """Start the worker now (it imports in the background while the caller does other work)."""
        if self._proc is not None:
            return
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        try:
            # -P: the caller's folder is not put first on the worker's path (a stray base.py cannot shadow).
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", reader_worker.__name__, str(requests_r), str(answers_w), str(os.getpid())],
                pass_fds=(requests_r, answers_w), env=_worker_env(), stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(requests_w)
            os.close(answers_r)
            raise
        finally:
            os.close(requests_r)
            os.close(answers_w)
        _widen_pipe(answers_r)
        self._requests = Connection(requests_w, readable=False)
        self._inbox = queue.SimpleQueue()
        threading.Thread(target=_pump, args=(Connection(answers_r, writable=False), self._inbox),
                         name="reader-answers", daemon=True).start()
        try:
            self._requests.send({"reader": self.reader, "limits": self.limits.model_dump(mode="json"),
                                 "sys_path": [p or os.getcwd() for p in sys.path]})
        except OSError:
            pass  # the worker is already gone: waiting for it to be ready says so

    def _ready(self) -> tuple[Connection, "queue.SimpleQueue[Answer | None]"]:
        self.start()
        requests, inbox = self._requests, self._inbox
        assert requests is not None and inbox is not None
        if not self._ready_seen:
            try:
                answer = inbox.get(timeout=START_SECONDS)
            except queue.Empty:
                self._kill()
                raise RuntimeError(f"the reader worker did not start within {START_SECONDS:g} s") from None
            if answer is None or answer[0] != reader_worker.READY:
                code = self._kill()
                raise RuntimeError(f"the reader worker failed to start (exit code {code}; its error is on "
                                   "stderr)")
            self._ready_seen = True
        return requests, inbox

    def _kill(self) -> int | None:
        """Kill the worker (if alive), reap it; its exit code. The next read starts a new one."""
        proc = self._proc
        self._close_pipes()
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait()

    def _close_pipes(self) -> None:
        """Close the request pipe; the answer pipe is closed by its pump thread when the worker is gone."""
        if self._requests is not None:
            self._requests.close()
        self._proc, self._requests, self._inbox, self._ready_seen = None, None, None, False

    def _send(self, path: Path, cfg: ChannelConfig) -> None:
        requests, _ = self._ready()
        try:
            requests.send((str(path), cfg.model_dump(mode="json")))
        except OSError:
            pass  # the worker died on an earlier file: waiting for that one's answer finds out and re-sends

    def _replaced(self) -> int | None:
        self.replaced += 1
        return self._kill()

    def _receive(self, path: Path) -> RawBatch:
        """Wait for the answer about ``path`` (the oldest file sent); a file that breaks the time or memory
        bound, or kills the worker, comes back as a whole-file error naming the file and the bound."""
        inbox = self._inbox
        limits = self.limits
        try:
            answer = inbox.get(timeout=limits.read_seconds) if inbox is not None else None
        except queue.Empty:
            self._replaced()
            return RawBatch(path, error=f"{path}: reader took more than {limits.read_seconds:g} s "
                                        f"(validation.limits.read_seconds); the file is quarantined whole")
        if answer is None:
            code = self._replaced()
            how = _signal_name(code) if code is not None and code < 0 else f"exit code {code}"
            return RawBatch(path, error=f"{path}: reader crashed with {how}; the file is quarantined whole")
        (status, rejects, error), body = answer
        if status == "memory" or body is None:
            self._replaced()
            return RawBatch(path, error=f"{path}: reader ran out of memory (validation.limits.read_memory_bytes="
                                        f"{limits.read_memory_bytes}); the file is quarantined whole")
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
        fresh = iter(files)  # pulled only when there is room: ``files`` may be lazy
        todo: deque[tuple[Path, ChannelConfig]] = deque()  # files to send again to a replacement
        sent: deque[tuple[Path, ChannelConfig]] = deque()
        while True:
            while len(sent) < ahead:
                item = todo.popleft() if todo else next(fresh, None)
                if item is None:
                    break
                sent.append(item)
                self._send(*item)
            if not sent:
                return
            path, _ = sent.popleft()
            raw = self._receive(path)
            if self._proc is None:  # replaced: the new worker gets what the old one had not answered
                todo.extendleft(reversed(sent))
                sent.clear()
            yield raw

    def close(self) -> None:
        """Stop the worker (closing its pipes ends its loop; killed if it does not exit at once)."""
        proc = self._proc
        self._close_pipes()
        if proc is None:
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
