"""The inbox manifest: the content digest of every inbox file, remembered by its size, modification time
and inode, so a run hashes only files that are new or changed instead of re-reading the whole inbox."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from base.durable import replace_durably
from ingestion.ledger import file_digest


class InboxManifest:
    """Known digests by path (``[size, mtime_ns, inode, sha256]``); a changed stat means hash again."""

    def __init__(self, path: Path, entries: dict[str, list]) -> None:
        self.path = path
        self._old = entries
        self._new: dict[str, list] = {}
        self.hashed = 0
        """Files hashed by this run (new or changed since the manifest saw them)."""

    @classmethod
    def load(cls, path: Path) -> InboxManifest:
        """The stored manifest (empty when missing or unreadable: everything is hashed once more)."""
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {})

    def digest(self, file: Path) -> str:
        """SHA-256 of ``file``: from the manifest when its stat is unchanged, else read and hashed."""
        st = file.stat()
        key = str(file)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        known = self._old.get(key)
        if isinstance(known, list) and len(known) == 4 and known[:3] == stamp:
            digest = str(known[3])
        else:
            digest = file_digest(file)
            self.hashed += 1
        self._new[key] = [*stamp, digest]
        return digest

    def save(self) -> None:
        """Keep the entries of the files seen by this run (files gone from the inbox drop out)."""
        if self._new == self._old:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(self._new), encoding="utf-8")
        replace_durably(tmp, self.path)
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            if stale != tmp and os.path.exists(stale):
                stale.unlink(missing_ok=True)
