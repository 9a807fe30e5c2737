"""Schedules with periodiq's real Scheduler, real RabbitMQ and Redis: each tick runs once, missed ticks, retries.

Time is driven: the tests hand periodiq's Scheduler the instant it would wake at, instead of sleeping until then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pendulum
import periodiq
import pytest

from service.bootstrap import broker, redis_client, schedule_store
from service.domain.periodic import NEVER, Periodic, is_on, schedule_of
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.ops.schedules import Schedules
from service.store import keys
from service.store.schedule_store import UnpublishedTick
from service.worker import scheduler, ticks
from service.worker.ticks import ScheduleError, TickOutcome
from tests.conftest import purge_queues
from tests.support import periodic_actors
from tests.support.periodic_actors import QUEUE, runs_key
from tests.support.workers import WorkerProcess

EVERY_MINUTE = periodic_actors.tick_every_minute
YEARLY = periodic_actors.tick_yearly
PARIS_NIGHT = periodic_actors.tick_paris_night
FLAKY = periodic_actors.tick_flaky


@pytest.fixture(autouse=True)
def empty_queue() -> Iterator[None]:
    broker.declare_queue(QUEUE, ensure=True)
    purge_queues(QUEUE, f"{QUEUE}.DQ")
    yield


def wake_at(scheduler_: periodiq.Scheduler, now: datetime) -> None:
    """What periodiq's Scheduler.schedule() does when it wakes at `now`, without the sleeping."""
    due = [a for a in scheduler_.actors if a.options["periodic"].validate(now)]
    scheduler_.send_actors(due, now=pendulum.instance(now))


def drive(schedulers: list[periodiq.Scheduler], start: datetime, end: datetime) -> None:
    """Run schedulers from `start` to `end`, jumping to each next wake-up as periodiq computes it."""
    now = pendulum.instance(start)
    while True:
        now = min(a.options["periodic"].next_valid_date(now) for a in schedulers[0].actors)
        if now > end:
            return
        for each in schedulers:
            wake_at(each, now)


def tick_id(actor: dramatiq.Actor[..., Any], wall: datetime) -> str:
    schedule = schedule_of(actor)
    assert schedule is not None
    return ticks.tick_job_id(actor.actor_name, ticks.tick_label(schedule, wall))


def runs(actor: dramatiq.Actor[..., Any]) -> dict[str, int]:
    return {k: int(v) for k, v in redis_client.hgetall(runs_key(actor.actor_name)).items()}


def test_three_schedulers_sending_the_same_tick_publish_it_once_and_it_runs_once(
    jobs: Jobs, periodic_worker: WorkerProcess
) -> None:
    tick = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    gate = threading.Barrier(3)

    def one_scheduler() -> None:
        each = periodiq.Scheduler(actors=[EVERY_MINUTE])
        gate.wait()
        wake_at(each, tick)

    threads = [threading.Thread(target=one_scheduler) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    job_id = tick_id(EVERY_MINUTE, datetime(2030, 6, 1, 12, 0))
    assert [r.jobId for r in jobs.list(actor=EVERY_MINUTE.actor_name).jobs] == [job_id]
    record = jobs.wait(job_id, timeout_s=20)
    assert record.state is JobState.COMPLETED
    assert record.data == {"tick": "2030-06-01T12:00:00+00:00"}
    assert runs(EVERY_MINUTE) == {"2030-06-01T12:00:00+00:00": 1}
    state = schedule_store.state(EVERY_MINUTE.actor_name)
    assert (state.last_run_at, state.last_job_id) == ("2030-06-01T12:00:00Z", job_id)


def test_a_missed_tick_within_the_grace_period_runs_once_when_schedulers_start(
    jobs: Jobs, periodic_worker: WorkerProcess
) -> None:
    last = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    wake_at(periodiq.Scheduler(actors=[EVERY_MINUTE]), last)
    # Down for 3 minutes; two schedulers start at the same moment, 20 s after the 12:03 tick.
    start = last + timedelta(minutes=3, seconds=20)
    outcomes: list[list[scheduler.Missed]] = []
    gate = threading.Barrier(2)

    def starting() -> None:
        gate.wait()
        outcomes.append(scheduler.catch_up([EVERY_MINUTE], now=start))

    threads = [threading.Thread(target=starting) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ran = [m for outcome in outcomes for m in outcome if m.ran]
    assert len(ran) == 1
    assert (ran[0].newest, ran[0].count) == (last + timedelta(minutes=3), 3)
    missed_id = tick_id(EVERY_MINUTE, datetime(2030, 6, 1, 12, 3))
    assert jobs.wait(missed_id, timeout_s=20).state is JobState.COMPLETED
    assert runs(EVERY_MINUTE) == {"2030-06-01T12:00:00+00:00": 1, "2030-06-01T12:03:00+00:00": 1}
    state = schedule_store.state(EVERY_MINUTE.actor_name)
    # 12:01 and 12:02 were missed too, but only the newest runs: they are recorded as skipped, once.
    assert (state.skipped_ticks, state.last_skipped_at) == (2, "2030-06-01T12:02:00Z")
    assert (state.last_run_at, state.last_job_id) == ("2030-06-01T12:03:00Z", missed_id)
    assert scheduler.catch_up([EVERY_MINUTE], now=start) == []  # a third scheduler starting finds nothing missed


def test_a_missed_tick_older_than_the_grace_period_is_recorded_skipped_and_never_runs(jobs: Jobs) -> None:
    wake_at(periodiq.Scheduler(actors=[YEARLY]), datetime(2030, 1, 1, tzinfo=UTC))
    start = datetime(2031, 1, 1, 0, 10, tzinfo=UTC)  # 600 s after the 2031 tick; the grace period is 300 s

    missed = scheduler.catch_up([YEARLY], now=start)

    assert [(m.newest, m.count, m.ran) for m in missed] == [(datetime(2031, 1, 1, tzinfo=UTC), 1, False)]
    skipped_id = tick_id(YEARLY, datetime(2031, 1, 1))
    assert jobs.store.get(skipped_id) is None
    assert [r.jobId for r in jobs.list(actor=YEARLY.actor_name).jobs] == [tick_id(YEARLY, datetime(2030, 1, 1))]
    [view] = [v for v in Schedules(broker, schedule_store).list(now=start) if v.actor == YEARLY.actor_name]
    assert view.as_json() | {"lastJobId": None} == {
        "actor": "tick_yearly",
        "cron": "0 0 1 1 *",
        "nextRunAt": "2032-01-01T00:00:00Z",
        "lastRunAt": "2030-01-01T00:00:00Z",
        "lastJobId": None,
        "timezone": "UTC",
        "lastSkippedAt": "2031-01-01T00:00:00Z",
        "skippedTicks": 1,
    }
    # The skipped tick is claimed: a scheduler whose clock lags cannot send it afterwards either.
    wake_at(periodiq.Scheduler(actors=[YEARLY]), datetime(2031, 1, 1, tzinfo=UTC))
    assert jobs.store.get(skipped_id) is None
    assert scheduler.catch_up([YEARLY], now=start) == []


def test_a_schedule_that_never_ran_has_nothing_to_catch_up(jobs: Jobs) -> None:
    assert scheduler.catch_up([EVERY_MINUTE, YEARLY], now=datetime(2030, 1, 1, 0, 1, tzinfo=UTC)) == []
    assert jobs.store.count() == 0


def test_a_failing_periodic_job_is_retried_later_than_the_grace_period_and_completes(
    jobs: Jobs, periodic_worker: WorkerProcess
) -> None:
    """periodiq's own middleware would drop the retry: it keeps the tick's old `scheduled_at`."""
    wake_at(periodiq.Scheduler(actors=[FLAKY]), datetime(2030, 1, 1, tzinfo=UTC))
    job_id = tick_id(FLAKY, datetime(2030, 1, 1))
    record = jobs.wait(job_id, timeout_s=30)
    assert record.state is JobState.COMPLETED
    assert record.attempts == 2
    assert [h.state for h in record.history].count(JobState.DELAYED) == 1
    assert runs(FLAKY) == {"2030-01-01T00:00:00+00:00": 1}


def test_a_tick_that_waited_longer_than_the_grace_period_for_a_worker_is_skipped_and_recorded(
    jobs: Jobs, periodic_worker: WorkerProcess
) -> None:
    # Held back 3.5 s before a worker may see it: longer than the worker's 2 s grace period.
    message = YEARLY.message_with_options(
        kwargs={"tick": "held back"}, scheduled_at="2030-01-01T00:00:00Z", schedule_tick="2030-01-01T00:00 UTC"
    )
    broker.enqueue(message, delay=3500)
    record = jobs.wait(message.message_id, timeout_s=20)
    assert record.state is JobState.CANCELLED
    assert record.failedReason is not None
    assert record.failedReason.startswith("skipped: tick 2030-01-01T00:00 UTC waited ")
    assert record.failedReason.endswith("for a worker, more than SCHEDULE_MISFIRE_GRACE_S=2")
    assert runs(YEARLY) == {}


def test_a_periodic_actor_sent_by_hand_runs_as_a_plain_job(jobs: Jobs, periodic_worker: WorkerProcess) -> None:
    first = YEARLY.send(tick="by hand")
    second = YEARLY.send(tick="by hand")
    assert first.message_id != second.message_id
    assert jobs.wait(first.message_id, timeout_s=20).state is JobState.COMPLETED
    assert jobs.wait(second.message_id, timeout_s=20).state is JobState.COMPLETED
    assert runs(YEARLY) == {"by hand": 2}


def test_a_night_with_a_dst_change_in_paris_neither_repeats_nor_drops_the_daily_tick(jobs: Jobs) -> None:
    two = [periodiq.Scheduler(actors=[PARIS_NIGHT]) for _ in range(2)]
    drive(two, datetime(2025, 3, 28, 12, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    drive(two, datetime(2025, 10, 24, 12, tzinfo=UTC), datetime(2025, 10, 28, tzinfo=UTC))
    ticks = sorted(r.data["tick"] for r in jobs.list(actor=PARIS_NIGHT.actor_name).jobs)
    assert ticks == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T02:30:00+01:00",  # 02:30 did not exist: it ran at 03:30+02:00, the same instant
        "2025-03-31T02:30:00+02:00",
        "2025-10-25T02:30:00+02:00",
        "2025-10-26T02:30:00+02:00",  # and not again at 02:30+01:00
        "2025-10-27T02:30:00+01:00",
    ]
    scheduled = sorted(r.jobId for r in jobs.list(actor=PARIS_NIGHT.actor_name).jobs)
    assert len(set(scheduled)) == 6


def test_a_variable_replaces_the_declared_expression_and_off_switches_a_schedule_off() -> None:
    declared = Periodic("0 * * * *")
    assert ticks.declare("cleanup_jobs", declared, environ={}).expression == "0 * * * *"
    assert ticks.declare("cleanup_jobs", declared, environ={"SCHEDULE_CLEANUP_JOBS": ""}).expression == ("0 * * * *")
    override = ticks.declare("cleanup_jobs", declared, environ={"SCHEDULE_CLEANUP_JOBS": " */30 * * * * "})
    assert override.expression == "*/30 * * * *"
    assert override.cron is not None and override.cron.minute == [0, 30]
    for off in ("off", "OFF", " Off "):
        switched_off = ticks.declare("cleanup_jobs", declared, environ={"SCHEDULE_CLEANUP_JOBS": off})
        assert (switched_off.cron, switched_off.expression) == (None, "off")
    assert ticks.variable_for("generate-report.v2") == "SCHEDULE_GENERATE_REPORT_V2"


def test_a_malformed_variable_is_refused_with_its_name_and_the_reason() -> None:
    with pytest.raises(ScheduleError) as error:
        ticks.declare("cleanup_jobs", "0 * * * *", environ={"SCHEDULE_CLEANUP_JOBS": "0 25 * * *"})
    assert str(error.value) == (
        "SCHEDULE_CLEANUP_JOBS: '0 25 * * *' is not a valid cron expression: hour: 25 is out of range 0-23"
    )
    with pytest.raises(ScheduleError, match=r"^cleanup_jobs: periodic: 'hourly' is not a valid cron expression"):
        ticks.declare("cleanup_jobs", "hourly", environ={})


def test_a_schedule_switched_off_is_listed_but_never_scheduled() -> None:
    off = periodic_actors.tick_off
    assert off.options["periodic"] is NEVER  # periodiq lists it as "off"; the scheduler never sends it
    assert str(off.options["periodic"]) == "off" and not is_on(off)
    views = {v.actor: v.as_json() for v in Schedules(broker, schedule_store).list()}
    assert views["tick_off"] == {
        "actor": "tick_off",
        "cron": "off",
        "nextRunAt": None,
        "lastRunAt": None,
        "lastJobId": None,
        "timezone": "UTC",
        "lastSkippedAt": None,
        "skippedTicks": 0,
    }
    assert views["tick_paris_night"]["cron"] == "30 2 * * *"
    assert views["tick_paris_night"]["timezone"] == "Europe/Paris"


def test_a_tick_published_again_from_its_note_is_the_same_job_and_runs_once(
    jobs: Jobs, periodic_worker: WorkerProcess
) -> None:
    """A sender slower than UNPUBLISHED_AFTER_S (or whose confirm was lost) and a scheduler adopting its note both
    publish the tick: one job id, so the worker runs it once and skips the copy."""
    now = datetime.now(UTC)
    [(message, published)] = ticks.send_tick(EVERY_MINUTE, now)
    assert published and schedule_store.unpublished() == []
    assert jobs.wait(message.message_id, timeout_s=20).state is JobState.COMPLETED
    tick = ticks.as_instant(now)
    note = UnpublishedTick(
        EVERY_MINUTE.actor_name, f"{tick:%Y-%m-%dT%H:%M} UTC", int(tick.timestamp() * 1000), message.message_id
    )
    redis_client.zadd(keys.SCHEDULE_UNPUBLISHED, {note.note: 0})  # noted as if its publish was never confirmed

    [adopted] = schedule_store.adopt_unpublished(int(ticks.UNPUBLISHED_AFTER_S * 1000))
    assert adopted == note
    assert ticks.republish(EVERY_MINUTE, adopted, now, grace_s=300) is TickOutcome.SENT

    skipped = f"skipping {message.message_id}: job is completed"
    deadline = time.monotonic() + 20
    while skipped not in periodic_worker.output():
        assert time.monotonic() < deadline, periodic_worker.output()[-2000:]
        time.sleep(0.1)
    assert runs(EVERY_MINUTE) == {tick.isoformat(): 1}
    assert schedule_store.unpublished() == []


def test_a_tick_claimed_and_never_published_for_longer_than_the_grace_is_recorded_skipped_and_never_runs(
    jobs: Jobs,
) -> None:
    tick = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    schedule = schedule_of(EVERY_MINUTE)
    assert schedule is not None
    label = ticks.tick_label(schedule, datetime(2030, 6, 1, 12, 0))
    job_id = ticks.tick_job_id(EVERY_MINUTE.actor_name, label)
    note = UnpublishedTick(EVERY_MINUTE.actor_name, label, int(tick.timestamp() * 1000), job_id)
    assert schedule_store.claim(EVERY_MINUTE.actor_name, label, job_id, 3600, publishing=note)
    assert schedule_store.unpublished() == [note]
    assert schedule_store.adopt_unpublished(60_000) == []  # claimed just now: its sender may still be publishing

    [adopted] = schedule_store.adopt_unpublished(0)
    outcome = ticks.republish(EVERY_MINUTE, adopted, tick + timedelta(seconds=301), grace_s=300)

    assert outcome is TickOutcome.SKIPPED
    assert jobs.store.get(job_id) is None
    state = schedule_store.state(EVERY_MINUTE.actor_name)
    assert (state.skipped_ticks, state.last_skipped_at) == (1, "2030-06-01T12:00:00Z")
    assert schedule_store.unpublished() == []
