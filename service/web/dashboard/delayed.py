"""The dashboard's page of a queue's delayed jobs, with run now and cancel for one job (the API's routes do all)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from service.domain.clock import now_ms
from service.ops.delayed import Handled, UnknownQueue
from service.web.dashboard.pages import render
from service.web.deps import Authorized
from service.web.routes.delayed import DelayedDep

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100


@router.get("/dashboard/queues/{name}/delayed")
def delayed_page(name: str, delayed: DelayedDep, offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> Response:
    context: dict[str, Any] = {"section": "overview"}
    try:
        page = delayed.list(name, limit=PAGE_SIZE, offset=offset)
    except UnknownQueue:
        return render("delayed.html", {**context, "queue": name, "page": None}, status_code=404)
    waits = {job.job_id: until(job.due_at, now_ms()) for job in page.jobs}
    context.update(queue=name, page=page, offset=offset, size=PAGE_SIZE, waits=waits)
    return render("delayed.html", context)


def until(due_at: str | None, now: int) -> str:
    """ "in 59 min", "in 2 h 5 min", "in 12 s", or "due" (a worker moves it to the queue any moment now)."""
    if not due_at:
        return ""
    left_s = (int(datetime.fromisoformat(due_at.replace("Z", "+00:00")).timestamp() * 1000) - now) // 1000
    if left_s <= 0:
        return "due"
    if left_s < 60:
        return f"in {left_s} s"
    hours, minutes = divmod(left_s // 60, 60)
    return f"in {hours} h {minutes} min" if hours else f"in {minutes} min"


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
