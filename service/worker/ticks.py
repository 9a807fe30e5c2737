"""Ticks of schedules: declared on actors, overridden by SCHEDULE_<ACTOR>, each tick sent once by any schedulers.

An actor declares `@job(Payload, queue=..., periodic="0 * * * *")`. Its variable (SCHEDULE_CLEANUP_JOBS for
`cleanup_jobs`) replaces the expression, or switches it `off`; what results is a plain value kept in the actor's
options (service/domain/periodic.py). periodiq's Scheduler calls
`actor.send_with_options(scheduled_at=...)`; TypedActor hands that call to send_tick(), which gives the tick a job id
derived from the actor and the tick, and publishes only if this process is the first to claim the tick in Redis.
The claim stays noted as unpublished until the publish is confirmed, so a tick whose sender died in between is
published later by another scheduler (republish()), as the same job.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import dramatiq
import pendulum

from service.domain.cron import CronError, ZonedCron
from service.domain.periodic import OFF, Periodic, Schedule, schedule_of
from service.settings import get_settings
from service.store.schedule_store import ScheduleStore, UnpublishedTick

logger = logging.getLogger("service.schedules")

#: Job ids of ticks are uuid5(NAMESPACE, "<actor>@<tick>"): the same in every process, on every machine.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "jobservice/schedules")

#: A tick claimed this long ago and still unpublished is taken to be lost by its sender (dead, or hung) and is
#: published by another scheduler. A publish with confirms takes milliseconds; a sender slower than this at worst
#: publishes the tick twice, as one job id, and the worker runs that job once.
UNPUBLISHED_AFTER_S = 5.0


class TickOutcome(Enum):
    """What became of a due tick. The values complete a log line."""

    SENT = "runs now"
    SENT_ELSEWHERE = "was already sent by another scheduler"
    SKIPPED = "is older than SCHEDULE_MISFIRE_GRACE_S and is skipped"
    SKIPPED_ELSEWHERE = "was already skipped by another scheduler"


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the variable (or the actor) and what is wrong."""


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


# -- sending a tick, once -------------------------------------------------------------------------------------

_store: ScheduleStore | None = None


def bind_store(store: ScheduleStore) -> None:
    """Called once by the composition root (service.bootstrap)."""
    global _store
    _store = store


def bound_store() -> ScheduleStore:
    if _store is None:
        raise RuntimeError("service.bootstrap has not bound the schedule store")
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


def _tick_message(
    actor: dramatiq.Actor[..., Any],
    schedule: Schedule,
    wall: datetime,
    instant: datetime,
    kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[dramatiq.Message[Any], UnpublishedTick]:
    """The tick's message, with the job id derived from it: built the same way again when it is republished."""
    assert schedule.cron is not None
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
    return message, UnpublishedTick(actor.actor_name, tick, int(instant.timestamp() * 1000), job_id)


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
        message, unpublished = _tick_message(actor, schedule, wall, instant, kwargs, options)
        tick = unpublished.tick
        if not store.claim(actor.actor_name, tick, message.message_id, claim_ttl_s(), publishing=unpublished):
            logger.info("tick %s of %s was already sent by another scheduler", tick, actor.actor_name)
            outcome.append((message, False))
            continue
        # From here until record_run() the tick is noted unpublished: if this process dies, or the publish fails,
        # another scheduler (or this one, restarted) publishes it after UNPUBLISHED_AFTER_S, as the same job.
        actor.broker.enqueue(message)
        store.record_run(actor.actor_name, instant, message.message_id, published=unpublished)
        logger.info("sent tick %s of %s as job %s", tick, actor.actor_name, message.message_id)
        outcome.append((message, True))
    return outcome


def republish(
    actor: dramatiq.Actor[..., Any] | None, unpublished: UnpublishedTick, now: datetime, grace_s: int
) -> TickOutcome | None:
    """Publish a tick whose sender claimed it and never confirmed it published, as the same job; or, when it is
    older than the grace period, record it as skipped. None when this process cannot tell (an actor it does not
    schedule): a scheduler that knows it will handle it."""
    instant = datetime.fromtimestamp(unpublished.tick_ms / 1000, UTC)
    late_s = (now - instant).total_seconds()
    schedule = schedule_of(actor) if actor is not None else None
    store = bound_store()
    if late_s > grace_s:
        store.record_skipped(unpublished.actor, instant, 1, unpublished=unpublished)
        logger.warning(
            "tick %s of %s was claimed but never published; %.0f s late, it is older than "
            "SCHEDULE_MISFIRE_GRACE_S=%d s and is skipped",
            unpublished.tick,
            unpublished.actor,
            late_s,
            grace_s,
        )
        return TickOutcome.SKIPPED
    if actor is None or schedule is None or schedule.cron is None:
        return None
    wall = datetime.strptime(unpublished.tick.split(" ", 1)[0], "%Y-%m-%dT%H:%M")
    message, rebuilt = _tick_message(actor, schedule, wall, instant)
    if rebuilt.job_id != unpublished.job_id:
        return None  # its schedule changed since it was claimed (another zone): not ours to guess
    actor.broker.enqueue(message)
    store.record_run(actor.actor_name, instant, message.message_id, published=unpublished)
    logger.warning(
        "tick %s of %s was claimed but never published (its scheduler died or hung); published now as job %s",
        unpublished.tick,
        unpublished.actor,
        message.message_id,
    )
    return TickOutcome.SENT
