"""Size limits of the persona API, enforced before BentoML parses a body.

In order: a body whose ``Content-Length`` is over ``serving.max_body_bytes`` gets a 413 before a
byte of it is read; a body sent without a length is read up to the limit and refused (413) the moment
it passes it. Then one fast ``json.loads`` checks the counts and shapes the configuration bounds:
``serving.max_batch`` user ids per ``POST /persona``, ``serving.max_events`` events per ``POST
/events``, and each event's ``properties`` (``max_property_bytes`` per value, ``max_property_depth``
levels); a request over a bound gets a 400 naming the bound and its setting. Only then does the
body reach the service (the API schema's own bounds are the hard ceiling).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from serving.auth import send_json_error, service_settings

if TYPE_CHECKING:
    from base.config import ServingConfig

API_PATHS = ("/persona", "/events", "/admin")


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0, an object of scalars 1)."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _size(value: Any) -> int:
    """UTF-8 bytes of a JSON value as sent (strings without quotes)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return len(json.dumps(value, separators=(",", ":")).encode())


def too_many(n: int, limit: int, field: str, setting: str) -> str:
    """The message of a request over a count bound."""
    return f"{field}: {n} in one request; at most {limit} ({setting} in persona.yaml)"


def shape_problem(path: str, body: bytes, cfg: "ServingConfig") -> str | None:
    """Why a parsed body breaks a configured bound, or None (malformed JSON is left to the service)."""
    try:
        doc = json.loads(body) if body else None
    except RecursionError:
        return "the JSON body is nested too deeply"
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if path.startswith("/persona"):
        ids = doc.get("user_ids")
        if isinstance(ids, list) and len(ids) > cfg.max_batch:
            return too_many(len(ids), cfg.max_batch, "user_ids", "serving.max_batch")
    elif path.startswith("/events"):
        events = doc.get("events")
        if not isinstance(events, list):
            return None
        if len(events) > cfg.max_events:
            return too_many(len(events), cfg.max_events, "events", "serving.max_events")
        for i, event in enumerate(events):
            props = event.get("properties") if isinstance(event, dict) else None
            if not isinstance(props, dict):
                continue
            if (depth := _depth(props)) > cfg.max_property_depth:
                return (f"events[{i}].properties: nested {depth} levels deep; at most "
                        f"{cfg.max_property_depth} (serving.max_property_depth in persona.yaml)")
            for key, value in props.items():
                if (size := _size(value)) > cfg.max_property_bytes:
                    return (f"events[{i}].properties.{key}: {size} bytes; at most {cfg.max_property_bytes} "
                            "(serving.max_property_bytes in persona.yaml)")
    return None


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length (None when absent; -1 when it is not a number)."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


class BodyLimitMiddleware:
    """Refuses oversized or over-bound API bodies (413/400) before the service reads them."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.cfg: "ServingConfig | None" = None  # the service's settings, read on the first request

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "POST" and scope["path"].startswith(API_PATHS)):
            await self.app(scope, receive, send)
            return
        cfg = self.cfg or service_settings().serving
        self.cfg = cfg
        limit = cfg.max_body_bytes
        length = declared_length(scope["headers"])
        if length is not None and length < 0:
            await send_json_error(send, 400, "Content-Length is not a number")
            return
        if length is not None and length > limit:
            await send_json_error(send, 413, f"request body of {length} bytes; at most {limit} "
                                             "(serving.max_body_bytes in persona.yaml)")
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_json_error(send, 413, f"request body over {limit} bytes "
                                                 "(serving.max_body_bytes in persona.yaml)")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = shape_problem(scope["path"], body, cfg)
        if problem is not None:
            await send_json_error(send, 400, problem)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
