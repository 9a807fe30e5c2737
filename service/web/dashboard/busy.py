"""The dashboard's Busy page: what every worker thread runs now; its script keeps it live from GET /workers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.settings import get_settings
from service.web.dashboard.pages import render
from service.web.deps import ActivityDep

router = APIRouter(include_in_schema=False)


@router.get("/dashboard/busy")
def busy_page(request: Request, activity: ActivityDep) -> Response:
    workers = activity.workers()
    context = {
        "request": request,
        "section": "busy",
        "token_required": bool(get_settings().api_token),
        "workers": workers,
        "rows": [(worker, job) for worker in workers for job in worker.running],
        "threads": sum(worker.threads for worker in workers),
    }
    return render("busy.html", context)
