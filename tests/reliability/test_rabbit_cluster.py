"""RABBITMQ_QUEUE_TYPE=quorum on a 3-node RabbitMQ cluster of the test's own: the node leading the queues SIGKILLed
while jobs flow (every confirmed job completes once; workers, the API and actor.send() find a surviving node), high
jobs overtaking a backlog of normal ones through the priority lanes, the delivery limit stopping a message no worker
settles, and a queue of the other type refused with a line naming the variable.

One cluster for the module (it takes about 40 s to start); each test works in a vhost of its own on it. The node kill
comes last: the cluster runs on two nodes after it. The full count is tests/benchmarks/test_rabbit_cluster_full.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from service.bootstrap import build_broker, redis_client, store
from service.domain.states import JobState, Priority
from service.ops.unavailable import Unavailable
from service.rabbit.link import QueueMismatch
from service.rabbit.queue_types import DELIVERY_LIMIT, HIGH_LANE, LOW_LANE
from service.settings import get_settings
from tests.reliability.cluster_runs import (
    connect,
    dead_jobs_of,
    kill_the_leader_under_load,
    node_urls,
    own_vhost,
    quorum_env,
    quorum_jobs,
    quorum_worker,
    ready,
    starts,
)
from tests.reliability.executions import executions_of
from tests.reliability.harness import CHAOS_MODULES, REPORTS, FaultReport, wait_for, wait_until_final
from tests.support.chaos_actors import QUEUE
from tests.support.own_servers import started
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    with started(RabbitCluster(3)) as nodes:
        print(f"3-node RabbitMQ cluster started and joined in {nodes.start_seconds:.1f} s")
        yield nodes


@pytest.fixture
def vhost(cluster: RabbitCluster) -> Iterator[str]:
    with own_vhost(cluster) as name:
        yield name


def test_a_queue_of_the_other_type_is_refused_with_a_line_naming_rabbitmq_queue_type(
    cluster: RabbitCluster, vhost: str
) -> None:
    urls = node_urls(cluster, vhost)
    settings = get_settings().model_copy(update={"rabbitmq_url": ";".join(urls)})
    classic = build_broker(settings, redis_client, store)
    quorum = build_broker(settings.model_copy(update={"rabbitmq_queue_type": "quorum"}), redis_client, store)
    try:
        classic.declare_queue(QUEUE, ensure=True)
        quorum.declare_queue("reports", ensure=True)

        with pytest.raises(QueueMismatch) as quorum_on_classic:
            quorum.declare_queue(QUEUE, ensure=True)
        with pytest.raises(QueueMismatch) as classic_on_quorum:
            classic.declare_queue("reports", ensure=True)
    finally:
        classic.close()
        quorum.close()
    delete = f"delete it once it holds nothing you need (rabbitmqctl delete_queue -p {vhost}"
    assert str(quorum_on_classic.value) == (
        f"queue '{QUEUE}' is a classic queue but RABBITMQ_QUEUE_TYPE=quorum declares it as a quorum queue: set "
        f"RABBITMQ_QUEUE_TYPE=classic to use it as it is, or {delete} {QUEUE}) and the worker declares it again"
    )
    assert str(classic_on_quorum.value) == (
        "queue 'reports' is a quorum queue but RABBITMQ_QUEUE_TYPE=classic declares it as a classic queue: set "
        f"RABBITMQ_QUEUE_TYPE=quorum to use it as it is, or {delete} reports) and the worker declares it again"
    )

    # The API's way in (a publish through the link) says the same, as a 503 naming RabbitMQ.
    with pytest.raises(Unavailable) as refused:
        quorum_jobs(urls).enqueue("tally", {"run": "mismatch", "ms": 0})
    assert "RABBITMQ_QUEUE_TYPE=classic to use it as it is" in str(refused.value)

    # And a worker in quorum mode logs it, once a consumer tries the queue.
    with WorkerProcess(processes=1, threads=1, queues=[QUEUE], env=quorum_env(urls), modules=CHAOS_MODULES) as worker:
        seen = wait_for(lambda: "RABBITMQ_QUEUE_TYPE=classic to use it as it is" in worker.output(), timeout=20)
        assert seen is not None, worker.output()[-3000:]


def test_high_jobs_overtake_a_backlog_of_normal_ones_and_low_ones_wait_for_it_in_quorum_mode(
    cluster: RabbitCluster, vhost: str
) -> None:
    run = uuid.uuid4().hex[:8]
    urls = node_urls(cluster, vhost)
    jobs = quorum_jobs(urls)
    threads, normal_count, high_count, low_count = 2, 60, 6, 6
    # All queued before a worker starts: low first, then the backlog of normal ones, then high ones.
    low = [jobs.enqueue("tally", {"run": run, "ms": 50}, priority=Priority.LOW).job_id for _ in range(low_count)]
    normal = [jobs.enqueue("tally", {"run": run, "ms": 50}).job_id for _ in range(normal_count)]
    high = [jobs.enqueue("tally", {"run": run, "ms": 50}, priority=Priority.HIGH).job_id for _ in range(high_count)]
    lanes = {lane: ready(urls[0], lane) for lane in (QUEUE + HIGH_LANE, QUEUE, QUEUE + LOW_LANE)}
    assert list(lanes.values()) == [high_count, normal_count, low_count], lanes

    worker = quorum_worker(urls, threads=threads)
    try:
        states, took = wait_until_final(jobs.store, low + normal + high, timeout=40)
    finally:
        worker.stop(timeout=20)
    order = [job_id for job_id, _, _ in starts(run)]
    assert set(states.values()) == {JobState.COMPLETED.value}, states
    position = {job_id: i for i, job_id in enumerate(order)}
    normals_before_last_high = sum(1 for j in normal if position[j] < max(position[h] for h in high))
    normals_after_first_low = sum(1 for j in normal if position[j] > min(position[j] for j in low))
    prefetch = 2 * threads  # Dramatiq's: twice the threads, per lane
    REPORTS.append(
        FaultReport(
            "priority lanes (quorum): 6 low, 60 normal, then 6 high queued; 1 worker x 2 threads",
            "high start before the backlog, low after it",
            sent=len(states),
            completed=len(order),
            notes=[
                f"{normals_before_last_high} normal started before the last high one",
                f"{normals_after_first_low} normal started after the first low one",
                f"start order {''.join('H' if j in high else 'L' if j in low else '.' for j in order)}",
                f"all done in {took:.1f} s",
            ],
        )
    )
    # Only what a worker had fetched before the high ones arrived may start ahead of them: at most a prefetch.
    assert normals_before_last_high <= prefetch, order
    assert normals_after_first_low <= prefetch, order


def test_a_message_no_worker_settles_is_dead_lettered_at_the_delivery_limit_and_requeued_from_there(
    cluster: RabbitCluster, vhost: str
) -> None:
    run = uuid.uuid4().hex[:8]
    urls = node_urls(cluster, vhost)
    jobs = quorum_jobs(urls)
    job_id = jobs.enqueue("tally", {"run": run, "ms": 0}).job_id

    # Each delivery ends as a worker's death ends it: the connection goes, the message unacknowledged.
    counts: list[Any] = []
    for attempt in range(DELIVERY_LIMIT + 5):
        connection = connect(urls[attempt % len(urls)])
        try:
            method, properties, _ = connection.channel().basic_get(QUEUE)
        finally:
            connection.close()
        if method is None:
            break
        counts.append((properties.headers or {}).get("x-delivery-count"))
    assert counts == list(range(DELIVERY_LIMIT + 1)), counts
    assert wait_for(lambda: ready(urls[0], f"{QUEUE}.XQ") == 1, timeout=10) is not None
    assert ready(urls[0], QUEUE) == 0
    assert jobs.store.get(job_id).state is JobState.QUEUED  # type: ignore[union-attr]

    # The service's own dead-letter path: listed among the queue's dead jobs, requeued, run once.
    dead = dead_jobs_of(jobs)
    assert [item.job_id for item in dead.page(QUEUE).items] == [job_id]
    assert dead.requeue(QUEUE, [job_id]).requeued == 1
    worker = quorum_worker(urls, threads=1)
    try:
        record = jobs.wait(job_id, timeout_s=20)
    finally:
        worker.stop(timeout=20)
    assert record.state is JobState.COMPLETED
    assert len(executions_of(run)[job_id]) == 1
    assert ready(urls[0], f"{QUEUE}.XQ") == 0


def test_the_node_leading_the_queues_sigkilled_loses_no_confirmed_job_and_runs_none_twice(
    cluster: RabbitCluster, vhost: str
) -> None:
    outcome = kill_the_leader_under_load(
        cluster,
        vhost,
        ms=250,
        api_per_second=15,
        sender_pause_s=0.1,
        threads=2,
        before_kill_done=20,
        after_kill_s=6,
    )
    report = outcome.report(
        "RabbitMQ node leading the quorum queues SIGKILLed (3-node cluster; 2 workers x 2 threads, API and "
        "actor.send() enqueuing)"
    )
    REPORTS.append(report)
    outcome.check()
