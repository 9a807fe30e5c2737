"""GET /workers: every worker process alive, with what each of its threads runs now (from their heartbeats)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.ops.activity import RunningJob, WorkerBeat
from service.web import models
from service.web.deps import ActivityDep

router = APIRouter(tags=["workers"])


class RunningJobOut(BaseModel):
    jobId: str
    actor: str
    queue: str
    thread: int = Field(description="The worker thread's number in its process, from 1")
    startedAt: str = Field(description="When the thread took the job (ISO 8601 UTC, the worker's clock)")
    elapsedMs: int = Field(description="From startedAt to this answer")
    progress: int = Field(description="0-100, as the job last reported it")
    progressMessage: str | None

    @classmethod
    def of(cls, job: RunningJob) -> RunningJobOut:
        return cls(
            jobId=job.job_id,
            actor=job.actor,
            queue=job.queue,
            thread=job.thread,
            startedAt=job.started_at,
            elapsedMs=job.elapsed_ms,
            progress=job.progress,
            progressMessage=job.progress_message,
        )


class WorkerOut(BaseModel):
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

    @classmethod
    def of(cls, worker: WorkerBeat) -> WorkerOut:
        return cls(
            id=worker.id,
            host=worker.host,
            pid=worker.pid,
            threads=worker.threads,
            busy=worker.busy,
            queues=worker.queues,
            startedAt=worker.started_at,
            beatAt=worker.beat_at,
            running=[RunningJobOut.of(job) for job in worker.running],
        )


@router.get(
    "/workers",
    response_model=list[WorkerOut],
    responses=models.UNAVAILABLE,
    summary="Every worker process alive, with what each thread runs now",
)
def list_workers(activity: ActivityDep) -> list[WorkerOut]:
    return [WorkerOut.of(worker) for worker in activity.workers()]
