"""``GET /report``: the latest persona report (``persona report`` writes it), mounted on the service."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route


async def latest_report(request: Request) -> Response:
    """The newest report as HTML, or a 404 naming the command that writes one."""
    from base.paths import DataPaths
    from serving.auth import service_settings

    path = DataPaths(service_settings().data_dir).latest_report()
    if path is None or not path.exists():
        return JSONResponse({"error": "no report yet: run `persona report` (or `persona update`)"}, status_code=404)
    return FileResponse(path, media_type="text/html")


report_app = Starlette(routes=[Route("/", latest_report, methods=["GET"])])
"""Declared here, built by Starlette without touching any file; the handler uses the service's settings."""
