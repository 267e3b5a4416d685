"""Access keys for the persona service, as a plain ASGI middleware (cheap on the hot path).

Each client has its own key with scopes (``persona keys add NAME --scope events``; kept hashed in
the keys file, see base/access_keys.py, re-read when it changes). The single key of older set-ups,
from the environment variable named by ``serving.api_key_env``, still works as an admin key.

What needs which scope: ``POST /events`` → ``events``; ``/admin/*`` and ``/users/*`` (erasure, ``DELETE /users/{id}``) → ``admin``; ``GET /report`` (a
page with per-user rows) → ``viewer``; ``POST /persona`` → ``persona`` when
``serving.require_key_for_persona`` is set (open by default: see the README). ``admin`` holds every
scope. Send the key as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``. A missing or wrong key
gets a 401, a key without the scope a 403, both with a JSON error; while no key exists at all every
protected call is refused.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from base.access_keys import AccessKeys
    from base.config import Settings

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Any]
ALWAYS_PROTECTED = ("/events", "/admin", "/report", "/users")
PATH_SCOPES = {"/events": "events", "/admin": "admin", "/users": "admin", "/report": "viewer", "/persona": "persona"}


async def send_json_error(send: Send, status: int, message: str,
                          headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer an ASGI request with ``{"error": message}`` and this status."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def protected_paths(require_key_for_persona: bool) -> tuple[str, ...]:
    """Path prefixes that need a key."""
    return ALWAYS_PROTECTED + (("/persona",) if require_key_for_persona else ())


def path_scope(path: str) -> str:
    """The scope a protected path needs."""
    return next(s for p, s in PATH_SCOPES.items() if path.startswith(p))


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries, from X-API-Key or a Bearer authorization header."""
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip()
    return None


def refusal(keys: "AccessKeys", given: str | None, scope: str, env: str) -> tuple[int, str] | None:
    """Why the request is refused (status, message), or None when the key holds the scope."""
    if not keys.configured:
        return 401, (f"the server has no API keys (add one with `persona keys add NAME --scope {scope}`, "
                     f"or set {env}); protected calls are refused")
    if not given:
        return 401, "missing API key: send it in the X-API-Key header (or Authorization: Bearer)"
    holder = keys.holder(given)
    if holder is None:
        return 401, "wrong API key"
    if scope not in holder[1]:
        return 403, f"the key of client {holder[0]!r} lacks the scope {scope!r} this call needs"
    return None


def service_keys(settings: "Settings") -> "AccessKeys":
    """The service's keys: the keys file under the data directory plus the environment's admin key."""
    from base.access_keys import AccessKeys
    from base.paths import DataPaths

    return AccessKeys.load(DataPaths(settings.data_dir).access_keys,
                           admin_key=os.environ.get(settings.serving.api_key_env) or None)


class ApiKeyMiddleware:
    """Refuses protected paths without a key holding their scope; everything else passes straight through."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.env = ""
        self.keys: "AccessKeys | None" = None
        self.paths: tuple[str, ...] | None = None  # read on the first request, from the service's settings

    def _configure(self) -> tuple[str, ...]:
        settings = service_settings()
        self.env = settings.serving.api_key_env
        self.keys = service_keys(settings)
        self.paths = protected_paths(settings.serving.require_key_for_persona)
        return self.paths

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.paths or self._configure()):
            assert self.keys is not None
            why = refusal(self.keys, presented_key(scope["headers"]), path_scope(scope["path"]), self.env)
            if why is not None:
                await send_json_error(send, why[0], why[1], [(b"www-authenticate", b'Bearer realm="persona"')])
                return
        await self.app(scope, receive, send)


def service_settings() -> "Settings":
    """The settings the running service loaded (read once, in its ``__init__``); loaded afresh only when
    no service instance runs in this process (the ASGI pieces used on their own)."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        return bentoml.get_current_service().settings
    except BentoMLException:  # no instance yet (or a plain ASGI app in a test)
        from base.config import load_settings

        return load_settings()
