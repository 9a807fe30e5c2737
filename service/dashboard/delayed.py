"""The dashboard's page of a queue's delayed jobs, with run now and cancel for one job (the API's routes do all)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from service.api.deps import Authorized
from service.api.routes.delayed import DelayedDep
from service.dashboard.pages import render
from service.delayed import Handled, UnknownQueue
from service.settings import get_settings

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100


@router.get("/dashboard/queues/{name}/delayed")
def delayed_page(
    request: Request, name: str, delayed: DelayedDep, offset: Annotated[int, Query(ge=0, le=100_000)] = 0
) -> Response:
    context = {"request": request, "section": "overview", "token_required": bool(get_settings().api_token)}
    try:
        page = delayed.list(name, limit=PAGE_SIZE, offset=offset)
    except UnknownQueue:
        return render("delayed.html", {**context, "queue": name, "page": None}, status_code=404)
    return render("delayed.html", {**context, "queue": name, "page": page, "offset": offset, "size": PAGE_SIZE})


@router.post("/dashboard/queues/{name}/delayed/{job_id}/run-now", dependencies=[Authorized])
def run_one_now(name: str, job_id: str, delayed: DelayedDep) -> JSONResponse:
    """POST /queues/{name}/delayed/run-now with `jobIds` does the same; this one needs no request body."""
    return _answer(name, lambda: delayed.run_now(name, [job_id]))


@router.post("/dashboard/queues/{name}/delayed/{job_id}/cancel", dependencies=[Authorized])
def cancel_one(name: str, job_id: str, delayed: DelayedDep) -> JSONResponse:
    return _answer(name, lambda: delayed.cancel(name, [job_id]))


def _answer(name: str, act: Callable[[], Handled]) -> JSONResponse:
    try:
        handled = act()
    except UnknownQueue:
        return JSONResponse({"detail": f"Unknown queue: {name}"}, status_code=404)
    if not handled.count:
        # Gone meanwhile: it came due, was run or cancelled from elsewhere. Said plainly, with nothing done.
        return JSONResponse({"detail": "that job is no longer delayed in this queue"}, status_code=409)
    return JSONResponse({"queue": handled.queue, "count": handled.count, "skipped": handled.skipped}, status_code=202)
