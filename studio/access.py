"""Who is calling the studio, and what they may do: the one place the studio gets a caller's role.

Roles, weakest first: ``viewer`` (every page), ``editor`` (also saves segment rules and audiences, runs
syncs), ``admin`` (also promotes and rolls back models). A browser signs in once on ``/studio/login``
with its key, kept in an HTTP-only, same-site cookie; a script may send ``X-API-Key`` or
``Authorization: Bearer`` instead.

Keys are the service's named, scoped keys (``base/access_keys.py``); a key's strongest studio scope
(``admin``, then ``editor``, then ``viewer``) is its role, and its client name is recorded as who changed
what. The single key of older set-ups (``serving.api_key_env``) is an admin key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

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


def caller(request: Request, settings: Settings) -> Caller | None:
    """The caller's role (the strongest studio scope their key holds) and name, or None without a valid key.

    Keys are the service's (``base/access_keys.py``: ``persona keys add NAME --scope viewer``); the single
    key of older set-ups (``serving.api_key_env``) is an admin key."""
    from base.access_keys import AccessKeys
    from base.paths import DataPaths

    token = presented_token(request)
    if not token:
        return None
    keys = AccessKeys.load(DataPaths(settings.data_dir).access_keys,
                           admin_key=os.environ.get(settings.serving.api_key_env) or None)
    for role in reversed(ROLES):  # admin, then editor, then viewer
        name = keys.check(token, role)
        if name is not None:
            return Caller(role=role, name=name)
    return None
