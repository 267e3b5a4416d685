"""A reader registered by the fault suite (``ingest(..., reader="tests.faults.hostile_reader:read")``): the
real reader, except that some files make it misbehave for real inside C code, as an unknown parser bug
would. Nothing here sleeps: the worker really spins, really segfaults, really runs out of memory.

- ``*backtrack*``: the file's first line is matched against a regex with catastrophic backtracking; the C
  regex engine spins (exponential in the line's length) without returning to Python.
- ``*segfault*``: a read through a null pointer (ctypes), SIGSEGV.
- ``*hog*``: allocates more than the worker's address-space cap (``read_memory_bytes``), MemoryError.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import numpy as np

from base.config import ChannelConfig, ReaderLimits
from ingestion.readers import RawBatch, read_channel_file

BACKTRACK = re.compile(r"(a+)+$")
"""Nested quantifiers: on ``aaa...ab`` the engine tries every split of the run of ``a`` (2^n paths)."""


def read(path: Path, cfg: ChannelConfig, limits: ReaderLimits) -> RawBatch:
    """Read ``path`` with the real reader, after the misbehaviour its name asks for."""
    if "backtrack" in path.name:
        first = path.read_bytes().split(b"\n", 1)[0].decode()
        BACKTRACK.match(first)  # "a" * 64 + "b": 2^64 steps inside _sre
    elif "segfault" in path.name:
        ctypes.string_at(0)
    elif "hog" in path.name:
        np.ones(limits.read_memory_bytes // 8 + 1)  # the kernel refuses the mapping: MemoryError
    return read_channel_file(path, cfg, limits)
