"""When a hook cannot reach the store, a job does not run unchecked and its message is not acknowledged unrecorded.

Each test runs a real worker whose Redis goes away (a fault proxy) or fills up (a redis-server of the test's own
with a tiny maxmemory), with JOB_STORE_RETRY_S=1 so the patient retries give up within a second.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import redis

from service.bootstrap import broker, store
from service.store.job_store import JobStore
from tests.reliability.harness import through, wait_for
from tests.support.chaos_actors import QUEUE, tally, tally_client, tally_key
from tests.support.own_redis import OwnRedis
from tests.support.proxy import FaultProxy
from tests.support.workers import WorkerProcess

WINDOW_ENV = {"JOB_STORE_RETRY_S": "1", "TALLY_REDIS_URL": os.environ["REDIS_URL"]}


def queue_counts(name: str = QUEUE) -> tuple[int, int]:
    """(ready, unacknowledged) messages of a queue of this test run's vhost, as RabbitMQ counts them."""
    vhost = broker.parameters.virtual_host
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {name} not found in {out!r}")


@contextmanager
def worker_with_redis_at(url: str, env: dict[str, str] | None = None) -> Iterator[WorkerProcess]:
    env = {**(env or WINDOW_ENV), "REDIS_URL": url}
    with WorkerProcess(processes=1, threads=2, queues=[QUEUE], env=env, modules=["tests.support.chaos_actors"]) as w:
        yield w


def starts(run: str) -> list[str]:
    return [entry.split()[0] for entry in tally_client.lrange(tally_key(run, "starts"), 0, -1)]


def finished(run: str) -> list[str]:
    return [entry.split()[0] for entry in tally_client.lrange(tally_key(run, "done"), 0, -1)]


def states_in_history(job_store: JobStore, job_id: str) -> list[str]:
    record = job_store.get(job_id)
    assert record is not None
    return [entry.state.value for entry in record.history]


def test_a_cancelled_job_does_not_run_while_its_check_cannot_be_made_and_ends_cancelled_once_redis_is_back() -> None:
    run = uuid.uuid4().hex[:8]
    redis_port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    with (
        FaultProxy(redis_port, name="redis") as proxy,
        worker_with_redis_at(through(os.environ["REDIS_URL"], proxy)) as w,
    ):
        proxy.down()
        job_id = tally.send(run=run, ms=0).message_id
        assert store.cancel(job_id) == "cancelled"

        # The worker tried the check, gave up after its window, and handed the message back, twice at least.
        assert wait_for(lambda: w.output().count(f"job {job_id} not started") >= 2, timeout=40), w.output()[-3000:]
        assert starts(run) == []

        proxy.up()
        assert wait_for(lambda: f"skipping {job_id}: job is cancelled" in w.output(), timeout=30), w.output()[-3000:]
        assert wait_for(lambda: queue_counts() == (0, 0), timeout=15), queue_counts()
    assert starts(run) == []
    assert states_in_history(store, job_id) == ["queued", "cancelled"]


def test_an_outcome_that_cannot_be_recorded_keeps_its_message_unacknowledged_until_redis_takes_it() -> None:
    run = uuid.uuid4().hex[:8]
    redis_port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    with (
        FaultProxy(redis_port, name="redis") as proxy,
        worker_with_redis_at(through(os.environ["REDIS_URL"], proxy)) as w,
    ):
        job_id = tally.send(run=run, ms=2500).message_id
        assert wait_for(lambda: starts(run) == [job_id], timeout=20)
        proxy.down()
        assert wait_for(lambda: finished(run) == [job_id], timeout=20)

        # Past the retry window (1 s), the outcome is still not recorded and the message still not acknowledged.
        assert wait_for(lambda: f"job {job_id}: its outcome is not recorded yet" in w.output(), timeout=40), w.output()[
            -3000:
        ]
        assert wait_for(lambda: queue_counts() == (0, 1), timeout=15), queue_counts()
        assert store.state_of(job_id) == "active"

        proxy.up()
        assert wait_for(lambda: store.state_of(job_id) == "completed", timeout=30), w.output()[-3000:]
        assert wait_for(lambda: queue_counts() == (0, 0), timeout=15), queue_counts()
    assert states_in_history(store, job_id).count("completed") == 1
    assert finished(run) == [job_id]


def test_redis_out_of_memory_neither_starts_an_unchecked_job_nor_takes_an_outcome_as_recorded() -> None:
    """Redis refuses a script whose first write would add memory (creating a record); later writes of a script
    that already wrote go through, so the outcome's case is a record Redis lost (emptied) while the job ran."""
    run = uuid.uuid4().hex[:8]
    with OwnRedis("--maxmemory-policy", "noeviction") as server:
        own = server.client()
        own_store = JobStore(own)
        with worker_with_redis_at(server.url) as w:
            finishing = tally.send(run=run, ms=2500).message_id
            assert wait_for(lambda: starts(run) == [finishing], timeout=20)
            own.delete(f"jobs:job:{finishing}")  # emptied meanwhile: the outcome has to create the record again
            own.config_set("maxmemory", "1")  # full: "OOM command not allowed ..." for writes that add memory
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                own.set("probe", "1")
            unchecked = tally.send(run=run, ms=0).message_id  # its record is not in this Redis: the worker adds it

            assert wait_for(lambda: finished(run) == [finishing], timeout=20)
            wanted = f"job {finishing}: its outcome is not recorded yet"
            assert wait_for(lambda: wanted in w.output(), timeout=30), w.output()[-4000:]
            wanted = f"job {unchecked} not started"
            assert wait_for(lambda: w.output().count(wanted) >= 2, timeout=30), w.output()[-4000:]
            assert wait_for(lambda: queue_counts()[1] >= 1, timeout=15), queue_counts()
            assert own_store.state_of(finishing) is None
            assert starts(run) == [finishing]

            own.config_set("maxmemory", "0")
            assert wait_for(lambda: own_store.state_of(finishing) == "completed", timeout=30), w.output()[-4000:]
            assert wait_for(lambda: own_store.state_of(unchecked) == "completed", timeout=30), w.output()[-4000:]
            assert wait_for(lambda: queue_counts() == (0, 0), timeout=15), queue_counts()
        assert sorted(starts(run)) == sorted([finishing, unchecked])
        assert states_in_history(own_store, finishing).count("completed") == 1
        assert states_in_history(own_store, unchecked) == ["active", "completed"]


def test_an_outcome_waiting_for_redis_when_the_broker_connection_drops_is_recorded_once_and_the_job_runs_once() -> None:
    """RabbitMQ redelivers the unacknowledged message when the worker's connection drops; the copy finds the job
    still held (its lease kept) or already recorded, and does not run it again."""
    run = uuid.uuid4().hex[:8]
    redis_port = urlsplit(os.environ["REDIS_URL"]).port or 6379
    rabbit_port = urlsplit(os.environ["RABBITMQ_URL"]).port or 5672
    with FaultProxy(redis_port, name="redis") as redis_proxy, FaultProxy(rabbit_port, name="rabbit") as rabbit_proxy:
        env = {**WINDOW_ENV, "RABBITMQ_URL": through(os.environ["RABBITMQ_URL"], rabbit_proxy)}
        with worker_with_redis_at(through(os.environ["REDIS_URL"], redis_proxy), env) as w:
            job_id = tally.send(run=run, ms=2000).message_id
            assert wait_for(lambda: starts(run) == [job_id], timeout=20)
            redis_proxy.down()
            assert wait_for(lambda: f"job {job_id}: its outcome is not recorded yet" in w.output(), timeout=40), (
                w.output()[-3000:]
            )
            assert rabbit_proxy.cut() >= 1  # the consumer's connection drops: RabbitMQ takes the message back
            assert wait_for(lambda: w.output().count(f"job {job_id} not started") >= 1, timeout=40), w.output()[-3000:]

            redis_proxy.up()
            assert wait_for(lambda: store.state_of(job_id) == "completed", timeout=30), w.output()[-3000:]
            assert wait_for(lambda: queue_counts() == (0, 0), timeout=40), queue_counts()
    assert states_in_history(store, job_id).count("completed") == 1
    assert starts(run) == [job_id]
