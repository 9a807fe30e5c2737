"""The dashboard's one action the HTTP API does not have: run every failed job of a queue again."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.ops.queues import UnknownQueue
from service.web.deps import Authorized, JobsDep, QueueControlDep

router = APIRouter(include_in_schema=False)


@router.post("/dashboard/queues/{name}/retry-failed", dependencies=[Authorized])
def retry_failed(name: str, jobs: JobsDep, control: QueueControlDep) -> JSONResponse:
    """Retries the failed jobs of each actor on the queue; `jobs retry --failed --actor A` does the same per actor."""
    try:
        control.check_queue(name)
    except UnknownQueue:
        return JSONResponse({"detail": f"Unknown queue: {name}"}, status_code=404)
    retried: list[str] = []
    skipped = 0
    for actor in jobs.actor_names():
        if jobs.actor(actor).queue_name == name:
            outcome = control.retry_failed(actor)
            retried += outcome.retried
            skipped += outcome.skipped
    return JSONResponse({"queue": name, "retried": len(retried), "skipped": skipped}, status_code=202)
