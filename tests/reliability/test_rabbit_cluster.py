"""RABBITMQ_QUEUE_TYPE=quorum on a 3-node RabbitMQ cluster of the test's own: the node leading the queues SIGKILLed
while jobs flow (every confirmed job completes once; workers, the API and actor.send() find a surviving node), high
jobs overtaking a backlog of normal ones through the priority lanes, the delivery limit stopping a message no worker
settles, and a queue of the other type refused with a line naming the variable.

One cluster for the module (it takes about 40 s to start); each test works in a vhost of its own on it. The node kill
comes last: the cluster runs on two nodes after it. The full count is tests/benchmarks/test_rabbit_cluster_full.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from service.bootstrap import build_broker, pauses, redis_client, store
from service.domain.states import JobState, Priority
from service.ops.unavailable import Unavailable
from service.rabbit.link import QueueMismatch
from service.rabbit.queue_types import DELIVERY_LIMIT, LOW_LANE
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
    classic = build_broker(settings, redis_client, store, pauses)
    quorum = build_broker(settings.model_copy(update={"rabbitmq_queue_type": "quorum"}), redis_client, store, pauses)
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
    threads, normal_count, high_count, low_count = 2, 80, 6, 6
    prefetch = 2 * threads  # Dramatiq's, per lane: what a worker may hold that a later high job cannot overtake

    def send(priority: Priority) -> tuple[str, float]:
        return jobs.enqueue("tally", {"run": run, "ms": 50}, priority=priority).job_id, time.time()

    # Low ones first, then the backlog of normal ones; high ones while the worker is working through the backlog.
    low = [send(Priority.LOW)[0] for _ in range(low_count)]
    normal = [send(Priority.NORMAL)[0] for _ in range(normal_count)]
    assert [ready(urls[0], lane) for lane in (QUEUE, QUEUE + LOW_LANE)] == [normal_count, low_count]
    worker = quorum_worker(urls, threads=threads)
    try:
        assert wait_for(lambda: len(starts(run)) >= 10, timeout=20) is not None, worker.output()[-3000:]
        high = dict(send(Priority.HIGH) for _ in range(high_count))
        waiting_then = normal_count - sum(1 for job_id, _, _ in starts(run) if job_id in set(normal))
        states, took = wait_until_final(jobs.store, low + normal + list(high), timeout=40)
    finally:
        worker.stop(timeout=20)
    assert set(states.values()) == {JobState.COMPLETED.value}, states
    started = {job_id: at for job_id, _, at in starts(run)}
    order = sorted(started, key=started.__getitem__)
    # For each high job: the normal ones that started after it was sent and before it started.
    overtaken_by = max(sum(1 for j in normal if sent_at < started[j] < started[h]) for h, sent_at in high.items())
    high_wait = max(started[h] - sent_at for h, sent_at in high.items())
    backlog_left = max(started[j] for j in normal) - min(high.values())
    normals_after_first_low = sum(1 for j in normal if started[j] > min(started[j] for j in low))
    REPORTS.append(
        FaultReport(
            f"priority lanes (quorum): {high_count} high sent while {waiting_then} normal waited, "
            f"{low_count} low queued before them; 1 worker x {threads} threads, jobs of 50 ms",
            "high start before the backlog, low after it",
            sent=len(states),
            completed=len(started),
            notes=[
                f"a high job waited behind at most {overtaken_by} normal ones and at most {high_wait:.2f} s, "
                f"while the backlog took {backlog_left:.1f} s more",
                f"{normals_after_first_low} normal started after the first low one",
                f"start order {''.join('H' if j in high else 'L' if j in low else '.' for j in order)}",
                f"all done in {took:.1f} s",
            ],
        )
    )
    assert overtaken_by <= prefetch, order
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
