"""/queues: each queue's figures, purge, pause and resume. One function per route, so dead letters and delayed jobs
slot in beside them (routes/dead.py, routes/delayed.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from service.web import models
from service.web.changing import changing
from service.web.deps import JobsDep, QueueControlDep

router = APIRouter(prefix="/queues", tags=["queues"])

QueueName = Annotated[str, Path(description="A queue name, as GET /queues lists them", max_length=200)]
#: The error rows of every route that changes one queue (401 besides).
QUEUE_CHANGE_ERRORS = {**models.not_found("Unknown queue"), **models.INVALID, **models.UNAVAILABLE}


@router.get("", response_model=list[models.QueueFigures], responses=models.UNAVAILABLE, summary="Every queue")
def list_queues(jobs: JobsDep) -> list[models.QueueFigures]:
    return [models.QueueFigures.model_validate(figures) for figures in jobs.queues()]


@changing(
    router.post,
    "/{name}/purge",
    models.Purged,
    QUEUE_CHANGE_ERRORS,
    "Empty a queue and its delay queue; their waiting jobs end cancelled",
)
def purge_queue(name: QueueName, jobs: JobsDep) -> models.Purged:
    return models.Purged.model_validate(jobs.purge(name))


@changing(
    router.post,
    "/{name}/pause",
    models.QueuePaused,
    QUEUE_CHANGE_ERRORS,
    "Workers stop starting jobs from the queue within seconds; its messages stay in RabbitMQ",
)
def pause_queue(name: QueueName, control: QueueControlDep) -> models.QueuePaused:
    control.pause(name)
    return models.QueuePaused(queue=name, paused=True)


@changing(
    router.post,
    "/{name}/resume",
    models.QueuePaused,
    QUEUE_CHANGE_ERRORS,
    "Workers start jobs from the queue again, where they left off",
)
def resume_queue(name: QueueName, control: QueueControlDep) -> models.QueuePaused:
    control.resume(name)
    return models.QueuePaused(queue=name, paused=False)
