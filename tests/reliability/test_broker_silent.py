"""RabbitMQ goes silent (connections open, no bytes): heartbeats notice and the workers carry on, once per job."""

from __future__ import annotations

import time
import uuid

import pytest

from service.ops.jobs import Jobs
from tests.reliability.harness import (
    REPORTS,
    FaultReport,
    Fleet,
    Tally,
    proxies,
    scale,
    summarise,
    wait_for,
    wait_until_final,
    worker_env,
)
from tests.support.chaos_actors import tally, tally_client, tally_key

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

#: Seconds; production keeps 30 (service/bootstrap.py), the test asks for 2 through RABBITMQ_URL's query.
HEARTBEAT = 2


def test_workers_notice_a_silent_broker_by_heartbeats_and_recover(jobs: Jobs) -> None:
    run = uuid.uuid4().hex[:8]
    total = scale(300)
    report = FaultReport(
        f"RabbitMQ silent: connections open, no bytes (heartbeat {HEARTBEAT} s, 2 workers)",
        "heartbeats notice; all complete once",
    )
    with proxies(5672) as (rabbit,), Fleet(2, threads=4, env=worker_env(rabbit=rabbit, heartbeat=HEARTBEAT)):
        ids = [tally.send(run=run, ms=50).message_id for _ in range(total)]
        assert wait_for(lambda: tally_client.llen(tally_key(run, "done")) >= total // 4, timeout=60) is not None
        silenced = rabbit.silence()
        silenced_at = time.time()
        done_then = tally_client.llen(tally_key(run, "done"))
        # Jobs flow again only over new connections: the old ones carry nothing until the proxy is stopped.
        resumed = wait_for(lambda: tally_client.llen(tally_key(run, "done")) > done_then + 20, timeout=60, poll=0.2)
        states, _ = wait_until_final(jobs.store, ids, timeout=60 + total / 10)
        new_connections = rabbit.connections_made
        report.recovery_s = resumed
    counts = summarise(states)
    tallied = Tally.read(run)
    report.sent = total
    report.completed = counts["completed"]
    report.lost = total - counts["completed"]
    twice = tallied.ran_twice({})  # no process is killed here: any second execution of a job is one too many
    hit = tallied.in_flight(silenced_at)
    report.run_twice = len({later.job_id for _, later in twice})
    report.notes.append(f"{len(hit)} jobs running when the broker went silent")
    report.notes.append(f"{silenced} connections silenced; {new_connections} made in all")
    REPORTS.append(report)

    assert silenced >= 2
    assert resumed is not None and resumed < 10 * HEARTBEAT, f"jobs flowed again after {resumed} s"
    assert counts == {"completed": total}, counts
    assert hit, "no job was running when the broker went silent: the fault exercised nothing"
    assert twice == [], twice[:5]
