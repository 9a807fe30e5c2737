"""A schedule as an actor declares it (`@job(..., periodic=...)`) and as its SCHEDULE_<ACTOR> variable leaves it.

Plain values, kept in the actor's options: the scheduler (service/worker/ticks.py) sends their ticks, and the
service layer lists them (service/ops/schedules.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq

from service.domain.cron import ZonedCron

OFF = "off"

PayloadFactory = Callable[[datetime], dict[str, Any]]


@dataclass(frozen=True)
class Periodic:
    """What an actor declares. `payload` builds the job's payload from the tick (a datetime in the schedule's
    zone), so a late run or a retry still works on the tick it belongs to."""

    cron: str
    payload: PayloadFactory | None = None
    timezone: str | None = None  #: defaults to SCHEDULE_TIMEZONE


@dataclass(frozen=True)
class Schedule:
    """A declared schedule after its variable was applied. `cron` is None when it is switched off."""

    actor: str
    declared: str
    cron: ZonedCron | None
    variable: str
    timezone: str
    payload: PayloadFactory | None = None

    @property
    def expression(self) -> str:
        return self.cron.expression if self.cron else OFF


class NeverDue:
    """The `periodic` option of a schedule switched off: periodiq lists the actor (as "off") and starts even when
    every schedule is off, and the scheduler never sends it."""

    def __str__(self) -> str:
        return OFF

    def validate(self, date: datetime) -> bool:
        return False


NEVER = NeverDue()


def schedule_of(actor: dramatiq.Actor[..., Any]) -> Schedule | None:
    schedule = actor.options.get("schedule")
    return schedule if isinstance(schedule, Schedule) else None


def is_on(actor: dramatiq.Actor[..., Any]) -> bool:
    """Whether the actor has a schedule and it is switched on."""
    schedule = schedule_of(actor)
    return schedule is not None and schedule.cron is not None
