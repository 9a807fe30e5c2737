"""Redis through Sentinel (one primary, two replicas, three Sentinels): the primary SIGKILLed while jobs flow in
through the API and from another service's `actor.send()`. Sentinel promotes a replica, the service follows within
seconds, no job is lost, none runs twice, and every record is right once it is over.

The clients follow by themselves: each new connection asks the Sentinels where the primary is
(service/store/connection.py). Until a replica is promoted (about 2.5 s) every Redis call fails as in an outage: a
worker retries its writes, the API answers 503, a sender's record is written by the worker that takes the job. A
job's final outcome is written, and its message acknowledged, only once a replica has it (REDIS_WAIT_REPLICAS, 1
through Sentinel), so the promoted replica holds every outcome RabbitMQ has forgotten.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.domain.states import JobState
from service.ops.jobs import Jobs
from service.settings import get_settings
from service.store.job_store import JobStore
from tests.reliability.api_client import api_using
from tests.reliability.harness import (
    REPORTS,
    FaultReport,
    Fleet,
    Tally,
    jobs_using,
    scale,
    states_of,
    summarise,
    wait_for,
    wait_until_final,
    worker_env,
)
from tests.support.chaos_actors import tally_client, tally_key
from tests.support.own_servers import started
from tests.support.sentinel_redis import SentinelRedis

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: Jobs a second from each of the two senders (the API and the other service) while the primary is killed.
RATE = 20.0
#: Long enough that jobs are always running (about 6 at a time), short enough for 2 x 4 threads to keep up.
WORK_MS = 150


@pytest.fixture
def sentinel_redis() -> Iterator[SentinelRedis]:
    with started(SentinelRedis()) as servers:
        yield servers


def sentinel_jobs(servers: SentinelRedis) -> Jobs:
    """The API's service layer, its Redis through the Sentinels (the database of REDIS_URL, as every process)."""
    update = {"redis_sentinels": servers.sentinel_addresses(), "redis_sentinel_master": servers.master_name}
    return jobs_using(get_settings().model_copy(update=update))


class ApiSender:
    """POSTs `count` tally jobs at `RATE` a second, as a client would: a 503 (Redis away) is tried again shortly."""

    def __init__(self, api: TestClient, run: str, count: int) -> None:
        self.api, self.run, self.count = api, run, count
        self.accepted: list[str] = []
        self.refused: list[int] = []  #: status codes of the refusals
        self.thread = threading.Thread(target=self._send, name="api-sender", daemon=True)

    def _send(self) -> None:
        started_at = time.monotonic()
        while len(self.accepted) < self.count:
            time.sleep(max(0.0, started_at + len(self.accepted) / RATE - time.monotonic()))
            answer = self.api.post("/jobs/tally", json={"run": self.run, "ms": WORK_MS})
            if answer.status_code == 202:
                self.accepted.append(answer.json()["jobId"])
            else:
                self.refused.append(answer.status_code)
                time.sleep(0.2)

    def wait(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the API sender sent {len(self.accepted)} of {self.count} in {timeout} s"


def recovery(api: TestClient, store: JobStore, run: str, killed: float, timeout: float = 30.0) -> float:
    """Seconds from the kill until a job sent through the API after it had completed: the service works again."""
    deadline = killed + timeout
    while (answer := api.post("/jobs/tally", json={"run": f"{run}-probe", "ms": 0})).status_code != 202:
        assert time.monotonic() < deadline, f"the API still refuses jobs {timeout} s after the kill: {answer.text}"
        time.sleep(0.1)
    probe = answer.json()["jobId"]
    while store.state_of(probe) != "completed":
        assert time.monotonic() < deadline, f"probe job {probe} is {store.state_of(probe)} {timeout} s after the kill"
        time.sleep(0.05)
    return time.monotonic() - killed


def test_a_sigkilled_redis_primary_is_replaced_and_no_job_is_lost_or_run_twice(
    sentinel_redis: SentinelRedis,
) -> None:
    run = uuid.uuid4().hex[:8]
    each = scale(100)  # jobs from each of the two senders
    report = FaultReport(
        "Redis primary SIGKILLed (Sentinel: 2 replicas, 3 Sentinels; 2 workers x 4 threads; API + actor.send())",
        "promoted within seconds; none lost or twice; every record completed",
    )
    env = {**worker_env(), **sentinel_redis.environment()}
    jobs = sentinel_jobs(sentinel_redis)
    with Fleet(2, threads=4, env=env) as fleet, api_using(jobs) as api:
        sender = subprocess.Popen(
            [sys.executable, "-m", "tests.support.tally_sender", run, str(each), str(RATE), str(WORK_MS)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            api_sender = ApiSender(api, run, each)
            api_sender.thread.start()
            # The fault hits a flow under way: a fifth of the jobs done, the rest still being sent.
            flowing = wait_for(lambda: tally_client.llen(tally_key(run, "done")) >= each * 2 // 5, timeout=60)
            assert flowing is not None, f"jobs did not flow:\n{fleet.logs()[-3000:]}"
            running = wait_for(lambda: bool(Tally.read(run).in_flight(time.time())), timeout=10, poll=0.01)
            assert running is not None, "no job was running at any moment: nothing for the failover to hit"
            old = sentinel_redis.primary()
            killed_wall = time.time()
            killed = time.monotonic()
            sentinel_redis.kill_primary()
            promoted = sentinel_redis.wait_for_new_primary(old)
            promoted_s = time.monotonic() - killed
            recovered_s = recovery(api, jobs.store, run, killed)
            api_sender.wait(timeout=60 + each / RATE)
            out, err = sender.communicate(timeout=60 + each / RATE)
        finally:
            if sender.poll() is None:
                sender.kill()
        assert sender.returncode == 0, err[-3000:]
        sent_ids = [*api_sender.accepted, *out.split()]
        states, _ = wait_until_final(jobs.store, sent_ids, timeout=60 + len(sent_ids) / 10)
        records = {job_id: jobs.store.get(job_id) for job_id in sent_ids}
        worker_logs = fleet.logs()
    tallied = Tally.read(run)
    counts = summarise(states)
    report.sent = len(sent_ids)
    report.completed = counts["completed"]
    report.lost = len(sent_ids) - counts["completed"]
    twice = tallied.ran_twice({})  # no process is killed here: any second execution is one too many
    report.run_twice = len({later.job_id for _, later in twice} | set(tallied.twice()))
    report.recovery_s = recovered_s
    hit = tallied.in_flight(killed_wall)
    report.notes += [
        f"every Sentinel named the promoted replica {promoted_s:.1f} s after the kill",
        f"{len(hit)} jobs running at the kill",
        f"API answered {len(api_sender.refused)} refusals meanwhile ({sorted(set(api_sender.refused))}), tried again",
    ]
    REPORTS.append(report)

    assert hit, "no job was running when the primary died: the failover exercised nothing"
    assert promoted.port != old.port and promoted_s < 10, promoted_s
    assert recovered_s < 15, f"the service followed the new primary after {recovered_s:.1f} s"
    assert counts == {"completed": len(sent_ids)}, (counts, worker_logs[-3000:])
    assert len(tallied.done) == len(sent_ids), "a job completed without running"
    assert twice == [] and tallied.twice() == [], (twice[:5], tallied.twice()[:5])
    done = JobState.COMPLETED
    wrong = {
        job_id: r and (r.state, r.attempts, [h.state for h in r.history][-1:])
        for job_id, r in records.items()
        if r is None or r.state is not done or r.attempts < 1 or r.history[-1].state is not done
    }
    assert wrong == {}, list(wrong.items())[:5]
    # Every record is where the promoted replica and its follower agree: no write went to the dead primary alone.
    assert states_of(jobs.store, sent_ids) == states
