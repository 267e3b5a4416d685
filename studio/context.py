"""What every page handler gets: the request's parameters, the caller, the settings and the studio's hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from base.config import Settings
from studio.access import Caller
from studio.aggregates import AggregateCache


@dataclass
class Hooks:
    """How the studio reaches the host it is mounted on.

    ``settings``: the host's settings; ``personas``: live persona records for user ids (the service's own
    scoring, drivers included; None when the studio runs without a service); ``known_fields``: the fields
    segment rules may name (the served models' features and the predictions; None: the current personas'
    columns)."""

    settings: Callable[[], Settings]
    personas: Callable[[list[str]], list[Any]] | None = None
    known_fields: Callable[[], set[str]] | None = None
    cache: AggregateCache = field(default_factory=AggregateCache)


@dataclass
class Req:
    """One request, as a page handler sees it."""

    query: dict[str, str]
    form: dict[str, list[str]]
    base: str
    caller: Caller
    settings: Settings
    hooks: Hooks

    def q(self, name: str, default: str = "") -> str:
        """A query parameter (stripped)."""
        return self.query.get(name, default).strip()

    def f(self, name: str, default: str = "") -> str:
        """A form field's first value (stripped)."""
        return (self.form.get(name) or [default])[0].strip()
