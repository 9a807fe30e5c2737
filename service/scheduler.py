"""The scheduler process (`periodiq service.actors`): when it starts, it deals with the ticks missed while no
scheduler ran. The newest missed tick runs once if it is within SCHEDULE_MISFIRE_GRACE_S; every older one, and the
newest when it is too old, is recorded as skipped and not run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import dramatiq
import periodiq

from service import schedules
from service.cron import ZonedCron
from service.redis_config import warn_if_unsafe
from service.settings import get_settings

logger = logging.getLogger("service.schedules")

#: Missed ticks counted one by one at most; beyond, the count is a lower bound (a minutely job down for months).
MAX_COUNTED = 100_000


@dataclass(frozen=True)
class Missed:
    actor: str
    newest: datetime  #: the newest missed tick
    count: int  #: missed ticks, the newest included
    ran: bool  #: whether the newest was sent (by this scheduler or another starting at the same moment)


@dataclass
class _Tally:
    count: int = 0
    newest: datetime | None = None
    newest_ticks: int = 0  #: two when a skipped spring time and a real one share the newest instant
    previous: datetime | None = None

    def add(self, instant: datetime, walls: list[datetime]) -> None:
        self.count += len(walls)
        self.previous, self.newest, self.newest_ticks = self.newest, instant, len(walls)


def _missed_ticks(cron: ZonedCron, after: datetime, now: datetime, grace_start: datetime) -> _Tally:
    """The ticks in (after, now]. Those older than the grace period are only counted, at most MAX_COUNTED."""
    tally = _Tally()
    for instant, walls in islice(cron.ticks_between(after, grace_start), MAX_COUNTED):
        tally.add(instant, walls)
    for instant, walls in cron.ticks_between(max(after, grace_start), now):
        tally.add(instant, walls)
    return tally


def catch_up(actors: list[dramatiq.Actor[..., Any]], now: datetime | None = None) -> list[Missed]:
    """Look at each schedule's last tick; run the newest missed one if it is recent enough, skip the rest."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    grace_s = get_settings().schedule_misfire_grace_s
    store = schedules.bound_store()
    outcome = []
    for actor in actors:
        schedule = schedules.schedule_of(actor)
        if schedule is None or schedule.cron is None:
            continue
        state = store.state(actor.actor_name)
        if state.last_tick_ms is None:
            continue  # it never ran anywhere: nothing was missed
        last = datetime.fromtimestamp(state.last_tick_ms / 1000, tz=UTC)
        tally = _missed_ticks(schedule.cron, last, now, now - timedelta(seconds=grace_s))
        if tally.newest is None:
            continue
        ran = False
        if (now - tally.newest).total_seconds() <= grace_s:
            # Sent like any tick: if another scheduler starting now sends it too, one of the two wins.
            ran = any(published for _, published in schedules.send_tick(actor, tally.newest))
            older = tally.count - tally.newest_ticks
            if ran and older and tally.previous is not None:
                store.record_skipped(actor.actor_name, tally.previous, older)
        elif _claim_as_skipped(schedule, tally.newest):
            store.record_skipped(actor.actor_name, tally.newest, tally.count)
        logger.warning(
            "%s: %d tick(s) missed while no scheduler ran; the newest, %s, %s",
            actor.actor_name,
            tally.count,
            tally.newest.isoformat(),
            "runs now" if ran else f"is older than SCHEDULE_MISFIRE_GRACE_S={grace_s} s and is skipped",
        )
        outcome.append(Missed(actor.actor_name, tally.newest, tally.count, ran))
    return outcome


def _claim_as_skipped(schedule: schedules.Schedule, newest: datetime) -> bool:
    # The same claim as a send: two schedulers starting together record the skip once, and never skip a tick
    # that a running scheduler has just sent.
    assert schedule.cron is not None
    store = schedules.bound_store()
    walls = schedule.cron.ticks_at(newest)
    ticks = [schedules.tick_label(schedule, w) for w in walls]
    return all(store.claim(schedule.actor, tick, "skipped", schedules.claim_ttl_s()) for tick in ticks)


def warn_unknown_variables(actors: list[dramatiq.Actor[..., Any]]) -> None:
    known = {"SCHEDULE_MISFIRE_GRACE_S", "SCHEDULE_TIMEZONE"}
    for actor in actors:
        schedule = schedules.schedule_of(actor)
        if schedule is not None:
            known.add(schedule.variable)
    for name in sorted(os.environ):
        if name.startswith("SCHEDULE_") and name not in known:
            logger.warning("%s names no scheduled actor; it has no effect", name)


class Scheduler(periodiq.Scheduler):  # type: ignore[misc]
    """periodiq's Scheduler, catching up on missed ticks before its first tick."""

    def __init__(self, actors: list[dramatiq.Actor[..., Any]]) -> None:
        super().__init__(actors)
        warn_if_unsafe(schedules.bound_store().client, "scheduler")
        scheduled = [a for a in dramatiq.get_broker().actors.values() if schedules.schedule_of(a)]
        warn_unknown_variables(scheduled)
        catch_up(actors)


def hook_into_periodiq() -> None:
    """Make periodiq's main() build our Scheduler.

    periodiq has no start-up hook, but its main() builds `Scheduler(actors=...)` exactly once, after importing every
    module named on its command line, with exactly the actors it will schedule: a subclass put in its place runs
    at the scheduler's start and nowhere else (workers and the web never build one). Guessing the program from
    sys.argv instead would run too early, before periodiq imports the other modules, and miss wrappers.
    """
    periodiq.Scheduler = Scheduler
