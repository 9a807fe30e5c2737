"""SIGTERM with jobs in flight: the jobs in hand finish, unstarted messages go back to RabbitMQ, no record stays
active, and a job still running at the shutdown timeout is interrupted and runs again elsewhere."""

from __future__ import annotations

import time

import pytest

from service.bootstrap import broker, redis_client
from service.domain.states import JobState
from service.ops.jobs import Jobs
from tests.support import ops_actors  # noqa: F401  (declares the ops actors in this process too)
from tests.support.workers import WorkerProcess


def starts(key: str) -> int:
    return int(redis_client.llen(f"test:starts:{key}"))


def wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def ops_worker(**env: str) -> WorkerProcess:
    return WorkerProcess(processes=1, threads=2, queues=["ops"], modules=["tests.support.ops_actors"], env=env)


@pytest.mark.slow
def test_sigterm_finishes_the_jobs_in_hand_and_returns_the_unstarted_ones_to_rabbitmq(jobs: Jobs) -> None:
    worker = ops_worker().start()
    ids = [jobs.enqueue("ops_step", {"key": "term", "seconds": 1.5}).job_id for _ in range(6)]
    wait_for(lambda: jobs.store.count(actor="ops_step", state=JobState.ACTIVE) == 2, 20, "two jobs in flight")
    in_flight = {i for i in ids if jobs.get(i).state is JobState.ACTIVE}

    code = worker.stop(timeout=30)
    assert code == 0, worker.output()[-3000:]

    records = {i: jobs.get(i) for i in ids}
    assert {i for i, r in records.items() if r.state is JobState.COMPLETED} == in_flight
    assert all(r.state is JobState.QUEUED for i, r in records.items() if i not in in_flight), records
    assert starts("term") == 2  # nothing new started after the signal
    assert broker.get_queue_message_counts("ops")[0] == 4  # the other four wait, ready, in RabbitMQ

    with ops_worker():
        for job_id in ids:
            assert jobs.wait(job_id, timeout_s=30).state is JobState.COMPLETED
    assert starts("term") == 6  # each ran once
    assert all(jobs.get(i).attempts == 1 for i in ids)


@pytest.mark.slow
def test_a_job_still_running_at_the_shutdown_timeout_is_interrupted_and_runs_again(jobs: Jobs) -> None:
    worker = ops_worker(WORKER_SHUTDOWN_TIMEOUT_S="1").start()
    job_id = jobs.enqueue("ops_step", {"key": "late", "seconds": 4}).job_id
    wait_for(lambda: jobs.get(job_id).state is JobState.ACTIVE, 20, "the job to start")

    began = time.monotonic()
    assert worker.stop(timeout=30) == 0, worker.output()[-3000:]
    assert time.monotonic() - began < 30  # the 1 s timeout, not Dramatiq's ten minutes (the record shows the rest)

    record = jobs.get(job_id)
    assert record.state is JobState.QUEUED, record
    assert any(h.error and "WorkerStopped" in h.error for h in record.history), record.history
    assert "interrupting it; it will run again" in worker.output()

    with ops_worker():
        record = jobs.wait(job_id, timeout_s=30)
    assert record.state is JobState.COMPLETED
    assert record.attempts == 2
