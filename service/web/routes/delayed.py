"""/queues/{name}/delayed: a queue's delayed jobs (delays and retries waiting for their time), run now or cancelled."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from service.ops.delayed import DelayedJobs
from service.web import models
from service.web.changing import changing
from service.web.deps import get_jobs
from service.web.routes.queues import QUEUE_CHANGE_ERRORS, QueueName

router = APIRouter(prefix="/queues", tags=["queues"])

#: Job ids one request may name; "all" (no body, or no `jobIds`) has no limit.
MAX_JOB_IDS = 1000


@lru_cache(maxsize=1)
def get_delayed() -> DelayedJobs:
    return DelayedJobs(get_jobs())


async def provide_delayed() -> DelayedJobs:
    return get_delayed()


DelayedDep = Annotated[DelayedJobs, Depends(provide_delayed)]


class DelayedJobView(models.ServiceView):
    jobId: str
    actor: str
    dueAt: str | None = Field(description="When it is due (ISO 8601 UTC); null for a job delayed by an older version")
    createdAt: str
    run: int = Field(description="0, then +1 each time the job was retried by hand")
    retry: int = Field(validation_alias="retries", description="Which retry waits; 0 for a delay asked for at enqueue")
    attempts: int = Field(description="Attempts started so far")
    lastError: str | None = Field(description="Why the last attempt failed, for a retry")


class DelayedList(models.ServiceView):
    """Soonest due first. Nothing is taken out of RabbitMQ to read it: the list comes from the job store."""

    queue: str
    total: int = Field(description="Delayed jobs of the queue, all of them")
    jobs: list[DelayedJobView]


class Selection(BaseModel):
    jobIds: list[Annotated[str, Field(max_length=200)]] | None = Field(
        None, max_length=MAX_JOB_IDS, description="These jobs only; absent or null: every delayed job of the queue"
    )


class DelayedHandled(models.ServiceView):
    queue: str
    count: int = Field(description="Jobs published to run now (confirmed by RabbitMQ), or cancelled")
    skipped: int = Field(description="Not (or no longer) delayed in this queue; for run now also those whose payload "
                         "was over MAX_PAYLOAD_BYTES (they run when due)")  # fmt: skip


OptionalSelection = Annotated[Selection | None, Body(description='`{"jobIds": [...]}`, or nothing for all')]


@router.get(
    "/{name}/delayed",
    response_model=DelayedList,
    responses=models.about_one("Unknown queue"),
    summary="A queue's delayed jobs (delays and retries waiting for their time), soonest due first",
)
def list_delayed(
    name: QueueName,
    delayed: DelayedDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> DelayedList:
    return DelayedList.model_validate(delayed.list(name, limit=limit, offset=offset))


@changing(
    router.post,
    "/{name}/delayed/run-now",
    DelayedHandled,
    QUEUE_CHANGE_ERRORS,
    "Run delayed jobs now (all, or `jobIds`); each runs once, its delayed copy is skipped when due",
)
def run_delayed_now(name: QueueName, delayed: DelayedDep, selection: OptionalSelection = None) -> DelayedHandled:
    return DelayedHandled.model_validate(delayed.run_now(name, selection.jobIds if selection else None))


@changing(
    router.post,
    "/{name}/delayed/cancel",
    DelayedHandled,
    QUEUE_CHANGE_ERRORS,
    "Cancel delayed jobs (all, or `jobIds`): they never run",
)
def cancel_delayed(name: QueueName, delayed: DelayedDep, selection: OptionalSelection = None) -> DelayedHandled:
    return DelayedHandled.model_validate(delayed.cancel(name, selection.jobIds if selection else None))
