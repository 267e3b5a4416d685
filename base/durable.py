"""Durable file replacement: what a ledger line commits must survive a power cut, not only a crash."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from base.file_lock import file_lock


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's: a rename inside it) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, target: Path) -> Path:
    """Flush ``tmp`` to disk, rename it to ``target`` and flush the folder, so the new name and its
    content are on disk before anything (such as a ledger line) refers to them."""
    fsync_path(tmp)
    os.replace(tmp, target)
    fsync_path(target.parent)
    return target


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block; other processes wait."""
    with file_lock(path):
        yield
