"""Who is calling the studio, and what they may do: the one place the studio gets a caller's role.

Roles, weakest first: ``viewer`` (every page), ``editor`` (also saves segment rules and audiences, runs
syncs), ``admin`` (also promotes and rolls back models). A browser signs in once on ``/studio/login``
with its key, kept in an HTTP-only, same-site cookie; a script may send ``X-API-Key`` or
``Authorization: Bearer`` instead.

Keys are the service's named, scoped keys (``base/access_keys.py``); a key's strongest studio scope
(``admin``, then ``editor``, then ``viewer``) is its role, and its client name is recorded as who changed
what. The single key of older set-ups (``serving.api_key_env``) is an admin key.

The keys are loaded once per app (:class:`KeyCache`, kept in the studio app's state) and re-read only
when the keys file changes (its modification time, size or inode: ``AccessKeys``), so a key added,
rotated or revoked with ``persona keys`` takes effect on the next request without a restart, and a
request costs one ``stat`` instead of reading and parsing the file.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

    from base.access_keys import AccessKeys
    from base.config import Settings

ROLES = ("viewer", "editor", "admin")
COOKIE = "persona_studio_key"


@dataclass(frozen=True)
class Caller:
    """A signed-in caller: their role and the name recorded with what they change."""

    role: str
    name: str

    def may(self, needed: str) -> bool:
        """Whether this role includes ``needed`` (admin includes editor includes viewer)."""
        return ROLES.index(self.role) >= ROLES.index(needed)


def presented_token(request: Request) -> str | None:
    """The key a request carries: the studio cookie, X-API-Key, or a Bearer authorization header."""
    token = request.cookies.get(COOKIE) or request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not token and auth[:7].lower() == "bearer ":
        token = auth[7:]
    return token.strip() if token else None


class KeyCache:
    """The studio's keys, loaded once and kept between requests (thread-safe).

    ``AccessKeys`` re-reads its file when the file's modification time, size or inode change, so keeping
    it costs one ``stat`` per request and a rotation still applies on the next one. A change of the keys
    file's place or of the environment's admin key (another data directory in the settings) loads anew."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._source: tuple[str, str | None] | None = None
        self._keys: AccessKeys | None = None

    def keys(self, settings: Settings) -> AccessKeys:
        """The keys for these settings."""
        from base.access_keys import AccessKeys
        from base.paths import DataPaths

        path = DataPaths(settings.data_dir).access_keys
        source = (str(path), os.environ.get(settings.serving.api_key_env) or None)
        with self._lock:
            if self._keys is None or source != self._source:
                self._keys, self._source = AccessKeys.load(path, admin_key=source[1]), source
            return self._keys


def caller(request: Request, settings: Settings, cache: KeyCache | None = None) -> Caller | None:
    """The caller's role (the strongest studio scope their key holds) and name, or None without a valid key.

    Keys are the service's (``base/access_keys.py``: ``persona keys add NAME --scope viewer``); the single
    key of older set-ups (``serving.api_key_env``) is an admin key. ``cache``: the app's :class:`KeyCache`
    (without one the keys file is read for this call alone)."""
    token = presented_token(request)
    if not token:
        return None
    keys = (cache or KeyCache()).keys(settings)
    for role in reversed(ROLES):  # admin, then editor, then viewer
        name = keys.check(token, role)
        if name is not None:
            return Caller(role=role, name=name)
    return None
