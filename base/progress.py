"""Progress reporting for long jobs: a rich progress bar when given one, silence otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Advance = Callable[[int], None]


@contextmanager
def step(progress: Any | None, description: str, total: int | None = None) -> Iterator[Advance]:
    """A progress task; yields ``advance(n)``. ``progress`` is a ``rich.progress.Progress`` or None."""
    if progress is None:
        yield lambda n=1: None
        return
    task = progress.add_task(description, total=total)
    try:
        yield lambda n=1: progress.advance(task, n)
    finally:
        progress.update(task, completed=progress.tasks[task].total or 1, total=progress.tasks[task].total or 1)
