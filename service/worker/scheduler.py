"""The scheduler process (`periodiq service.actors`): sends each due tick once, including ticks missed while no
scheduler ran or while this one was stopped or its host slept. Of the ticks missed, the newest runs once if it is
within SCHEDULE_MISFIRE_GRACE_S; every older one, and the newest when it is too old, is recorded as skipped and not
run. It also publishes ticks that a scheduler claimed and died before publishing, and idles when every schedule
is off.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from types import FrameType
from typing import Any

import dramatiq
import periodiq
import pika.exceptions
import redis

from service.domain.cron import ZonedCron
from service.domain.periodic import Schedule, is_on, schedule_of
from service.ops import event_export
from service.rabbit.link import shared_link
from service.settings import get_settings
from service.store.redis_config import warn_if_unsafe
from service.worker import ticks
from service.worker.ticks import TickOutcome

logger = logging.getLogger("service.schedules")

#: Missed ticks counted one by one at most; beyond, the count is a lower bound (a minutely job down for months).
MAX_COUNTED = 100_000
#: The loop looks at the clock this often, so a wake that comes late (SIGSTOP, a host that slept) is seen within it.
STEP_S = 1.0
#: A tick handled this much after it was due is logged as late.
LATE_S = 2.0
#: How often unpublished claims are looked for.
UNPUBLISHED_CHECK_S = 2.0
#: Errors that a look for unpublished ticks survives: it is tried again at the next check.
SERVER_ERRORS = (redis.RedisError, pika.exceptions.AMQPError, dramatiq.errors.ConnectionError, OSError)


def utc_now() -> datetime:
    """The scheduler's clock, in one place (a test shifts it in a real scheduler process to reach a minute soon)."""
    return datetime.now(UTC)


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


def _settle(actor: dramatiq.Actor[..., Any], tally: _Tally, now: datetime, grace_s: int) -> TickOutcome:
    """The ticks in `tally` are due: send the newest if it is within the grace, record the others as skipped."""
    assert tally.newest is not None
    schedule = schedule_of(actor)
    assert schedule is not None
    store = ticks.bound_store()
    if (now - tally.newest).total_seconds() <= grace_s:
        # Sent like any tick: if another scheduler sends it too, one of the two wins.
        sent = any(published for _, published in ticks.send_tick(actor, tally.newest))
        older = tally.count - tally.newest_ticks
        if sent and older and tally.previous is not None:
            store.record_skipped(actor.actor_name, tally.previous, older)
        return TickOutcome.SENT if sent else TickOutcome.SENT_ELSEWHERE
    if _claim_as_skipped(schedule, tally.newest):
        store.record_skipped(actor.actor_name, tally.newest, tally.count)
        return TickOutcome.SKIPPED
    return TickOutcome.SKIPPED_ELSEWHERE


def catch_up(actors: list[dramatiq.Actor[..., Any]], now: datetime | None = None) -> list[Missed]:
    """Look at each schedule's last tick; run the newest missed one if it is recent enough, skip the rest."""
    now = (now or utc_now()).astimezone(UTC)
    grace_s = get_settings().schedule_misfire_grace_s
    store = ticks.bound_store()
    outcome = []
    for actor in actors:
        schedule = schedule_of(actor)
        if schedule is None or schedule.cron is None:
            continue
        state = store.state(actor.actor_name)
        if state.last_tick_ms is None:
            continue  # it never ran anywhere: nothing was missed
        last = datetime.fromtimestamp(state.last_tick_ms / 1000, tz=UTC)
        tally = _missed_ticks(schedule.cron, last, now, now - timedelta(seconds=grace_s))
        if tally.newest is None:
            continue
        settled = _settle(actor, tally, now, grace_s)
        logger.warning(
            "%s: %d tick(s) missed while no scheduler ran; the newest, %s, %s",
            actor.actor_name,
            tally.count,
            tally.newest.isoformat(),
            settled.value if settled is not TickOutcome.SKIPPED else f"{settled.value} (grace {grace_s} s)",
        )
        outcome.append(Missed(actor.actor_name, tally.newest, tally.count, settled is TickOutcome.SENT))
    return outcome


def _claim_as_skipped(schedule: Schedule, newest: datetime) -> bool:
    # The same claim as a send: two schedulers starting together record the skip once, and never skip a tick
    # that a running scheduler has just sent.
    assert schedule.cron is not None
    store = ticks.bound_store()
    walls = schedule.cron.ticks_at(newest)
    labels = [ticks.tick_label(schedule, w) for w in walls]
    return all(store.claim(schedule.actor, tick, "skipped", ticks.claim_ttl_s()) for tick in labels)


def warn_unknown_variables(actors: list[dramatiq.Actor[..., Any]]) -> None:
    known = {"SCHEDULE_MISFIRE_GRACE_S", "SCHEDULE_TIMEZONE"}
    for actor in actors:
        schedule = schedule_of(actor)
        if schedule is not None:
            known.add(schedule.variable)
    for name in sorted(os.environ):
        if name.startswith("SCHEDULE_") and name not in known:
            logger.warning("%s names no scheduled actor; it has no effect", name)


class Scheduler(periodiq.Scheduler):  # type: ignore[misc]
    """Replaces periodiq's Scheduler: catches up on missed ticks at start, then runs its own loop.

    periodiq's loop sleeps with alarm() until the next tick and sends only the ticks of the minute it wakes in, so a
    process stopped or a host asleep across a tick loses it. This loop remembers up to where each schedule was
    handled, and on every wake handles every tick since: a wake that comes late catches up as a start does.
    """

    def __init__(self, actors: list[dramatiq.Actor[..., Any]]) -> None:
        super().__init__([a for a in actors if is_on(a)])
        warn_if_unsafe(ticks.bound_store().client, "scheduler")
        scheduled = [a for a in dramatiq.get_broker().actors.values() if schedule_of(a)]
        warn_unknown_variables(scheduled)
        self.grace_s = get_settings().schedule_misfire_grace_s
        self.stopping = threading.Event()
        started = utc_now()
        store = ticks.bound_store()
        self.never_ran = {a.actor_name for a in self.actors if store.state(a.actor_name).last_tick_ms is None}
        catch_up(self.actors, started)
        #: Up to when each schedule's ticks were handled. A schedule that ran before was caught up to now.
        self.handled = {a.actor_name: started for a in self.actors}

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=self.grace_s)

    def schedule(self) -> None:
        """periodiq's main() calls this once, in its main thread (after a pause when it starts late in a minute),
        then loop(): take the stop signals here."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        # A schedule that never ran sends the tick of the current minute if it is due and within the grace, as
        # periodiq does at start, and counts nothing older as missed.
        now = utc_now()
        fresh = max(now.replace(second=0, microsecond=0) - timedelta(milliseconds=1), now - self.grace)
        for name in self.never_ran:
            self.handled[name] = fresh

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def loop(self) -> None:
        # The RabbitMQ export of lifecycle events, when EVENTS_EXCHANGE asks for it: here, once per deployment's
        # schedulers (its lease lets one of them publish), rather than in every worker process.
        export = event_export.export_from_settings(
            get_settings().events_exchange,
            ticks.bound_store().client,
            shared_link(dramatiq.get_broker()),
        )
        try:
            self._loop()
        finally:
            if export is not None:
                export.stop()

    def _loop(self) -> None:
        if not self.actors:
            logger.warning("no schedule is switched on (every SCHEDULE_<ACTOR> is off): idling until stopped")
        else:
            logger.info("scheduler running: %s", ", ".join(a.actor_name for a in self.actors))
        last_wake = utc_now()
        next_check = 0.0
        while not self.stopping.is_set():
            now = utc_now()
            gap_s = (now - last_wake).total_seconds() - STEP_S
            if gap_s > LATE_S:
                logger.warning("the scheduler woke %.0f s late (its process was stopped or its host slept)", gap_s)
            last_wake = now
            self.wake(now)
            if time.monotonic() >= next_check:
                self.publish_unpublished(now)
                next_check = time.monotonic() + UNPUBLISHED_CHECK_S
            self.stopping.wait(STEP_S)
        logger.info("scheduler stopped")

    def wake(self, now: datetime) -> None:
        """Handle every tick due since the last wake."""
        for actor in self.actors:
            try:
                self._wake_one(actor, now)
            except SERVER_ERRORS as error:
                # Not handled: the next wake tries again (a tick claimed meanwhile is published from its note), and
                # once the tick is older than the grace it is skipped and counted. Exiting would stop the Procfile.
                what = f"{type(error).__name__}: {error}"
                logger.warning("%s: could not send its due tick, trying again: %s", actor.actor_name, what)
                continue
            self.handled[actor.actor_name] = now

    def _wake_one(self, actor: dramatiq.Actor[..., Any], now: datetime) -> None:
        schedule = schedule_of(actor)
        assert schedule is not None and schedule.cron is not None
        after = self.handled[actor.actor_name]
        if schedule.cron.next_after(after) > now:
            return
        tally = _missed_ticks(schedule.cron, after, now, now - self.grace)
        if tally.count > 1:
            # Late: another scheduler may have sent some of these meanwhile; count only what nobody handled.
            last_ms = ticks.bound_store().state(actor.actor_name).last_tick_ms
            last = datetime.fromtimestamp(last_ms / 1000, tz=UTC) if last_ms is not None else after
            if last > after:
                tally = _missed_ticks(schedule.cron, last, now, now - self.grace)
                if tally.newest is None:
                    logger.info("ticks of %s up to %s were already sent by another scheduler", actor.actor_name, last)
                    return
        if tally.newest is None:
            return
        settled = _settle(actor, tally, now, self.grace_s)
        late_s = (now - tally.newest).total_seconds()
        if tally.count > 1 or late_s > LATE_S:
            logger.warning(
                "%s: %d tick(s) due; the newest, %s, is handled %.0f s late and %s",
                actor.actor_name,
                tally.count,
                tally.newest.isoformat(),
                late_s,
                settled.value if settled is not TickOutcome.SKIPPED else f"{settled.value} ({self.grace_s} s)",
            )

    def publish_unpublished(self, now: datetime) -> None:
        """Publish the ticks that a scheduler claimed and did not confirm published (it died, or hangs)."""
        by_name = {a.actor_name: a for a in self.actors}
        try:
            adopted = ticks.bound_store().adopt_unpublished(int(ticks.UNPUBLISHED_AFTER_S * 1000))
            for unpublished in adopted:
                ticks.republish(by_name.get(unpublished.actor), unpublished, now, self.grace_s)
        except SERVER_ERRORS as error:
            # Still noted as unpublished: the next look (here or in another scheduler) tries again.
            logger.warning("could not publish the ticks left unpublished: %s: %s", type(error).__name__, error)


def hook_into_periodiq() -> None:
    """Make periodiq's main() build our Scheduler.

    periodiq has no start-up hook, but its main() builds `Scheduler(actors=...)` exactly once, after importing every
    module named on its command line, with exactly the actors it will schedule: a subclass put in its place runs
    at the scheduler's start and nowhere else (workers and the web never build one). Guessing the program from
    sys.argv instead would run too early, before periodiq imports the other modules, and miss wrappers.
    """
    periodiq.Scheduler = Scheduler
