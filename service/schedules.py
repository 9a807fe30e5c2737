"""Schedules: declared on actors, overridden by SCHEDULE_<ACTOR>, each tick sent once by however many schedulers.

An actor declares `@job(Payload, queue=..., periodic="0 * * * *")`. Its variable (SCHEDULE_CLEANUP_JOBS for
`cleanup_jobs`) replaces the expression, or switches it `off`. periodiq's Scheduler calls
`actor.send_with_options(scheduled_at=...)`; TypedActor hands that call to send_tick(), which gives the tick a job id
derived from the actor and the tick, and publishes only if this process is the first to claim the tick in Redis.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pendulum

from service.cron import CronError, ZonedCron
from service.schedule_store import ScheduleStore
from service.settings import get_settings

logger = logging.getLogger("service.schedules")

OFF = "off"
#: Job ids of ticks are uuid5(NAMESPACE, "<actor>@<tick>"): the same in every process, on every machine.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "jobservice/schedules")

PayloadFactory = Callable[[datetime], dict[str, Any]]


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the variable (or the actor) and what is wrong."""


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


def variable_for(actor_name: str) -> str:
    return "SCHEDULE_" + re.sub(r"[^A-Z0-9]", "_", actor_name.upper())


def declare(actor_name: str, periodic: str | Periodic, environ: Mapping[str, str] | None = None) -> Schedule:
    """Apply the actor's SCHEDULE_ variable to what it declared. Raises ScheduleError."""
    declared = Periodic(periodic) if isinstance(periodic, str) else periodic
    variable = variable_for(actor_name)
    override = (os.environ if environ is None else environ).get(variable, "").strip()
    expression = override or declared.cron.strip()
    zone = declared.timezone or get_settings().schedule_timezone
    cron: ZonedCron | None = None
    if expression.lower() != OFF:
        try:
            cron = ZonedCron(expression, zone)
        except CronError as error:
            where = variable if override else f"{actor_name}: periodic"
            raise ScheduleError(f"{where}: {expression!r} is not a valid cron expression: {error}") from None
    return Schedule(actor_name, declared.cron, cron, variable, zone, declared.payload)


def declare_or_exit(actor_name: str, periodic: str | Periodic) -> Schedule:
    """For @job: a bad schedule stops the process at start with one line, like any malformed variable."""
    try:
        return declare(actor_name, periodic)
    except ScheduleError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def schedule_of(actor: dramatiq.Actor[..., Any]) -> Schedule | None:
    schedule = actor.options.get("schedule")
    return schedule if isinstance(schedule, Schedule) else None


# -- sending a tick, once -------------------------------------------------------------------------------------

_store: ScheduleStore | None = None


def bind_store(store: ScheduleStore) -> None:
    """Called once by the composition root (service.broker)."""
    global _store
    _store = store


def bound_store() -> ScheduleStore:
    if _store is None:
        raise RuntimeError("service.broker has not bound the schedule store")
    return _store


def tick_label(schedule: Schedule, wall: datetime) -> str:
    """A tick's name: its wall-clock minute and zone, e.g. "2025-03-30T02:30 Europe/Paris"."""
    return f"{wall:%Y-%m-%dT%H:%M} {schedule.timezone}"


def tick_job_id(actor_name: str, tick: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{actor_name}@{tick}"))


def claim_ttl_s() -> int:
    # Long enough to outlive every scheduler that could still send the tick: on time, or late within the grace.
    return max(86_400, 2 * get_settings().schedule_misfire_grace_s + 3600)


def as_instant(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else pendulum.parse(value)
    if not isinstance(parsed, datetime):
        raise ValueError(f"scheduled_at {value!r} is not a date and time")
    return parsed.astimezone(UTC).replace(second=0, microsecond=0)


def send_tick(
    actor: dramatiq.Actor[..., Any],
    scheduled_at: str | datetime,
    *,
    kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> list[tuple[dramatiq.Message[Any], bool]]:
    """Publish the actor's tick(s) at this instant, unless another sender claimed them first.

    Returns (message, published) for each tick: one, or two when a skipped spring time lands on a real one.
    """
    schedule = schedule_of(actor)
    if schedule is None or schedule.cron is None:
        raise ScheduleError(f"{actor.actor_name} has no schedule switched on")
    store = bound_store()
    instant = as_instant(scheduled_at)
    walls = schedule.cron.ticks_at(instant) or [schedule.cron.wall_of(instant)]
    outcome = []
    for wall in walls:
        tick = tick_label(schedule, wall)
        job_id = tick_job_id(actor.actor_name, tick)
        payload = kwargs
        if payload is None:
            payload = schedule.payload(wall.replace(tzinfo=schedule.cron.zone)) if schedule.payload else {}
        message = actor.message_with_options(
            kwargs=payload,
            **(options or {}),
            scheduled_at=instant.isoformat().replace("+00:00", "Z"),
            schedule_tick=tick,
        ).copy(message_id=job_id)
        if not store.claim(actor.actor_name, tick, job_id, claim_ttl_s()):
            logger.info("tick %s of %s was already sent by another scheduler", tick, actor.actor_name)
            outcome.append((message, False))
            continue
        try:
            actor.broker.enqueue(message)
        except BaseException:
            # Give the tick back, so a scheduler that starts later (or this one, restarted) can still run it.
            store.release(actor.actor_name, tick, job_id)
            raise
        store.record_run(actor.actor_name, instant, job_id)
        logger.info("sent tick %s of %s as job %s", tick, actor.actor_name, job_id)
        outcome.append((message, True))
    return outcome
