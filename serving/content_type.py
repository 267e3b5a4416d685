"""Only JSON bodies reach the persona API: anything else gets a 415 naming what was sent.

BentoML would try to parse other media types itself (``multipart/form-data`` without a boundary
makes it answer 500); the API's operations are JSON only, so the check happens first, here.
"""

from __future__ import annotations

from typing import Any, Callable

from serving.auth import send_json_error

JSON_TYPES = (b"application/json", b"")
API_PATHS = ("/persona", "/events", "/admin")


def media_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request's media type without parameters, lower-case (empty when absent)."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";")[0].strip().lower()
    return b""


class JsonOnlyMiddleware:
    """Refuses non-JSON bodies on the API's POST operations with a 415 JSON error."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if (scope["type"] == "http" and scope.get("method") == "POST" and scope["path"].startswith(API_PATHS)
                and (kind := media_type(scope["headers"])) not in JSON_TYPES):
            await send_json_error(send, 415, f"unsupported Content-Type {kind.decode('latin-1')!r}: send application/json")
            return
        await self.app(scope, receive, send)
