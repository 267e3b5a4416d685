"""The studio as an ASGI app (Starlette): routes, sign-in, roles, and the local copy of plotly.js.

``build_app(hooks)`` makes the app; the service mounts it at ``/studio`` (serving/studio_app.py). Page
handlers are plain functions run in the thread pool (they read files and the registry)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from base.config import ConfigError
from studio.access import COOKIE, KeyCache, caller
from studio.context import Hooks, Req
from studio.html import error, page

Handler = Callable[..., Any]


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def guarded(hooks: Hooks, needed: str, handler: Handler, kind: str = "html") -> Callable[[Request], Any]:
    """An endpoint: the caller must hold ``needed``; the handler runs in the thread pool."""

    async def endpoint(request: Request) -> Response:
        settings = hooks.settings()
        who = caller(request, settings, request.app.state.keys)
        base = _base(request)
        if who is None:
            if request.method == "GET" and kind == "html":
                return RedirectResponse(f"{base}/login?next={request.url.path}", status_code=303)
            return HTMLResponse(page("Sign in needed", error("sign in first"), base), status_code=401)
        if not who.may(needed):
            return HTMLResponse(page("Not allowed", error(f"this needs the {needed} role; you are {who.role}"), base,
                                     who.name), status_code=403)
        form = parse_qs((await request.body()).decode("utf-8", "replace")) if request.method == "POST" else {}
        req = Req(query=dict(request.query_params), form=form, base=base, caller=who, settings=settings, hooks=hooks)
        try:
            out = await run_in_threadpool(handler, req, **request.path_params)
        except ConfigError as e:
            return HTMLResponse(page("Error", error(str(e)), base, who.name), status_code=400)
        if kind == "csv":
            name = request.path_params.get("name", "audience")
            return Response(out, media_type="text/csv",
                            headers={"Content-Disposition": f"attachment; filename={name}.csv"})
        return HTMLResponse(out)

    return endpoint


LOGIN = """<form method='post' action='{base}/login'><input type='hidden' name='next' value='{next}'>
key <input type='password' name='key' id='key' size='40' required> <button id='sign-in'>sign in</button></form>"""


async def login(request: Request) -> Response:
    """GET: the sign-in form; POST: check the key and keep it in an HTTP-only, same-site cookie."""
    base = _base(request)
    if request.method == "GET":
        nxt = request.query_params.get("next", f"{base}/")
        return HTMLResponse(page("Sign in", LOGIN.format(base=base, next=nxt), base))
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    nxt = (form.get("next") or [f"{base}/"])[0]
    if not nxt.startswith(base + "/"):
        nxt = f"{base}/"
    settings = request.app.state.hooks.settings()
    probe = Request({"type": "http", "headers": [(b"x-api-key", key.encode())], "method": "GET"})
    if not key or caller(probe, settings, request.app.state.keys) is None:
        return HTMLResponse(page("Sign in", error("unknown key") + LOGIN.format(base=base, next=nxt), base),
                            status_code=401)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, key, httponly=True, samesite="strict", path=base or "/")
    return resp


async def logout(request: Request) -> Response:
    """Forget the key."""
    base = _base(request)
    resp = RedirectResponse(f"{base}/login", status_code=303)
    resp.delete_cookie(COOKIE, path=base or "/")
    return resp


@functools.lru_cache(maxsize=1)
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


async def plotly_js(request: Request) -> Response:
    """plotly.js from the installed package (nothing is loaded from the internet)."""
    return Response(_plotly_js(), media_type="application/javascript",
                    headers={"Cache-Control": "public, max-age=86400"})


def build_app(hooks: Hooks) -> Starlette:
    """The studio app over these hooks."""
    from studio.pages import audiences, models, overview, person, rules

    def g(needed: str, handler: Handler, kind: str = "html") -> Callable[[Request], Any]:
        return guarded(hooks, needed, handler, kind)

    routes = [
        Route("/", g("viewer", overview.overview)),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout),
        Route("/static/plotly.js", plotly_js),
        Route("/person", g("viewer", person.person)),
        Route("/rules", g("viewer", rules.rules)),
        Route("/rules/preview", g("viewer", rules.preview_fragment, "fragment"), methods=["POST"]),
        Route("/rules/save", g("editor", rules.save), methods=["POST"]),
        Route("/rules/restore", g("editor", rules.restore), methods=["POST"]),
        Route("/audiences", g("viewer", audiences.audiences)),
        Route("/audiences", g("editor", audiences.create), methods=["POST"]),
        Route("/audiences/{name}.csv", g("viewer", audiences.csv, "csv")),
        Route("/audiences/{name}/sync", g("editor", audiences.sync), methods=["POST"]),
        Route("/audiences/{name}/delete", g("editor", audiences.delete), methods=["POST"]),
        Route("/models", g("viewer", models.models)),
        Route("/models/confirm", g("admin", models.confirm)),
        Route("/models/act", g("admin", models.act), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.hooks = hooks
    app.state.keys = KeyCache()  # loaded once, re-read when the keys file changes
    return app
