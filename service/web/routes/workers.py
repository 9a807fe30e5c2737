"""GET /workers: every worker process alive, with what each of its threads runs now (from their heartbeats)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from service.web import models
from service.web.deps import ActivityDep

router = APIRouter(tags=["workers"])


class RunningJobOut(models.ServiceView):
    jobId: str
    actor: str
    queue: str
    thread: int = Field(description="The worker thread's number in its process, from 1")
    startedAt: str = Field(description="When the thread took the job (ISO 8601 UTC, the worker's clock)")
    elapsedMs: int = Field(description="From startedAt to this answer")
    progress: int = Field(description="0-100, as the job last reported it")
    progressMessage: str | None


class WorkerOut(models.ServiceView):
    """A `dramatiq` worker process: it beats every few seconds, and at once when a job starts or ends."""

    id: str = Field(description="host:pid")
    host: str
    pid: int
    threads: int = Field(description="Worker threads in the process")
    busy: int = Field(description="Threads running a job")
    queues: list[str]
    startedAt: str
    beatAt: str = Field(description="Its last heartbeat")
    running: list[RunningJobOut] = Field(description="What each busy thread runs, by thread number")


@router.get(
    "/workers",
    response_model=list[WorkerOut],
    responses=models.UNAVAILABLE,
    summary="Every worker process alive, with what each thread runs now",
)
def list_workers(activity: ActivityDep) -> list[WorkerOut]:
    return [WorkerOut.model_validate(worker) for worker in activity.workers()]
