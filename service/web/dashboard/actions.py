"""The dashboard's one action the HTTP API does not have: run every failed job of a queue again."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.web.deps import Authorized, QueuesDep

router = APIRouter(include_in_schema=False)


@router.post("/dashboard/queues/{name}/retry-failed", dependencies=[Authorized])
def retry_failed(name: str, queues: QueuesDep) -> JSONResponse:
    """Retries the failed jobs of each actor on the queue (an unknown queue is a 404, as in the API);
    `jobs retry --failed --actor A` does the same per actor."""
    outcome = queues.retry_failed(queue=name)
    return JSONResponse({"queue": name, "retried": len(outcome.retried), "skipped": outcome.skipped}, status_code=202)
