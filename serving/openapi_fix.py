"""Make the service's OpenAPI document tell the truth about BentoML's 400 answers.

BentoML 1.4 documents the ``detail`` of a 400 as a string, but its request validation answers with
pydantic's list of errors (each naming the field in ``loc``). Clients and schemathesis read the
document, so this middleware corrects it as it is served (``/docs.json``): ``detail`` may be any
JSON value. Nothing else in the document or in any other response is touched.
"""

from __future__ import annotations

import json
from typing import Any, Callable

DOC_PATH = "/docs.json"


def patch_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The document with the error schemas' ``detail`` left open."""
    for schema in spec.get("components", {}).get("schemas", {}).values():
        detail = schema.get("properties", {}).get("detail") if isinstance(schema, dict) else None
        if isinstance(detail, dict) and detail.get("title") == "Error Detail":
            schema["properties"]["detail"] = {"title": "Error Detail",
                                              "description": "What was wrong: a message or a list of errors"}
    return spec


class OpenApiFixMiddleware:
    """Rewrites the body of ``GET /docs.json``; passes everything else through untouched."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or scope["path"] != DOC_PATH:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if start.get("status") == 200:
                body = json.dumps(patch_spec(json.loads(body))).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
