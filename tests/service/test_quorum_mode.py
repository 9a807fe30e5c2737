"""RABBITMQ_QUEUE_TYPE=quorum on one node (the shared RabbitMQ, a vhost of the test's own; a quorum queue of one node
is still a quorum queue): the queue figures and purge see every lane, a paused queue holds its lanes, and a delayed
high job comes due into the high lane. The cluster and its faults: tests/reliability/test_rabbit_cluster.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from service.bootstrap import redis_client
from service.domain.states import JobState, Priority
from service.ops.jobs import Jobs
from service.rabbit.queue_types import HIGH_LANE, LOW_LANE
from service.store.pauses import PauseFlags
from tests.reliability.cluster_runs import quorum_jobs, quorum_worker, ready
from tests.reliability.harness import wait_for
from tests.support import isolation
from tests.support.chaos_actors import QUEUE
from tests.support.services import services_on


@pytest.fixture
def quorum_url() -> Iterator[str]:
    vhost = isolation.create_vhost()
    try:
        yield f"amqp://guest:guest@{isolation.HOST}:5672/{vhost}"
    finally:
        isolation.delete_vhost(vhost)


@pytest.fixture
def pauses() -> Iterator[PauseFlags]:
    flags = PauseFlags(redis_client)
    yield flags
    flags.resume(QUEUE)


def tally(jobs: Jobs, run: str, priority: Priority, delay_ms: int | None = None) -> str:
    return jobs.enqueue("tally", {"run": run, "ms": 0}, priority=priority, delay_ms=delay_ms).job_id


def test_queue_figures_and_purge_count_every_priority_lane(quorum_url: str) -> None:
    jobs = quorum_jobs([quorum_url])
    run = uuid.uuid4().hex[:8]
    for priority in (Priority.HIGH, Priority.NORMAL, Priority.NORMAL, Priority.LOW):
        tally(jobs, run, priority)
    lanes = [ready(quorum_url, lane) for lane in (QUEUE + HIGH_LANE, QUEUE, QUEUE + LOW_LANE)]
    assert lanes == [1, 2, 1]
    queues = services_on(jobs.broker, jobs.store).queues
    [figures] = [f for f in queues.figures() if f.name == QUEUE]
    assert figures.waiting == 4
    assert queues.purge(QUEUE).messages == 4
    assert [ready(quorum_url, lane) for lane in (QUEUE + HIGH_LANE, QUEUE, QUEUE + LOW_LANE)] == [0, 0, 0]


@pytest.mark.slow
def test_a_paused_queue_holds_its_lanes_and_a_delayed_high_job_comes_due_into_the_high_lane(
    quorum_url: str, pauses: PauseFlags
) -> None:
    jobs = quorum_jobs([quorum_url])
    run = uuid.uuid4().hex[:8]
    pauses.pause(QUEUE)
    worker = quorum_worker([quorum_url], threads=2)
    try:
        waiting = [tally(jobs, run, Priority.HIGH), tally(jobs, run, Priority.LOW)]
        delayed = tally(jobs, run, Priority.HIGH, delay_ms=500)
        # The delay queue is not paused: the worker moves the job, once due, to the lane of its priority.
        moved = wait_for(lambda: ready(quorum_url, QUEUE + HIGH_LANE) == 2, timeout=15)
        assert moved is not None, worker.output()[-3000:]
        assert ready(quorum_url, QUEUE + LOW_LANE) == 1
        assert {jobs.get(job_id).state for job_id in [*waiting, delayed]} == {JobState.QUEUED}
        pauses.resume(QUEUE)
        for job_id in [*waiting, delayed]:
            assert jobs.wait(job_id, timeout_s=20).state is JobState.COMPLETED
    finally:
        worker.stop(timeout=20)
