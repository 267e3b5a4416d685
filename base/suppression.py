"""The suppression list: one-way tokens of the identifiers of people who were forgotten.

Ingest drops their rows at the door and the service refuses their events, so an old export
delivered again brings nothing back. The list holds :func:`base.pseudonym.suppression_token` values
only (keyed hashes under their own purpose), never an identifier or a stored pseudonym.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from base.pseudonym import suppression_token


def read_tokens(path: Path) -> frozenset[str]:
    """The tokens on the list (empty when nobody was forgotten)."""
    if not path.exists():
        return frozenset()
    return frozenset(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def add_tokens(path: Path, tokens: Iterable[str]) -> int:
    """Append tokens not yet on the list, durably; returns how many were new."""
    new = sorted(set(tokens) - read_tokens(path))
    if not new:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(t + "\n" for t in new))
        fh.flush()
        os.fsync(fh.fileno())
    return len(new)


class Suppression:
    """The list as a checker; re-read when the file changes (the service follows erasures live)."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key
        self._stamp: tuple[int, int] | None = None
        self._tokens: frozenset[str] = frozenset()

    def tokens(self) -> frozenset[str]:
        """The current tokens."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._tokens = read_tokens(self.path) if stamp else frozenset()
            self._stamp = stamp
        return self._tokens

    def suppressed(self, identifier: str | None) -> bool:
        """Whether an identifier (user id, alias, or ``pii.<kind>.<hex>`` token) belongs to a forgotten person."""
        tokens = self.tokens()
        return bool(tokens) and identifier is not None and suppression_token(identifier, self.key) in tokens
