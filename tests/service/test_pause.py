"""Pausing a queue: every worker process stops starting its jobs within 2 s, RabbitMQ keeps the messages, and
resume runs each of them exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from service.bootstrap import broker, redis_client
from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.ops.queues import QueueControl
from service.rabbit.dead_letters import DeadLetters
from service.store.pauses import PauseFlags
from tests.support import ops_actors
from tests.support.workers import WorkerProcess


@pytest.fixture
def control(jobs: Jobs) -> Iterator[QueueControl]:
    control = QueueControl(jobs, PauseFlags(redis_client), DeadLetters(jobs.link))
    yield control
    for queue in ("ops", "ops-other"):
        control.resume(queue)


def starts(key: str) -> list[float]:
    return [float(s) for s in redis_client.lrange(f"test:starts:{key}", 0, -1)]


def completions(key: str) -> int:
    return int(redis_client.get(f"test:completions:{key}") or 0)


def ready_in_rabbitmq(queue: str) -> int:
    return int(broker.get_queue_message_counts(queue)[0])


def wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_pause_stops_two_worker_processes_within_two_seconds_and_resume_runs_every_job_once(
    jobs: Jobs, control: QueueControl
) -> None:
    assert ops_actors.ops_step.queue_name == "ops"
    workers = [
        WorkerProcess(processes=1, threads=2, queues=["ops", "ops-other"], modules=["tests.support.ops_actors"])
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        total = 40
        ids = [jobs.enqueue("ops_step", {"key": "pause", "seconds": 0.2}).job_id for _ in range(total)]
        wait_for(lambda: len(starts("pause")) >= 6, 20, "the first jobs to start on both workers")

        control.pause("ops")
        paused_at = time.time()
        # Another queue keeps running meanwhile.
        other = [jobs.enqueue("ops_other_step", {"key": "other", "seconds": 0.05}).job_id for _ in range(5)]
        time.sleep(4)

        started = starts("pause")
        late = [s for s in started if s > paused_at + 2]
        assert late == [], f"{len(late)} jobs started more than 2 s after the pause"
        assert len(started) < total
        for job_id in other:
            assert jobs.wait(job_id, timeout_s=10).state is JobState.COMPLETED
        # Nothing is lost and nothing is held by a worker: what has not started waits, ready, in RabbitMQ.
        waiting = total - len(started)
        wait_for(lambda: ready_in_rabbitmq("ops") == waiting, 10, f"{waiting} ready messages in RabbitMQ")
        assert jobs.store.count(actor="ops_step", state=JobState.ACTIVE) == 0
        assert control.paused() == {"ops"}

        control.resume("ops")
        for job_id in ids:
            assert jobs.wait(job_id, timeout_s=60).state is JobState.COMPLETED
        assert len(starts("pause")) == total  # each job ran exactly once
        assert completions("pause") == total
        assert ready_in_rabbitmq("ops") == 0
    finally:
        for worker in workers:
            worker.stop()


def test_a_queue_paused_before_the_workers_start_stays_untouched_until_resumed(
    jobs: Jobs, control: QueueControl
) -> None:
    control.pause("ops")
    ids = [jobs.enqueue("ops_step", {"key": "cold", "seconds": 0}).job_id for _ in range(5)]
    queues = ["ops", "ops-other"]
    with WorkerProcess(processes=1, threads=2, queues=queues, modules=["tests.support.ops_actors"]):
        time.sleep(2.5)
        # The situation: this worker consumes and runs jobs (from its other queue) while "ops" stays paused.
        other = jobs.enqueue("ops_other_step", {"key": "cold-other", "seconds": 0}).job_id
        assert jobs.wait(other, timeout_s=20).state is JobState.COMPLETED
        assert starts("cold") == []
        assert all(jobs.get(i).state is JobState.QUEUED for i in ids)
        control.resume("ops")
        for job_id in ids:
            assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED
    assert len(starts("cold")) == 5
