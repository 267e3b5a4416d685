"""Erasure on the service: ``DELETE /users/{user_id}`` (admin key) forgets a person in every store, and
events of forgotten people (the suppression list) are refused instead of bringing them back."""

from __future__ import annotations

from dataclasses import replace

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from base.suppression import Suppression
from serving.events import CheckedBatch
from serving.schemas import RejectedEvent

ERASED = "this person was erased (on the suppression list); their events are not taken"


def refuse_suppressed(checked: CheckedBatch, suppression: Suppression) -> CheckedBatch:
    """Move the events of forgotten people (by user, anonymous or device id) to the rejected ones."""
    if not suppression.tokens():
        return checked
    events, positions, rejected = [], [], list(checked.rejected)
    for event, at in zip(checked.events, checked.positions):
        if any(suppression.suppressed(v) for v in (event.user_id, event.anonymous_id, event.device_id)):
            rejected.append(RejectedEvent(index=at, event_id=event.event_id, field=None, reason=ERASED))
        else:
            events.append(event)
            positions.append(at)
    return replace(checked, events=events, positions=positions, rejected=sorted(rejected, key=lambda r: r.index))


async def delete_user(request: Request) -> Response:
    """Forget one user everywhere (as ``persona forget``); answers the counts per store, no personal data."""
    from features.erasure import forget
    from serving.auth import service_settings

    user_id = request.path_params["user_id"]
    if not 1 <= len(user_id) <= 128:
        return JSONResponse({"error": "user id must be 1 to 128 characters"}, status_code=400)
    settings = service_settings()
    done = await run_in_threadpool(forget, settings, [user_id], "api")
    _drop_cached(user_id)
    last = done[-1]
    return JSONResponse({"request": last.request, "identifiers": len(last.identifiers),
                         "counts": dict(sorted(last.counts.items())), "seconds": round(last.seconds, 3)})


def _drop_cached(user_id: str) -> None:
    """Drop the user's cached persona in the running service (none when the app runs on its own)."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        bentoml.get_current_service().cache.drop([user_id])
    except (BentoMLException, AttributeError):
        pass


erasure_app = Starlette(routes=[Route("/{user_id:path}", delete_user, methods=["DELETE"])])
"""Mounted at ``/users`` on the service; the API-key middleware guards it (admin scope)."""
