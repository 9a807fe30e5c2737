"""GET /jobs/{jobId}/logs: the lines a job's own code logged while it ran (the last JOB_LOG_LINES, redacted)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from service.domain.states import JobState
from service.web import models
from service.web.deps import JobLogsDep
from service.web.routes.jobs import JobId

router = APIRouter(tags=["jobs"])


class LogLineOut(BaseModel):
    id: str = Field(description="Unique within the job; pass it as `after` to get only the lines that follow")
    at: str = Field(description="When it was logged, ISO 8601 UTC")
    level: str
    logger: str
    attempt: int = Field(description="The attempt that logged it (1 for the first run)")
    message: str = Field(description="Redacted like the process logs, at most JOB_LOG_LINE_CHARS characters")


class JobLogsOut(BaseModel):
    """Oldest first. `state` tells a poller whether more may come: none once it is final."""

    jobId: str
    state: JobState
    lines: list[LogLineOut]


@router.get(
    "/jobs/{jobId}/logs",
    response_model=JobLogsOut,
    responses=models.about_one("Job not found"),
    summary="A job's own log lines, oldest first",
)
def job_logs(
    job_id: JobId,
    logs: JobLogsDep,
    after: Annotated[
        str | None, Query(max_length=100, description="Only the lines after the line with this id")
    ] = None,
) -> JobLogsOut:
    page = logs.page(job_id, after)
    lines = [LogLineOut.model_validate(line.as_json()) for line in page.lines]
    return JobLogsOut(jobId=page.job_id, state=page.state, lines=lines)
