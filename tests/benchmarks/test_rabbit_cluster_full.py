"""The RabbitMQ cluster's node kill at full count: thousands of jobs through the API and actor.send() while the node
leading every quorum queue is SIGKILLed (tests/reliability/test_rabbit_cluster.py runs a small form in `make test`).

A scheduler (periodiq, the Procfile's command) is connected to the killed node too: a tick of its every-minute job
must reach the cluster after the kill, through a surviving node. Prints the figures: sent, completed, lost, run twice,
recovery.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.cluster_runs import kill_the_leader_under_load, node_urls, own_vhost, quorum_env, ready
from tests.reliability.harness import wait_for
from tests.support.fault_reports import table
from tests.support.own_servers import started
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.schedulers import SchedulerProcess

#: tests/support/periodic_actors.py: its every-minute job, on a queue no worker of this test consumes.
TICK_QUEUE = "test-periodic"
#: The next tick after the kill comes at the next minute's start.
NEXT_TICK_S = 75


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    with started(RabbitCluster(3)) as nodes:
        print(f"3-node RabbitMQ cluster started and joined in {nodes.start_seconds:.1f} s")
        yield nodes


@pytest.mark.timeout(900)
def test_thousands_of_jobs_survive_the_sigkill_of_the_node_leading_the_queues(cluster: RabbitCluster) -> None:
    with own_vhost(cluster) as vhost:
        on_doomed, elsewhere = node_urls(cluster, vhost, [0, 1, 2]), node_urls(cluster, vhost, [1, 2, 0])
        env = quorum_env(on_doomed)
        scheduler = SchedulerProcess(modules=["tests.support.periodic_actors"], env=env).start()
        ticks_at_kill: list[int] = []
        try:
            outcome = kill_the_leader_under_load(
                cluster,
                vhost,
                ms=100,
                api_per_second=100,
                sender_pause_s=0.01,
                threads=4,
                before_kill_done=1500,
                after_kill_s=60,
                long_every=200,
                at_kill=lambda: ticks_at_kill.append(ready(on_doomed[0], TICK_QUEUE)),
            )
            ticked = wait_for(lambda: ready(elsewhere[0], TICK_QUEUE) > ticks_at_kill[0], timeout=NEXT_TICK_S, poll=1)
        finally:
            scheduler.stop()
        report = outcome.report(
            "RabbitMQ node leading the quorum queues SIGKILLed (3-node cluster; 2 workers x 4 threads, API and "
            "actor.send() enqueuing, full count)"
        )
        report.notes.append(
            "the scheduler connected to the killed node "
            + ("published its next tick through a surviving node" if ticked is not None else "published no tick")
        )
        print("\n".join(table([report])))
        outcome.check()
        assert ticked is not None, scheduler.output()[-3000:]
