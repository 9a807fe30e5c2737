"""The real `periodiq service.actors` process: several at once, catching up at start, variables, bad variables."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest

from service import schedules
from service.broker import broker, redis_client, schedule_store
from service.jobs import Jobs
from service.states import JobState
from tests.conftest import purge_queues
from tests.support import periodic_actors
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
            process.wait_for(lambda out: sum(sends_of(out, EVERY_MINUTE.actor_name)) >= 1)
        outputs = [p.output() for p in processes]

    sent = sum(sends_of(out, EVERY_MINUTE.actor_name)[0] for out in outputs)
    lost = sum(sends_of(out, EVERY_MINUTE.actor_name)[1] for out in outputs)
    records = jobs.list(actor=EVERY_MINUTE.actor_name).jobs
    per_tick = Counter(r.data["tick"] for r in records)
    assert sent == len(records) >= 1
    assert set(per_tick.values()) == {1}, per_tick
    assert lost >= 3 - len(records)  # unless their starts straddled a minute, two lost the race
    for record in records:
        assert record.jobId == schedules.tick_job_id(
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

    job_id = schedules.tick_job_id(yearly.actor_name, f"{missed:%Y-%m-%dT%H:%M} UTC")
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
        job_id = schedules.tick_job_id("cleanup_jobs", tick)
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
