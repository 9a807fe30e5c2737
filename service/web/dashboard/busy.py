"""The dashboard's Busy page: what every worker thread runs now; its script keeps it live from GET /workers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from service.web.dashboard.pages import render
from service.web.deps import ActivityDep

router = APIRouter(include_in_schema=False)


@router.get("/dashboard/busy")
def busy_page(activity: ActivityDep) -> Response:
    workers = activity.workers()
    context = {
        "section": "busy",
        "workers": workers,
        "rows": [(worker, job) for worker in workers for job in worker.running],
        "threads": sum(worker.threads for worker in workers),
    }
    return render("busy.html", context)
