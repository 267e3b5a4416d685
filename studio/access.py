"""Who is calling the studio, and what they may do: the one place the studio gets a caller's role.

Roles, weakest first: ``viewer`` (every page), ``editor`` (also saves segment rules and audiences, runs
syncs), ``admin`` (also promotes and rolls back models). A browser signs in once on ``/studio/login``
with its key, kept in an HTTP-only, same-site cookie; a script may send ``X-API-Key`` or
``Authorization: Bearer`` instead.

Today the service has one key (``serving.api_key_env``), and it is the admin key. When
``base/access_keys.py`` (named keys with scopes) lands, only :func:`caller` changes: look the token up
with ``AccessKeys.load(path).check(token, scope)`` for ``admin``, then ``editor``, then ``viewer``, and
return the first scope that answers a client name.
"""

from __future__ import annotations

import hmac
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
    """The caller's role, or None when the request carries no valid key."""
    token = presented_token(request)
    expected = os.environ.get(settings.serving.api_key_env)
    if not token or not expected:
        return None
    if hmac.compare_digest(expected.encode(), token.encode()):
        return Caller(role="admin", name="admin (service key)")
    return None
