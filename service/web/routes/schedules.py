"""/schedules: the periodic jobs, their cron expressions, next and last runs. Read-only."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.web import models
from service.web.deps import SchedulesDep

router = APIRouter(prefix="/schedules", tags=["schedules"])


class ScheduleOut(BaseModel):
    """One schedule. Times are ISO 8601 UTC; a schedule switched off has cron "off" and no nextRunAt."""

    actor: str
    cron: str = Field(description='The expression in effect (SCHEDULE_<ACTOR> overrides the declared one), or "off"')
    nextRunAt: str | None
    lastRunAt: str | None = Field(description="The tick of the newest run sent by any scheduler")
    lastJobId: str | None
    timezone: str = Field(description="The zone the expression is read in (SCHEDULE_TIMEZONE unless declared)")
    lastSkippedAt: str | None = Field(description="The newest tick missed by every scheduler and not run")
    skippedTicks: int = Field(description="Ticks missed and not run, all time")


@router.get("", response_model=list[ScheduleOut], responses=models.UNAVAILABLE, summary="List the schedules")
def list_schedules(schedules: SchedulesDep) -> list[ScheduleOut]:
    return [ScheduleOut(**view.as_json()) for view in schedules.list()]
