"""What a Redis failover can set back, and what repairs it.

Redis replicates asynchronously: a write the primary took and had not passed on when it died is not on the replica
that Sentinel promotes. Each test here makes that happen on purpose: the replicas are pointed away from the primary
(REPLICAOF a port nobody listens on: they keep their data and stop receiving), a transition is written on the
primary alone, the primary is SIGKILLed and Sentinel promotes a replica that never saw it. Then the store, through
Sentinel as every process of the service reaches Redis, meets the record as it was before.

- A final outcome, with REDIS_WAIT_REPLICAS on: the write does not count as done until a replica has it, so the
  worker keeps the message unacknowledged, writes the outcome again, and the promoted primary takes it.
- A final outcome, with REDIS_WAIT_REPLICAS=0: the worker took the write as done and acknowledged the message, so
  nothing writes it again. The record is left `active`, and after its lease `cleanup_jobs` puts it back to `queued`,
  where it stays: the job ran once, its record says it is waiting. This is what WAIT is for.
- An "active": the running attempt's lease renewal takes its lease again (its token is ahead of the record), and its
  outcome is recorded (a token ahead of the record's is taken, not fenced), so the job runs once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from service.domain.states import JobState
from service.kits.maintenance import requeue_lost
from service.store import keys
from service.store.connection import primary_through_sentinels
from service.store.job_store import HeldLease, JobStore, Transition
from service.store.script_batcher import NotReplicated
from tests.support.own_redis import OwnRedis
from tests.support.own_servers import spare_port, started
from tests.support.sentinel_redis import SentinelRedis

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

T = TypeVar("T")
DB = 3  #: the servers are the test's own; any database shows that REDIS_URL's is the one used
HOLDER = "worker-a:1"
LEASE_MS = 30_000


@pytest.fixture
def servers() -> Iterator[SentinelRedis]:
    with started(SentinelRedis()) as own:
        yield own


def store_through(servers: SentinelRedis, *, replicas_to_wait: int, wait_ms: int = 300) -> JobStore:
    client = primary_through_sentinels(
        servers.sentinel_addresses(), servers.master_name, f"redis://unused:1/{DB}"
    )  # fmt: skip
    return JobStore(client, replicas_to_wait=replicas_to_wait, replica_wait_ms=wait_ms)


def record(job_id: str) -> dict[str, Any]:
    return {"jobId": job_id, "actor": "probe", "queue": "default", "data": "{}", "priority": "normal",
            "createdMs": int(time.time() * 1000), "createdAt": "2026-12-03T00:00:00.000Z"}  # fmt: skip


def state_on(server: OwnRedis, job_id: str) -> str | None:
    value = server.client(db=DB).hget(keys.job(job_id), "state")
    return None if value is None else str(value)


def replicas(servers: SentinelRedis, primary: OwnRedis) -> list[OwnRedis]:
    return [s for s in servers.servers if s is not primary and s.running()]


def wait_until_replicated(servers: SentinelRedis, primary: OwnRedis, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 10
    while any(state_on(r, job_id) != state for r in replicas(servers, primary)):
        assert time.monotonic() < deadline, f"the replicas never got {job_id} {state}"
        time.sleep(0.02)


def cut_replicas_off(servers: SentinelRedis, primary: OwnRedis) -> None:
    """From now on the primary's writes reach no replica (each keeps what it has)."""
    nowhere = spare_port()
    for replica in replicas(servers, primary):
        replica.client().replicaof("127.0.0.1", nowhere)


def fail_over(servers: SentinelRedis, primary: OwnRedis) -> OwnRedis:
    primary.kill()
    return servers.wait_for_new_primary(primary)


def patiently(call: Callable[[], T], timeout: float = 30.0) -> T:
    """As the status middleware writes: a connection error (Redis away, or not replicated yet) is tried again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except redis.ConnectionError:
            assert time.monotonic() < deadline, f"still failing after {timeout} s"
            time.sleep(0.1)


def started_job(servers: SentinelRedis, store: JobStore) -> tuple[str, OwnRedis, Transition]:
    """A job queued and started, both on every replica: (its id, the primary, its "active")."""
    job_id = uuid.uuid4().hex
    store.transition(job_id, JobState.QUEUED, create=record(job_id))
    active = store.transition(job_id, JobState.ACTIVE, lease=(HOLDER, LEASE_MS))
    primary = servers.primary()
    wait_until_replicated(servers, primary, job_id, "active")
    return job_id, primary, active


def test_with_wait_a_completion_the_failover_lost_is_written_again_on_the_new_primary(servers: SentinelRedis) -> None:
    store = store_through(servers, replicas_to_wait=1)
    job_id, primary, active = started_job(servers, store)
    cut_replicas_off(servers, primary)

    def complete() -> Transition:
        return store.transition(job_id, JobState.COMPLETED, fields={"result": "1"}, token=active.token)

    with pytest.raises(NotReplicated):  # on the primary, and nowhere else: not done, the message waits
        complete()
    assert state_on(primary, job_id) == "completed"
    promoted = fail_over(servers, primary)
    assert state_on(promoted, job_id) == "active", "the situation was not reached: the completion was replicated"

    again = patiently(complete)  # what the worker does while it keeps the message unacknowledged
    assert (again.applied, again.state) == (True, "completed")
    assert state_on(promoted, job_id) == "completed"
    assert all(state_on(r, job_id) == "completed" for r in replicas(servers, promoted))  # WAIT: a replica has it


def test_without_wait_a_completion_the_failover_lost_is_not_repaired(servers: SentinelRedis) -> None:
    store = store_through(servers, replicas_to_wait=0)
    job_id, primary, active = started_job(servers, store)
    cut_replicas_off(servers, primary)
    done = store.transition(job_id, JobState.COMPLETED, fields={"result": "1"}, token=active.token)
    assert done.applied  # the worker acknowledges the message now: RabbitMQ forgets the job
    promoted = fail_over(servers, primary)
    assert patiently(lambda: store.state_of(job_id)) == "active"

    # Its lease (taken by the "active" that survived) lapses, as no worker renews it any more; cleanup then puts the
    # job back to queued, for a redelivery that never comes.
    promoted.client(db=DB).delete(keys.lease(job_id))  # lapsed
    assert requeue_lost(store, min_age_ms=0) == [job_id]
    assert store.state_of(job_id) == "queued"
    assert "worker lost" in str(store.client.hget(keys.job(job_id), "lastError"))


def test_an_attempt_whose_active_the_failover_lost_keeps_its_lease_and_records_its_outcome(
    servers: SentinelRedis,
) -> None:
    store = store_through(servers, replicas_to_wait=1)
    job_id = uuid.uuid4().hex
    store.transition(job_id, JobState.QUEUED, create=record(job_id))
    primary = servers.primary()
    wait_until_replicated(servers, primary, job_id, "queued")
    cut_replicas_off(servers, primary)
    active = store.transition(job_id, JobState.ACTIVE, lease=(HOLDER, LEASE_MS))
    assert active.applied and active.token == 1
    promoted = fail_over(servers, primary)
    assert state_on(promoted, job_id) == "queued", "the situation was not reached: the start was replicated"
    assert not promoted.client(db=DB).exists(keys.lease(job_id))

    # The worker's next lease renewal: the lease is gone, and the record knows no attempt 1, so it is set back, not
    # taken over: the lease is taken again and the job runs on.
    lost = patiently(lambda: store.renew_leases(HOLDER, LEASE_MS, [HeldLease(job_id, active.token)]))
    assert lost == set()
    assert promoted.client(db=DB).get(keys.lease(job_id)) == f"{HOLDER}/{active.token}"

    done = patiently(
        lambda: store.transition(job_id, JobState.COMPLETED, fields={"result": "1"}, token=active.token)
    )  # fmt: skip
    assert (done.applied, done.state) == (True, "completed"), done  # fenced before: the record was "behind"
    job = store.get(job_id)
    assert job is not None and job.attempts == 1
    assert not promoted.client(db=DB).exists(keys.lease(job_id))


def test_an_attempt_taken_over_is_still_fenced(servers: SentinelRedis) -> None:
    """The set-back rule must not open the fence: a token behind the record's is refused as before."""
    store = store_through(servers, replicas_to_wait=0)
    job_id, _, first = started_job(servers, store)
    store.client.delete(keys.lease(job_id))  # its worker died: the lease lapsed
    second = store.transition(job_id, JobState.ACTIVE, lease=("worker-b:2", LEASE_MS))
    assert second.applied and second.token == first.token + 1
    assert store.renew_leases(HOLDER, LEASE_MS, [HeldLease(job_id, first.token)]) == {job_id}
    late = store.transition(job_id, JobState.COMPLETED, fields={"result": "1"}, token=first.token)
    assert late.fenced


def test_a_client_left_on_a_demoted_primary_reconnects_to_the_new_one(servers: SentinelRedis) -> None:
    store = store_through(servers, replicas_to_wait=0)
    job_id = uuid.uuid4().hex
    store.transition(job_id, JobState.QUEUED, create=record(job_id))  # the batcher's connection: to the primary
    store.client.set("probe", "before")  # a pooled connection: to the primary too
    old = servers.primary()
    servers.sentinels[0].client().sentinel_failover(servers.master_name)
    promoted = servers.wait_for_new_primary(old)
    # What Sentinel does to a demoted primary that is still alive, but leaving its clients connected (Sentinel
    # drops them too, a few seconds later): they meet READONLY on their next write.
    old.client().replicaof(servers.address, promoted.port)
    assert old.client().role()[0] == "slave"

    with pytest.raises(redis.ConnectionError, match="previous master is now a slave"):
        store.client.set("probe", "after")  # READONLY, taken as a lost connection
    store.client.set("probe", "after")  # asks the Sentinels again: the new primary
    assert promoted.client(db=DB).get("probe") == "after"
    with pytest.raises(redis.ConnectionError, match="previous master is now a slave"):
        store.transition(job_id, JobState.ACTIVE, lease=(HOLDER, LEASE_MS))  # the batcher's own connection
    assert store.transition(job_id, JobState.ACTIVE, lease=(HOLDER, LEASE_MS)).applied
    assert state_on(promoted, job_id) == "active"
