"""/queues/{name}/dead: a queue's dead letters, a page at a time without consuming them; requeue and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from service.domain.states import JobState
from service.ops.dead_jobs import DeadJobs, RequeueState
from service.web import models
from service.web.changing import changing
from service.web.deps import get_queue_control
from service.web.routes.queues import QUEUE_CHANGE_ERRORS, QueueName

router = APIRouter(prefix="/queues", tags=["dead letters"])

#: A page reaches at most this deep (AMQP's prefetch count is 16 bits; service/rabbit/dead_letters.py).
MAX_OFFSET = 60_000
MAX_PAGE = 500
MAX_IDS = 1_000


async def provide_dead_jobs() -> DeadJobs:
    return get_queue_control().dead_jobs


DeadJobsDep = Annotated[DeadJobs, Depends(provide_dead_jobs)]


class DeadMessage(models.ServiceView):
    jobId: str = Field(description="The Dramatiq message id, which is the job id")
    actor: str
    reason: str = Field(description="The record's failedReason, else the message's last error")
    deadAt: str | None = Field(description="When RabbitMQ dead-lettered it (ISO 8601, UTC), if known")
    state: JobState | None = Field(description="The job's state in the store now; null when it has no record")
    preview: str = Field(description="The payload on one line: redacted, secret-named fields masked, capped")


class RequeueFigures(models.ServiceView):
    """The latest "requeue all" of a queue's dead letters, written to Redis as it goes."""

    state: RequeueState
    total: int = Field(description="Dead messages when it started")
    requeued: int
    stale: int = Field(description="Removed: their job had run again or finished meanwhile")
    kept: int = Field(description="Left dead: not a Dramatiq message, or an actor this service does not know")
    startedAt: str
    updatedAt: str
    error: str | None = None


class DeadPage(BaseModel):
    """Oldest first. Pass `next` as `offset` for the following page; null on the last one."""

    queue: str
    count: int = Field(description="Dead messages ready in the queue now (not those a reader holds)")
    offset: int
    next: int | None
    messages: list[DeadMessage]
    requeue: RequeueFigures | None = Field(description='The latest "requeue all", if one ran in the last day')


class DeadSelection(BaseModel):
    """Which dead letters: these jobs' (every dead copy of each), or, with no body, all of them."""

    jobIds: list[Annotated[str, Field(max_length=200)]] = Field(max_length=MAX_IDS)


class DeadRequeued(BaseModel):
    queue: str
    requeued: int = Field(description="Sent back to the queue (so far, for a requeue of all)")
    stale: int
    kept: int
    missing: list[str] = Field(description="Asked-for job ids with no dead letter")
    requeue: RequeueFigures | None = Field(
        description="For a requeue of all: its progress. It goes on in the background; read it at GET .../requeue"
    )


class DeadDeleted(BaseModel):
    queue: str
    deleted: int
    missing: list[str] = Field(description="Asked-for job ids with no dead letter")


@router.get(
    "/{name}/dead",
    response_model=DeadPage,
    responses=models.about_one("Unknown queue"),
    summary="A page of the queue's dead letters, oldest first; they stay in the dead-letter queue",
)
def dead_page(
    name: QueueName,
    dead: DeadJobsDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many to skip, from the oldest")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> DeadPage:
    page = dead.page(name, offset, limit)
    progress = dead.progress(name)
    return DeadPage(
        queue=name,
        count=page.total,
        offset=offset,
        next=page.next,
        messages=[DeadMessage.model_validate(item) for item in page.items],
        requeue=RequeueFigures.model_validate(progress) if progress else None,
    )


@router.get(
    "/{name}/dead/requeue",
    response_model=RequeueFigures,
    responses={**models.not_found("Unknown queue, or no requeue of all in the last day"), **models.UNAVAILABLE},
    summary='The progress of the latest "requeue all" of the queue\'s dead letters',
)
def requeue_progress(name: QueueName, dead: DeadJobsDep) -> RequeueFigures:
    progress = dead.progress(name)
    if progress is None:
        raise HTTPException(404, "No requeue of this queue's dead letters in the last day")
    return RequeueFigures.model_validate(progress)


@changing(
    router.post,
    "/{name}/dead/requeue",
    DeadRequeued,
    {**QUEUE_CHANGE_ERRORS, **models.refused("A requeue of all is running already")},
    "Send dead letters (these jobs', or all) back for another try; all goes on in the background",
)
def requeue_dead(
    name: QueueName, dead: DeadJobsDep, selection: Annotated[DeadSelection | None, Body()] = None
) -> DeadRequeued:
    if selection is None:
        progress = dead.start_requeue_all(name)
        return DeadRequeued(
            queue=name,
            requeued=progress.requeued,
            stale=progress.stale,
            kept=progress.kept,
            missing=[],
            requeue=RequeueFigures.model_validate(progress),
        )
    outcome = dead.requeue(name, selection.jobIds)
    return DeadRequeued(
        queue=name,
        requeued=outcome.requeued,
        stale=outcome.stale,
        kept=outcome.kept,
        missing=outcome.missing,
        requeue=None,
    )


@changing(
    router.post,
    "/{name}/dead/delete",
    DeadDeleted,
    QUEUE_CHANGE_ERRORS,
    "Remove dead letters for good (these jobs', or all); their records stay failed",
)
def delete_dead(
    name: QueueName, dead: DeadJobsDep, selection: Annotated[DeadSelection | None, Body()] = None
) -> DeadDeleted:
    outcome = dead.delete(name, selection.jobIds if selection is not None else None)
    return DeadDeleted(queue=name, deleted=outcome.deleted, missing=outcome.missing)
