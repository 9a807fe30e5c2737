"""/jobs/bulk: an action (cancel, retry, requeue-dead) on every job a filter matches: counted first with `dryRun`, or
run in the background with its progress at /jobs/bulk/{bulkId}. Parse, call the service layer, format."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from service.domain import job_key
from service.domain.bulk_action import BulkAction, BulkProgress, BulkState
from service.domain.job_filter import REASON_MAX, InvalidFilter, JobFilter
from service.domain.states import JobState
from service.web import filters, models
from service.web.deps import Authorized, BulkDep

router = APIRouter(prefix="/jobs/bulk", tags=["bulk actions"])


class FilterBody(BaseModel):
    """The same filters as `GET /jobs`; every one optional, combined with AND. `{}` is every job."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(None, pattern=job_key.KEY_PATTERN, max_length=job_key.KEY_MAX)
    actor: str | None = Field(None, min_length=1, max_length=200)
    state: JobState | None = None
    createdAfter: str | None = Field(
        None, max_length=filters.TIME_MAX, description="Created at or after (ISO 8601; no zone: UTC)"
    )
    createdBefore: str | None = Field(None, max_length=filters.TIME_MAX, description="Created before (ISO 8601)")
    reason: str | None = Field(
        None, min_length=1, max_length=REASON_MAX, description="failedReason contains this (case-insensitive)"
    )


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: FilterBody
    action: BulkAction = Field(
        description="cancel: queued, delayed and active jobs; retry: failed and cancelled ones; requeue-dead: jobs "
        "whose message is in their queue's dead-letter queue"
    )
    dryRun: bool = Field(False, description="Only count the jobs the action would act on; change nothing")


class BulkCount(BaseModel):
    """A dry run: how many jobs the action would act on now. A run started now acts on exactly these."""

    action: BulkAction
    filter: dict[str, str]
    count: int


class BulkRun(BaseModel):
    """A bulk run's progress, kept in Redis: any web process answers it, and another takes the run over if its own
    stops."""

    bulkId: str
    action: BulkAction
    filter: dict[str, str]
    state: BulkState
    total: int = Field(description="Jobs in the snapshot taken at the start: those the action could act on then")
    done: int = Field(description="Of those, handled so far")
    acted: int = Field(description="Handled and acted on")
    skipped: int = Field(description="Handled but left alone: they changed meanwhile so the action no longer applies")
    startedAt: str
    updatedAt: str
    finishedAt: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, progress: BulkProgress) -> BulkRun:
        return cls(
            bulkId=progress.bulk_id,
            action=progress.action,
            filter=progress.filter.as_query(),
            state=progress.state,
            total=progress.total,
            done=progress.done,
            acted=progress.acted,
            skipped=progress.skipped,
            startedAt=progress.started_at,
            updatedAt=progress.updated_at,
            finishedAt=progress.finished_at,
            error=progress.error,
        )


def filter_of(body: FilterBody) -> JobFilter:
    try:
        return JobFilter.parse(
            key=body.key,
            actor=body.actor,
            state=body.state,
            created_after=body.createdAfter,
            created_before=body.createdBefore,
            reason=body.reason,
        )
    except InvalidFilter as error:
        raise filters.invalid(error, "body", "filter") from None


@router.post(
    "",
    status_code=202,
    response_model=None,
    responses={
        200: {"model": BulkCount, "description": "dryRun: the count"},
        202: {
            "model": BulkRun,
            "description": "Started; follow it at Location",
            "headers": {"Location": {"description": "/jobs/bulk/{bulkId}", "schema": {"type": "string"}}},
        },
        **models.INVALID,
        **models.UNAVAILABLE,
        **models.UNAUTHORIZED,
    },
    dependencies=[Authorized],
    summary="Cancel, retry or requeue-dead every job a filter matches (or count them first with dryRun)",
)
def start_bulk(request: Annotated[BulkRequest, Body()], bulk: BulkDep) -> Response:
    flt = filter_of(request.filter)
    if request.dryRun:
        count = bulk.count(flt, request.action)
        body = BulkCount(action=request.action, filter=flt.as_query(), count=count)
        return JSONResponse(body.model_dump(mode="json"), status_code=200)
    run = BulkRun.of(bulk.start(flt, request.action))
    return JSONResponse(run.model_dump(mode="json"), status_code=202, headers={"Location": f"/jobs/bulk/{run.bulkId}"})


@router.get(
    "/{bulkId}",
    response_model=BulkRun,
    responses=models.about_one("No such bulk run (or it finished more than a day ago)"),
    summary="A bulk run's progress",
)
def bulk_progress(
    bulk_id: Annotated[str, Path(alias="bulkId", max_length=100, description="POST /jobs/bulk's bulkId")],
    bulk: BulkDep,
) -> BulkRun:
    return BulkRun.of(bulk.progress(bulk_id))
