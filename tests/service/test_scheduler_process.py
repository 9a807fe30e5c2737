"""The real `periodiq service.actors` process: several at once, catching up at start, variables, bad variables."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.bootstrap import broker, redis_client, schedule_store
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.worker import ticks
from tests.conftest import purge_queues
from tests.support import periodic_actors, stalled_publish
from tests.support.periodic_actors import QUEUE, runs_key
from tests.support.schedulers import SchedulerProcess, run_to_exit
from tests.support.workers import WorkerProcess

MODULES = ["tests.support.periodic_actors"]
EVERY_MINUTE = periodic_actors.tick_every_minute


@pytest.fixture(autouse=True)
def empty_queue() -> Iterator[None]:
    broker.declare_queue(QUEUE, ensure=True)
    purge_queues(QUEUE, f"{QUEUE}.DQ")
    yield


def sends_of(output: str, actor: str) -> tuple[int, int]:
    """(ticks this process sent, ticks it found already sent by another) for an actor."""
    sent = sum(1 for line in output.splitlines() if "sent tick" in line and f"of {actor} as job" in line)
    lost = sum(1 for line in output.splitlines() if f"of {actor} was already sent by another scheduler" in line)
    return sent, lost


@pytest.mark.slow
def test_three_scheduler_processes_send_each_tick_once_and_it_runs_once(
    jobs: Jobs, periodic_worker: WorkerProcess
) -> None:
    with ExitStack() as stack:
        processes = [stack.enter_context(SchedulerProcess(modules=MODULES)) for _ in range(3)]
        # Each sends the current minute's tick as soon as it is up ("* * * * *" is due at every minute).
        for process in processes:
            # A process that starts after another sent this minute's tick says nothing until the next minute.
            process.wait_for(lambda out: sum(sends_of(out, EVERY_MINUTE.actor_name)) >= 1, timeout=75)
        outputs = [p.output() for p in processes]

    sent = sum(sends_of(out, EVERY_MINUTE.actor_name)[0] for out in outputs)
    lost = sum(sends_of(out, EVERY_MINUTE.actor_name)[1] for out in outputs)
    records = jobs.list(actor=EVERY_MINUTE.actor_name).jobs
    per_tick = Counter(r.data["tick"] for r in records)
    assert sent == len(records) >= 1
    assert set(per_tick.values()) == {1}, per_tick
    assert lost >= 3 - len(records)  # unless their starts straddled a minute, two lost the race
    for record in records:
        assert record.jobId == ticks.tick_job_id(
            EVERY_MINUTE.actor_name, f"{datetime.fromisoformat(record.data['tick']):%Y-%m-%dT%H:%M} UTC"
        )
        assert jobs.wait(record.jobId, timeout_s=20).state is JobState.COMPLETED
    assert set(redis_client.hgetall(runs_key(EVERY_MINUTE.actor_name)).values()) == {"1"}


@pytest.mark.slow
def test_a_starting_scheduler_process_runs_the_tick_missed_within_the_grace_and_obeys_its_variables(
    jobs: Jobs, periodic_worker: WorkerProcess
) -> None:
    yearly = periodic_actors.tick_yearly
    missed = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    # This schedule last ran an hour before `missed`; then no scheduler ran until now.
    schedule_store.record_run(yearly.actor_name, missed - timedelta(hours=1), "an-earlier-job")
    env = {
        "SCHEDULE_TICK_YEARLY": f"{missed.minute} * * * *",
        "SCHEDULE_TICK_EVERY_MINUTE": "off",
        "SCHEDULE_TICK_TYPO": "* * * * *",
    }
    with SchedulerProcess(modules=MODULES, env=env) as process:
        output = process.wait_for(lambda out: "sent tick" in out)
        time.sleep(1.0)  # anything else it would send at start, it has sent by now
        output = process.output()

    job_id = ticks.tick_job_id(yearly.actor_name, f"{missed:%Y-%m-%dT%H:%M} UTC")
    assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED
    assert redis_client.hgetall(runs_key(yearly.actor_name)) == {missed.isoformat(): "1"}
    assert "tick_yearly: 1 tick(s) missed while no scheduler ran" in output
    # periodiq's own table of what it schedules: the override is in it, the schedule switched off is not.
    assert f"{missed.minute} * * * *" in output and "tick_yearly@test-periodic" in output
    [listed] = [line for line in output.splitlines() if "tick_every_minute@" in line]
    assert listed.split()[-2:] == ["off", "tests.support.periodic_actors:tick_every_minute@test-periodic"]
    assert jobs.list(actor=EVERY_MINUTE.actor_name).jobs == []
    assert "SCHEDULE_TICK_TYPO names no scheduled actor; it has no effect" in output


def test_a_malformed_schedule_variable_stops_the_scheduler_at_start_with_one_line() -> None:
    result = run_to_exit(modules=MODULES, env={"SCHEDULE_TICK_EVERY_MINUTE": "61 * * * *"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "invalid configuration: SCHEDULE_TICK_EVERY_MINUTE: '61 * * * *' is not a valid cron expression: "
        "minute: 61 is out of range 0-59"
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_an_unknown_schedule_time_zone_stops_the_scheduler_at_start_with_one_line() -> None:
    result = run_to_exit(env={"SCHEDULE_TIMEZONE": "Mars/Olympus_Mons"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("invalid configuration: SCHEDULE_TIMEZONE: ")
    assert "unknown time zone 'Mars/Olympus_Mons'" in last
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_the_procfile_scheduler_sends_the_production_schedules_as_overridden(jobs: Jobs) -> None:
    """Exactly `periodiq service.actors`: cleanup_jobs every minute by its variable, generate_report switched off."""
    env = {"SCHEDULE_CLEANUP_JOBS": "* * * * *", "SCHEDULE_GENERATE_REPORT": "off"}
    broker.declare_queue("maintenance", ensure=True)
    try:
        with SchedulerProcess(env=env) as process:
            output = process.wait_for(lambda out: "of cleanup_jobs as job" in out)
        [line] = [line for line in output.splitlines() if "of cleanup_jobs as job" in line]
        tick = line.split("sent tick ", 1)[1].split(" of ", 1)[0]
        job_id = ticks.tick_job_id("cleanup_jobs", tick)
        assert line.endswith(job_id)
        assert [r.jobId for r in jobs.list(actor="cleanup_jobs").jobs] == [job_id]
        assert "cleanup_jobs@maintenance" in output
        [listed] = [line for line in output.splitlines() if "generate_report@" in line]
        assert listed.split()[-2:] == ["off", "actors.reports:generate_report@reports"]
        assert "of generate_report as job" not in output
    finally:
        purge_queues("maintenance")


def test_a_malformed_production_schedule_stops_the_procfile_scheduler_with_one_line() -> None:
    result = run_to_exit(env={"SCHEDULE_CLEANUP_JOBS": "every hour"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "invalid configuration: SCHEDULE_CLEANUP_JOBS: 'every hour' is not a valid cron expression: "
        "expected 5 fields (minute hour day-of-month month day-of-week), got 2"
    )
    assert "Traceback" not in result.stderr + result.stdout


#: Every schedule off but the ones a test switches on, so only its ticks are sent.
ALL_OFF = {
    "SCHEDULE_CLEANUP_JOBS": "off",
    "SCHEDULE_GENERATE_REPORT": "off",
    "SCHEDULE_TICK_EVERY_MINUTE": "off",
    "SCHEDULE_TICK_YEARLY": "off",
    "SCHEDULE_TICK_PARIS_NIGHT": "off",
    "SCHEDULE_TICK_FLAKY": "off",
}


def test_a_scheduler_with_every_schedule_off_idles_and_stops_with_status_0_on_sigterm() -> None:
    """periodiq itself exits 1 ("No periodic actor to schedule."), and honcho then stops every Procfile process."""
    with SchedulerProcess(env=ALL_OFF) as process:
        process.wait_for(lambda out: "no schedule is switched on" in out)
        time.sleep(3.0)
        assert process.proc is not None and process.proc.poll() is None, process.output()
        process.proc.send_signal(signal.SIGTERM)
        assert process.proc.wait(10) == 0, process.output()
    assert "scheduler stopped" in process.output()


def test_a_tick_claimed_by_a_scheduler_killed_before_publishing_is_published_by_another_and_runs_once(
    jobs: Jobs, periodic_worker: WorkerProcess
) -> None:
    env = {**ALL_OFF, "SCHEDULE_TICK_EVERY_MINUTE": "* * * * *"}
    stalled = {**env, "STALL_PUBLISH_ACTORS": EVERY_MINUTE.actor_name}
    with SchedulerProcess(modules=[*MODULES, "tests.support.stalled_publish"], env=stalled) as first:
        # At start it sends the current minute's tick: claimed in Redis, then its publish stalls.
        output = first.wait_for(lambda out: stalled_publish.STALLED in out)
        job_id, tick_label = output.split(f"{stalled_publish.STALLED}: ", 1)[1].splitlines()[0].split(" ", 1)
        assert schedule_store.claimed_by(EVERY_MINUTE.actor_name, tick_label) == job_id  # claimed in Redis
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGKILL)  # a crash between the claim and the publish
        first.proc.wait(10)
    assert jobs.store.get(job_id) is None  # never published: without a fix, this tick is lost

    with SchedulerProcess(modules=MODULES, env=env) as second:
        second.wait_for(lambda out: f"published now as job {job_id}" in out, timeout=30)
        assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED
    tick = datetime.strptime(tick_label, "%Y-%m-%dT%H:%M UTC").replace(tzinfo=UTC)
    assert job_id == ticks.tick_job_id(EVERY_MINUTE.actor_name, tick_label)
    assert redis_client.hget(runs_key(EVERY_MINUTE.actor_name), tick.isoformat()) == "1"
    assert set(redis_client.hgetall(runs_key(EVERY_MINUTE.actor_name)).values()) == {"1"}  # no tick ran twice
    assert schedule_store.unpublished() == []
    assert schedule_store.state(EVERY_MINUTE.actor_name).last_run_at is not None


def test_a_scheduler_stopped_across_a_tick_runs_it_once_within_the_grace_and_skips_it_beyond(
    jobs: Jobs, periodic_worker: WorkerProcess, tmp_path: Path
) -> None:
    """Two real schedulers, each with one schedule, SIGSTOPped across the same tick. The first is resumed 3 s after
    the tick while its clock moved on a minute meanwhile (a host that slept), so it wakes 63 s late, within its
    SCHEDULE_MISFIRE_GRACE_S of 120 s; the second is resumed 9 s after the tick, beyond its 5 s. Their clocks are
    shifted so that the tick comes 7 s after they start (see tests/support/shifted_clock.py)."""
    boundary_real = time.time() + 7.0
    offset = (60 - boundary_real % 60) % 60  # the shifted clocks reach a whole minute at boundary_real
    tick = datetime.fromtimestamp(boundary_real + offset, UTC).replace(second=0, microsecond=0)
    clocks = {name: tmp_path / f"{name}-clock" for name in ("soon", "late")}
    for clock in clocks.values():
        clock.write_text(f"{offset:.3f}")
    modules = [*MODULES, "tests.support.shifted_clock"]
    yearly = periodic_actors.tick_yearly
    soon_env = {
        **ALL_OFF,
        "SCHEDULE_TICK_EVERY_MINUTE": f"{tick.minute} * * * *",  # this tick only: none in the minute after
        "SCHEDULE_MISFIRE_GRACE_S": "120",
        "SCHEDULER_CLOCK_OFFSET_FILE": str(clocks["soon"]),
    }
    late_env = {
        **ALL_OFF,
        "SCHEDULE_TICK_YEARLY": "* * * * *",
        "SCHEDULE_MISFIRE_GRACE_S": "5",
        "SCHEDULER_CLOCK_OFFSET_FILE": str(clocks["late"]),
    }
    with (
        SchedulerProcess(modules=modules, env=soon_env) as soon,
        SchedulerProcess(modules=modules, env=late_env) as late,
    ):
        for process in (soon, late):
            process.wait_for(lambda out: "Registered periodic actors" in out)
        assert time.time() < boundary_real - 2.0, "the schedulers started too slowly for this test"
        time.sleep(boundary_real - 2.0 - time.time())
        assert soon.proc is not None and late.proc is not None
        for process in (soon, late):
            assert process.proc is not None
            os.killpg(process.proc.pid, signal.SIGSTOP)
        time.sleep(boundary_real + 3.0 - time.time())
        assert "sent tick" not in soon.output() + late.output()  # the tick passed while both were stopped
        clocks["soon"].write_text(f"{offset + 60:.3f}")  # its host slept a minute
        os.killpg(soon.proc.pid, signal.SIGCONT)
        time.sleep(boundary_real + 9.0 - time.time())
        os.killpg(late.proc.pid, signal.SIGCONT)
        soon_out = soon.wait_for(lambda out: "sent tick" in out)
        late_out = late.wait_for(lambda out: "is skipped" in out)

    soon_id = ticks.tick_job_id(EVERY_MINUTE.actor_name, f"{tick:%Y-%m-%dT%H:%M} UTC")
    assert jobs.wait(soon_id, timeout_s=20).state is JobState.COMPLETED
    assert redis_client.hgetall(runs_key(EVERY_MINUTE.actor_name)) == {tick.isoformat(): "1"}
    assert f"tick_every_minute: 1 tick(s) due; the newest, {tick.isoformat()}, is handled 6" in soon_out
    assert "s late (its process was stopped or its host slept)" in soon_out

    late_id = ticks.tick_job_id(yearly.actor_name, f"{tick:%Y-%m-%dT%H:%M} UTC")
    assert jobs.store.get(late_id) is None
    assert jobs.list(actor=yearly.actor_name).jobs == []
    assert "is older than SCHEDULE_MISFIRE_GRACE_S and is skipped (5 s)" in late_out
    state = schedule_store.state(yearly.actor_name)
    assert (state.skipped_ticks, state.last_skipped_at) == (1, tick.isoformat().replace("+00:00", "Z"))
