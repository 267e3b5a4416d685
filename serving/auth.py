"""API-key check for the persona service, as a plain ASGI middleware (cheap on the hot path).

The key comes from the environment variable named by ``serving.api_key_env`` (never from a file).
``/events``, ``/admin/*`` and ``/users/*`` (erasure) always need it, ``/persona`` when ``serving.require_key_for_persona`` is
set. Send it as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``. A missing or wrong key gets a
401 with a JSON error; so does every protected call while the server has no key configured.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from base.config import Settings

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Any]
ALWAYS_PROTECTED = ("/events", "/admin", "/users")


async def send_json_error(send: Send, status: int, message: str,
                          headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer an ASGI request with ``{"error": message}`` and this status."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def protected_paths(require_key_for_persona: bool) -> tuple[str, ...]:
    """Path prefixes that need the key."""
    return ALWAYS_PROTECTED + (("/persona",) if require_key_for_persona else ())


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries, from X-API-Key or a Bearer authorization header."""
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].decode("latin-1").strip()
    return None


def check(expected: str | None, given: str | None, env: str) -> str | None:
    """Why the request is refused, or None when the key is right."""
    if not expected:
        return f"the server has no API key configured (set {env}); protected calls are refused"
    if not given:
        return "missing API key: send it in the X-API-Key header (or Authorization: Bearer)"
    if not hmac.compare_digest(expected.encode(), given.encode()):
        return "wrong API key"
    return None


class ApiKeyMiddleware:
    """Refuses protected paths without the right key; everything else passes straight through."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.env = ""
        self.expected: str | None = None
        self.paths: tuple[str, ...] | None = None  # read on the first request, from the service's settings

    def _configure(self) -> tuple[str, ...]:
        cfg = service_settings().serving
        self.env = cfg.api_key_env
        self.expected = os.environ.get(cfg.api_key_env) or None
        self.paths = protected_paths(cfg.require_key_for_persona)
        return self.paths

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.paths or self._configure()):
            reason = check(self.expected, presented_key(scope["headers"]), self.env)
            if reason is not None:
                await send_json_error(send, 401, reason, [(b"www-authenticate", b'Bearer realm="persona"')])
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
