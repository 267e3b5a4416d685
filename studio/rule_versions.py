"""Segment rules saved from the studio: validated, written atomically, versioned (who, when, diff),
restorable; and :class:`RulesWatch`, which lets the running service use a newly saved file without a
restart.

Versions live in ``<data>/studio/rules/``: ``vNNNN.yaml`` (the file as saved) and ``log.jsonl`` (one line
per version: number, who, when, digest, note, unified diff against the previous version). The first save
records the file as it was found as version 1, so the original can always be restored.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from base.config import (
    ConfigError,
    SegmentRule,
    Settings,
    load_segment_file,
    segment_rules,
)
from base.durable import exclusive_lock
from base.segments import check_rules
from studio.files import append_line, read_lines, studio_dir, write_atomic

log = logging.getLogger("persona.studio")
HEADER = "# Named personas, assigned per user by the first rule whose conditions all hold.\n"


class StaleEdit(ConfigError):
    """The file changed since the form was opened (someone else saved)."""


@dataclass(frozen=True)
class RuleVersion:
    """One saved version of the rules file."""

    version: int
    by: str
    at: str
    digest: str
    note: str
    diff: str


def digest(text: str) -> str:
    """Short content digest of a rules file (names a version; the edit form carries it to detect stale edits)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def rules_file(settings: Settings) -> Path:
    """The segments file the studio edits (``segments_file`` in persona.yaml)."""
    if settings.segments_file is None:
        raise ConfigError("persona.yaml has inline segment rules; set segments_file to edit them in the studio")
    return Path(settings.segments_file)


def _dir(settings: Settings) -> Path:
    return studio_dir(settings) / "rules"


def as_yaml(rules: Sequence[SegmentRule], header: str = HEADER) -> str:
    """The rules as a segments file (the header comment kept)."""
    items = []
    for r in rules:
        item: dict[str, Any] = {"name": r.name}
        if r.description:
            item["description"] = r.description
        item["all"] = [{"field": c.field, "op": c.op, "value": c.value} for c in r.all]
        items.append(item)
    body = yaml.safe_dump({"segments": items}, sort_keys=False, allow_unicode=True, default_flow_style=None)
    return header + body


def header_of(text: str) -> str:
    """The comment lines a segments file starts with."""
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line)
    return "".join(lines) or HEADER


def validate(items: list[dict[str, Any]], known_fields: set[str], where: str = "segment rules") -> list[SegmentRule]:
    """Rules from their plain form, checked as the service checks them (names, catch-all, known fields)."""
    rules = segment_rules(items, where)
    check_rules(rules, known_fields)
    return rules


def history(settings: Settings) -> list[RuleVersion]:
    """Every saved version, newest first."""
    return [RuleVersion(**r) for r in read_lines(_dir(settings) / "log.jsonl")][::-1]


def version_text(settings: Settings, version: int) -> str:
    """The rules file as saved in ``version``."""
    path = _dir(settings) / f"v{version:04d}.yaml"
    if not path.exists():
        raise ConfigError(f"no saved version {version} of the segment rules")
    return path.read_text(encoding="utf-8")


def _locked(settings: Settings) -> AbstractContextManager[None]:
    """One save at a time (read, compare, write, record)."""
    return exclusive_lock(_dir(settings) / ".lock")


def _record(settings: Settings, text: str, previous: str, by: str, note: str, number: int) -> RuleVersion:
    write_atomic(_dir(settings) / f"v{number:04d}.yaml", text.encode())
    diff = "".join(difflib.unified_diff(previous.splitlines(keepends=True), text.splitlines(keepends=True),
                                        f"v{number - 1}" if number > 1 else "empty", f"v{number}"))
    v = RuleVersion(version=number, by=by, at=datetime.now(UTC).isoformat(timespec="seconds"),
                    digest=digest(text), note=note, diff=diff)
    append_line(_dir(settings) / "log.jsonl", v.__dict__)
    return v


def save(settings: Settings, rules: Sequence[SegmentRule], by: str, note: str = "",
         expected_digest: str | None = None, text: str | None = None) -> RuleVersion:
    """Write the rules file atomically and record the version; refuses when the file changed since
    ``expected_digest`` (the version the editor started from). Rules must already be validated."""
    path = rules_file(settings)
    with _locked(settings):
        found = path.read_text(encoding="utf-8") if path.exists() else ""
        if expected_digest is not None and digest(found) != expected_digest:
            raise StaleEdit(f"{path.name} changed since this form was opened (someone saved version "
                            f"{digest(found)}); reload the page and apply your edit again")
        past = history(settings)
        number = past[0].version if past else 0
        if not past and found:
            _record(settings, found, "", "(before the studio)", "the file as found", 1)
            number = 1
        new_text = text if text is not None else as_yaml(rules, header_of(found))
        segment_rules(yaml.safe_load(new_text)["segments"], str(path))  # the text reads back as the service reads it
        write_atomic(path, new_text.encode())
        return _record(settings, new_text, found, by, note, number + 1)


def restore(settings: Settings, version: int, by: str, known_fields: set[str]) -> RuleVersion:
    """Save an earlier version again (as a new version); it is validated like any edit."""
    text = version_text(settings, version)
    rules = validate(yaml.safe_load(text).get("segments") or [], known_fields, f"version {version}")
    return save(settings, rules, by, note=f"restored version {version}", text=text)


Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class RulesWatch:
    """The segment rules as the file says now: one ``stat`` per call, a reload when the file changed.

    A file that fails to load or to check keeps the rules in use (and is logged once per change)."""

    def __init__(self, path: Path | None, rules: list[SegmentRule],
                 check: Callable[[list[SegmentRule]], None] | None = None) -> None:
        self.path, self._check = path, check
        self._rules, self._stamp = rules, (_stamp(path) if path is not None else None)
        self.version = "0"
        """Changes with every reload (part of the service's persona cache key)."""

    def current(self) -> list[SegmentRule]:
        """The rules to use for this request."""
        if self.path is None:
            return self._rules
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                rules = load_segment_file(self.path)
                if self._check is not None:
                    self._check(rules)
            except (ConfigError, OSError) as e:
                log.error("segment rules not reloaded, keeping the ones in use: %s", e)
                return self._rules
            self._rules, self.version = rules, str(stamp)
            log.info("segment rules reloaded from %s", self.path)
        return self._rules
